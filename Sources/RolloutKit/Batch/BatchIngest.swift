import Foundation
import GRDB

/// What `rollout batch ingest` read and wrote.
public struct BatchIngestReport: Sendable, Codable {
    public var batch: String
    public var files: [String] = []
    public var lines = 0
    public var succeeded = 0
    public var errored = 0
    public var canceled = 0
    public var expired = 0
    public var inserted = 0
    public var updated = 0
    public var unchanged = 0
    /// A later failure for a request that already had a success: the success is kept.
    public var keptSuccesses = 0
    /// Lines whose custom id is not a request of the batch (not stored).
    public var unknown = 0
    public var unknownIDs: [String] = []
    /// Lines repeating a custom id already read in this ingest (the first is kept).
    public var duplicates = 0
    public var duplicateLines: [String] = []
    /// Requests of the batch that still have no result.
    public var missing = 0

    public var summary: String {
        var out = ["ingested \(lines) line(s) into batch \(batch): \(succeeded) succeeded, \(errored) errored"
                   + (canceled > 0 ? ", \(canceled) canceled" : "") + (expired > 0 ? ", \(expired) expired" : ""),
                   "  batch_results: \(inserted) inserted, \(updated) updated, \(unchanged) unchanged"]
        if keptSuccesses > 0 { out.append("  \(keptSuccesses) later failure(s) ignored: the request already had a success") }
        if duplicates > 0 {
            out.append("  \(duplicates) duplicate custom id(s), first one kept:")
            for d in duplicateLines.prefix(10) { out.append("    \(d)") }
        }
        if unknown > 0 {
            out.append("  \(unknown) line(s) with a custom id that is not in batch \(batch), not stored:")
            for d in unknownIDs.prefix(10) { out.append("    \(d)") }
        }
        out.append(missing > 0 ? "  \(missing) request(s) of the batch still without a result" : "  every request of the batch has a result")
        return out.joined(separator: "\n")
    }
}

/// One output or error line of either provider, read into the `batch_results` shape.
struct BatchResultLine {
    var customID: String
    var type: String
    var statusCode: Int?
    var body: JSONValue?
    var errorCode: String?
    var errorMessage: String?
    var usage = TokenUsage()
    var finishReason: String?
    var model: String?
    var provider: BatchProvider

    /// Reads one parsed line: OpenAI `{id, custom_id, response, error}` or Anthropic
    /// `{custom_id, result}`.
    init(_ value: JSONValue) throws {
        let r = RecordReader(value)
        let o = try r.object()
        let id = try r.required("custom_id").idText()
        if let result = o["result"] {
            try self.init(anthropic: RecordReader(result, path: "result"), customID: id)
        } else if o["response"] != nil || o["error"] != nil {
            try self.init(openAI: o, customID: id)
        } else {
            throw FieldError(field: "", reason: "neither an OpenAI output line (response / error) nor an Anthropic result line (result)")
        }
    }

    private init(customID: String, provider: BatchProvider) {
        self.customID = customID
        self.provider = provider
        type = "errored"
    }

    private init(openAI o: JSONObject, customID: String) throws {
        self.init(customID: customID, provider: .openai)
        let errorObject = o["error"].flatMap { $0.isNull ? nil : $0 }
        if let response = o["response"], !response.isNull {
            let rr = RecordReader(response, path: "response")
            _ = try rr.object()
            guard let status = response["status_code"]?.intValue else {
                throw FieldError(field: "response.status_code", reason: "missing or not an integer")
            }
            statusCode = status
            let body = response["body"] ?? .null
            self.body = body.isNull ? nil : body
            model = body["model"]?.stringValue
            if status == 200 {
                do {
                    let decoded = try OpenAICodec.decode(Array(body.jsonText.utf8), status: 200)
                    type = "succeeded"
                    usage = decoded.usage
                    finishReason = decoded.finishReason
                } catch {
                    type = "errored"
                    errorCode = "invalid_response"
                    errorMessage = error.description
                }
            } else {
                type = "errored"
                let e = body["error"]
                errorCode = e?["code"]?.scalarText ?? e?["type"]?.stringValue ?? String(status)
                errorMessage = e?["message"]?.stringValue ?? (body.isNull ? "HTTP \(status)" : body.jsonText)
            }
        } else if let e = errorObject {
            guard case .object = e else { throw FieldError(field: "error", reason: "expected an object {code, message}, found \(e.typeName)") }
            errorCode = e["code"]?.scalarText
            errorMessage = e["message"]?.stringValue
            body = e
            switch errorCode {
            case "batch_expired"?: type = "expired"
            case "batch_cancelled"?, "batch_canceled"?: type = "canceled"
            default: type = "errored"
            }
        } else {
            throw FieldError(field: "response", reason: "null, and no error either")
        }
    }

    private init(anthropic r: RecordReader, customID: String) throws {
        self.init(customID: customID, provider: .anthropic)
        let kind = try r.requiredString("type")
        switch kind {
        case "succeeded":
            let message = try r.required("message")
            body = message.value
            model = message.value["model"]?.stringValue
            do {
                let decoded = try AnthropicCodec.decode(Array(message.value.jsonText.utf8), status: 200)
                type = "succeeded"
                statusCode = 200
                usage = decoded.usage
                finishReason = decoded.finishReason
            } catch {
                type = "errored"
                errorCode = "invalid_response"
                errorMessage = error.description
            }
        case "errored":
            type = "errored"
            let e = r.value["error"]
            body = e
            let inner = e?["error"] ?? e
            errorCode = inner?["type"]?.stringValue
            errorMessage = inner?["message"]?.stringValue
        case "canceled", "expired":
            type = kind
            errorCode = kind
        default:
            throw FieldError(field: "result.type", reason: "\"\(kind)\" is not succeeded, errored, canceled or expired")
        }
    }

    /// Tells an unchanged result on a second ingest.
    var contentHash: Int64 {
        var text = type + "\u{1}" + (statusCode.map(String.init) ?? "") + "\u{1}"
        text += (body?.jsonText ?? "") + "\u{1}" + (errorCode ?? "") + "\u{1}" + (errorMessage ?? "")
        return Hashing.contentHash(text)
    }
}

extension Warehouse {
    /// `rollout batch ingest`: output and error files of either provider, matched to the
    /// batch's requests by custom id, in one transaction. Lines may come in any order; a
    /// custom id the batch does not have, or one read twice, is reported and not stored; a bad
    /// line stops the ingest with FILE:LINE and leaves the database as it was.
    public func ingestBatchResults(files: [String], batch name: String? = nil) throws -> BatchIngestReport {
        guard !files.isEmpty else { throw BatchError("name at least one output or error file") }
        for f in files {
            try RecordFiles.checkRegularFile(f)
            // An empty file is a failed download or the wrong file, never a batch's results.
            guard try RecordFiles.hasContent(f) else {
                throw IngestError(file: f, "empty file: no result lines (an output or error file has one line per request)")
            }
        }
        return try writer.write { db in
            let batchName = try name ?? Self.batchName(for: files, db)
            return try BatchResultWriter(db: db, batch: batchName).ingest(files)
        }
    }

    /// The batch the files belong to: the one that recorded them as its output or error file,
    /// else the only batch whose requests have their custom ids.
    static func batchName(for files: [String], _ db: Database) throws -> String {
        let paths = files.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var names = Set<String>()
        for p in paths {
            for n in try String.fetchAll(db, sql: "SELECT name FROM batches WHERE output_file = ? OR error_file = ?", arguments: [p, p]) {
                names.insert(n)
            }
        }
        if names.count == 1 { return names.first! }
        var ids: [String] = []
        for f in files {
            try LineReader(path: f).forEachLine { line in
                guard ids.count < 200, line.bytes.count > 0, line.bytes.firstInvalidUTF8Offset() == nil,
                      case .success(let v) = JSONParser.result(line.bytes), let id = v["custom_id"]?.scalarText else { return }
                ids.append(id)
            }
        }
        guard !ids.isEmpty else { throw BatchError("no custom ids in \(files.joined(separator: ", ")); pass --batch NAME") }
        let marks = ids.map { _ in "?" }.joined(separator: ",")
        let found = try String.fetchAll(db, sql: """
            SELECT DISTINCT b.name FROM batch_requests q JOIN batches b ON b.id = q.batch_id WHERE q.custom_id IN (\(marks)) ORDER BY b.name
            """, arguments: StatementArguments(ids))
        if found.count > 1 {
            // Several batches share the ids (an Agentless pipeline's stages do): the one still
            // waiting for these results.
            let waiting = try String.fetchAll(db, sql: """
                SELECT DISTINCT b.name FROM batch_requests q JOIN batches b ON b.id = q.batch_id
                LEFT JOIN batch_results r ON r.request_id = q.id
                WHERE q.custom_id IN (\(marks)) AND r.id IS NULL ORDER BY b.name
                """, arguments: StatementArguments(ids))
            if waiting.count == 1 { return waiting[0] }
        }
        switch found.count {
        case 1: return found[0]
        case 0: throw BatchError("no batch has requests with the custom ids of \(files.joined(separator: ", ")) (e.g. \(ids[0])); create it first, or pass --batch NAME")
        default: throw BatchError("the custom ids of \(files.joined(separator: ", ")) are in several batches (\(found.joined(separator: ", "))); pass --batch NAME")
        }
    }
}

/// Writes results for one batch inside the caller's transaction.
final class BatchResultWriter {
    let db: Database
    let batch: String
    let now = Timestamp.now()
    struct Request { var id: Int64; var part: Int64; var model: String? }
    private var requests: [String: Request] = [:]
    private var existing: [Int64: (id: Int64, hash: Int64?, type: String, call: Int64?)] = [:]
    private var seenHere: [String: (Int64, String)] = [:]
    private(set) var report: BatchIngestReport

    init(db: Database, batch: String) throws {
        self.db = db
        self.batch = batch
        report = BatchIngestReport(batch: batch)
        guard try Int.fetchOne(db, sql: "SELECT count(*) FROM batches WHERE name = ?", arguments: [batch]) ?? 0 > 0 else {
            throw BatchError("no batch named \(batch) (see: rollout batch list)")
        }
        let rows = try Row.fetchCursor(db, sql: """
            SELECT q.id, q.custom_id, q.batch_id, json_extract(q.body, '$.model') AS model
            FROM batch_requests q JOIN batches b ON b.id = q.batch_id WHERE b.name = ?
            """, arguments: [batch])
        while let row = try rows.next() {
            requests[row["custom_id"]] = Request(id: row["id"], part: row["batch_id"], model: row["model"])
        }
        let results = try Row.fetchCursor(db, sql: """
            SELECT r.id, r.request_id, r.content_hash, r.result_type, r.llm_call_id FROM batch_results r
            JOIN batch_requests q ON q.id = r.request_id JOIN batches b ON b.id = q.batch_id WHERE b.name = ?
            """, arguments: [batch])
        while let row = try results.next() {
            existing[row["request_id"]] = (row["id"], row["content_hash"], row["result_type"], row["llm_call_id"])
        }
    }

    func ingest(_ files: [String]) throws -> BatchIngestReport {
        for file in files {
            report.files.append(file)
            try LineReader(path: file).forEachLine { line in
                if line.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
                report.lines += 1
                if let bad = line.bytes.firstInvalidUTF8Offset() {
                    throw IngestError(file: file, line: line.number, "not valid UTF-8 (byte \(bad + 1)); re-encode the file as UTF-8")
                }
                let value: JSONValue
                switch JSONParser.result(line.bytes) {
                case .success(let v): value = v
                case .failure(let e):
                    throw IngestError(file: file, line: line.number, line.terminated ? e.description : "\(e.description) (the last line is cut short)")
                }
                let result: BatchResultLine
                do { result = try BatchResultLine(value) } catch let e as FieldError {
                    throw IngestError(file: file, line: line.number, field: e.field, e.reason)
                }
                try store(result, file: file, line: line.number)
            }
        }
        try updateParts()
        return report
    }

    private func store(_ r: BatchResultLine, file: String, line: Int) throws {
        let hash = r.contentHash
        if let first = seenHere[r.customID] {
            report.duplicates += 1
            if report.duplicateLines.count < 100 {
                report.duplicateLines.append("\(file):\(line): \(r.customID)" + (first.1 == "\(hash)" ? " (same content)" : " (different content)"))
            }
            return
        }
        guard let request = requests[r.customID] else {
            report.unknown += 1
            if report.unknownIDs.count < 100 { report.unknownIDs.append("\(file):\(line): \(r.customID)") }
            return
        }
        seenHere[r.customID] = (request.id, "\(hash)")
        switch r.type {
        case "succeeded": report.succeeded += 1
        case "canceled": report.canceled += 1
        case "expired": report.expired += 1
        default: report.errored += 1
        }
        if let old = existing[request.id] {
            if old.hash == hash { report.unchanged += 1; return }
            if old.type == "succeeded" && r.type != "succeeded" { report.keptSuccesses += 1; return }
            let call = try writeCall(r, request: request, replacing: old.call)
            try db.execute(sql: """
                UPDATE batch_results SET result_type = ?, status_code = ?, body = ?, error_code = ?, error_message = ?,
                    source_file = ?, source_line = ?, created_at = ?, llm_call_id = ?, content_hash = ? WHERE id = ?
                """, arguments: [r.type, r.statusCode, r.body?.jsonText, r.errorCode, Secrets.mask(r.errorMessage), file, line, now, call, hash, old.id])
            existing[request.id] = (old.id, hash, r.type, call)
            report.updated += 1
        } else {
            let call = try writeCall(r, request: request, replacing: nil)
            try db.execute(sql: """
                INSERT INTO batch_results(request_id, result_type, status_code, body, error_code, error_message, source_file,
                    source_line, created_at, llm_call_id, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [request.id, r.type, r.statusCode, r.body?.jsonText, r.errorCode, Secrets.mask(r.errorMessage), file, line, now, call, hash])
            existing[request.id] = (db.lastInsertedRowID, hash, r.type, call)
            report.inserted += 1
        }
    }

    /// The `llm_calls` row for a result (role 'batch'), with its tokens and the sha256 of the
    /// request body.
    private func writeCall(_ r: BatchResultLine, request: Request, replacing: Int64?) throws -> Int64 {
        let body = try String.fetchOne(db, sql: "SELECT body FROM batch_requests WHERE id = ?", arguments: [request.id]) ?? ""
        let error: String? = r.type == "succeeded" ? nil : [r.errorCode, r.errorMessage].compactMap { $0 }.joined(separator: ": ")
        let args: StatementArguments = [r.model ?? request.model ?? "?", r.provider.rawValue, r.statusCode,
                                        r.usage.promptTokens, r.usage.completionTokens, r.usage.reasoningTokens, r.usage.cachedTokens,
                                        r.finishReason, Secrets.mask(error), Hashing.sha256Hex(body), now]
        if let replacing {
            try db.execute(sql: """
                UPDATE llm_calls SET model = ?, provider = ?, http_status = ?, prompt_tokens = ?, completion_tokens = ?,
                    reasoning_tokens = ?, cached_tokens = ?, finish_reason = ?, error = ?, request_hash = ?, created_at = ? WHERE id = ?
                """, arguments: args + [replacing])
            if db.changesCount > 0 { return replacing }
        }
        try db.execute(sql: """
            INSERT INTO llm_calls(role, model, provider, attempt, http_status, prompt_tokens, completion_tokens, reasoning_tokens,
                cached_tokens, finish_reason, error, request_hash, created_at)
            VALUES ('batch', ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: args)
        return db.lastInsertedRowID
    }

    /// request_counts from the stored results; a part that was never submitted (run locally)
    /// is completed once every request has a result.
    private func updateParts() throws {
        let parts = try Row.fetchAll(db, sql: """
            SELECT b.id, b.status, count(q.id) AS total,
                   sum(r.result_type = 'succeeded') AS ok, sum(r.id IS NOT NULL AND r.result_type <> 'succeeded') AS failed,
                   sum(r.id IS NULL) AS missing
            FROM batches b JOIN batch_requests q ON q.batch_id = b.id LEFT JOIN batch_results r ON r.request_id = q.id
            WHERE b.name = ? GROUP BY b.id
            """, arguments: [batch])
        report.missing = 0
        for p in parts {
            let missing: Int = p["missing"] ?? 0
            report.missing += missing
            let counts: JSONValue = .object(["total": JSONValue(p["total"] as Int? ?? 0), "completed": JSONValue(p["ok"] as Int? ?? 0),
                                             "failed": JSONValue(p["failed"] as Int? ?? 0)])
            let status: String = p["status"]
            let newStatus = status == "created" && missing == 0 ? "completed" : status
            try db.execute(sql: """
                UPDATE batches SET request_counts = ?, status = ?, updated_at = ?,
                    ended_at = CASE WHEN ? <> status AND ended_at IS NULL THEN ? ELSE ended_at END WHERE id = ?
                """, arguments: [counts.jsonText, newStatus, now, newStatus, now, p["id"] as Int64])
        }
    }
}
