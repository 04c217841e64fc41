import Foundation
import GRDB

extension Warehouse {
    /// `rollout ingest qa`: `{"question","answer"}` lines (DeepResearch QA sets). A missing
    /// question is taken from `messages[1].content` after "User:"; a missing id is md5(question).
    public func ingestQA(file: String, dataset: String, options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "qa", source: file, files: [file], options: options) { session in
            try Self.ingestQA(session, file: file, dataset: dataset)
        }
    }

    static func ingestQA(_ session: IngestSession, file: String, dataset: String) throws {
        let datasetID = try Catalog(session: session).dataset(named: dataset, kind: "qa", source: file)
        let writer = try TaskWriter(session: session, datasetID: datasetID)
        try RecordFiles.forEachLine(file, session: session, prepare: { line, raw, value in
            let r = RecordReader(value)
            let (id, question) = try Self.qaIdentity(r)
            let answer = try r.required("answer")
            guard let answerText = answer.value.scalarText else {
                throw FieldError(field: "answer", reason: "expected a string or number, found \(answer.value.typeName)")
            }
            return TaskWriter.Task(externalID: id, opening: question, answer: answerText, record: .init(raw), file: file, line: line)
        }, write: { _, task in
            try writer.write(task)
        })
    }

    /// The id and question of a QA record (shared with DeepResearch result files, so results
    /// match the tasks they answer).
    static func qaIdentity(_ r: RecordReader) throws -> (id: String, question: String) {
        _ = try r.object()
        var question = try r.optionalString("question")
        if question == nil, let messages = r.child("messages"), !messages.value.isNull {
            let items = try messages.array()
            if items.count > 1, let content = try items[1].optionalString("content") {
                if let range = content.range(of: "User:") {
                    question = content[range.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
                } else {
                    question = content.trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
        }
        guard let question, !question.isEmpty else {
            throw FieldError(field: "question", reason: "missing (and no messages[1].content to take it from)")
        }
        if let given = r.child("id"), !given.value.isNull { return (try given.idText(), question) }
        return (Hashing.md5Hex(question), question)
    }

    /// `rollout ingest swebench`: SWE-bench instances, JSON Lines or one JSON array. Every field
    /// is kept in `record`; FAIL_TO_PASS / PASS_TO_PASS (JSON-encoded strings or arrays) are
    /// normalized into `criteria`.
    public func ingestSWEBench(file: String, dataset: String, options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "swebench", source: file, files: [file], options: options) { session in
            let datasetID = try Catalog(session: session).dataset(named: dataset, kind: "swebench", source: file)
            let writer = try TaskWriter(session: session, datasetID: datasetID)
            let prepare: @Sendable (Int, TaskWriter.RecordText, JSONValue) throws -> TaskWriter.Task = { line, raw, value in
                let r = RecordReader(value)
                _ = try r.object()
                let id = try r.requiredString("instance_id")
                guard !id.isEmpty, !id.contains("/"), id != "..", id != "." else {
                    throw FieldError(field: "instance_id", reason: "\"\(id)\" is not usable as an instance id")
                }
                _ = try r.requiredString("repo")
                _ = try r.requiredString("base_commit")
                let problem = try r.requiredString("problem_statement")
                var criteria = JSONObject()
                for key in ["FAIL_TO_PASS", "PASS_TO_PASS"] {
                    criteria[key] = .array(try Self.testList(r.child(key), field: key).map(JSONValue.string))
                }
                return TaskWriter.Task(externalID: id, opening: problem, answer: try r.optionalString("patch"),
                                       criteria: JSONValue.object(criteria).jsonText, record: raw, file: file, line: line)
            }
            if try Self.startsWithArray(file) {
                try RecordFiles.forEachArrayElement(file, session: session) { line, raw, value in
                    // Array elements are stored compact, like a JSON Lines record.
                    try writer.write(try prepare(line, raw.isMultiline ? .init(value.jsonText) : .init(raw), value))
                }
            } else {
                try RecordFiles.forEachLine(file, session: session, prepare: { line, raw, value in
                    try prepare(line, .init(raw), value)
                }, write: { _, task in
                    try writer.write(task)
                })
            }
        }
    }

    static func testList(_ r: RecordReader?, field: String) throws -> [String] {
        guard let r, !r.value.isNull else { return [] }
        var value = r.value
        if case .string(let s) = value {
            do { value = try JSONParser.parse(s) } catch {
                throw FieldError(field: field, reason: "a string that is not a JSON-encoded list: \(error.description)")
            }
        }
        guard case .array(let items) = value else {
            throw FieldError(field: field, reason: "expected a list of test names (or its JSON encoding), found \(value.typeName)")
        }
        return try items.enumerated().map { i, item in
            guard let s = item.stringValue else { throw FieldError(field: "\(field)[\(i)]", reason: "expected a test name string") }
            return s
        }
    }

    static func startsWithArray(_ file: String) throws -> Bool {
        try RecordFiles.checkRegularFile(file)
        let reader = try FileHandleReader(path: file, chunkSize: 4096)
        defer { reader.close() }
        while let chunk = try reader.next() {
            for b in chunk where !(b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 || b == 0xEF || b == 0xBB || b == 0xBF) {
                return b == UInt8(ascii: "[")
            }
        }
        return false
    }

    /// `rollout ingest repo-structures`: Agentless `<instance_id>.json` structure files. Each file
    /// is read once and parsed by SQLite's JSON functions; our own parser runs only to explain
    /// a file SQLite rejects.
    public func ingestRepoStructures(directory: String, options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "repo-structures", source: directory, folders: [directory], options: options) { session in
            let fm = FileManager.default
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: directory, isDirectory: &isDir) else { throw IngestError(file: directory, "no such directory") }
            let files: [String]
            if isDir.boolValue {
                let names = try fm.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
                files = names.filter { !$0.hasPrefix(".") }.map { (directory as NSString).appendingPathComponent($0) }
                // Hidden names (editor backups, macOS "._" files) are not instances, but say so:
                // a structure file that was meant to be read must not vanish without a word.
                let hidden = names.filter { $0.hasPrefix(".") }
                if !hidden.isEmpty {
                    let shown = hidden.prefix(10).joined(separator: ", ") + (hidden.count > 10 ? ", …" : "")
                    session.report.notices.append("\(directory): skipped \(hidden.count) hidden file(s) whose names start with '.': \(shown); rename one to <instance_id>.json to ingest it")
                }
            } else {
                files = [directory]
            }
            guard !files.isEmpty else { throw IngestError(file: directory, "wrong layout: no <instance_id>.json files") }
            let db = session.db
            for file in files {
                session.report.files += 1
                try session.record(file: file, line: nil) {
                    try RecordFiles.checkRegularFile(file)
                    guard let data = fm.contents(atPath: file) else { throw IngestError(file: file, "cannot read the file") }
                    if data.isEmpty { throw IngestError(file: file, "empty file") }
                    guard let text = String(data: data, encoding: .utf8) else {
                        let offset = data.withUnsafeBytes { $0.firstInvalidUTF8Offset() } ?? 0
                        throw IngestError(file: file, line: data.withUnsafeBytes { RecordFiles.lineOf(offset, in: $0) },
                                          "not valid UTF-8; re-encode the file as UTF-8")
                    }
                    // Validity first: json_type raises on malformed JSON instead of answering.
                    // SQLite takes a lone surrogate escape and would store invalid UTF-8: a file
                    // with a "\uD8xx"-"\uDFxx" escape is checked by our strict parser too.
                    let valid = try Int.fetchOne(db, sql: "SELECT json_valid(?)", arguments: [text]) == 1
                    if !valid || data.withUnsafeBytes(RecordFiles.mayHoldSurrogateEscape) {
                        if case .failure(let e) = data.withUnsafeBytes({ JSONParser.result($0, refuseLoneSurrogates: true) }) {
                            throw IngestError(file: file, line: data.withUnsafeBytes { RecordFiles.lineOf(e.offset, in: $0) }, field: e.field, e.description)
                        }
                        if !valid { throw IngestError(file: file, "not valid JSON") }
                    }
                    let probe = try Row.fetchOne(db, sql: """
                        SELECT json_type(?1, '$.structure') AS st,
                               json_type(?1, '$.instance_id') AS it, json_extract(?1, '$.instance_id') AS iid,
                               json_extract(?1, '$.repo') AS repo, json_extract(?1, '$.base_commit') AS commit_
                        """, arguments: [text])!
                    guard (probe["st"] as String?) == "object" else {
                        throw IngestError(file: file, field: "structure", (probe["st"] as String?).map { "expected an object, found \($0)" } ?? "missing (required)")
                    }
                    let stem = Self.stem(file)
                    let instanceID: String
                    if (probe["it"] as String?) == "text" {
                        instanceID = probe["iid"]
                        guard instanceID == stem else {
                            throw IngestError(file: file, field: "instance_id", "\"\(instanceID)\" does not match the file name \"\(stem).json\"")
                        }
                    } else {
                        instanceID = stem
                    }
                    let hash = Hashing.contentHash(text)
                    if let row = try Row.fetchOne(db, sql: "SELECT id, content_hash FROM repo_structures WHERE instance_id = ?", arguments: [instanceID]) {
                        if (row["content_hash"] as Int64) == hash {
                            session.report.count("repo_structures", .unchanged)
                            return
                        }
                        try db.execute(sql: """
                            UPDATE repo_structures SET repo = ?2, base_commit = ?3, structure = json_extract(?4, '$.structure'),
                                bytes = ?5, content_hash = ?6, source_file = ?7, updated_at = ?8 WHERE id = ?1
                            """, arguments: [row["id"] as Int64, probe["repo"] as String?, probe["commit_"] as String?, text,
                                             data.count, hash, file, session.now])
                        session.report.count("repo_structures", .updated)
                    } else {
                        try db.execute(sql: """
                            INSERT INTO repo_structures(instance_id, repo, base_commit, structure, bytes, content_hash, source_file, created_at, updated_at)
                            VALUES (?1, ?2, ?3, json_extract(?4, '$.structure'), ?5, ?6, ?7, ?8, ?8)
                            """, arguments: [instanceID, probe["repo"] as String?, probe["commit_"] as String?, text,
                                             data.count, hash, file, session.now])
                        session.report.count("repo_structures", .inserted)
                    }
                }
            }
        }
    }
}
