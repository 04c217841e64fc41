import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// A batch of `n` small chat requests named `name`.
@discardableResult
func smallBatch(_ w: Warehouse, _ name: String, n: Int, provider: BatchProvider = .openai, dir: TempDir) throws -> BatchCreateReport {
    let options = BatchRequestOptions(provider: provider, model: "mock-agent", maxTokens: 64)
    return try w.createBatch(name: name, options: options, stage: nil, directory: dir.path) { _, add in
        for i in 0..<n {
            try add(BatchRequestSpec(customID: "q\(i)", body: options.body(messages: [ChatMessage(role: "user", content: "Question \(i)?")])))
        }
    }
}

@Suite("Batch APIs against the mock server")
struct BatchRemoteTests {
    @Test func openAISubmitStatusFetchOverLoopback() async throws {
        var config = MockServerConfiguration()
        config.batches = MockBatchConfiguration(errorRate: 0.2, nullRate: 0.1)
        let server = try await MockServer.start(configuration: config, threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        try smallBatch(w, "b", n: 30, dir: dir)
        let endpoint = BatchEndpoint(provider: .openai, apiBase: "http://127.0.0.1:\(server.port)/v1", apiKey: "sk-test-not-stored")
        let client = BatchClient(warehouse: w)
        let submitted = try await client.submit("b", endpoint: endpoint)
        #expect(submitted.map(\.status) == ["validating"])
        #expect(submitted[0].remoteID?.hasPrefix("batch_") == true)
        #expect(try w.string("SELECT input_file_id FROM batches")?.hasPrefix("file-") == true)
        // Submitting again leaves a submitted part alone.
        _ = try await client.submit("b", endpoint: endpoint)
        var seen: [String] = []
        for _ in 0..<3 { seen.append(try await client.refresh("b", endpoint: endpoint)[0].status) }
        #expect(seen == ["in_progress", "finalizing", "completed"])
        let (files, report) = try await client.fetch("b", endpoint: endpoint, directory: dir.file("out"))
        #expect(files.count == 2, "an output and an error file")
        let r = try #require(report)
        #expect(r.succeeded + r.errored == 30 && r.errored > 0 && r.missing == 0 && r.unknown == 0)
        #expect(try w.int("SELECT count(*) FROM batch_results WHERE status_code = 400") ?? 0 > 0, "error lines with a non-200 status")
        #expect(try w.int("SELECT count(*) FROM batch_results WHERE status_code IS NULL AND result_type = 'errored'") ?? 0 > 0, "response: null lines")
        #expect(try w.string("SELECT request_counts FROM batches")?.contains("\"total\":30") == true)
        let snapshot = try w.snapshot().description
        #expect(!snapshot.contains("sk-test-not-stored"), "the key never reaches the database")
        // Output lines came in another order than the input's.
        let outputIDs = try jsonLines(files[0]).map { $0["custom_id"]!.stringValue! }
        #expect(outputIDs != outputIDs.sorted { Int($0.dropFirst())! < Int($1.dropFirst())! })
        try await client.shutdown()
        await server.stop()
    }

    @Test func aFileWithoutV1InItsURLFailsValidation() async throws {
        let server = try await MockServer.start(threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let report = try smallBatch(w, "old", n: 3, dir: dir)
        // The old scripts wrote "/chat/completions": the Batch API refuses such a file.
        let text = try String(contentsOfFile: report.parts[0].path, encoding: .utf8)
        try text.replacingOccurrences(of: "\"url\":\"/v1/chat/completions\"", with: "\"url\":\"/chat/completions\"")
            .write(toFile: report.parts[0].path, atomically: true, encoding: .utf8)
        let endpoint = BatchEndpoint(provider: .openai, apiBase: "http://127.0.0.1:\(server.port)/v1", apiKey: nil)
        let client = BatchClient(warehouse: w)
        _ = try await client.submit("old", endpoint: endpoint)
        let status = try await client.refresh("old", endpoint: endpoint)
        #expect(status[0].status == "failed")
        #expect(status[0].message?.contains("mismatched_endpoint") == true, "\(status[0].message ?? "")")
        let fetched = try await client.fetch("old", endpoint: endpoint, directory: dir.path)
        #expect(fetched.files.isEmpty)
        try await client.shutdown()
        await server.stop()
    }

    @Test func cancelAndExpiry() async throws {
        let server = try await MockServer.start(threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        try smallBatch(w, "c", n: 10, dir: dir)
        let endpoint = BatchEndpoint(provider: .openai, apiBase: "http://127.0.0.1:\(server.port)/v1", apiKey: nil)
        let client = BatchClient(warehouse: w)
        _ = try await client.submit("c", endpoint: endpoint)
        #expect(try await client.cancel("c", endpoint: endpoint)[0].status == "cancelling")
        #expect(try await client.refresh("c", endpoint: endpoint)[0].status == "cancelled")
        let (_, report) = try await client.fetch("c", endpoint: endpoint, directory: dir.path)
        #expect(report?.succeeded == 5 && report?.missing == 5)
        try await client.shutdown()
        await server.stop()

        var config = MockServerConfiguration()
        config.batches.outcome = .expired
        let expiring = try await MockServer.start(configuration: config, threads: 1)
        try smallBatch(w, "e", n: 10, dir: dir)
        let e2 = BatchEndpoint(provider: .openai, apiBase: "http://127.0.0.1:\(expiring.port)/v1", apiKey: nil)
        let c2 = BatchClient(warehouse: w)
        _ = try await c2.submit("e", endpoint: e2)
        let final = try await c2.wait("e", endpoint: e2, interval: .milliseconds(1))
        #expect(final[0].status == "expired")
        let (files, r2) = try await c2.fetch("e", endpoint: e2, directory: dir.path)
        #expect(files.count == 2 && r2?.succeeded == 5 && r2?.expired == 5)
        try await c2.shutdown()
        await expiring.stop()
    }

    @Test func anthropicMessageBatchesOverLoopback() async throws {
        var config = MockServerConfiguration()
        config.batches.pollsPerStage = 2
        let server = try await MockServer.start(configuration: config, threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        try smallBatch(w, "a", n: 6, provider: .anthropic, dir: dir)
        let endpoint = BatchEndpoint(provider: .anthropic, apiBase: "http://127.0.0.1:\(server.port)", apiKey: "ak-test")
        let client = BatchClient(warehouse: w)
        let s = try await client.submit("a", endpoint: endpoint)
        #expect(s[0].status == "in_progress" && s[0].remoteID?.hasPrefix("msgbatch_") == true)
        var states: [String] = []
        for _ in 0..<4 { states.append(try await client.refresh("a", endpoint: endpoint)[0].status) }
        #expect(states == ["in_progress", "in_progress", "in_progress", "ended"])
        let (files, report) = try await client.fetch("a", endpoint: endpoint, directory: dir.path)
        #expect(files.count == 1 && files[0].hasSuffix(".results.jsonl"))
        #expect(report?.succeeded == 6 && report?.missing == 0)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE provider = 'anthropic' AND prompt_tokens > 0") == 6)
        try await client.shutdown()
        await server.stop()
    }

    @Test func runLocalIsResumableAndWritesTheOutputFormat() async throws {
        let server = try await MockServer.start(threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let report = try smallBatch(w, "local", n: 10, dir: dir)
        var o = LocalRunOptions(input: report.parts[0].path, endpoint: "http://127.0.0.1:\(server.port)/v1")
        o.concurrency = 4
        o.range = try IDRange(parsing: "0:4")
        let first = try await LocalBatchRunner.run(o)
        #expect(first.requests == 4 && first.succeeded == 4 && first.failed == 0)
        o.range = nil
        let second = try await LocalBatchRunner.run(o)
        #expect(second.alreadyDone == 4 && second.succeeded == 6)
        // An interrupted write leaves half a line: it is cut off, nothing is sent twice.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: o.outputPath))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"id":"batch_req_x","custom_id":"q"#.utf8))
        try handle.close()
        let third = try await LocalBatchRunner.run(o)
        #expect(third.alreadyDone == 10 && third.succeeded == 0)
        let lines = try jsonLines(o.outputPath)
        #expect(lines.count == 10 && Set(lines.map { $0["custom_id"]!.stringValue! }).count == 10)
        #expect(lines.allSatisfy { $0["response"]?["status_code"] == JSONValue(200) && $0["response"]?["body"]?["choices"] != nil })
        let ingested = try w.ingestBatchResults(files: [o.outputPath])
        #expect(ingested.batch == "local" && ingested.succeeded == 10 && ingested.missing == 0)
        await server.stop()
    }

    @Test func runLocalKeepsFailuresOutOfTheOutputAndRetriesThem() async throws {
        var config = MockServerConfiguration()
        config.faults = [(1.0, .serverError)]
        let failing = try await MockServer.start(configuration: config, threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let report = try smallBatch(w, "f", n: 5, dir: dir)
        var o = LocalRunOptions(input: report.parts[0].path, endpoint: "http://127.0.0.1:\(failing.port)/v1")
        o.policy = RetryPolicy(maxAttempts: 2, baseDelay: 0.01, maxDelay: 0.02)
        let bad = try await LocalBatchRunner.run(o)
        #expect(bad.failed == 5 && bad.succeeded == 0)
        let errors = try jsonLines(o.errorsPath)
        #expect(errors.count == 5 && errors.allSatisfy { $0["response"]?["status_code"] == JSONValue(500) })
        #expect(try String(contentsOfFile: o.outputPath, encoding: .utf8).isEmpty)
        let e = try w.ingestBatchResults(files: [o.errorsPath], batch: "f")
        #expect(e.errored == 5)
        await failing.stop()

        let healthy = try await MockServer.start(threads: 1)
        o.endpoint = "http://127.0.0.1:\(healthy.port)/v1"
        let good = try await LocalBatchRunner.run(o)
        #expect(good.succeeded == 5 && good.failed == 0)
        #expect(!FileManager.default.fileExists(atPath: o.errorsPath), "the retried failures are gone from the errors file")
        let r = try w.ingestBatchResults(files: [o.outputPath], batch: "f")
        #expect(r.updated == 5 && r.missing == 0)
        #expect(try w.int("SELECT count(*) FROM batch_results WHERE result_type = 'succeeded'") == 5)
        await healthy.stop()
    }

    @Test func runLocalAnthropicFile() async throws {
        let server = try await MockServer.start(threads: 1)
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let report = try smallBatch(w, "ar", n: 3, provider: .anthropic, dir: dir)
        let r = try await LocalBatchRunner.run(LocalRunOptions(input: report.parts[0].path, endpoint: "http://127.0.0.1:\(server.port)"))
        #expect(r.provider == "anthropic" && r.succeeded == 3)
        let lines = try jsonLines(r.output)
        #expect(lines.allSatisfy { $0["result"]?["type"] == "succeeded" && $0["result"]?["message"]?["content"] != nil })
        #expect(try w.ingestBatchResults(files: [r.output]).succeeded == 3)
        await server.stop()
    }
}
