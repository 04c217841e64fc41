import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// A warehouse with the real OpenAI batch input (658 requests) as batch `expansion`.
func expansionBatch(_ w: Warehouse, dir: TempDir, provider: BatchProvider = .openai) throws -> BatchCreateReport {
    let lines = try Fixture.lines("openai-batch/batch-input-expansion.jsonl")
    return try w.createBatch(name: "expansion", options: BatchRequestOptions(provider: provider, model: "o3-mini"), stage: nil,
                             directory: dir.path) { _, add in
        for l in lines {
            let v = try JSONParser.parse(l)
            try add(BatchRequestSpec(customID: v["custom_id"]!.stringValue!, body: v["body"]!))
        }
    }
}

@Suite("Batch files and results")
struct BatchTests {
    @Test func passIDsRoundTrip() {
        #expect(PassID.make("psf__requests-2317", pass: 3, of: 4) == "psf__requests-2317__pass3")
        #expect(PassID.make("psf__requests-2317", pass: 0, of: 1) == "psf__requests-2317")
        #expect(PassID.parse("psf__requests-2317__pass3") == ("psf__requests-2317", 3))
        #expect(PassID.parse("psf__requests-2317") == ("psf__requests-2317", 0))
        #expect(PassID.parse("x__passes") == ("x__passes", 0))
        #expect(PassID.parse("a__pass1__pass12") == ("a__pass1", 12))
    }

    @Test func rangesSliceSortedIDs() throws {
        let ids = (0..<10).map { "id\($0)" }
        #expect(Array(try IDRange(parsing: "2:5").apply(ids)) == ["id2", "id3", "id4"])
        #expect(Array(try IDRange(parsing: ":3").apply(ids)) == ["id0", "id1", "id2"])
        #expect(Array(try IDRange(parsing: "8:").apply(ids)) == ["id8", "id9"])
        #expect(Array(try IDRange(parsing: "20:30").apply(ids)).isEmpty)
        #expect(throws: BatchError.self) { try IDRange(parsing: "5:2") }
        #expect(throws: BatchError.self) { try IDRange(parsing: "-1:2") }
        #expect(throws: BatchError.self) { try IDRange(parsing: "3") }
    }

    @Test func safeFileNamesStayInsideTheFolder() throws {
        let dir = try TempDir()
        for id in ["../../etc/passwd", "..", ".", "a/b", "a\\b", ".hidden", "x..y", "ok-id_1.2", "", "é"] {
            let path = try SafeFileName.path(in: dir.path, id: id, suffix: ".jsonl")
            #expect(URL(fileURLWithPath: path).deletingLastPathComponent().standardizedFileURL.path == URL(fileURLWithPath: dir.path).standardizedFileURL.path, "\(id)")
            #expect(!URL(fileURLWithPath: path).lastPathComponent.hasPrefix("."), "\(id)")
        }
        #expect(SafeFileName.make("ok-id_1.2") == "ok-id_1.2")
        #expect(SafeFileName.make("../x") != SafeFileName.make("..%2Fx"))
    }

    @Test func openAIRequestLinesCarryTheV1URLAndAnthropicLinesParams() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let r = try expansionBatch(w, dir: dir)
        #expect(r.requests == 658 && r.parts.count == 1)
        let first = try JSONParser.parse(try Fixture.lines("openai-batch/batch-input-expansion.jsonl")[0])
        let written = try JSONParser.parse(String(contentsOfFile: r.parts[0].path, encoding: .utf8).split(separator: "\n")[0].description)
        #expect(written["url"] == "/v1/chat/completions")
        #expect(written["method"] == "POST")
        #expect(written["body"] == first["body"])
        #expect(try w.count("batch_requests") == 658)
        #expect(try w.string("SELECT endpoint FROM batches") == "/v1/chat/completions")

        let body = BatchRequestOptions(provider: .anthropic, model: "claude-x", maxTokens: 100).body(messages: [ChatMessage(role: "user", content: "hi")])
        let a = try w.createBatch(name: "a", options: BatchRequestOptions(provider: .anthropic, model: "claude-x"), stage: nil, directory: dir.path) { _, add in
            try add(BatchRequestSpec(customID: "req-1", body: body))
        }
        let line = try JSONParser.parse(try String(contentsOfFile: a.parts[0].path, encoding: .utf8).trimmingCharacters(in: .newlines))
        #expect(line["params"]?["max_tokens"] == JSONValue(100))
        #expect(line["custom_id"] == "req-1" && line["url"] == nil)
        // Anthropic's custom-id rule is enforced when the file is written, not at submit time.
        #expect(throws: BatchError.self) {
            _ = try w.createBatch(name: "b", options: BatchRequestOptions(provider: .anthropic, model: "m"), stage: nil, directory: dir.path) { _, add in
                try add(BatchRequestSpec(customID: "has.dot/slash", body: body))
            }
        }
    }

    @Test func filesSplitAtTheProviderLimits() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let body: JSONValue = .object(["model": "m", "messages": .array([.object(["role": "user", "content": "x"])])])
        // OpenAI's real limit: 50,000 requests per file.
        let big = try w.createBatch(name: "big", options: BatchRequestOptions(provider: .openai, model: "m"), stage: nil, directory: dir.path) { _, add in
            for i in 0..<50_001 { try add(BatchRequestSpec(customID: "r\(i)", body: body)) }
        }
        #expect(big.parts.map(\.requests) == [50_000, 1])
        #expect(try w.int("SELECT count(*) FROM batches WHERE name = 'big'") == 2)
        let lineCount = try String(contentsOfFile: big.parts[0].path, encoding: .utf8).split(separator: "\n").count
        #expect(lineCount == 50_000)
        #expect(BatchProvider.anthropic.limits == BatchLimits(maxRequests: 100_000, maxBytes: 256_000_000))
        #expect(BatchProvider.openai.limits.maxBytes == 200_000_000)
        // Bytes: a limit that fits three lines a part.
        let size = BatchLine.text(customID: "r0", body: body, provider: .openai).utf8.count + 1
        let small = try w.createBatch(name: "small", options: BatchRequestOptions(provider: .openai, model: "m"), stage: nil, directory: dir.path,
                                      limits: BatchLimits(maxRequests: 100, maxBytes: size * 3 + 2)) { _, add in
            for i in 0..<7 { try add(BatchRequestSpec(customID: "r\(i)", body: body)) }
        }
        #expect(small.parts.map(\.requests) == [3, 3, 1])
        for p in small.parts { #expect(p.bytes <= size * 3 + 2) }
        // Duplicate custom ids are refused and nothing is written.
        let before = try w.snapshot()
        #expect(throws: BatchError.self) {
            _ = try w.createBatch(name: "dup", options: BatchRequestOptions(provider: .openai, model: "m"), stage: nil, directory: dir.path) { _, add in
                try add(BatchRequestSpec(customID: "same", body: body))
                try add(BatchRequestSpec(customID: "same", body: body))
            }
        }
        #expect(try w.snapshot() == before)
        #expect(!FileManager.default.fileExists(atPath: dir.file("dup.part0.jsonl")))
    }

    @Test func fromSQLWithPassKAndRange() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        _ = try w.ingestSWEBench(file: Fixture.path("swebench/swebench_lite_5.jsonl"), dataset: "lite")
        let r = try w.createBatch(name: "q", fromSQL: BatchQuerySource(sql: "SELECT external_id AS custom_id, id AS task_id, opening AS prompt FROM tasks",
                                                                       passk: 3, range: try IDRange(parsing: "1:5")),
                                  options: BatchRequestOptions(provider: .openai, model: "gpt-x", temperature: 0.7), directory: dir.path)
        let ids = try w.strings("SELECT custom_id FROM batch_requests ORDER BY custom_id")
        #expect(ids == ["astropy__astropy-12907__pass1", "astropy__astropy-12907__pass2", "django__django-11099__pass0", "django__django-11099__pass1"])
        #expect(r.requests == 4)
        #expect(try w.strings("SELECT sample FROM batch_requests ORDER BY custom_id") == ["1", "2", "0", "1"])
        let body = try JSONParser.parse(try w.string("SELECT body FROM batch_requests LIMIT 1")!)
        #expect(body["temperature"] == JSONValue(0.7))
        #expect(body["messages"]?[0]?["role"] == "user")
        #expect(throws: BatchError.self) {
            _ = try w.createBatch(name: "w", fromSQL: BatchQuerySource(sql: "DELETE FROM tasks"), options: BatchRequestOptions(provider: .openai, model: "m"), directory: dir.path)
        }
    }

    @Test func theRealOpenAIOutputShuffledIngestsCompletely() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        _ = try expansionBatch(w, dir: dir)
        var lines = try Fixture.lines("openai-batch/batch-output-expansion.jsonl")
        var g = SystemRandomNumberGenerator()
        lines.shuffle(using: &g)
        let file = try dir.write("out.jsonl", lines.joined(separator: "\n") + "\n")
        let r = try w.ingestBatchResults(files: [file])
        #expect(r.batch == "expansion")
        #expect(r.succeeded == 658 && r.inserted == 658 && r.missing == 0 && r.unknown == 0 && r.duplicates == 0)
        #expect(try w.int("SELECT count(*) FROM batch_results WHERE result_type = 'succeeded' AND status_code = 200") == 658)
        #expect(try w.int("SELECT sum(prompt_tokens) FROM llm_calls WHERE role = 'batch'") == 218_243)
        #expect(try w.int("SELECT sum(completion_tokens) FROM llm_calls") == 442_135)
        #expect(try w.int("SELECT sum(reasoning_tokens) FROM llm_calls") == 394_752)
        #expect(try w.int("SELECT count(*) FROM batch_results r JOIN llm_calls c ON c.id = r.llm_call_id") == 658)
        // Each result matched its own request by custom id, whatever the order.
        var expected: [String: String] = [:]
        for l in lines {
            let v = try JSONParser.parse(l)
            expected[v["custom_id"]!.stringValue!] = v["response"]?["body"]?["id"]?.stringValue
        }
        let got = try w.rows("SELECT q.custom_id, json_extract(r.body, '$.id') AS id FROM batch_results r JOIN batch_requests q ON q.id = r.request_id")
        #expect(got.count == 658)
        #expect(got.allSatisfy { expected[$0["custom_id"] as String] == ($0["id"] as String) })
        #expect(try w.string("SELECT status FROM batches WHERE name = 'expansion'") == "completed")
        // Again: nothing changes.
        let before = try w.snapshot().filter { $0.key != "batches" }
        let again = try w.ingestBatchResults(files: [file], batch: "expansion")
        #expect(again.unchanged == 658 && again.inserted == 0 && again.updated == 0)
        #expect(try w.snapshot().filter { $0.key != "batches" } == before)
    }

    @Test func badAndOddLinesAreReportedOrRefused() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        _ = try expansionBatch(w, dir: dir)
        let ok = try Fixture.lines("openai-batch/batch-output-expansion.jsonl")[0]
        let lines = [
            #"{"id":"b1","custom_id":"expansion_2","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#,
            #"{"id":"b2","custom_id":"expansion_3","response":{"status_code":400,"request_id":"r","body":{"error":{"message":"Invalid 'messages'","type":"invalid_request_error","code":"invalid_value"}}},"error":null}"#,
            #"{"id":"b3","custom_id":"expansion_4","response":null,"error":{"code":"server_error","message":"boom"}}"#,
            #"{"id":"b4","custom_id":"../../not-ours","response":null,"error":{"code":"x","message":"y"}}"#,
            ok, ok,
        ]
        let file = try dir.write("mixed.jsonl", lines.joined(separator: "\n") + "\n")
        let r = try w.ingestBatchResults(files: [file], batch: "expansion")
        #expect(r.succeeded == 1 && r.errored == 2 && r.expired == 1)
        #expect(r.unknown == 1 && r.unknownIDs.first?.hasSuffix("../../not-ours") == true)
        #expect(r.duplicates == 1 && r.duplicateLines.first?.contains("mixed.jsonl:6") == true)
        #expect(r.missing == 654)
        let rows = try w.rows("SELECT q.custom_id, r.result_type, r.status_code, r.error_code, r.error_message FROM batch_results r JOIN batch_requests q ON q.id = r.request_id ORDER BY q.custom_id")
        #expect(rows.map { $0["custom_id"] as String } == ["expansion_1", "expansion_2", "expansion_3", "expansion_4"])
        #expect(rows[1]["result_type"] as String == "expired")
        #expect(rows[2]["status_code"] as Int == 400 && rows[2]["error_code"] as String == "invalid_value" && rows[2]["error_message"] as String == "Invalid 'messages'")
        #expect(rows[3]["result_type"] as String == "errored" && rows[3]["status_code"] as Int? == nil)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE error IS NOT NULL") == 3)
        // A later success replaces a failure; a later failure never replaces a success.
        var fixed = try JSONParser.parse(ok).objectValue!
        fixed["custom_id"] = "expansion_3"
        let second = try dir.write("retry.jsonl", JSONValue.object(fixed).jsonText + "\n" + lines[1].replacingOccurrences(of: "expansion_3", with: "expansion_1") + "\n")
        let r2 = try w.ingestBatchResults(files: [second], batch: "expansion")
        #expect(r2.updated == 1 && r2.keptSuccesses == 1)
        #expect(try w.string("SELECT r.result_type FROM batch_results r JOIN batch_requests q ON q.id = r.request_id WHERE q.custom_id = 'expansion_3'") == "succeeded")

        // A malformed line stops the ingest with file:line, and nothing is written.
        let before = try w.snapshot()
        let bad = try dir.write("bad.jsonl", ok + "\n" + #"{"custom_id":"expansion_9","response":{"status_code":200,"body":"# + "\n")
        let e = try #require(throws: IngestError.self) { _ = try w.ingestBatchResults(files: [bad], batch: "expansion") }
        #expect(e.line == 2 && e.file == bad)
        let shape = try dir.write("shape.jsonl", #"{"custom_id":"expansion_9","response":{"body":{}}}"# + "\n")
        let e2 = try #require(throws: IngestError.self) { _ = try w.ingestBatchResults(files: [shape], batch: "expansion") }
        #expect(e2.line == 1 && e2.field == "response.status_code")
        #expect(try w.snapshot() == before)
    }

    @Test func anthropicResultsIngest() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        let options = BatchRequestOptions(provider: .anthropic, model: "claude-x")
        _ = try w.createBatch(name: "ant", options: options, stage: nil, directory: dir.path) { _, add in
            for i in 0..<4 { try add(BatchRequestSpec(customID: "r\(i)", body: options.body(messages: [ChatMessage(role: "user", content: "q\(i)")]))) }
        }
        let message = #"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":7}}"#
        let lines = [
            #"{"custom_id":"r2","result":{"type":"succeeded","message":\#(message)}}"#,
            #"{"custom_id":"r0","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}}}"#,
            #"{"custom_id":"r3","result":{"type":"expired"}}"#,
            #"{"custom_id":"r1","result":{"type":"canceled"}}"#,
        ]
        let r = try w.ingestBatchResults(files: [try dir.write("res.jsonl", lines.joined(separator: "\n"))])
        #expect(r.succeeded == 1 && r.errored == 1 && r.expired == 1 && r.canceled == 1 && r.missing == 0)
        #expect(try w.int("SELECT prompt_tokens FROM llm_calls WHERE error IS NULL") == 11)
        #expect(try w.string("SELECT error_message FROM batch_results WHERE result_type = 'errored'") == "max_tokens: too large")
    }
}
