import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// `rollout run` end to end on the τ² mock domain: its tasks and policy (fixture copied from
/// tau2-bench's mock domain), its agent tool list, and `tau2-mock-mcp-eval` 0.4.0 from PyPI as the
/// tool server. That server keeps state per `state_key` tool argument, not per `_meta`, so the
/// run registers it with a session argument: hidden from the agent, set on every call to
/// `tau2/mock/{task}/{session}` (the server applies the named task's initial state).
@Suite("rollout run on the τ² mock domain against tau2-mock-mcp-eval", .serialized,
       .enabled(if: MCPFixture.hasTau2 || MCPFixture.isCI, "pip install tau2-mock-mcp-eval==0.4.0 (scripts/install-deps.sh --test) to run these"))
struct Tau2RunTests {
    static let template = "tau2/mock/{task}/{session}"

    /// A warehouse with the τ² mock domain ingested and its server registered.
    static func warehouse(_ dir: TempDir, stateDir: String) throws -> Warehouse {
        let w = try Warehouse.open(path: dir.file("rollout.db"))
        _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
        _ = try w.ingestServer(name: "mock", command: "python3", args: ["-m", "tau2_mock_mcp.server"],
                               env: ["TAU2_MOCK_MCP_STATE_DIR=\(stateDir)"], domains: ["mock"],
                               sessionArgument: "state_key=\(template)")
        return w
    }

    static func request(_ dir: TempDir, samples: Int) throws -> RunRequest {
        var r = RunRequest(runName: "tau2", jobs: [
            .init(name: "tau2-mock", settings: .init(name: "tau2-mock", mode: .dialogue, agent: .init(model: "mock/agent"),
                                                     user: .init(model: "mock/user"), maxTurns: 6, maxStepsPerTurn: 4),
                  selection: .dataset("tau2-mock")),
        ], registry: try EngineHarness.registry(in: dir))
        r.samples = samples
        r.concurrency = 6
        return r
    }

    /// The server's state file for a key (it names them by the key's sha256).
    static func state(_ stateDir: String, key: String) throws -> JSONValue {
        try JSONParser.parse(try String(contentsOfFile: "\(stateDir)/\(Hashing.sha256Hex(key)).json", encoding: .utf8))
    }

    @Test func everyRolloutGetsItsOwnStateSeededFromItsTask() async throws {
        try #require(MCPFixture.hasTau2, "the Python package tau2-mock-mcp-eval is missing; scripts/install-deps.sh --test installs it")
        let dir = try TempDir()
        let stateDir = try dir.mkdir("state")
        let w = try Self.warehouse(dir, stateDir: stateDir)
        let (plan, summary) = try await EngineHarness.run(w, try Self.request(dir, samples: 2))
        #expect(plan.rolloutCount == 20)
        #expect(summary.ending == .completed)
        #expect(try w.int("SELECT count(*) FROM rollouts WHERE status = 'completed'") == 20)

        // The agent was offered τ²'s own agent tools, without the session argument.
        let offered = try JSONParser.parse(try #require(try w.string("SELECT tools FROM run_domains")))
        #expect(offered.arrayValue?.compactMap { $0["function"]?["name"]?.stringValue }.sorted()
                == ["create_task", "get_users", "transfer_to_human_agents", "update_task_status"])
        #expect(try w.string("SELECT json_extract(routes, '$.create_task.session_argument') FROM run_domains") == "state_key")

        let rows = try w.rows("""
            SELECT r.id AS rollout, t.external_id AS task, c.name, c.arguments, c.result, c.is_error
            FROM tool_calls c JOIN rollouts r ON r.id = c.rollout_id JOIN tasks t ON t.id = r.task_id
            ORDER BY r.id, c.id
            """)
        #expect(rows.count >= 20, "the mock agent calls a tool in every turn")
        var callsByRollout: [Int64: [(name: String, arguments: String)]] = [:]
        for row in rows {
            let rollout: Int64 = row["rollout"], task: String = row["task"], name: String = row["name"]
            let arguments: String = row["arguments"]
            callsByRollout[rollout, default: []].append((name, arguments))
            // The agent's own arguments are stored as it wrote them: no state_key.
            #expect(!arguments.contains("state_key"))
            // Every answer comes from the rollout's own namespace, seeded from its task.
            let result = try JSONParser.parse(try #require(row["result"] as String?))
            #expect(result["state_key"]?.stringValue == "tau2/mock/\(task)/\(rollout)", "\(result.jsonText)")
            #expect(result["task_id"]?.stringValue == task)
            #expect((row["is_error"] as Int64 == 1) == (result["ok"]?.boolValue == false))
        }
        // The server's record of each namespace holds exactly that rollout's calls, in order:
        // nothing leaked between rollouts, not even between two samples of the same task.
        let rollouts = try w.rows("SELECT r.id, t.external_id FROM rollouts r JOIN tasks t ON t.id = r.task_id")
        for row in rollouts {
            let id: Int64 = row[0], task: String = row[1]
            let key = "tau2/mock/\(task)/\(id)"
            let mine = callsByRollout[id] ?? []
            guard !mine.isEmpty else { continue }
            let state = try Self.state(stateDir, key: key)
            let logged = state["calls"]?.arrayValue ?? []
            #expect(logged.compactMap { $0["tau2_tool_call"]?["name"]?.stringValue } == mine.map(\.name), "\(key)")
            if task == "update_task_with_initialization_data" {
                // The task's initialization_data (a second task for user_1) was applied.
                #expect(state["tasks"]?["task_2"]?["title"]?.stringValue == "Project Review")
            }
        }
    }

    @Test func theSessionArgumentIsHiddenFromToolsTheServerListsAndEachRunGetsAFreshStateDirectory() async throws {
        try #require(MCPFixture.hasTau2, "the Python package tau2-mock-mcp-eval is missing; scripts/install-deps.sh --test installs it")
        let dir = try TempDir()
        // The state goes where the engine says: a directory of this run's own, gone afterwards.
        let w = try Self.warehouse(dir, stateDir: "${ROLLOUT_STATE_DIR}")
        // Replace the ingested agent_tools.json with what the server itself lists (its tools
        // all take an optional state_key).
        _ = try await w.syncTools(server: "mock")
        let stored = try w.strings("SELECT schema FROM tools t JOIN servers s ON s.id = t.server_id WHERE s.name = 'mock'")
        #expect(stored.count == 8)
        #expect(stored.allSatisfy { $0.contains("\"state_key\"") })

        let plan = try await w.planRun(try Self.request(dir, samples: 1))
        let engine = RolloutEngine(plan: plan, warehouse: w)
        let stateRoot = engine.tools.stateDirectory.root
        let summary = try await engine.run()
        #expect(summary.ending == .completed)
        let offered = try #require(try w.string("SELECT tools FROM run_domains"))
        #expect(!offered.contains("state_key"))
        let tools = try JSONParser.parse(offered).arrayValue ?? []
        #expect(tools.count == 8)
        for tool in tools {
            let parameters = tool["function"]?["parameters"]
            #expect(parameters?["properties"]?["state_key"] == nil)
            let required = parameters?["required"]?.arrayValue ?? []
            #expect(!required.contains(.string("state_key")))
        }
        // Calls were still answered from per-rollout namespaces.
        let keys = try w.rows("""
            SELECT r.id, t.external_id, json_extract(c.result, '$.state_key') FROM tool_calls c
            JOIN rollouts r ON r.id = c.rollout_id JOIN tasks t ON t.id = r.task_id
            WHERE json_valid(c.result)
            """)
        #expect(!keys.isEmpty)
        for row in keys {
            let id: Int64 = row[0], task: String = row[1], key: String? = row[2]
            #expect(key == "tau2/mock/\(task)/\(id)")
        }
        #expect(stateRoot.path.hasPrefix(FileManager.default.temporaryDirectory.path))
        #expect(!FileManager.default.fileExists(atPath: stateRoot.path), "the run's state directory is removed at shutdown")
    }

    @Test func badSessionArgumentsAreRefusedAtRegistration() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("rollout.db"))
        for (bad, message) in [("state_key=tau2/{task}", "no {session}"), ("state_key=x/{sesion}", "unknown placeholder {sesion}"),
                               ("state_key=x/{session", "unclosed"), ("=x{session}", "not an argument name")] {
            #expect {
                try w.ingestServer(name: "s", command: "python3", sessionArgument: bad)
            } throws: { error in
                "\(error)".contains(message) && "\(error)".contains("--session-arg")
            }
        }
        #expect(try w.int("SELECT count(*) FROM servers") == 0)
        _ = try w.ingestServer(name: "s", command: "python3", sessionArgument: "sid")
        #expect(try w.string("SELECT session_argument || ' ' || session_template FROM servers") == "sid {session}")
        let again = try w.ingestServer(name: "s", command: "python3", sessionArgument: "sid")
        #expect(again.counts.first { $0.entity == "servers" }?.unchanged == 1)
    }

    @Test func templatesRender() throws {
        let a = try SessionArgument(parsing: "state_key=tau2/mock/{task}/{session}-{run}.{sample}.{attempt}@{domain}")
        #expect(a.render(["task": "t1", "session": "42", "run": "r", "sample": "3", "attempt": "0", "domain": "mock"])
                == "tau2/mock/t1/42-r.3.0@mock")
        let hidden = a.hidden(from: try JSONParser.parse(#"{"type":"object","properties":{"x":{"type":"string"},"state_key":{"type":"string"}},"required":["x","state_key"]}"#))
        #expect(hidden.jsonText == #"{"type":"object","properties":{"x":{"type":"string"}},"required":["x"]}"#)
    }
}
