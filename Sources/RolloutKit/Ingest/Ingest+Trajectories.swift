import Foundation
import GRDB

/// Formats of trajectory files made by other tools.
public enum TrajectoryFormat: String, Sendable, CaseIterable {
    /// The Rollout framework's output records `{id, messages, success, error, …metadata}`.
    case rollout
    /// DeepResearch results `{question, answer, rollout_id?, messages, prediction, termination}`.
    case deepresearch
    /// τ-bench results, a JSON array of `{task_id, reward, info, traj, trial}`.
    case tauBench = "tau-bench"
    /// Training records `{messages, id, data_source, use_cot, tools}` (what `rollout export
    /// --format training` writes); the tool list is kept with the rollout, so labels take it.
    case training
}

/// One imported rollout before it is written.
struct ImportedRollout: Sendable {
    var externalTaskID: String
    var taskOpening: String?
    var taskUserPrompt: String?
    var taskAnswer: String?
    var taskCriteria: String?
    var taskRecord: String
    var sample: Int?
    var status: String
    var stopReason: String?
    var prediction: String?
    var reward: Double?
    var error: String?
    var metadata: JSONObject
    var messages: [ChatMessage]
}

extension Warehouse {
    /// `rollout ingest trajectories`: results produced elsewhere, as a run of mode `imported`, so
    /// evaluation and export work on them. Tasks are matched by id in `dataset` (created when
    /// missing). Re-ingesting the same file changes nothing; a changed record replaces its rollout.
    public func ingestTrajectories(file: String, run: String, format: TrajectoryFormat, dataset: String? = nil,
                                   options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "trajectories", source: file, files: [file], options: options) { session in
            let db = session.db
            let runID: Int64
            if let row = try Row.fetchOne(db, sql: "SELECT id, mode FROM runs WHERE name = ?", arguments: [run]) {
                guard (row["mode"] as String) == "imported" else {
                    throw IngestError(file: file, field: "--run", "run \"\(run)\" was made by `rollout run` (\(row["mode"] as String)); import into a new run name")
                }
                runID = row["id"]
            } else {
                try db.execute(sql: """
                    INSERT INTO runs(name, mode, config, source, status, created_at, started_at, finished_at)
                    VALUES (?, 'imported', ?, ?, 'completed', ?, ?, ?)
                    """, arguments: [run, JSONValue.object(["format": .string(format.rawValue)]).jsonText, file,
                                     session.now, session.now, session.now])
                runID = db.lastInsertedRowID
                session.report.count("runs", .inserted)
            }
            let kind = format == .deepresearch ? "qa" : "dialogue"
            let datasetID = try Catalog(session: session).dataset(named: dataset ?? run, kind: kind, source: file)
            var importer = RolloutImporter(session: session, runID: runID, datasetID: datasetID, file: file)
            // DeepResearch writes one iterK.jsonl per sample: take the sample from the name.
            let stem = Self.stem(file)
            let iteration = stem.hasPrefix("iter") ? Int(stem.dropFirst(4)) : nil
            switch format {
            case .training:
                try RecordFiles.forEachLine(file, session: session, savepoint: true, prepare: { _, raw, value in
                    (try Self.parseTrainingRecord(value), Hashing.contentHash(raw.bytes))
                }, write: { line, prepared in
                    try importer.write(prepared.0, line: line, hash: prepared.1)
                })
            case .rollout:
                try RecordFiles.forEachLine(file, session: session, savepoint: true, prepare: { _, raw, value in
                    (try Self.parseRolloutRecord(value), Hashing.contentHash(raw.bytes))
                }, write: { line, prepared in
                    try importer.write(prepared.0, line: line, hash: prepared.1)
                })
            case .deepresearch:
                try RecordFiles.forEachLine(file, session: session, savepoint: true, prepare: { _, raw, value in
                    var r = try Self.parseDeepResearchRecord(value)
                    if let iteration, iteration >= 1 { r.sample = iteration - 1 }
                    return (r, Hashing.contentHash(raw.bytes))
                }, write: { line, prepared in
                    try importer.write(prepared.0, line: line, hash: prepared.1)
                })
            case .tauBench:
                try RecordFiles.forEachArrayElement(file, session: session, savepoint: true) { line, raw, value in
                    try importer.write(try Self.parseTauBenchRecord(value), line: line, hash: Hashing.contentHash(raw.bytes))
                }
            }
        }
    }

    static func messages(_ r: RecordReader) throws -> [ChatMessage] {
        try r.array().map { try ChatMessage(reading: $0) }
    }

    static func parseRolloutRecord(_ value: JSONValue) throws -> ImportedRollout {
        let r = RecordReader(value)
        let object = try r.object()
        let id = try r.required("id").idText()
        let messages = try Self.messages(try r.required("messages"))
        let success: Bool
        switch object["success"] {
        case .bool(let b)?: success = b
        case nil, .null?: success = object["error"].map { $0.isNull } ?? true
        case let v?: throw FieldError(field: "success", reason: "expected true or false, found \(v.typeName)")
        }
        let error = try r.optionalString("error")
        // Our own output records number their samples.
        var sample: Int?
        switch object["sample"] {
        case nil, .null?: sample = nil
        case .number(let n)?:
            guard let k = Int(n), k >= 0 else { throw FieldError(field: "sample", reason: "expected a non-negative integer, found \(n)") }
            sample = k
        case let v?: throw FieldError(field: "sample", reason: "expected an integer, found \(v.typeName)")
        }
        var metadata = JSONObject()
        for (k, v) in object where !["id", "messages", "success", "error", "sample"].contains(k) { metadata[k] = v }
        func flag(_ k: String) -> Bool { object[k]?.boolValue == true }
        let stop: String? = if !success || error != nil { "error" }
            else if flag("transferred") { StopReason.transfer.rawValue }
            else if flag("out_of_scope") { StopReason.outOfScope.rawValue }
            else if flag("stopped") { "user_stop" }
            else if flag("reached_max_turns") { "max_turns" }
            else { object["stop_reason"]?.stringValue }
        return ImportedRollout(externalTaskID: id, taskOpening: messages.first { $0.role == "user" }?.content,
                               taskRecord: JSONValue.object(["id": .string(id)]).jsonText,
                               sample: sample, status: success && error == nil ? "completed" : "failed", stopReason: stop,
                               prediction: nil, reward: nil, error: error, metadata: metadata, messages: messages)
    }

    static func parseTrainingRecord(_ value: JSONValue) throws -> ImportedRollout {
        let r = RecordReader(value)
        let object = try r.object()
        let id = try r.required("id").idText()
        let messages = try Self.messages(try r.required("messages"))
        var metadata = JSONObject()
        switch object["tools"] {
        case nil, .null?: break
        case .array(let tools)?:
            for (i, tool) in tools.enumerated() {
                let t = RecordReader(tool, path: "tools[\(i)]")
                _ = try t.object()
                let name = tool["function"]?["name"] ?? tool["name"]
                guard name?.stringValue != nil else {
                    throw FieldError(field: "tools[\(i)]", reason: "expected {\"type\":\"function\",\"function\":{\"name\", …}}")
                }
            }
            metadata["tools"] = .array(tools)
        case let v?: throw FieldError(field: "tools", reason: "expected an array of tools, found \(v.typeName)")
        }
        switch object["use_cot"] {
        case nil, .null?, .bool?: break
        case let v?: throw FieldError(field: "use_cot", reason: "expected true or false, found \(v.typeName)")
        }
        for (k, v) in object where !["id", "messages", "tools"].contains(k) { metadata[k] = v }
        return ImportedRollout(externalTaskID: id, taskOpening: messages.first { $0.role == "user" }?.content,
                               taskRecord: JSONValue.object(["id": .string(id)]).jsonText,
                               sample: nil, status: "completed", stopReason: nil, prediction: nil, reward: nil, error: nil,
                               metadata: metadata, messages: messages)
    }

    static func parseDeepResearchRecord(_ value: JSONValue) throws -> ImportedRollout {
        let r = RecordReader(value)
        let object = try r.object()
        let (id, question) = try qaIdentity(r)
        let answer = object["answer"]?.scalarText
        let error = object["error"].flatMap { $0.isNull ? nil : ($0.stringValue ?? $0.jsonText) }
        let messages = try r.child("messages").map { $0.value.isNull ? [] : try Self.messages($0) } ?? []
        var sample: Int?
        if case .number(let n)? = object["rollout_id"], let k = Int(n), k >= 1 { sample = k - 1 }
        var metadata = JSONObject()
        for (k, v) in object where !["question", "answer", "messages", "prediction", "termination", "error"].contains(k) {
            metadata[k] = v
        }
        var record = JSONObject()
        record["question"] = .string(question)
        if let answer { record["answer"] = .string(answer) }
        return ImportedRollout(externalTaskID: id, taskOpening: question, taskAnswer: answer,
                               taskRecord: JSONValue.object(record).jsonText, sample: sample,
                               status: error == nil ? "completed" : "failed",
                               stopReason: error == nil ? try r.optionalString("termination") : "error",
                               prediction: try r.optionalString("prediction"), reward: nil, error: error,
                               metadata: metadata, messages: messages)
    }

    static func parseTauBenchRecord(_ value: JSONValue) throws -> ImportedRollout {
        let r = RecordReader(value)
        let object = try r.object()
        let taskID = try r.required("task_id").idText()
        guard let reward = try r.required("reward").value.doubleValue else {
            throw FieldError(field: "reward", reason: "expected a number, found \(object["reward"]!.typeName)")
        }
        let trial: Int
        switch object["trial"] {
        case .number(let n)?:
            guard let t = Int(n), t >= 0 else { throw FieldError(field: "trial", reason: "expected a non-negative integer, found \(n)") }
            trial = t
        case nil, .null?: throw FieldError(field: "trial", reason: "missing (required)")
        case let v?: throw FieldError(field: "trial", reason: "expected an integer, found \(v.typeName)")
        }
        let messages = try Self.messages(try r.required("traj"))
        let info = r.child("info")
        let task = info?.child("task")
        var criteria = JSONObject()
        if let t = task?.value.objectValue {
            if let a = t["actions"] { criteria["actions"] = a }
            if let o = t["outputs"] { criteria["outputs"] = o }
        }
        var metadata = JSONObject()
        if let infoObject = info?.value.objectValue {
            for (k, v) in infoObject where k != "task" { metadata[k] = v }
        }
        return ImportedRollout(externalTaskID: taskID, taskOpening: nil,
                               taskUserPrompt: try task?.optionalString("instruction"),
                               taskCriteria: criteria.isEmpty ? nil : JSONValue.object(criteria).jsonText,
                               taskRecord: task?.value.jsonText ?? JSONValue.object(["task_id": .string(taskID)]).jsonText,
                               sample: trial, status: "completed", stopReason: nil, prediction: nil, reward: reward,
                               error: nil, metadata: metadata, messages: messages)
    }
}

/// Writes imported rollouts with their messages and tool calls.
struct RolloutImporter {
    let session: IngestSession
    let runID: Int64
    let datasetID: Int64
    let file: String
    /// (task row, sample) pairs written by this ingest, to catch duplicates in the file.
    private var seen: [String: Int64] = [:]
    /// Next sample index per task for formats that do not number samples.
    private var nextSample: [Int64: Int] = [:]

    init(session: IngestSession, runID: Int64, datasetID: Int64, file: String) {
        self.session = session
        self.runID = runID
        self.datasetID = datasetID
        self.file = file
    }

    mutating func write(_ r: ImportedRollout, line: Int, hash: Int64) throws {
        let db = session.db
        let taskID = try task(for: r, line: line)
        let sample: Int
        if let s = r.sample {
            sample = s
        } else {
            sample = nextSample[taskID, default: 0]
        }
        nextSample[taskID] = max(nextSample[taskID, default: 0], sample + 1)
        let key = "\(taskID):\(sample)"
        if let earlier = seen[key] {
            if earlier == hash { session.report.count("rollouts", .duplicate); return }
            throw FieldError(field: "", reason: "a second, different rollout for task \"\(r.externalTaskID)\" sample \(sample)")
        }
        var metadata = r.metadata
        metadata["_source"] = .object(["file": .string(file), "line": JSONValue(line),
                                       "hash": .string(String(UInt64(bitPattern: hash), radix: 16))])
        var outcome = UpsertOutcome.inserted
        if let row = try Row.fetchOne(db, sql: """
            SELECT id, json_extract(metadata, '$._source.hash') AS h FROM rollouts
            WHERE run_id = ? AND task_id = ? AND sample = ? AND attempt = 0
            """, arguments: [runID, taskID, sample]) {
            if (row["h"] as String?) == String(UInt64(bitPattern: hash), radix: 16) {
                seen[key] = hash
                session.report.count("rollouts", .unchanged)
                return
            }
            try db.execute(sql: "DELETE FROM rollouts WHERE id = ?", arguments: [row["id"] as Int64])
            outcome = .updated
        }
        // The caller runs each record in a savepoint, so a record that fails half-way (under
        // --skip-invalid) leaves neither its task, nor the replaced rollout's deletion behind.
        let turns = r.messages.filter { $0.role == "user" }.count
        try db.execute(sql: """
            INSERT INTO rollouts(run_id, task_id, sample, attempt, status, stop_reason, prediction, reward, error,
                turns, metadata, started_at, finished_at)
            VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, NULL, ?)
            """, arguments: [runID, taskID, sample, r.status, r.stopReason, r.prediction, r.reward, r.error,
                             turns, JSONValue.object(metadata).jsonText, session.now])
        try MessageWriter.write(r.messages, rollout: db.lastInsertedRowID, db: db)
        seen[key] = hash
        session.report.count("rollouts", outcome)
    }

    private lazy var taskWriterStorage: TaskWriter? = nil
    private var taskWriter: TaskWriter {
        mutating get throws {
            if let w = taskWriterStorage { return w }
            let w = try TaskWriter(session: session, datasetID: datasetID)
            taskWriterStorage = w
            return w
        }
    }

    private mutating func task(for r: ImportedRollout, line: Int) throws -> Int64 {
        let db = session.db
        if let id = try Int64.fetchOne(db, sql: "SELECT id FROM tasks WHERE dataset_id = ? AND external_id = ?",
                                       arguments: [datasetID, r.externalTaskID]) {
            return id
        }
        return try taskWriter.write(.init(
            externalID: r.externalTaskID, opening: r.taskOpening, userPrompt: r.taskUserPrompt, answer: r.taskAnswer,
            criteria: r.taskCriteria, record: .init(r.taskRecord), file: file, line: line))
    }
}

/// Inserts a rollout's messages and tool calls, linking each call to the tool message that
/// answers it (by id, else by position among the unanswered calls).
enum MessageWriter {
    static func write(_ messages: [ChatMessage], rollout: Int64, db: Database, turnOf: ((Int) -> Int?)? = nil) throws {
        let insertMessage = try db.cachedStatement(sql: """
            INSERT INTO messages(rollout_id, idx, role, content, reasoning_content, tool_call_id, name, turn, extra)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let insertCall = try db.cachedStatement(sql: """
            INSERT INTO tool_calls(rollout_id, message_id, idx, call_id, name, arguments) VALUES (?, ?, ?, ?, ?, ?)
            """)
        let answer = try db.cachedStatement(sql: """
            UPDATE tool_calls SET result_message_id = ?, result = ?, is_error = ? WHERE id = ?
            """)
        var pending: [(rowID: Int64, callID: String?)] = []
        var turn = 0
        for (i, m) in messages.enumerated() {
            if m.role == "user" { turn += 1 }
            try insertMessage.execute(arguments: [rollout, i, m.role, m.content, m.reasoningContent, m.toolCallID, m.name,
                                                  turnOf?(i) ?? turn, m.extra.map { JSONValue.object($0).jsonText }])
            let messageID = db.lastInsertedRowID
            for (j, call) in m.toolCalls.enumerated() {
                try insertCall.execute(arguments: [rollout, messageID, j, call.id, call.name, call.arguments])
                pending.append((db.lastInsertedRowID, call.id))
            }
            if m.role == "tool" {
                // By id; only a result without an id is matched by position.
                let index = m.toolCallID.map { id in pending.firstIndex { $0.callID == id } }
                    ?? (pending.isEmpty ? nil : 0)
                if let index {
                    let isError = m.extra?["is_error"]?.boolValue == true
                    try answer.execute(arguments: [messageID, m.content, isError ? 1 : 0, pending[index].rowID])
                    pending.remove(at: index)
                }
            }
        }
    }
}
