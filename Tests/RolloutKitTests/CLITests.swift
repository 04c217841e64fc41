import Foundation
import Synchronization
import Testing

/// The `rollout` executable as a user runs it: output, exit codes, and the README's commands.
@Suite("CLI")
struct CLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appending(path: ".build/debug/rollout").path

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Writes `sql` to the file named by the argument after "--csv" / the last argument, then runs.
    static func rollout(_ arguments: [String], in directory: URL, sql: String) throws -> Result {
        try sql.write(toFile: arguments.last!, atomically: true, encoding: .utf8)
        return try rollout(arguments, in: directory)
    }

    /// Runs the binary in `directory` and waits for it. `environment` sets (or, with nil,
    /// removes) variables of the test's own environment; `$ROLLOUT_DB` is always removed.
    static func rollout(_ arguments: [String], in directory: URL, environment changes: [String: String?] = [:],
                        binary: String = binary) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment
        environment["ROLLOUT_DB"] = nil
        for (k, v) in changes { environment[k] = v }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // stderr is drained on its own thread: a child filling one pipe while we wait on the
        // other would block both.
        let stderrData = Mutex(Data())
        let drained = DispatchSemaphore(value: 0)
        Thread {
            let d = err.fileHandleForReading.readDataToEndOfFile()
            stderrData.withLock { $0 = d }
            drained.signal()
        }.start()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderrData.withLock { $0 }, as: UTF8.self))
    }

    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appending(path: "rollout-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func quickstartCreatesTheWarehouseAndIsIdempotent() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try Self.rollout(["quickstart"], in: dir)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("tasks: 17 inserted, 0 updated, 0 unchanged"))
        #expect(FileManager.default.fileExists(atPath: dir.appending(path: "rollout.db").path))
        #expect(FileManager.default.fileExists(atPath: dir.appending(path: "rollout-example/single_domain/policies/Library.md").path))
        // The whole job: 3 samples of each of the 17 tasks, against the bundled tool server,
        // graded, with a pass@k table.
        #expect(first.stdout.contains("run quickstart: 51 rollouts (3 per task)"))
        #expect(first.stdout.contains("51 completed, 0 failed"))
        let unanswered = try Self.rollout(["query", "--csv", dir.appending(path: "q.sql").path], in: dir, sql: """
            SELECT count(*) AS n FROM tool_calls WHERE result IS NULL OR result LIKE 'Error: no tool server%' OR result LIKE 'Error: tool server%'
            """)
        #expect(unanswered.stdout == "n\r\n0\r\n", "every tool call reached the bundled MCP server")
        #expect(first.stdout.contains("pass_at_k"))
        #expect(first.stdout.contains("graded 51 rollouts"))
        let second = try Self.rollout(["quickstart"], in: dir)
        #expect(second.status == 0)
        #expect(second.stdout.contains("tasks: 0 inserted, 0 updated, 17 unchanged"))
        // A second quickstart resumes the finished run: nothing runs, nothing is graded twice.
        #expect(second.stdout.contains("run quickstart: 0 rollouts (3 per task)"))
        #expect(second.stdout.contains("51 already completed"))
        #expect(second.stdout.contains("graded 0 rollouts"))

        let domains = try Self.rollout(["domains", "--cross", "--json"], in: dir)
        #expect(domains.status == 0)
        #expect(domains.stdout == #"[{"domain":"CityTransit+Library","members":2,"policy":"own","tools":9,"tasks":4}]"# + "\n")

        let status = try Self.rollout(["db", "status"], in: dir)
        let newest = try FileManager.default.contentsOfDirectory(atPath: Self.root.appending(path: "schema").path)
            .filter { $0.hasSuffix(".sql") }.sorted().last!.dropLast(4)
        #expect(status.stdout.contains("(\(newest)), up to date"), "\(status.stdout)")
        #expect(status.stdout.contains("journal mode:   wal"))

        let query = try Self.rollout(["query", "tasks-by-dataset", "--param", "dataset=Library", "--csv"], in: dir)
        #expect(query.stdout == "dataset,kind,domain,tasks\r\nLibrary,dialogue,Library,7\r\n")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func badInputExitsNonZeroWithFileLineAndFieldAndChangesNothing() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try Self.rollout(["quickstart"], in: dir)
        let before = try Self.rollout(["stats", "--json"], in: dir).stdout
        let bad = #"{"id":"x1","user_system_prompt":"p"}"# + "\n" + #"{"id":"x2"}"# + "\n"
        try bad.write(to: dir.appending(path: "bad.jsonl"), atomically: true, encoding: .utf8)
        let result = try Self.rollout(["ingest", "queries", "bad.jsonl", "--domain", "Library"], in: dir)
        #expect(result.status != 0)
        #expect(result.stderr.contains("bad.jsonl:2: user_system_prompt: missing (required)"))
        #expect(try Self.rollout(["stats", "--json"], in: dir).stdout == before)

        let skipped = try Self.rollout(["ingest", "queries", "bad.jsonl", "--domain", "Library", "--skip-invalid"], in: dir)
        #expect(skipped.status == 0)
        #expect(skipped.stdout.contains("1 invalid record(s) skipped"))
        let errors = try Self.rollout(["query", "ingest-errors", "--csv"], in: dir)
        #expect(errors.stdout.contains("bad.jsonl,2,user_system_prompt,missing (required)"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func readOnlyCommandsDoNotCreateAWarehouse() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Self.rollout(["stats"], in: dir)
        #expect(result.status != 0)
        #expect(result.stderr.contains("no warehouse here"))
        #expect(!FileManager.default.fileExists(atPath: dir.appending(path: "rollout.db").path))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func configCheckValidatesTheShippedConfig() throws {
        let result = try Self.rollout(["config", "check", "--config", "configs/example.yml"], in: Self.root)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("configs/example.yml: ok — 2 dataset(s)"))
        #expect(!result.stdout.contains("sk-"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func chatWithTheBundledMockModelRecordsTheCall() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try Self.rollout(["chat", "mock/agent", "hello there"], in: dir)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("You said: \"hello there\"."))
        try "SELECT role, model, provider, attempt FROM llm_calls;".write(to: dir.appending(path: "calls.sql"), atomically: true, encoding: .utf8)
        let rows = try Self.rollout(["query", "calls.sql", "--csv"], in: dir)
        #expect(rows.stdout == "role,model,provider,attempt\r\nchat,mock/agent,mock,1\r\n")
        let unknown = try Self.rollout(["chat", "mock/agnt", "hi", "--no-ledger"], in: dir)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("unknown model \"mock/agnt\""))
        #expect(unknown.stderr.contains("mock/agent"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary), "build the rollout executable first (swift build)"))
    func aConfigDatasetsOutputPathGetsItsResultsReplacedNotAppended() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try Self.rollout(["quickstart"], in: dir)  // the example data, with its tool servers registered
        try """
            models:
              mock/agent: {provider: mock, mode: agent}
              mock/user: {provider: mock, mode: user}
            """.write(to: dir.appending(path: "models.yml"), atomically: true, encoding: .utf8)
        try """
            max_workers: 4
            models_config_file: models.yml
            datasets:
              Library:
                path: rollout-example/single_domain/queries/Library.jsonl
                output_path: out/Library.jsonl
                mcp_domain: Library
                agent: {model: mock/agent}
                user: {model: mock/user}
                max_turns: 4
                mode: dialogue
            """.write(to: dir.appending(path: "run.yml"), atomically: true, encoding: .utf8)
        let first = try Self.rollout(["run", "--config", "run.yml", "--samples", "2", "--quiet"], in: dir)
        #expect(first.status == 0, "\(first.stderr)")
        let out = dir.appending(path: "out/Library.jsonl")
        let lines = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 14, "7 tasks × 2 samples")
        #expect(lines.allSatisfy { $0.contains(#""success":true"#) && $0.contains(#""messages":[{"role":"user""#) })
        // Resuming the finished run writes the same file again, whole: no duplicated lines.
        let second = try Self.rollout(["run", "--config", "run.yml", "--samples", "2", "--quiet"], in: dir)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(try String(contentsOf: out, encoding: .utf8).split(separator: "\n") == lines)
        let exports = try Self.rollout(["query", "--csv", dir.appending(path: "e.sql").path], in: dir,
                                       sql: "SELECT format, count FROM exports ORDER BY id")
        #expect(exports.stdout == "format,count\r\nrollout,14\r\nrollout,14\r\n")
    }
}
