import Foundation
import GRDB

/// One request of a batch before it is written.
public struct BatchRequestSpec: Sendable {
    public var customID: String
    public var taskID: Int64?
    public var sample: Int?
    /// The request body in the provider's format (OpenAI `body`, Anthropic `params`).
    public var body: JSONValue

    public init(customID: String, taskID: Int64? = nil, sample: Int? = nil, body: JSONValue) {
        self.customID = customID
        self.taskID = taskID
        self.sample = sample
        self.body = body
    }
}

/// What `rollout batch create` (and the Agentless stages) wrote.
public struct BatchCreateReport: Sendable, Codable {
    public struct Part: Sendable, Codable {
        public var part: Int
        public var path: String
        public var requests: Int
        public var bytes: Int
    }

    public var name: String
    public var provider: String
    public var stage: String?
    public var parts: [Part] = []
    /// An earlier batch of this name that had not been submitted was replaced.
    public var replaced = false
    /// Things the user should know: instances skipped and why, answers that gave no request.
    public var notices: [String] = []
    /// How many inputs were passed over (each one in `notices`, up to a point).
    public var skipped = 0
    public var requests: Int { parts.reduce(0) { $0 + $1.requests } }

    public var summary: String {
        if parts.isEmpty { return "batch \(name): no request to write, nothing created" + (notices.isEmpty ? "" : "\n    " + notices.prefix(20).joined(separator: "\n    ")) }
        var out = ["batch \(name) (\(provider)\(stage.map { ", stage \($0)" } ?? "")): \(requests) request(s) in \(parts.count) part(s)"
                   + (replaced ? " (replaced the unsubmitted batch of that name)" : "")]
        for p in parts { out.append("  part \(p.part): \(p.path) — \(p.requests) requests, \(p.bytes) bytes") }
        if skipped > 0 { out.append("  \(skipped) skipped:") }
        for n in notices.prefix(20) { out.append("    \(n)") }
        if notices.count > 20 { out.append("    … (\(notices.count - 20) more)") }
        return out.joined(separator: "\n")
    }
}

/// Collects requests into request files split at the provider's limits and into
/// `batches` / `batch_requests` rows, inside the caller's transaction.
final class BatchBuilder {
    let db: Database
    let name: String
    let provider: BatchProvider
    let stage: String?
    let model: String
    let options: JSONObject
    let directory: String
    let limits: BatchLimits
    let now = Timestamp.now()
    var report: BatchCreateReport

    private var files: [OutputFile] = []
    private var partID: Int64 = 0
    private var partRequests = 0
    private var partBytes = 0
    private var seen = Set<String>()
    private let insert: Statement

    init(db: Database, name: String, provider: BatchProvider, stage: String?, model: String, options: JSONObject,
         directory: String, limits: BatchLimits?, replace: Bool) throws {
        guard !name.isEmpty, !name.contains("\n") else { throw BatchError("a batch needs a name (--name)") }
        self.db = db
        self.name = name
        self.provider = provider
        self.stage = stage
        self.model = model
        self.options = options
        self.directory = directory
        self.limits = limits ?? provider.limits
        report = BatchCreateReport(name: name, provider: provider.rawValue, stage: stage)
        insert = try db.makeStatement(sql: """
            INSERT INTO batch_requests(batch_id, custom_id, task_id, sample, body, line) VALUES (?, ?, ?, ?, ?, ?)
            """)
        try removeExisting(replace: replace)
    }

    /// An unsubmitted batch of the same name is replaced; a submitted one, or one with results,
    /// only with `replace`.
    private func removeExisting(replace: Bool) throws {
        let rows = try Row.fetchAll(db, sql: """
            SELECT b.id, b.status, b.input_file, b.remote_id,
                   (SELECT count(*) FROM batch_results r JOIN batch_requests q ON q.id = r.request_id WHERE q.batch_id = b.id) AS results
            FROM batches b WHERE b.name = ? ORDER BY b.part
            """, arguments: [name])
        guard !rows.isEmpty else { return }
        let used = rows.contains { ($0["status"] as String) != "created" || ($0["results"] as Int) > 0 || ($0["remote_id"] as String?) != nil }
        if used && !replace {
            throw BatchError("batch \(name) already exists and was submitted or has results; choose another --name, or pass --replace to drop it with its results")
        }
        let newPaths = Set((0..<max(rows.count, 1)).map { partPath($0) })
        for row in rows {
            if let old = row["input_file"] as String?, !newPaths.contains(old) { unlink(old) }
        }
        try db.execute(sql: "DELETE FROM batches WHERE name = ?", arguments: [name])
        report.replaced = true
    }

    func partPath(_ part: Int) -> String {
        (directory as NSString).appendingPathComponent("\(SafeFileName.make(name)).part\(part).jsonl")
    }

    private func startPart() throws {
        try finishPart()
        let part = files.count
        let path = partPath(part)
        files.append(try OutputFile(path: path))
        try db.execute(sql: """
            INSERT INTO batches(name, part, provider, stage, status, input_file, endpoint, model, options, created_at, updated_at)
            VALUES (?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?)
            """, arguments: [name, part, provider.rawValue, stage, URL(fileURLWithPath: path).standardizedFileURL.path,
                             provider.endpoint, model, JSONValue.object(options).jsonText, now, now])
        partID = db.lastInsertedRowID
        partRequests = 0
        partBytes = 0
        report.parts.append(.init(part: part, path: path, requests: 0, bytes: 0))
    }

    private func finishPart() throws {
        guard !files.isEmpty else { return }
        try db.execute(sql: "UPDATE batches SET requests = ?, bytes = ? WHERE id = ?", arguments: [partRequests, partBytes, partID])
        report.parts[report.parts.count - 1].requests = partRequests
        report.parts[report.parts.count - 1].bytes = partBytes
    }

    func add(_ spec: BatchRequestSpec) throws {
        let id = spec.customID
        guard !id.isEmpty else { throw BatchError("a request has an empty custom id") }
        guard seen.insert(id).inserted else { throw BatchError("custom id \"\(id)\" appears twice in batch \(name); custom ids must be unique") }
        if provider == .anthropic && !BatchLine.isAnthropicSafe(id) {
            throw BatchError("custom id \"\(id)\" is not allowed by Anthropic (1–64 characters of A–Z, a–z, 0–9, _ and -)")
        }
        let line = BatchLine.text(customID: id, body: spec.body, provider: provider)
        let size = line.utf8.count + 1
        if size > limits.maxBytes { throw BatchError("request \"\(id)\" alone is \(size) bytes, over the \(limits.maxBytes)-byte limit of a batch") }
        if files.isEmpty || partRequests + 1 > limits.maxRequests || partBytes + size > limits.maxBytes {
            try startPart()
        }
        try files[files.count - 1].write(line: line)
        partRequests += 1
        partBytes += size
        try insert.execute(arguments: [partID, id, spec.taskID, spec.sample, spec.body.jsonText, partRequests])
    }

    /// Writes the part rows' sizes and moves the files into place. An empty batch is an error
    /// unless `allowEmpty` (then nothing is written for it).
    func finish(allowEmpty: Bool = false) throws -> BatchCreateReport {
        if files.isEmpty && allowEmpty { return report }
        guard !files.isEmpty else {
            throw BatchError("batch \(name) would hold no request" + (report.notices.isEmpty ? "" : " (\(report.notices.prefix(3).joined(separator: "; ")))"))
        }
        try finishPart()
        do {
            for f in files { try f.commit() }
        } catch {
            for f in files { f.abandon() }
            throw error
        }
        return report
    }

    func abandon() { for f in files { f.abandon() } }

    func skip(_ notice: String) {
        report.skipped += 1
        if report.notices.count < 1000 { report.notices.append(notice) }
    }
}

/// Where `--from-sql` requests come from: a query whose rows name a custom id and a prompt.
public struct BatchQuerySource: Sendable {
    public var sql: String
    public var passk: Int
    public var range: IDRange?

    public init(sql: String, passk: Int = 1, range: IDRange? = nil) {
        self.sql = sql
        self.passk = passk
        self.range = range
    }
}

extension Warehouse {
    /// Writes a batch: request files in `directory` split at the provider's limits, one
    /// `batches` row per part and one `batch_requests` row per request, in one transaction.
    /// `produce` is called inside the transaction with the database and a function that adds
    /// one request (or records a skipped input).
    public func createBatch(name: String, options: BatchRequestOptions, stage: String?, extraOptions: JSONObject = [:],
                            directory: String, limits: BatchLimits? = nil, replace: Bool = false, allowEmpty: Bool = false,
                            _ produce: (Database, BatchBuilderHandle) throws -> Void) throws -> BatchCreateReport {
        var recorded = options.json
        if let stage { recorded["stage"] = .string(stage) }
        for (k, v) in extraOptions { recorded[k] = v }
        return try writer.write { db in
            let builder = try BatchBuilder(db: db, name: name, provider: options.provider, stage: stage, model: options.model,
                                           options: recorded, directory: directory, limits: limits, replace: replace)
            do {
                try produce(db, BatchBuilderHandle(builder: builder))
                return try builder.finish(allowEmpty: allowEmpty)
            } catch {
                builder.abandon()
                throw error
            }
        }
    }

    /// `rollout batch create --from-sql`: one request per row of `source.sql` (times `passk`).
    /// Columns: `custom_id` (or `task_id`, whose external id is used), then `body` (a whole
    /// request body, JSON), or `messages` (a JSON array of chat messages), or `prompt` (the
    /// user message) with an optional `system`; optional `task_id`, `sample`, `temperature`.
    public func createBatch(name: String, fromSQL source: BatchQuerySource, options: BatchRequestOptions,
                            directory: String, limits: BatchLimits? = nil, replace: Bool = false) throws -> BatchCreateReport {
        guard source.passk >= 1 else { throw BatchError("--passk must be at least 1") }
        var extra: JSONObject = ["sql": .string(source.sql), "passk": JSONValue(source.passk)]
        if let r = source.range { extra["range"] = .string(r.description) }
        return try createBatch(name: name, options: options, stage: nil, extraOptions: extra, directory: directory,
                               limits: limits, replace: replace) { db, add in
            struct Row_ { var id: String; var taskID: Int64?; var sample: Int?; var body: JSONValue }
            var rows: [Row_] = []
            let statement: Statement
            do { statement = try db.makeStatement(sql: source.sql) } catch let e as DatabaseError {
                throw BatchError("--from-sql: \(e.message ?? "\(e)")")
            }
            guard statement.isReadonly else { throw BatchError("--from-sql must be a read-only query (SELECT …)") }
            let columns = Set(statement.columnNames)
            guard columns.contains("custom_id") || columns.contains("task_id") else {
                throw BatchError("--from-sql: the query needs a custom_id (or task_id) column; it has \(statement.columnNames.joined(separator: ", "))")
            }
            guard columns.contains("body") || columns.contains("messages") || columns.contains("prompt") else {
                throw BatchError("--from-sql: the query needs a body, messages or prompt column; it has \(statement.columnNames.joined(separator: ", "))")
            }
            let cursor = try Row.fetchCursor(statement)
            var n = 0
            // The query is the user's: a failure while it runs is reported by its message and
            // row, not as the SQL statement GRDB would quote.
            func nextRow() throws -> Row? {
                do { return try cursor.next() } catch let e as DatabaseError {
                    throw BatchError("--from-sql: \(e.message ?? "an SQL error") at row \(n + 1); nothing was written")
                }
            }
            while let row = try nextRow() {
                n += 1
                let taskID: Int64? = columns.contains("task_id") ? row["task_id"] : nil
                var id: String? = columns.contains("custom_id") ? row["custom_id"] : nil
                if id == nil, let taskID {
                    id = try String.fetchOne(db, sql: "SELECT external_id FROM tasks WHERE id = ?", arguments: [taskID])
                }
                guard let id, !id.isEmpty else { throw BatchError("--from-sql row \(n): no custom_id (and no task with that task_id)") }
                let body: JSONValue
                if columns.contains("body"), let text = row["body"] as String? {
                    do { body = try JSONParser.parse(text) } catch { throw BatchError("--from-sql row \(n) (\(id)): body: \(error)") }
                    guard case .object = body else { throw BatchError("--from-sql row \(n) (\(id)): body is not a JSON object") }
                } else {
                    var messages: [ChatMessage] = []
                    if columns.contains("messages"), let text = row["messages"] as String? {
                        let value: JSONValue
                        do { value = try JSONParser.parse(text) } catch { throw BatchError("--from-sql row \(n) (\(id)): messages: \(error)") }
                        do {
                            messages = try RecordReader(value, path: "messages").array().map { try ChatMessage(reading: $0) }
                        } catch let e as FieldError {
                            throw BatchError("--from-sql row \(n) (\(id)): \(e.field): \(e.reason)")
                        }
                    } else {
                        if columns.contains("system"), let s = row["system"] as String?, !s.isEmpty {
                            messages.append(ChatMessage(role: "system", content: s))
                        }
                        guard let prompt = row["prompt"] as String? else { throw BatchError("--from-sql row \(n) (\(id)): prompt is NULL") }
                        messages.append(ChatMessage(role: "user", content: prompt))
                    }
                    guard !messages.isEmpty else { throw BatchError("--from-sql row \(n) (\(id)): no messages") }
                    let temperature: Double? = columns.contains("temperature") ? row["temperature"] : nil
                    body = options.body(messages: messages, temperature: temperature)
                }
                let sample: Int? = columns.contains("sample") ? row["sample"] : nil
                if source.passk == 1 {
                    rows.append(Row_(id: id, taskID: taskID, sample: sample ?? 0, body: body))
                } else {
                    for i in 0..<source.passk {
                        rows.append(Row_(id: PassID.make(id, pass: i, of: source.passk), taskID: taskID, sample: i, body: body))
                    }
                }
            }
            rows.sort { $0.id < $1.id }
            let selected = source.range.map { $0.apply(rows) } ?? rows[...]
            for r in selected { try add(BatchRequestSpec(customID: r.id, taskID: r.taskID, sample: r.sample, body: r.body)) }
        }
    }
}

/// What a request producer is handed: add a request, or record an input passed over.
public struct BatchBuilderHandle {
    let builder: BatchBuilder

    public func callAsFunction(_ spec: BatchRequestSpec) throws { try builder.add(spec) }
    public func skip(_ notice: String) { builder.skip(notice) }
    public func notice(_ text: String) { if builder.report.notices.count < 1000 { builder.report.notices.append(text) } }
}
