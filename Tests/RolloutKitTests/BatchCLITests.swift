import Foundation
import Testing

/// `rollout mock-server` as its own process, on a free port.
final class MockServerProcess {
    let process = Process()
    private(set) var port = 0

    init(_ arguments: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: CLITests.binary)
        process.arguments = ["mock-server", "--port", "0", "--threads", "1"] + arguments
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while port == 0 && Date() < deadline && process.isRunning {
            let data = err.fileHandleForReading.availableData
            if data.isEmpty { Thread.sleep(forTimeInterval: 0.05); continue }
            text += String(decoding: data, as: UTF8.self)
            if let r = text.range(of: #"127\.0\.0\.1:(\d+)/v1"#, options: .regularExpression) {
                port = Int(text[r].dropFirst("127.0.0.1:".count).dropLast(3)) ?? 0
            }
        }
        if port == 0 { process.terminate(); throw CLIStartError(text) }
    }

    struct CLIStartError: Error { let text: String; init(_ t: String) { text = t } }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}

/// The batch and Agentless commands as a user runs them, against `rollout mock-server`.
@Suite("Batch CLI")
struct BatchCLITests {
    static let enabled = FileManager.default.isExecutableFile(atPath: CLITests.binary)

    @Test(.enabled(if: enabled, "build the rollout executable first (swift build)"))
    func submitStatusFetchCancelAndRunLocalThroughTheCLI() throws {
        let dir = try CLITests.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func run(_ args: [String]) throws -> CLITests.Result {
            let r = try CLITests.rollout(args, in: dir)
            #expect(r.status == 0, "rollout \(args.joined(separator: " ")): \(r.stderr)")
            return r
        }
        _ = try run(["ingest", "swebench", Fixture.path("swebench/swebench_lite_5.jsonl"), "--dataset", "lite"])
        _ = try run(["ingest", "repo-structures", Fixture.path("agentless/psf__requests-2317.json")])
        let loc = try run(["agentless", "bugfix", "localize", "--name", "lite", "--model", "mock-agent", "--passk", "2", "--max-tokens", "64"])
        #expect(loc.stdout.contains("batch lite.localize (openai, stage bugfix-localize): 2 request(s) in 1 part(s)"))
        #expect(loc.stdout.contains("4 skipped"))
        #expect(FileManager.default.fileExists(atPath: dir.appending(path: "batches/lite.localize.part0.jsonl").path))

        let server = try MockServerProcess()
        let base = "http://127.0.0.1:\(server.port)/v1"
        let submitted = try run(["batch", "submit", "lite.localize", "--api-base", base])
        #expect(submitted.stdout.contains("validating"))
        let status = try run(["batch", "status", "lite.localize", "--wait", "--interval", "0.05"])
        #expect(status.stdout.contains("completed"))
        let fetched = try run(["batch", "fetch", "lite.localize"])
        #expect(fetched.stdout.contains("downloaded"))
        #expect(fetched.stdout.contains("2 succeeded"))
        // The mock model does not answer with files: the repair stage says so and writes nothing.
        let repair = try run(["agentless", "bugfix", "repair", "--name", "lite"])
        #expect(repair.stdout.contains("0 ok, 2 failed"))
        #expect(repair.stdout.contains("no request to write"))
        let list = try run(["batch", "list", "--csv"])
        #expect(list.stdout.contains("lite.localize,0,openai,bugfix-localize,completed"))

        // A batch from SQL, cancelled while it runs.
        _ = try run(["batch", "create", "--name", "q", "--from-sql", "SELECT external_id AS custom_id, opening AS prompt FROM tasks",
                     "--model", "mock-agent", "--max-tokens", "32"])
        _ = try run(["batch", "submit", "q", "--api-base", base])
        let cancelled = try run(["batch", "cancel", "q"])
        #expect(cancelled.stdout.contains("cancelling"))
        #expect(try run(["batch", "status", "q"]).stdout.contains("cancelled"))

        // The same file run locally, resumably, then ingested.
        let local = try run(["batch", "run-local", "batches/q.part0.jsonl", "--endpoint", base, "--concurrency", "4"])
        #expect(local.stdout.contains("5 request(s) selected, 0 already done, 5 succeeded now, 0 failed"))
        let again = try run(["batch", "run-local", "batches/q.part0.jsonl", "--endpoint", base])
        #expect(again.stdout.contains("5 already done, 0 succeeded now"))
        let ingested = try run(["batch", "ingest", "batches/q.part0.output.jsonl", "--batch", "q"])
        #expect(ingested.stdout.contains("5 succeeded"))

        let bad = try CLITests.rollout(["batch", "ingest", dir.appending(path: "batches/q.part0.jsonl").path, "--batch", "q"], in: dir)
        #expect(bad.status != 0 && bad.stderr.contains("q.part0.jsonl:1"), "a request file is not an output file: \(bad.stderr)")
    }
}
