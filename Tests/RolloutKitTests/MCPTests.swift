import Foundation
import RolloutKit
import Testing

/// Real server processes for the MCP tests: the built `rollout` binary's example server, a
/// scripted shell server, and two servers from PyPI (installed by scripts/install-deps.sh --test).
enum MCPFixture {
    /// `$ROLLOUT_BIN` when set (a build in another scratch path), else `.build/debug/rollout`.
    static let binary = ProcessInfo.processInfo.environment["ROLLOUT_BIN"] ?? CLITests.binary
    static let hasBinary = FileManager.default.isExecutableFile(atPath: binary)
    static let isCI = ProcessInfo.processInfo.environment["CI"] != nil

    static func example(_ domains: [String] = [], extra: [String] = []) -> MCPServerSpec {
        MCPServerSpec(name: "example", command: binary,
                      args: ["mcp-server", "example"] + domains.flatMap { ["--domain", $0] } + extra)
    }

    static func python(has module: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import \(module)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    static let hasMCP = python(has: "mcp.server.mcpserver")
    static let hasTau2 = python(has: "tau2_mock_mcp.server")

    /// Sends SIGSTOP and waits until the process is really stopped (delivery is asynchronous:
    /// a request written right after `kill` can still be answered).
    static func stop(_ pid: Int32) async {
        kill(pid, SIGSTOP)
        for _ in 0..<100 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else {
                try? await Task.sleep(for: .milliseconds(200))  // no /proc: give it time
                return
            }
            // The state follows the parenthesized command name.
            if let close = stat.lastIndex(of: ")"), stat[close...].dropFirst(2).first == "T" { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// True when the process is gone and reaped (no zombie either).
    static func processIsGone(_ pid: Int32) -> Bool {
        kill(pid, 0) != 0 && errno == ESRCH
    }

    static func expectMCPError(_ kind: MCPError.Kind, sourceLocation: SourceLocation = #_sourceLocation,
                               _ body: () async throws -> Void) async -> MCPError? {
        do {
            try await body()
            Issue.record("expected an MCPError (\(kind)), but the call succeeded", sourceLocation: sourceLocation)
            return nil
        } catch let e as MCPError {
            #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
            return e
        } catch {
            Issue.record("expected an MCPError (\(kind)), got \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}

/// Thread-safe collection for results gathered by concurrent tasks.
final class LockedList<T>: @unchecked Sendable {  // every access goes through `lock`
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.lock(); items.append(item); lock.unlock() }
    var all: [T] { lock.lock(); defer { lock.unlock() }; return items }
}

@Suite("MCP client against the example server", .serialized,
       .enabled(if: MCPFixture.hasBinary, "build the rollout executable first (swift build), or set ROLLOUT_BIN"))
struct MCPExampleServerTests {
    @Test func handshakeAndToolListMatchTheBundledToolLists() async throws {
        let client = MCPClient(spec: MCPFixture.example())
        defer { Task { await client.shutdown() } }
        try await client.start()
        try await client.start()  // idempotent
        #expect(client.protocolVersion == "2025-06-18")
        #expect(client.restartCount == 0)
        let tools = try await client.listTools().map(ToolSpecification.init(mcpTool:))
        let bundled = try ["Library", "CityTransit"].flatMap {
            try ToolSpecification.load(file: Fixture.repoRoot.appending(path: "examples/rollout-layout/single_domain/tool_lists/\($0).json").path)
        }
        #expect(tools == bundled)
        #expect(tools.map(\.name) == ["search_catalog", "get_member", "list_loans", "renew_loan", "place_hold",
                                      "plan_trip", "get_card", "top_up_card", "report_lost_card"])
        await client.shutdown()
    }

    @Test func listToolsFollowsNextCursorPages() async throws {
        let client = MCPClient(spec: MCPFixture.example(["Library"], extra: ["--page-size", "2"]))
        let names = try await client.listTools().compactMap { $0["name"]?.stringValue }
        #expect(names == ["search_catalog", "get_member", "list_loans", "renew_loan", "place_hold"])
        await client.shutdown()
    }

    @Test func aCallReturnsTextAndStructuredContent() async throws {
        let client = MCPClient(spec: MCPFixture.example(["CityTransit"]))
        let result = try await client.callTool(name: "get_card", arguments: ["card_id": "C-7788"], sessionID: nil)
        #expect(!result.isError)
        let structured = try #require(result.structured)
        #expect(structured["balance_eur"] == "12.50")
        #expect(structured["status"] == "active")
        #expect(result.text == structured.jsonText)

        let search = try await MCPClient(spec: MCPFixture.example(["Library"])).callTool(
            name: "search_catalog", arguments: ["query": "Ursula K. Le Guin"], sessionID: nil)
        let titles = search.structured?["results"]?.arrayValue?.compactMap { $0["title"]?.stringValue }
        #expect(titles == ["The Left Hand of Darkness", "The Dispossessed", "A Wizard of Earthsea", "The Lathe of Heaven"])
        await client.shutdown()
    }

    @Test func eachSessionHasItsOwnWorld() async throws {
        let client = MCPClient(spec: MCPFixture.example(["Library"]))
        let renewed = try await client.callTool(name: "renew_loan", arguments: ["member_id": "M-1001", "loan_id": "L-501"], sessionID: "A")
        #expect(!renewed.isError, "\(renewed.text)")
        #expect(renewed.structured?["due_date"] == "2025-03-28")

        func loan501(_ session: String?) async throws -> JSONValue? {
            let r = try await client.callTool(name: "list_loans", arguments: ["member_id": "M-1001"], sessionID: session)
            return r.structured?["loans"]?.arrayValue?.first { $0["loan_id"] == "L-501" }
        }
        let a = try await loan501("A"), b = try await loan501("B"), none = try await loan501(nil)
        #expect(a?["renewals"] == JSONValue(1))
        #expect(a?["due_date"] == "2025-03-28")
        #expect(b?["renewals"] == JSONValue(0))
        #expect(b?["due_date"] == "2025-03-14")
        #expect(none == b)

        // A second renewal in A uses A's state: the loan now has one renewal left.
        let again = try await client.callTool(name: "renew_loan", arguments: ["member_id": "M-1001", "loan_id": "L-501"], sessionID: "A")
        #expect(again.structured?["renewals_left"] == JSONValue(0))
        await client.shutdown()
    }

    @Test func twoHundredConcurrentCallsAreMatchedToTheirAnswers() async throws {
        let client = MCPClient(spec: MCPFixture.example(["CityTransit"]))
        try await client.start()
        let failures = LockedList<String>()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let amount = 5 + i % 96
                    do {
                        let r = try await client.callTool(name: "top_up_card", arguments: ["card_id": "C-7788", "amount": JSONValue(amount)],
                                                          sessionID: "session-\(i)")
                        let expected = String(format: "%d.50", 12 + amount)
                        if r.isError || r.structured?["balance_eur"] != .string(expected) || r.structured?["amount_eur"] != .string("\(amount).00") {
                            failures.append("call \(i): \(r.text)")
                        }
                    } catch {
                        failures.append("call \(i): \(error)")
                    }
                }
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")
        #expect(client.restartCount == 0)
        await client.shutdown()
    }

    @Test func anUnknownToolIsAJSONRPCError() async throws {
        let client = MCPClient(spec: MCPFixture.example())
        let e = await MCPFixture.expectMCPError(.rpc) {
            _ = try await client.callTool(name: "no_such_tool", arguments: [:], sessionID: nil)
        }
        #expect(e?.rpcCode == -32602)
        #expect(e?.description.contains("MCP server \"example\"") == true)
        #expect(e?.description.contains("Unknown tool: no_such_tool") == true)
        // The server is still there.
        #expect(try await client.callTool(name: "get_member", arguments: ["member_id": "M-1002"], sessionID: nil).isError == false)
        await client.shutdown()
    }

    @Test func badArgumentsAreAnErrorResultWithAHelpfulMessage() async throws {
        let client = MCPClient(spec: MCPFixture.example())
        let tooMuch = try await client.callTool(name: "top_up_card", arguments: ["card_id": "C-7788", "amount": JSONValue(150)], sessionID: nil)
        #expect(tooMuch.isError)
        #expect(tooMuch.text.contains("amount must be at most 100"))
        let missing = try await client.callTool(name: "renew_loan", arguments: ["member_id": "M-1001"], sessionID: nil)
        #expect(missing.isError)
        #expect(missing.text.contains("missing required argument \"loan_id\""))
        let refused = try await client.callTool(name: "renew_loan", arguments: ["member_id": "M-1002", "loan_id": "L-502"], sessionID: nil)
        #expect(refused.isError)
        #expect(refused.text.contains("renewed 2 times"))
        #expect(refused.structured == nil)
        await client.shutdown()
    }

    @Test func killingTheServerFailsCallsInFlightAndTheNextCallRestartsIt() async throws {
        let client = MCPClient(spec: MCPFixture.example(["Library"]))
        try await client.start()
        let pid = try #require(client.pid)
        await MCPFixture.stop(pid)  // it cannot answer, so the calls below stay in flight
        let errors = LockedList<any Error>()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    do {
                        _ = try await client.callTool(name: "get_member", arguments: ["member_id": "M-1001"], sessionID: "k\(i)")
                    } catch {
                        errors.append(error)
                    }
                }
            }
            // Kill it once all of them wait for an answer.
            let deadline = ContinuousClock.now + .seconds(20)
            while client.callsInFlight < 20 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            kill(pid, SIGKILL)
        }
        #expect(errors.all.count == 20)
        for error in errors.all {
            let e = error as? MCPError
            #expect(e?.kind == .processExited, "\(error)")
            #expect(e?.description.contains("killed by signal 9") == true, "\(error)")
        }
        #expect(MCPFixture.processIsGone(pid))
        let member = try await client.callTool(name: "get_member", arguments: ["member_id": "M-1001"], sessionID: nil)
        #expect(member.structured?["name"] == "Ada Okafor")
        #expect(client.restartCount == 1)
        #expect(client.pid != pid)
        await client.shutdown()
    }

    @Test func aCallThatTimesOutFailsAloneAndTheServerStaysUp() async throws {
        let client = MCPClient(spec: MCPFixture.example(["CityTransit"]), callTimeout: .seconds(1))
        try await client.start()
        let pid = try #require(client.pid)
        await MCPFixture.stop(pid)
        let e = await MCPFixture.expectMCPError(.timeout) {
            _ = try await client.callTool(name: "get_card", arguments: ["card_id": "C-7788"], sessionID: nil)
        }
        #expect(e?.description.contains("tools/call \"get_card\" got no answer within 1 s") == true)
        // Far more than a pipe holds, to a server that reads nothing: callers must not block on
        // the pipe, and every call times out on its own.
        let timedOut = LockedList<Bool>()
        let padding = String(repeating: "x", count: 400)  // 300 × ~450 bytes, twice a pipe buffer
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<300 {
                group.addTask {
                    do {
                        _ = try await client.callTool(name: "get_card", arguments: ["card_id": .string("C-\(i)-\(padding)")], sessionID: nil)
                        timedOut.append(false)
                    } catch {
                        timedOut.append((error as? MCPError)?.kind == .timeout)
                    }
                }
            }
        }
        #expect(timedOut.all.count == 300)
        #expect(timedOut.all.allSatisfy { $0 })
        kill(pid, SIGCONT)
        // It first works through the backlog of requests whose callers gave up.
        var card: MCPToolResult?
        for _ in 0..<10 where card == nil {
            card = try? await client.callTool(name: "get_card", arguments: ["card_id": "C-9001"], sessionID: nil)
        }
        #expect(card?.structured?["balance_eur"] == "23.40")
        #expect(client.pid == pid)
        #expect(client.restartCount == 0)
        await client.shutdown()
    }

    @Test func shutdownLeavesNoProcessAndIsIdempotent() async throws {
        let client = MCPClient(spec: MCPFixture.example())
        try await client.start()
        let pid = try #require(client.pid)
        await client.shutdown()
        #expect(MCPFixture.processIsGone(pid))
        #expect(client.pid == nil)
        await client.shutdown()
        _ = await MCPFixture.expectMCPError(.shutDown) {
            _ = try await client.callTool(name: "get_card", arguments: ["card_id": "C-7788"], sessionID: nil)
        }
    }
}

@Suite("MCP client edge cases", .serialized)
struct MCPClientEdgeTests {
    static let scripted = Fixture.path("mcp/scripted_server.sh")

    func scriptedSpec() -> MCPServerSpec {
        MCPServerSpec(name: "scripted", command: "/bin/sh", args: [Self.scripted],
                      env: ["MCP_TEST_VERSION": "${ROLLOUT_TEST_MCP_VERSION:-2024-11-05}"])
    }

    @Test func bannersServerRequestsAndNonTextBlocksAreHandled() async throws {
        let client = MCPClient(spec: scriptedSpec(), environment: ["PATH": "/usr/bin:/bin"])
        let result = try await client.callTool(name: "echo", arguments: ["x": JSONValue(1)], sessionID: "s-1")
        #expect(client.protocolVersion == "2024-11-05", "the ${VAR:-default} reference in env fell back to its default")
        let lines = result.text.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(result.text)")
        // The server's ping got {} and its unsupported request -32601.
        #expect(lines.first == #"ping answer: {"jsonrpc":"2.0","id":"srv-1","result":{}}"#)
        #expect(lines.dropFirst().first?.hasPrefix(#"sampling answer: {"jsonrpc":"2.0","id":"srv-2","error":{"code":-32601"#) == true)
        // What we sent: name, arguments, _meta.sessionId.
        #expect(lines.dropFirst(2).first == #"request params: {"name":"echo","arguments":{"x":1},"_meta":{"sessionId":"s-1"}}"#)
        #expect(lines.last == #"{"type":"image","data":"AAAA","mimeType":"image/png"}"#)
        #expect(result.isError == false)
        await client.shutdown()
    }

    @Test func environmentReferencesAreExpandedAtSpawn() async throws {
        let client = MCPClient(spec: scriptedSpec(), environment: ["PATH": "/usr/bin:/bin", "ROLLOUT_TEST_MCP_VERSION": "2025-03-26"])
        try await client.start()
        #expect(client.protocolVersion == "2025-03-26")
        await client.shutdown()

        let unset = MCPClient(spec: MCPServerSpec(name: "scripted", command: "/bin/sh", args: [Self.scripted],
                                                  env: ["MCP_TEST_VERSION": "${ROLLOUT_TEST_UNSET_VAR}"]), environment: [:])
        let e = await MCPFixture.expectMCPError(.spawnFailed) { try await unset.start() }
        #expect(e?.description.contains("ROLLOUT_TEST_UNSET_VAR") == true)
    }

    @Test func anUnsupportedProtocolVersionIsRefused() async throws {
        let client = MCPClient(spec: scriptedSpec(), environment: ["PATH": "/usr/bin:/bin", "ROLLOUT_TEST_MCP_VERSION": "1999-01-01"])
        let e = await MCPFixture.expectMCPError(.protocolError) { try await client.start() }
        #expect(e?.description.contains("1999-01-01") == true)
        await client.shutdown()
    }

    @Test func aServerThatDiesDuringTheHandshakeIsRetriedThreeTimes() async throws {
        let client = MCPClient(spec: MCPServerSpec(name: "broken", command: "sh", args: ["-c", "echo 'cannot open config.toml' >&2; exit 3"]))
        let e = await MCPFixture.expectMCPError(.processExited) { try await client.start() }
        let text = e?.description ?? ""
        #expect(text.contains("MCP server \"broken\""))
        #expect(text.contains("3 times in a row"))
        #expect(text.contains("exit status 3"))
        #expect(text.contains("cannot open config.toml"))
        // The exit status in the message shows the exits were seen as they happened, not
        // waited out to a handshake timeout (no wall-clock bound: the machine is shared).
        // Right after, callers get the same failure without respawning.
        _ = await MCPFixture.expectMCPError(.processExited) { _ = try await client.listTools() }
        await client.shutdown()
    }

    @Test func aMissingProgramIsASpawnFailure() async throws {
        let client = MCPClient(spec: MCPServerSpec(name: "ghost", command: "rollout-no-such-program-here"))
        let e = await MCPFixture.expectMCPError(.spawnFailed) { try await client.start() }
        #expect(e?.description.contains("not found on PATH") == true)
        let badCwd = MCPClient(spec: MCPServerSpec(name: "ghost", command: "sh", cwd: "/no/such/folder"))
        _ = await MCPFixture.expectMCPError(.spawnFailed) { try await badCwd.start() }
    }

    @Test func toolSpecificationFromMCPTool() throws {
        let bare = try ToolSpecification(mcpTool: .object(["name": "ping"]))
        #expect(bare.parameters == JSONValue.object(["type": "object", "properties": .object([:])]))
        #expect(bare.description == nil)
        let full = try ToolSpecification(mcpTool: .object(["name": "x", "description": "d",
                                                           "inputSchema": .object(["type": "object", "required": .array(["a"])])]))
        #expect(full.description == "d")
        #expect(full.parameters["required"] == .array(["a"]))
        #expect(throws: MCPError.self) { try ToolSpecification(mcpTool: .object(["description": "no name"])) }
    }
}

@Suite("MCP tool sync into the warehouse", .serialized,
       .enabled(if: MCPFixture.hasBinary, "build the rollout executable first (swift build), or set ROLLOUT_BIN"))
struct MCPToolSyncTests {
    @Test func syncStoresTheServersToolsAndIsIdempotent() async throws {
        let w = try Warehouse.inMemory()
        _ = try w.ingestServer(name: "lib", command: MCPFixture.binary, args: ["mcp-server", "example", "--domain", "Library"],
                               domains: ["Library"])
        let first = try await w.syncTools(server: "lib")
        #expect(first.kind == "tools")
        #expect(first.source == "mcp:lib")
        #expect(first["tools"].inserted == 5)
        let again = try await w.syncTools(server: "lib")
        #expect(again["tools"].unchanged == 5)
        #expect(again["tools"].inserted == 0 && again["tools"].updated == 0)
        #expect(try w.strings("SELECT t.name FROM tools t JOIN servers s ON s.id = t.server_id WHERE s.name = 'lib' ORDER BY t.ordinal")
            == ["search_catalog", "get_member", "list_loans", "renew_loan", "place_hold"])
        // Stored exactly as the bundled OpenAI tool list spells them.
        let file = try JSONParser.parse(String(contentsOf: Fixture.repoRoot.appending(path: "examples/rollout-layout/single_domain/tool_lists/Library.json"), encoding: .utf8))
        #expect(try w.strings("SELECT schema FROM tools ORDER BY ordinal") == file.arrayValue!.map(\.jsonText))
    }

    @Test func theBundledExampleRegistersItsServers() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let report = try w.ingestBundledExample(into: tmp.path)
        #expect(report["servers"].inserted == 2)
        let spec = try w.serverSpec(named: "Library")
        #expect(spec == MCPServerSpec(name: "Library", command: "rollout", args: ["mcp-server", "example", "--domain", "Library"]))
        #expect(try w.strings("SELECT s.name || '>' || d.key FROM domain_servers ds JOIN servers s ON s.id = ds.server_id JOIN domains d ON d.id = ds.domain_id ORDER BY 1")
            == ["CityTransit>CityTransit", "Library>Library"])
        let again = try w.ingestBundledExample(into: tmp.path)
        #expect(again["servers"].unchanged == 2)
        #expect(again["servers"].inserted == 0 && again["servers"].updated == 0)
    }

    @Test func unknownServersAndServersWithoutACommandAreClearErrors() async throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let list = try tmp.write("tools.json", #"[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#)
        _ = try w.ingestTools(file: list, server: "listed")
        let unknown = await MCPFixture.expectMCPError(.notConfigured) { _ = try await w.syncTools(server: "nope") }
        #expect(unknown?.description.contains("no such server (registered: listed)") == true)
        let noCommand = await MCPFixture.expectMCPError(.notConfigured) { _ = try await w.syncTools(server: "listed") }
        #expect(noCommand?.description.contains("rollout ingest server listed --command") == true)
    }

    @Test func cliSyncsTheQuickstartServersAndListsTools() throws {
        let dir = try CLITests.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func rollout(_ args: [String]) throws -> CLITests.Result {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: MCPFixture.binary)
            process.arguments = args
            process.currentDirectoryURL = dir
            var environment = ProcessInfo.processInfo.environment
            environment["ROLLOUT_DB"] = nil
            process.environment = environment
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return .init(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
        }
        #expect(try rollout(["quickstart"]).status == 0)
        // `rollout` in the servers rows is this very binary.
        let sync = try rollout(["tools", "sync", "Library", "CityTransit"])
        #expect(sync.status == 0, "\(sync.stderr)")
        #expect(sync.stdout.contains("ingested mcp:Library (tools"))
        #expect(sync.stdout.contains("tools: 0 inserted, 0 updated, 5 unchanged"))
        #expect(sync.stdout.contains("tools: 0 inserted, 0 updated, 4 unchanged"))
        let list = try rollout(["tools", "list", "CityTransit", "--json"])
        #expect(list.status == 0, "\(list.stderr)")
        let rows = try JSONParser.parse(list.stdout).arrayValue ?? []
        #expect(rows.compactMap { $0["name"]?.stringValue } == ["plan_trip", "get_card", "top_up_card", "report_lost_card"])
        #expect(rows.first?.objectValue?.keys == ["server", "name", "api_name", "description"])
        let missing = try rollout(["tools", "list", "Nope"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no server named Nope"))
        let badDomain = try rollout(["mcp-server", "example", "--domain", "Nope"])
        #expect(badDomain.status != 0)
        #expect(badDomain.stderr.contains("unknown domain Nope"))
    }
}

/// The official Python SDK (PyPI `mcp` 2.3.0) as the server: a second implementation of the
/// protocol checks ours. Fixtures/mcp/fastmcp_server.py.
@Suite("MCP client against the Python SDK (mcp 2.3.0)", .serialized,
       .enabled(if: MCPFixture.hasMCP || MCPFixture.isCI, "pip install mcp==2.3.0 (scripts/install-deps.sh --test) to run these"))
struct MCPPythonSDKTests {
    static let spec = MCPServerSpec(name: "fastmcp", command: "python3", args: [Fixture.path("mcp/fastmcp_server.py")])

    @Test func toolsCallsErrorsAndMetaDelivery() async throws {
        try #require(MCPFixture.hasMCP, "the Python package mcp is missing; scripts/install-deps.sh --test installs it")
        let client = MCPClient(spec: Self.spec)
        defer { Task { await client.shutdown() } }
        try await client.start()  // the fixture prints a banner on stdout first
        #expect(client.protocolVersion == "2025-06-18")

        let tools = try await client.listTools().map(ToolSpecification.init(mcpTool:))
        #expect(tools.map(\.name) == ["whoami", "add", "explode", "refuse"])
        #expect(tools[1].parameters["required"] == .array(["a", "b"]))

        let me = try await client.callTool(name: "whoami", arguments: [:], sessionID: "sess-42")
        #expect(me.text == "sess-42")
        #expect(me.structured == .object(["result": "sess-42"]))
        #expect(try await client.callTool(name: "whoami", arguments: [:], sessionID: nil).text == "")

        let sum = try await client.callTool(name: "add", arguments: ["a": JSONValue(2), "b": JSONValue(3)], sessionID: nil)
        #expect(!sum.isError)
        #expect(sum.structured == .object(["a": JSONValue(2), "b": JSONValue(3), "total": JSONValue(5)]))

        let exploded = try await client.callTool(name: "explode", arguments: ["reason": "boom"], sessionID: nil)
        #expect(exploded.isError)
        #expect(exploded.text.contains("exploded: boom"))

        let refused = await MCPFixture.expectMCPError(.rpc) {
            _ = try await client.callTool(name: "refuse", arguments: ["reason": "no"], sessionID: nil)
        }
        #expect(refused?.rpcCode == -32001)
        #expect(refused?.description.contains("refused: no") == true)

        // mcp 2.3.0's MCPServer answers an unknown tool with an isError result, not -32602.
        let unknown = try await client.callTool(name: "nope", arguments: [:], sessionID: nil)
        #expect(unknown.isError)
        #expect(unknown.text.contains("Unknown tool: nope"))

        let badArgs = try await client.callTool(name: "add", arguments: ["a": "x"], sessionID: nil)
        #expect(badArgs.isError)
        await client.shutdown()
    }

    @Test func concurrentCallsAreMatched() async throws {
        try #require(MCPFixture.hasMCP, "the Python package mcp is missing; scripts/install-deps.sh --test installs it")
        let client = MCPClient(spec: Self.spec)
        try await client.start()
        let failures = LockedList<String>()
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<30 {
                group.addTask {
                    do {
                        let r = try await client.callTool(name: "add", arguments: ["a": JSONValue(i), "b": JSONValue(1000)], sessionID: nil)
                        if r.structured?["total"] != JSONValue(i + 1000) { failures.append("call \(i): \(r.text)") }
                    } catch {
                        failures.append("call \(i): \(error)")
                    }
                }
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(3))")
        await client.shutdown()
    }
}

/// The τ² mock domain as an MCP server (PyPI `tau2-mock-mcp-eval` 0.4.0). It keeps state per
/// `state_key` tool argument (not per `_meta`), persisted as JSON files under
/// $TAU2_MOCK_MCP_STATE_DIR, and applies the initial state of the task named in the key
/// `tau2/mock/<task id>/…` from its bundled copy of the mock tasks.json.
@Suite("MCP client against tau2-mock-mcp-eval 0.4.0", .serialized,
       .enabled(if: MCPFixture.hasTau2 || MCPFixture.isCI, "pip install tau2-mock-mcp-eval==0.4.0 (scripts/install-deps.sh --test) to run these"))
struct MCPTau2MockTests {
    static func spec(stateDir: String) -> MCPServerSpec {
        MCPServerSpec(name: "tau2-mock", command: "python3", args: ["-m", "tau2_mock_mcp.server"],
                      env: ["TAU2_MOCK_MCP_STATE_DIR": stateDir])
    }

    static func userTasks(_ client: MCPClient, key: String) async throws -> JSONValue? {
        let r = try await client.callTool(name: "get_users", arguments: ["state_key": .string(key)], sessionID: nil)
        return r.structured?["parsed_content"]?[0]?["tasks"]
    }

    @Test func toolListCoversTheMockDomainsTools() async throws {
        try #require(MCPFixture.hasTau2, "the Python package tau2-mock-mcp-eval is missing; scripts/install-deps.sh --test installs it")
        let tmp = try TempDir()
        let client = MCPClient(spec: Self.spec(stateDir: tmp.path))
        try await client.start()
        #expect(client.protocolVersion == "2025-06-18")
        let names = try await client.listTools().map(ToolSpecification.init(mcpTool:)).map(\.name)
        let agentTools = try ToolSpecification.load(file: Fixture.path("tau2/mock/agent_tools.json")).map(\.name)
        #expect(Set(agentTools).isSubset(of: Set(names)), "agent tools \(agentTools) in \(names)")
        #expect(names == ["reset_state", "get_users", "create_task", "update_task_status", "transfer_to_human_agents",
                          "check_notifications", "dismiss_notification", "get_call_log"])
        await client.shutdown()
    }

    @Test func stateKeysIsolateAndSeedFromTheTasksInitialState() async throws {
        try #require(MCPFixture.hasTau2, "the Python package tau2-mock-mcp-eval is missing; scripts/install-deps.sh --test installs it")
        let tmp = try TempDir()
        let client = MCPClient(spec: Self.spec(stateDir: tmp.path))
        let created = try await client.callTool(name: "create_task", arguments: [
            "user_id": "user_1", "title": "Project Review", "state_key": "tau2/mock/create_task_1/rollout-A",
        ], sessionID: nil)
        #expect(!created.isError, "\(created.text)")
        #expect(created.structured?["parsed_content"]?["task_id"] == "task_2")
        #expect(created.structured?["task_id"] == "create_task_1")
        #expect(try await Self.userTasks(client, key: "tau2/mock/create_task_1/rollout-A") == .array(["task_1", "task_2"]))
        #expect(try await Self.userTasks(client, key: "tau2/mock/create_task_1/rollout-B") == .array(["task_1"]))
        // The task's initial_state (initialization_data) is applied to a fresh key.
        #expect(try await Self.userTasks(client, key: "tau2/mock/update_task_with_initialization_data/r1") == .array(["task_1", "task_2"]))
        // _meta.sessionId is not what it keys on: without state_key every call shares tau2/mock/default.
        let shared = try await client.callTool(name: "get_users", arguments: [:], sessionID: "some-session")
        #expect(shared.structured?["state_key"] == "tau2/mock/default")
        // Unknown tools and bad arguments are isError results.
        #expect(try await client.callTool(name: "nope", arguments: [:], sessionID: nil).isError)
        #expect(try await client.callTool(name: "create_task", arguments: ["user_id": "user_1"], sessionID: nil).isError)
        await client.shutdown()
    }

    @Test func aCrashIsReportedWithStderrAndStateSurvivesTheRestart() async throws {
        try #require(MCPFixture.hasTau2, "the Python package tau2-mock-mcp-eval is missing; scripts/install-deps.sh --test installs it")
        let tmp = try TempDir()
        let client = MCPClient(spec: Self.spec(stateDir: tmp.path))
        _ = try await client.callTool(name: "create_task", arguments: [
            "user_id": "user_1", "title": "Keep me", "state_key": "tau2/mock/create_task_1/kept",
        ], sessionID: nil)
        // A state key for another domain raises outside the server's error handling: the process dies.
        let e = await MCPFixture.expectMCPError(.processExited) {
            _ = try await client.callTool(name: "get_users", arguments: ["state_key": "tau2/retail/0/x"], sessionID: nil)
        }
        #expect(e?.description.contains("exit status 1") == true, "\(e.map(String.init(describing:)) ?? "")")
        #expect(e?.stderrTail.contains { $0.contains("unsupported domain: retail") } == true)
        // The next call starts a new process; the state was on disk, so it is still there.
        #expect(try await Self.userTasks(client, key: "tau2/mock/create_task_1/kept") == .array(["task_1", "task_2"]))
        #expect(client.restartCount == 1)
        // reset_state starts a key over.
        let reset = try await client.callTool(name: "reset_state", arguments: ["state_key": "tau2/mock/create_task_1/kept", "task_id": "create_task_1"], sessionID: nil)
        #expect(!reset.isError)
        #expect(try await Self.userTasks(client, key: "tau2/mock/create_task_1/kept") == .array(["task_1"]))
        await client.shutdown()
    }
}
