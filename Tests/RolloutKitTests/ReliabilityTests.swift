import Foundation
import GRDB
import RolloutKit
import Testing

/// The engine under faults, end to end: the `rollout` binary runs against `rollout mock-server`
/// over HTTP and the bundled MCP server; it is SIGKILLed and resumed, its tool server is
/// killed, the endpoint fails in bursts or for good.
@Suite("Reliability", .serialized, .enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
struct ReliabilityTests {
    /// A `rollout mock-server` child on a free port.
    final class MockServerProcess {
        let process = Process()
        let port: Int

        init(_ extra: [String] = []) throws {
            port = Int.random(in: 20000..<40000)
            process.executableURL = URL(fileURLWithPath: EngineHarness.binary)
            process.arguments = ["mock-server", "--port", String(port), "--threads", "1"] + extra
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 {
                if Self.healthy(port) { return }
                usleep(50_000)
            }
            throw EngineError("mock-server did not start on port \(port)")
        }

        static func healthy(_ port: Int) -> Bool {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
        }

        deinit {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// A scratch folder with the example ingested (tool servers = the built binary) and a
    /// registry whose agent and user are the mock server at `port`.
    static func setUp(port: Int) throws -> (TempDir, Warehouse) {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        try dir.write("models.yml", """
            models:
              http/agent: {provider: openai, api_base: "http://127.0.0.1:\(port)/v1", api_key: none}
              http/user: {provider: openai, api_base: "http://127.0.0.1:\(port)/v1", api_key: none}
              down/agent: {provider: openai, api_base: "http://127.0.0.1:1/v1", api_key: none}
            """)
        return (dir, w)
    }

    static func start(_ args: [String], in dir: TempDir) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: EngineHarness.binary)
        p.arguments = args
        p.currentDirectoryURL = dir.url
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        return (p, err)
    }

    /// Checks `condition` every `milliseconds` until it holds or `seconds` have passed. It blocks
    /// its thread instead of awaiting: with the whole suite running, the cooperative pool (one
    /// thread per core) can be busy for longer than the run under test lasts, and a kill that
    /// waits for a `Task.sleep` to resume lands after the run has finished (CI saw exactly that).
    static func poll(every milliseconds: UInt32, for seconds: Int, until condition: () -> Bool) {
        let latest = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < latest {
            usleep(milliseconds * 1000)
            if condition() { return }
        }
    }

    static let runArgs = ["run", "single", "--all", "--models", "models.yml", "--agent-model", "http/agent",
                          "--user-model", "http/user", "--run", "r"]

    @Test func sigkillMidRunThenResumeEndsWithExactlyNCompletedPerTask() async throws {
        // Slow enough (13 rounds of ~10 calls × 200 ms, ~26 s) that the kill lands mid-run even
        // when this test process is starved of CPU on a loaded machine.
        let server = try MockServerProcess(["--latency-ms", "200"])
        let (dir, w) = try Self.setUp(port: server.port)
        // 13 single-domain tasks × 16 samples = 208 rollouts, ~10 model calls each.
        let args = Self.runArgs + ["--samples", "16", "--concurrency", "16", "--quiet"]
        let (process, _) = try Self.start(args, in: dir)
        // Kill it once some rollouts are done but far from all: at 20 completed, or after 8 s at
        // the latest (the whole run cannot take less than 13 × 10 × 200 ms = 26 s).
        Self.poll(every: 50, for: 8) {
            ((try? EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'")) ?? 0) >= 20
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let completedBefore = try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'")
        #expect(completedBefore >= 1 && completedBefore < 208, "killed mid-run (\(completedBefore) completed)")
        // Resume: the same command.
        let (again, err) = try Self.start(args, in: dir)
        again.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(again.terminationStatus == 0, "\(stderr)")
        // Exactly 16 completed samples per task, each sample once.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == 208)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM (SELECT task_id, count(*) AS n, count(DISTINCT sample) AS s FROM rollouts
                                  WHERE status = 'completed' GROUP BY task_id HAVING n != 16 OR s != 16)
            """) == 0)
        // What was in flight at the kill is kept as interrupted attempts, not lost or doubled.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status IN ('running', 'pending')") == 0)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM rollouts r WHERE r.status = 'completed'
              AND EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id AND x.sample = r.sample
                          AND x.attempt > r.attempt)
            """) == 0)
        // No orphans: every message and tool call belongs to a rollout of the run, completed
        // rollouts have every tool call answered, and every model call is tied to a rollout.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM messages WHERE rollout_id NOT IN (SELECT id FROM rollouts)") == 0)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM tool_calls c JOIN rollouts r ON r.id = c.rollout_id
            WHERE r.status = 'completed' AND c.result_message_id IS NULL
            """) == 0)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE rollout_id IS NULL") == 0)
        let check = try await w.writer.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
        #expect(check == "ok")
        #expect(try await w.writer.read { db in try String.fetchOne(db, sql: "SELECT status FROM runs WHERE name = 'r'") } == "completed")
    }

    @Test func killingTheToolServerMidRunTurnsTheCallsInFlightIntoToolErrors() async throws {
        let server = try MockServerProcess(["--latency-ms", "20"])
        let (dir, w) = try Self.setUp(port: server.port)
        let args = Self.runArgs + ["--samples", "12", "--concurrency", "16"]
        let (process, err) = try Self.start(args, in: dir)
        // Once the CityTransit server answers, kill it (the engine's child; the engine restarts it).
        Self.poll(every: 25, for: 10) {
            ((try? EngineHarness.int(w, """
                SELECT count(*) FROM tool_calls c JOIN servers s ON s.id = c.server_id WHERE s.name = 'CityTransit'
                """)) ?? 0) >= 10
        }
        let killedAt = Timestamp.now()
        let pkill = Process()
        pkill.executableURL = URL(fileURLWithPath: "/usr/bin/pkill")
        pkill.arguments = ["-KILL", "-P", String(process.processIdentifier), "-f", "mcp-server example --domain CityTransit"]
        try pkill.run()
        pkill.waitUntilExit()
        #expect(pkill.terminationStatus == 0, "the run's CityTransit tool server was running")
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == 13 * 12)
        // The server came back: restarted once, and CityTransit tools answered after the kill.
        #expect(stderr.contains("tool servers restarted 1 time"), "\(stderr)")
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM tool_calls c JOIN servers s ON s.id = c.server_id
            WHERE s.name = 'CityTransit' AND c.created_at > ? AND c.result NOT LIKE 'Error: %exited%'
            """, [killedAt]) > 0)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM tool_calls WHERE result IS NULL") == 0)
    }

    @Test func burstsOf429And500AreRetriedWithinTheBudget() async throws {
        let server = try MockServerProcess(["--fail", "0.2:429", "--fail", "0.1:500"])
        let (dir, w) = try Self.setUp(port: server.port)
        let (process, err) = try Self.start(Self.runArgs + ["--samples", "2", "--concurrency", "8", "--quiet"], in: dir)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == 26)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE http_status = 429") > 0)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE http_status = 500") > 0)
        // Every failed attempt is in the ledger next to the attempt that succeeded.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM llm_calls WHERE attempt > 1") > 0)
    }

    @Test func aPermanentlyFailingEndpointFailsTheRunQuickly() async throws {
        let (dir, w) = try Self.setUp(port: 9)
        let started = Date()
        let (process, err) = try Self.start(["run", "single", "--all", "--models", "models.yml", "--agent-model", "down/agent",
                                             "--user-model", "down/agent", "--run", "down", "--concurrency", "4"], in: dir)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1)
        #expect(Date().timeIntervalSince(started) < 90, "fails in seconds, not hours")
        #expect(stderr.contains("failed") && stderr.contains("no response"), "\(stderr)")
        #expect(try await w.writer.read { db in try String.fetchOne(db, sql: "SELECT status FROM runs WHERE name = 'down'") } == "failed")
        // Nothing was marked completed; the run can be resumed once the endpoint is back.
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == 0)
    }
}
