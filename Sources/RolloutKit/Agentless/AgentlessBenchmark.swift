import Foundation
import GRDB

/// The Agentless benchmark's data: N SWE-bench-like instances sharing one real repository
/// structure, and a repair batch whose answers edit real lines of it.
public enum AgentlessBenchmark {
    public struct Setup: Sendable, Codable {
        public var instances: Int
        public var structureBytes: Int
        public var responses: Int
        public var outputFile: String
        public var seconds: Double
        public var ingestSeconds: Double
    }

    public struct Measurement: Sendable, Codable {
        public var stage: String
        public var items: Int
        public var ok: Int
        public var seconds: Double
        public var perSecond: Double
        public var peakRSSMiB: Double
    }

    /// Peak resident memory of this process so far, MiB.
    public static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// Writes the instances (through `rollout ingest swebench`), their structures, the repair
    /// batch `bench.repair` (`responses` requests, passes 0…k−1) and its output file, ingested.
    public static func setup(_ w: Warehouse, structureFile: String, problem: String, instances: Int, responses: Int,
                             directory: String) throws -> Setup {
        let start = ContinuousClock.now
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let whole = try String(contentsOfFile: structureFile, encoding: .utf8)
        let structureText = try w.writer.read { db in try String.fetchOne(db, sql: "SELECT json_extract(?, '$.structure')", arguments: [whole]) }
        guard let structureText else { throw BatchError("\(structureFile) has no structure") }
        let ids = (0..<instances).map { String(format: "bench__repo-%05d", $0) }
        var rows: [String] = []
        for id in ids {
            rows.append(JSONValue.object(["repo": "bench/repo", "instance_id": .string(id), "base_commit": "0000000",
                                          "patch": "", "test_patch": "", "problem_statement": .string(problem), "hints_text": "",
                                          "created_at": "2024-01-01", "version": "1.0", "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]",
                                          "environment_setup_commit": "0000000"]).jsonText)
        }
        let instancesFile = (directory as NSString).appendingPathComponent("instances.jsonl")
        _ = try OutputFile.write(instancesFile, lines: rows)
        _ = try w.ingestSWEBench(file: instancesFile, dataset: "bench")
        try w.writer.write { db in
            let now = Timestamp.now()
            let insert = try db.makeStatement(sql: """
                INSERT OR REPLACE INTO repo_structures(instance_id, repo, base_commit, structure, bytes, content_hash, source_file, created_at, updated_at)
                VALUES (?, 'bench/repo', '0000000', ?, ?, ?, ?, ?, ?)
                """)
            let hash = Hashing.contentHash(structureText)
            for id in ids { try insert.execute(arguments: [id, structureText, structureText.utf8.count, hash, structureFile, now, now]) }
        }
        // Edits: unique, non-trivial lines of three real files, some written with the wrong
        // indentation (the whitespace-insensitive path), some answers editing two files.
        let structure = try RepoStructure(json: structureText)
        var candidates: [(String, String)] = []
        for path in structure.files where path.hasSuffix(".py") && !path.contains("/test") {
            guard let content = try structure.content(of: path) else { continue }
            let lines = content.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var counts: [String: Int] = [:]
            for l in lines { counts[l, default: 0] += 1 }
            for l in lines where counts[l] == 1 && l.trimmingCharacters(in: .whitespaces).count > 24 && l.hasPrefix("    ") {
                candidates.append((path, l))
            }
            if candidates.count > 4000 { break }
        }
        guard candidates.count > 10 else { throw BatchError("the structure has too few editable lines for the benchmark") }
        let k = max(1, (responses + instances - 1) / instances)
        let requestIDs = Array(ids.flatMap { id in (0..<k).map { PassID.make(id, pass: $0, of: k) } }
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.prefix(responses))
        let options = BatchRequestOptions(provider: .openai, model: "bench-model")
        let taskIDs = try w.writer.read { db in
            try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT t.external_id, t.id FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = 'bench'")
                .map { ($0[0] as String, $0[1] as Int64) })
        }
        _ = try w.createBatch(name: "bench.repair", options: options, stage: "bugfix-repair", directory: directory, replace: true) { _, add in
            for id in requestIDs {
                let p = PassID.parse(id)
                try add(BatchRequestSpec(customID: id, taskID: taskIDs[p.instance], sample: p.pass,
                                         body: options.body(messages: [ChatMessage(role: "user", content: "repair \(id)")])))
            }
        }
        let outputFile = (directory as NSString).appendingPathComponent("bench.repair.output.jsonl")
        let out = try OutputFile(path: outputFile)
        for (j, id) in requestIDs.enumerated() {
            var blocks: [String] = []
            let picks = j % 3 == 0 ? [j % candidates.count, (j * 7 + 13) % candidates.count] : [j % candidates.count]
            for (n, c) in picks.enumerated() {
                let (path, line) = candidates[c]
                let search = (j % 5 == 0 && n == 0) ? line.trimmingCharacters(in: .whitespaces) : line
                blocks.append("```python\n### \(path)\n<<<<<<< SEARCH\n\(search)\n=======\n\(search)  # fixed \(j)\n>>>>>>> REPLACE\n```")
            }
            let content = "<think>Looking at the issue, the fix goes in \(candidates[picks[0]].0).</think>\nHere is the fix.\n\n" + blocks.joined(separator: "\n\n")
            let body: JSONValue = .object([
                "id": .string("chatcmpl-\(j)"), "object": "chat.completion", "created": JSONValue(0), "model": "bench-model",
                "choices": .array([.object(["index": JSONValue(0), "message": .object(["role": "assistant", "content": .string(content)]),
                                            "finish_reason": "stop"])]),
                "usage": .object(["prompt_tokens": JSONValue(4000), "completion_tokens": JSONValue(300), "total_tokens": JSONValue(4300)]),
            ])
            try out.write(line: JSONValue.object(["id": .string("batch_req_\(j)"), "custom_id": .string(id),
                                                  "response": .object(["status_code": JSONValue(200), "request_id": .string("r\(j)"), "body": body]),
                                                  "error": .null]).jsonText)
        }
        try out.commit()
        let ingestStart = ContinuousClock.now
        _ = try w.ingestBatchResults(files: [outputFile], batch: "bench.repair")
        return Setup(instances: instances, structureBytes: structureText.utf8.count, responses: requestIDs.count, outputFile: outputFile,
                     seconds: start.secondsSince, ingestSeconds: ingestStart.secondsSince)
    }

    /// `localize` for the first `instances` instances of the benchmark dataset.
    public static func localize(_ w: Warehouse, instances: Int?, directory: String) throws -> Measurement {
        var o = AgentlessOptions(pipeline: .bugfix, name: "benchloc", directory: directory)
        o.dataset = "bench"
        o.replace = true
        o.range = instances.map { IDRange(from: 0, to: $0) }
        o.request = BatchRequestOptions(provider: .openai, model: "bench-model", maxTokens: 1024)
        let start = ContinuousClock.now
        let r = try w.agentlessLocalize(o)
        let s = start.secondsSince
        return Measurement(stage: "localize", items: r.requests + r.skipped, ok: r.requests, seconds: s,
                           perSecond: Double(r.requests) / s, peakRSSMiB: peakRSSMiB())
    }

    /// `finalize` over the benchmark's repair answers.
    public static func finalize(_ w: Warehouse, outputDir: String) throws -> Measurement {
        let o = AgentlessOptions(pipeline: .bugfix, name: "bench", directory: outputDir)
        let start = ContinuousClock.now
        let r = try w.agentlessFinalize(o, outputDir: outputDir)
        let s = start.secondsSince
        return Measurement(stage: "finalize", items: r.answers, ok: r.ok, seconds: s, perSecond: Double(r.ok) / s, peakRSSMiB: peakRSSMiB())
    }
}
