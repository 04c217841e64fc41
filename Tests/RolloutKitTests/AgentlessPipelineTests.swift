import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// An OpenAI output line answering `customID` with `content`.
func openAIOutputLine(_ customID: String, content: String, model: String = "gpt-x") -> String {
    let body: JSONValue = .object([
        "id": .string("chatcmpl-\(customID.count)"), "object": "chat.completion", "created": JSONValue(1), "model": .string(model),
        "choices": .array([.object(["index": JSONValue(0), "message": .object(["role": "assistant", "content": .string(content)]),
                                    "finish_reason": "stop"])]),
        "usage": .object(["prompt_tokens": JSONValue(100), "completion_tokens": JSONValue(20), "total_tokens": JSONValue(120)]),
    ])
    return JSONValue.object(["id": .string("batch_req_\(customID.count)"), "custom_id": .string(customID),
                             "response": .object(["status_code": JSONValue(200), "request_id": "r", "body": body]), "error": .null]).jsonText
}

func jsonLines(_ path: String) throws -> [JSONValue] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONParser.parse(String($0)) }
}

@Suite("Agentless pipelines")
struct AgentlessPipelineTests {
    static let problem: String = {
        let rows = try! Fixture.lines("swebench/swebench_lite_5.jsonl").map { try JSONParser.parse($0) }
        return rows.first { $0["instance_id"] == "psf__requests-2317" }!["problem_statement"]!.stringValue!
    }()

    @Test func bugFixerEndToEnd() throws {
        let w = try AgentlessFixture.warehouse(), dir = try TempDir()
        var o = AgentlessOptions(pipeline: .bugfix, name: "lite", directory: dir.file("batches"))
        o.passk = 2
        o.convertCRLF = true
        o.request = BatchRequestOptions(provider: .openai, model: "gpt-x", temperature: 0.8, maxTokens: 4096)
        let loc = try w.agentlessLocalize(o)
        #expect(loc.requests == 2 && loc.skipped == 4, "only psf__requests-2317 has a structure: \(loc.notices)")
        #expect(loc.notices.contains { $0.hasPrefix("astropy__astropy-12907: no repo structure") })
        let rows = try w.rows("SELECT custom_id, sample, body FROM batch_requests ORDER BY custom_id")
        #expect(rows.map { $0["custom_id"] as String } == ["psf__requests-2317__pass0", "psf__requests-2317__pass1"])
        let body = try JSONParser.parse(rows[0]["body"] as String)
        let rendered = try Fixture.text("agentless/psf__requests-2317.bugfix-structure.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        let expected = AgentlessPrompts.localize(.bugfix, problem: Self.problem.replacingOccurrences(of: "\r\n", with: "\n"), structure: rendered)
        #expect(body["messages"]?[0]?["content"]?.stringValue == expected)
        #expect(!expected.contains("\r\n"), "--convert-crlf")
        #expect(body["temperature"] == JSONValue(0.8) && body["max_tokens"] == JSONValue(4096) && body["model"] == "gpt-x")
        let file = try jsonLines(loc.parts[0].path)
        #expect(file.allSatisfy { $0["url"] == "/v1/chat/completions" })

        // Localize answers: pass 0 names two real files and one that is not; pass 1 failed.
        let out1 = try dir.write("loc.out.jsonl", [
            openAIOutputLine("psf__requests-2317__pass0", content: "<think>sessions</think>\n```\nrequests/sessions.py\nmodels.py\nrequests/nonexistent.py\n```"),
            #"{"id":"x","custom_id":"psf__requests-2317__pass1","response":null,"error":{"code":"server_error","message":"boom"}}"#,
        ].joined(separator: "\n"))
        _ = try w.ingestBatchResults(files: [out1])
        let repair = try w.agentlessRepair(o)
        #expect(repair.ok == 1 && repair.failed == 1 && repair.answers == 2)
        #expect(repair.batch?.requests == 1)
        let found = try w.rows("SELECT custom_id, status, found_files, failures FROM agentless_outputs ORDER BY custom_id")
        #expect(found.count == 2)
        #expect(found[0]["found_files"] as String == #"["requests/sessions.py","requests/models.py"]"#)
        #expect((found[0]["failures"] as String).contains("requests/nonexistent.py is not in the repository structure"))
        #expect(found[1]["status"] as String == "failed" && (found[1]["failures"] as String).contains("boom"))
        let repairBody = try JSONParser.parse(try w.string("SELECT q.body FROM batch_requests q JOIN batches b ON b.id = q.batch_id WHERE b.name = 'lite.repair'")!)
        let prompt = repairBody["messages"]![0]!["content"]!.stringValue!
        let s = try AgentlessFixture.structure()
        #expect(prompt.contains("### requests/sessions.py\n" + (try s.content(of: "requests/sessions.py")!) + "\n\n\n### requests/models.py\n"))
        #expect(repairBody["model"] == "gpt-x", "the repair batch reuses the localize batch's options")

        // Repair answer: the gold fix.
        let out2 = try dir.write("rep.out.jsonl", openAIOutputLine("psf__requests-2317__pass0", content: AgentlessFixture.goldAnswer) + "\n")
        _ = try w.ingestBatchResults(files: [out2])
        let results = dir.file("results")
        let fin = try w.agentlessFinalize(o, outputDir: results)
        #expect(fin.ok == 1 && fin.failed == 0)
        let processed = try jsonLines(dir.file("results/output_0_processed.jsonl"))
        #expect(processed.count == 1)
        let line = processed[0]
        #expect(line.objectValue?.keys == ["model_name_or_path", "instance_id", "model_patch", "raw_model_patch", "original_file_content",
                                           "edited_files", "new_file_content"])
        #expect(line["instance_id"] == "psf__requests-2317" && line["model_name_or_path"] == "gpt-x")
        #expect(line["edited_files"] == .array(["requests/sessions.py"]))
        let patch = line["model_patch"]!.stringValue!
        let repo = try AgentlessFixture.repository(s, files: ["requests/sessions.py"])
        try repo.write("p.diff", patch)
        #expect(try shell(["git", "apply", "--check", "p.diff"], in: repo.path).status == 0)
        let failures = try jsonLines(dir.file("results/failures.jsonl"))
        #expect(failures.count == 1 && failures[0]["custom_id"] == "psf__requests-2317__pass1" && failures[0]["stage"] == "localize")
        let sample = try jsonLines(dir.file("results/samples/psf__requests-2317__pass0.jsonl"))
        #expect(sample.count == 1 && sample[0]["model_patch"]?.stringValue == patch)
        #expect(sample[0]["gt_results"]?["found_files"] == .array(["requests/sessions.py"]))
        #expect(try w.int("SELECT count(*) FROM agentless_outputs WHERE stage = 'repair' AND status = 'ok' AND model_patch = ?", [patch]) == 1)
        #expect(try w.int("SELECT count(*) FROM exports WHERE format = 'agentless-processed'") == 1)

        // A rerun replaces the files: same bytes, no duplicated lines, one row per request.
        let before = try Data(contentsOf: URL(fileURLWithPath: dir.file("results/output_0_processed.jsonl")))
        _ = try w.agentlessFinalize(o, outputDir: results)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("results/output_0_processed.jsonl"))) == before)
        #expect(try jsonLines(dir.file("results/failures.jsonl")).count == 1)
        #expect(try w.int("SELECT count(*) FROM agentless_outputs") == 3)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: results).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }

    @Test func testWriterEndToEnd() throws {
        let w = try AgentlessFixture.warehouse(), dir = try TempDir()
        var o = AgentlessOptions(pipeline: .testwrite, name: "tw", directory: dir.file("batches"))
        o.passk = 3
        o.instances = ["psf__requests-2317"]
        o.request = BatchRequestOptions(provider: .openai, model: "gpt-x")
        let loc = try w.agentlessLocalize(o)
        #expect(loc.requests == 3 && loc.skipped == 0)
        let bodies = try w.strings("SELECT body FROM batch_requests ORDER BY custom_id").map { try JSONParser.parse($0) }
        #expect(bodies.map { $0["temperature"] } == [JSONValue(0), JSONValue(1), JSONValue(1)], "pass 0 greedy, the others at 1.0")
        let shown = try Fixture.text("agentless/psf__requests-2317.structure.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(bodies[0]["messages"]![0]!["content"]!.stringValue!.contains("### Repository Structure ###\n" + shown + "\n\n###"))

        let out1 = try dir.write("loc.jsonl", (0..<3).map { openAIOutputLine("psf__requests-2317__pass\($0)", content: "```\nrequests/sessions.py\ntest_requests.py\n```") }.joined(separator: "\n"))
        _ = try w.ingestBatchResults(files: [out1])
        let repair = try w.agentlessRepair(o)
        #expect(repair.ok == 3)
        let prompt = try JSONParser.parse(try w.string("SELECT q.body FROM batch_requests q JOIN batches b ON b.id = q.batch_id WHERE b.name = 'tw.repair' LIMIT 1")!)["messages"]![0]!["content"]!.stringValue!
        #expect(prompt.contains("--- BEGIN FILE ---\n```\n### requests/test_requests.py\n#!/usr/bin/env python"), "the top test file, not the first found file")
        #expect(!prompt.contains("### requests/sessions.py"))

        let answer = """
            ```python
            ### requests/test_requests.py
            <<<<<<< SEARCH
            def test_prepare_unicode_url():
            =======
            def test_bytes_method():
                prep = requests.Session().prepare_request(requests.Request(method=b'GET', url='http://example.com/'))
                assert prep.method == 'GET'


            def test_prepare_unicode_url():
            >>>>>>> REPLACE
            ```
            """
        let out2 = try dir.write("rep.jsonl", [openAIOutputLine("psf__requests-2317__pass0", content: answer),
                                               openAIOutputLine("psf__requests-2317__pass2", content: "I cannot do that.")].joined(separator: "\n"))
        _ = try w.ingestBatchResults(files: [out2])
        let fin = try w.agentlessFinalize(o, outputDir: dir.file("out"), modelNameOrPath: "agentless-tw")
        #expect(fin.ok == 1 && fin.failed == 1 && fin.noResult == 1)
        let tests0 = try jsonLines(dir.file("out/output_0_processed_reproduction_test.jsonl"))
        #expect(tests0.count == 1)
        #expect(tests0[0].objectValue?.keys == ["model_name_or_path", "instance_id", "test_patch", "raw_test_patch", "test_func_name", "original_file_content"])
        #expect(tests0[0]["test_func_name"] == "test_bytes_method" && tests0[0]["model_name_or_path"] == "agentless-tw")
        #expect(tests0[0]["test_patch"]?.stringValue?.hasPrefix("diff --git a/reproduce_bug.py b/reproduce_bug.py\nnew file mode 100644\n") == true)
        let tests2 = try jsonLines(dir.file("out/output_2_processed_reproduction_test.jsonl"))
        #expect(tests2[0]["test_patch"] == "" && tests2[0]["test_func_name"] == .null)
        #expect(try jsonLines(dir.file("out/output_1_processed.jsonl"))[0]["model_patch"] == "", "a request without a result still gets its line")
        #expect(try jsonLines(dir.file("out/failures.jsonl")).count == 2)
    }

    @Test func customIDsNeverWriteOutsideTheOutputFolder() throws {
        let w = try AgentlessFixture.warehouse(), dir = try TempDir()
        let taskID = try #require(try w.int("SELECT id FROM tasks WHERE external_id = 'psf__requests-2317'"))
        let options = BatchRequestOptions(provider: .openai, model: "m")
        _ = try w.createBatch(name: "evil.repair", options: options, stage: "bugfix-repair", directory: dir.file("batches")) { _, add in
            for (i, id) in ["../../escape__pass0", "/abs/path__pass1", ".."].enumerated() {
                try add(BatchRequestSpec(customID: id, taskID: Int64(taskID), sample: i, body: options.body(messages: [ChatMessage(role: "user", content: "x")])))
            }
        }
        let out = try dir.write("o.jsonl", ["../../escape__pass0", "/abs/path__pass1", ".."].map {
            openAIOutputLine($0, content: AgentlessFixture.goldAnswer)
        }.joined(separator: "\n"))
        _ = try w.ingestBatchResults(files: [out], batch: "evil.repair")
        let results = try dir.mkdir("deep/results")
        let fin = try w.agentlessFinalize(AgentlessOptions(pipeline: .bugfix, name: "evil", directory: dir.path), outputDir: results)
        #expect(fin.ok == 3)
        let samples = Set(try FileManager.default.contentsOfDirectory(atPath: dir.file("deep/results/samples")))
        #expect(samples == Set(["%2E%2E", "%2E%2E%2F%2E%2E%2Fescape__pass0", "%2Fabs%2Fpath__pass1"].map { $0 + ".jsonl" }))
        #expect(!FileManager.default.fileExists(atPath: dir.file("deep/escape__pass0.jsonl")))
        #expect(!FileManager.default.fileExists(atPath: dir.file("escape__pass0.jsonl")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("deep")) == ["results"])
    }
}
