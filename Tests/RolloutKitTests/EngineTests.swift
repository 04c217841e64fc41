import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// The rollout engine against real parts: the bundled example MCP server as a child process
/// (the built `rollout` binary), the in-process mock model or `rollout mock-server` over HTTP,
/// and a SQLite file.
enum EngineHarness {
    /// The built binary (`ROLLOUT_BIN` overrides, for other build folders).
    static let binary = ProcessInfo.processInfo.environment["ROLLOUT_BIN"] ?? CLITests.binary
    static var binaryBuilt: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// A warehouse file with the bundled example ingested and its tool servers pointing at the
    /// built binary.
    static func exampleWarehouse(_ dir: TempDir) throws -> Warehouse {
        let w = try Warehouse.open(path: dir.url.appending(path: "rollout.db").path)
        _ = try w.ingestBundledExample(into: dir.url.appending(path: "example").path)
        for domain in ["Library", "CityTransit"] {
            _ = try w.ingestServer(name: domain, command: binary, args: ["mcp-server", "example", "--domain", domain], domains: [domain])
        }
        return w
    }

    static func registry(_ yaml: String = "", in dir: TempDir) throws -> ModelRegistry {
        let file = try dir.write("models.yml", """
            models:
              mock/agent: {provider: mock, mode: agent}
              mock/user: {provider: mock, mode: user}
            \(yaml)
            """)
        return try ModelRegistry.load(file: file)
    }

    static func dialogueRequest(_ name: String = "test", domains: [String] = ["Library", "CityTransit", "CityTransit+Library"],
                                registry: ModelRegistry, agent: String = "mock/agent", user: String = "mock/user",
                                samples: Int = 1, maxTurns: Int = 8, maxSteps: Int = 6) -> RunRequest {
        var r = RunRequest(runName: name, jobs: [
            .init(name: "dialogue", settings: .init(name: "dialogue", mode: .dialogue, agent: .init(model: agent),
                                                    user: .init(model: user), maxTurns: maxTurns, maxStepsPerTurn: maxSteps),
                  selection: .domains(domains)),
        ], registry: registry)
        r.samples = samples
        r.concurrency = 8
        return r
    }

    static func run(_ w: Warehouse, _ request: RunRequest) async throws -> (RunPlan, RunSummary) {
        let plan = try await w.planRun(request)
        let summary = try await RolloutEngine(plan: plan, warehouse: w).run()
        return (plan, summary)
    }

    static func int(_ w: Warehouse, _ sql: String, _ args: StatementArguments = []) throws -> Int {
        try w.writer.read { db in try Int.fetchOne(db, sql: sql, arguments: args) ?? -1 }
    }
}

@Suite("Engine", .serialized)
struct EngineTests {
    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func dialoguesAgainstTheExampleToolServerAreWrittenCompletely() async throws {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        let request = EngineHarness.dialogueRequest(registry: try EngineHarness.registry(in: dir), samples: 2)
        let (plan, summary) = try await EngineHarness.run(w, request)
        #expect(plan.rolloutCount == 34)
        #expect(summary.ending == .completed)
        #expect(summary.counters.completed == 34)
        // Every sample of every task completed, once.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == 34)
        #expect(try EngineHarness.int(w, "SELECT count(DISTINCT task_id || '/' || sample) FROM rollouts") == 34)
        // The dataset's opening message opens each dialogue.
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM rollouts r JOIN tasks t ON t.id = r.task_id
            JOIN messages m ON m.rollout_id = r.id AND m.idx = 0
            WHERE m.role = 'user' AND m.content = t.opening
            """) == 34)
        // Every tool call was answered by the next messages, in order, with a real result.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM tool_calls") > 34)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM tool_calls WHERE result_message_id IS NULL OR result IS NULL") == 0)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM tool_calls c JOIN messages a ON a.id = c.message_id JOIN messages res ON res.id = c.result_message_id
            WHERE res.idx != a.idx + 1 + c.idx OR res.tool_call_id IS NOT c.call_id OR res.role != 'tool'
            """) == 0)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM tool_calls WHERE server_id IS NULL") == 0)
        // The example server answers in JSON; a tool called with sampled arguments may report an
        // error, but not all of them.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM tool_calls WHERE is_error = 0") > 0)
        // Every model call is in the ledger, tied to its rollout; the user never sees tool traffic.
        let agentMessages = try EngineHarness.int(w, "SELECT count(*) FROM messages WHERE role = 'assistant'")
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE role = 'agent'") == agentMessages)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE rollout_id IS NULL") == 0)
        // Stop reasons are the user's tokens (the mock user ends after 3 turns by default).
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE stop_reason = 'user_stop'") == 34)
        // What the agent was given is recorded once per domain.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM run_domains") == 3)
        let tools = try await w.writer.read { db in
            try String.fetchOne(db, sql: "SELECT tools FROM run_domains rd JOIN domains d ON d.id = rd.domain_id WHERE d.key = 'CityTransit+Library'")
        }
        #expect(tools?.contains("plan_trip") == true && tools?.contains("renew_loan") == true)
        #expect(summary.toolServerRestarts == 0)
    }

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func resumeRunsOnlyMissingSamplesAndRefusesAChangedConfig() async throws {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        let registry = try EngineHarness.registry(in: dir)
        let first = try await EngineHarness.run(w, EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 2))
        #expect(first.0.rolloutCount == 14)
        // Same command again: nothing to do.
        let again = try await w.planRun(EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 2))
        #expect(again.rolloutCount == 0)
        #expect(again.alreadyCompleted == 14)
        // More samples: only the new ones.
        let more = try await EngineHarness.run(w, EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 3))
        #expect(more.0.rolloutCount == 7)
        #expect(Set(try await w.writer.read { db in try Int.fetchAll(db, sql: "SELECT DISTINCT sample FROM rollouts") }) == [0, 1, 2])
        // A different configuration is refused without --force.
        await #expect(throws: EngineError.self) {
            try await w.planRun(EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 3, maxTurns: 3))
        }
        var forced = EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 3, maxTurns: 3)
        forced.force = true
        #expect(try await w.planRun(forced).rolloutCount == 0)
        // --no-resume starts a second run under a new name.
        var fresh = EngineHarness.dialogueRequest(domains: ["Library"], registry: registry, samples: 1)
        fresh.resume = false
        let plan = try await w.planRun(fresh)
        #expect(plan.runName == "test-2")
        #expect(plan.rolloutCount == 7)
    }

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func stopReasonsMaxTurnsMaxStepsAndTheMonitor() async throws {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        let registry = try EngineHarness.registry("""
              mock/chatty: {provider: mock, mode: user, user_turns: 50}
              mock/leaver: {provider: mock, mode: user, user_turns: 0, transfer_rate: 1}
            """, in: dir)
        // The user never stops: max_turns ends it.
        let turns = try await EngineHarness.run(w, EngineHarness.dialogueRequest("turns", domains: ["Library"], registry: registry,
                                                                                   user: "mock/chatty", maxTurns: 2))
        #expect(turns.1.counters.stopReasons == ["max_turns": 7])
        #expect(try EngineHarness.int(w, "SELECT max(turns) FROM rollouts r JOIN runs ON runs.id = r.run_id WHERE runs.name = 'turns'") == 2)
        // One step per turn: the tool call uses it, so the turn never gets its reply.
        let steps = try await EngineHarness.run(w, EngineHarness.dialogueRequest("steps", domains: ["Library"], registry: registry, maxSteps: 1))
        #expect(steps.1.counters.stopReasons == ["max_steps": 7])
        // The user leaves at once with ###TRANSFER###: the token is stripped, the text kept.
        let leave = try await EngineHarness.run(w, EngineHarness.dialogueRequest("leave", domains: ["Library"], registry: registry, user: "mock/leaver"))
        #expect(leave.1.counters.stopReasons == ["transfer": 7])
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM messages WHERE content LIKE '%###%'") == 0)
        // The monitor: a domain without tools means no tool calls; two such turns stop it.
        _ = try w.ingestQueries(file: dir.write("Quiet.jsonl", #"{"id":"q1","messages":[{"role":"user","content":"Hello?"}],"user_system_prompt":"Your goal: chat"}"#),
                                domains: ["Quiet"], dataset: "Quiet")
        var monitored = EngineHarness.dialogueRequest("monitor", domains: ["Quiet"], registry: registry, user: "mock/chatty")
        monitored.enableMonitor = true
        monitored.monitorMaxNoToolTurns = 2
        let quiet = try await EngineHarness.run(w, monitored)
        #expect(quiet.1.counters.stopReasons == ["no_tool_turns": 1])
        #expect(try EngineHarness.int(w, "SELECT turns FROM rollouts r JOIN runs ON runs.id = r.run_id WHERE runs.name = 'monitor'") == 2)
    }

    @Test func taskModeStoresThePrediction() async throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.url.appending(path: "qa.db").path)
        _ = try w.ingestQA(file: dir.write("qa.jsonl", """
            {"question": "What is the capital of France?", "answer": "Paris"}
            {"question": "Who wrote The Dispossessed?", "answer": "Ursula K. Le Guin"}
            """), dataset: "qa")
        var settings = RunConfig.Dataset(name: "qa", mode: .task, agent: .init(model: "mock/agent"), user: nil)
        settings.extra["max_calls"] = JSONValue(3)
        var request = RunRequest(runName: "qa", jobs: [.init(name: "qa", settings: settings, selection: .dataset("qa"))],
                                 registry: try EngineHarness.registry(in: dir))
        request.samples = 2
        let (_, summary) = try await EngineHarness.run(w, request)
        #expect(summary.counters.stopReasons == ["answer": 4])
        let predictions = try await w.writer.read { db in try String.fetchAll(db, sql: "SELECT prediction FROM rollouts ORDER BY id") }
        #expect(predictions.count == 4)
        #expect(predictions[0].contains("capital of France"))
    }

    @Test func stopTokensAreStrippedAndTheUserSeesNoToolTraffic() {
        #expect(UserSimulator.parse("Thanks! ###STOP###") == ("Thanks!", .userStop))
        #expect(UserSimulator.parse("###TRANSFER###") == ("", .transfer))
        #expect(UserSimulator.parse("no token") == ("no token", nil))
        #expect(UserSimulator.parse("I can't. ###OUT-OF-SCOPE### ").1 == .outOfScope)
        let dialogue = [
            ChatMessage(role: "user", content: "hi"),
            ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "c1", name: "t", arguments: "{}")]),
            ChatMessage(role: "tool", content: "{}", toolCallID: "c1"),
            ChatMessage(role: "assistant", content: "done"),
        ]
        let view = UserSimulator.view(of: dialogue, system: "S")
        #expect(view.map(\.role) == ["system", "assistant", "user"])
        #expect(view.map(\.content) == ["S", "hi", "done"])
        #expect(extractAnswer("thinking… <answer> 42 </answer>") == "42")
        #expect(extractAnswer("no tags") == nil)
    }

    @Test func reasoningHistoryPolicies() {
        let messages = [
            ChatMessage(role: "user", content: "a"),
            ChatMessage(role: "assistant", content: nil, reasoningContent: "r1", toolCalls: [ToolCall(id: "1", name: "t", arguments: "{}")]),
            ChatMessage(role: "tool", content: "x", toolCallID: "1"),
            ChatMessage(role: "assistant", content: "b", reasoningContent: "r2"),
            ChatMessage(role: "user", content: "c"),
            ChatMessage(role: "assistant", content: nil, reasoningContent: "r3", toolCalls: [ToolCall(id: "2", name: "t", arguments: "{}")]),
        ]
        #expect(ReasoningHistory.keep.apply(messages).map(\.reasoningContent) == [nil, "r1", nil, "r2", nil, "r3"])
        #expect(ReasoningHistory.dropPreviousTurns.apply(messages).map(\.reasoningContent) == [nil, nil, nil, nil, nil, "r3"])
        #expect(ReasoningHistory.keepAfterToolCalls.apply(messages).map(\.reasoningContent) == [nil, "r1", nil, nil, nil, "r3"])
    }

    @Test func unknownToolsAndBadArgumentsAreToolErrors() async {
        let router = ToolRouter(servers: [])
        var toolset = Toolset()
        toolset.specifications = [ToolSpecification(name: "sap_get_x", parameters: .object([:]))]
        toolset.routes["sap_get_x"] = .init(server: "sap", serverID: 1, name: "sap.get_x")
        let unknown = await router.call(ToolCall(id: "1", name: "nope", arguments: "{}"), toolset: toolset, session: ToolSession(id: "1", values: [:]))
        #expect(unknown.isError && unknown.text.contains("not available") && unknown.text.contains("sap_get_x"))
        let bad = await router.call(ToolCall(id: "1", name: "sap_get_x", arguments: "{not json"), toolset: toolset, session: ToolSession(id: "1", values: [:]))
        #expect(bad.isError && bad.text.contains("not valid JSON"))
        let array = await router.call(ToolCall(id: "1", name: "sap_get_x", arguments: "[1]"), toolset: toolset, session: ToolSession(id: "1", values: [:]))
        #expect(array.isError && array.text.contains("JSON object"))
        let noServer = await router.call(ToolCall(id: "1", name: "sap_get_x", arguments: "{}"), toolset: toolset, session: ToolSession(id: "1", values: [:]))
        #expect(noServer.isError && noServer.text.contains("no tool server"))
    }

    @Test func shardsPartitionTasksDeterministically() {
        let ids = (0..<1000).map { "task-\($0)" }
        var seen = Set<String>()
        for i in 0..<4 {
            let share = ids.filter { Warehouse.shard(of: $0, count: 4) == i }
            #expect(share.count > 150)
            #expect(seen.isDisjoint(with: share))
            seen.formUnion(share)
        }
        #expect(seen.count == 1000)
        #expect(Warehouse.shard(of: "lib00001", count: 7) == Warehouse.shard(of: "lib00001", count: 7))
    }
}
