import Foundation
import NIOHTTP1
import Synchronization

/// How the mock server's Batch APIs behave.
public struct MockBatchConfiguration: Sendable {
    /// How a batch ends once it has run.
    public enum Outcome: String, Sendable, CaseIterable {
        /// Every request answered (OpenAI `completed`, Anthropic `ended`).
        case completed
        /// The window runs out half way: the rest are `batch_expired` (OpenAI, `response: null`)
        /// or `expired` results (Anthropic).
        case expired
        /// OpenAI only: the batch fails after validation (`failed`, with an error).
        case failed
    }

    /// Status requests a batch waits in each state before it moves on.
    public var pollsPerStage = 1
    /// Share of requests answered with an error line (HTTP 400 body in OpenAI's error file,
    /// `errored` for Anthropic).
    public var errorRate = 0.0
    /// Share of requests answered with `response: null` and an `error` (OpenAI).
    public var nullRate = 0.0
    public var outcome = Outcome.completed

    public init(pollsPerStage: Int = 1, errorRate: Double = 0, nullRate: Double = 0, outcome: Outcome = .completed) {
        self.pollsPerStage = pollsPerStage
        self.errorRate = errorRate
        self.nullRate = nullRate
        self.outcome = outcome
    }
}

/// The OpenAI Files + Batches API and the Anthropic Message Batches API, in memory, answered
/// by the mock model. A batch moves one step per status request (after `pollsPerStage`):
/// OpenAI validating → in_progress → finalizing → completed (or failed / expired; cancel:
/// cancelling → cancelled), Anthropic in_progress → ended (cancel: canceling → ended).
/// Output lines come in an order other than the input's, as the real APIs allow.
final class MockBatchService: Sendable {
    struct File: Sendable { var id: String; var filename: String; var purpose: String; var bytes: [UInt8]; var created: Int }
    struct OpenAIBatch: Sendable {
        var id: String
        var inputFileID: String
        var endpoint: String
        var window: String
        var status = "validating"
        var polls = 0
        var created: Int
        var times: [String: Int] = [:]
        var outputFileID: String?
        var errorFileID: String?
        var errors: JSONValue = .null
        var total = 0, completed = 0, failed = 0
        var metadata: JSONValue = .null
        var lines: [(String, [UInt8])] = []
    }
    struct AnthropicBatch: Sendable {
        var id: String
        var requests: [(String, JSONValue)]
        var status = "in_progress"
        var polls = 0
        var created: Int
        var ended: Int?
        var cancelInitiated: Int?
        var results: [UInt8]?
        var succeeded = 0, errored = 0, canceled = 0, expired = 0
    }
    struct State: Sendable {
        var files: [String: File] = [:]
        var openAI: [String: OpenAIBatch] = [:]
        var openAIOrder: [String] = []
        var anthropic: [String: AnthropicBatch] = [:]
        var anthropicOrder: [String] = []
        var counter = 0
    }

    let configuration: MockBatchConfiguration
    private let state = Mutex(State())

    init(configuration: MockBatchConfiguration) { self.configuration = configuration }

    struct Reply { var status: HTTPResponseStatus; var contentType = "application/json"; var body: [UInt8] }

    static func json(_ v: JSONValue, _ status: HTTPResponseStatus = .ok) -> Reply { Reply(status: status, body: Array(v.jsonText.utf8)) }

    static func openAIError(_ status: HTTPResponseStatus, _ message: String, code: String? = nil) -> Reply {
        json(.object(["error": .object(["message": .string(message), "type": "invalid_request_error",
                                        "param": .null, "code": code.map(JSONValue.string) ?? .null])]), status)
    }

    static func anthropicError(_ status: HTTPResponseStatus, _ message: String, type: String = "invalid_request_error") -> Reply {
        json(.object(["type": "error", "error": .object(["type": .string(type), "message": .string(message)])]), status)
    }

    /// Answers a Files or Batches request; nil for any other route.
    func handle(method: HTTPMethod, path rawPath: String, headers: HTTPHeaders, body: [UInt8], server: MockServer) -> Reply? {
        var path = rawPath
        if path.hasPrefix("/v1/") { path = String(path.dropFirst(3)) }
        let parts = path.split(separator: "/").map(String.init)
        let host = headers.first(name: "host") ?? "127.0.0.1:\(server.port)"
        switch (method, parts.first) {
        case (_, "files"?):
            return files(method, Array(parts.dropFirst()), headers: headers, body: body)
        case (_, "batches"?):
            return openAIBatches(method, Array(parts.dropFirst()), body: body, server: server)
        case (_, "messages"?) where parts.count >= 2 && parts[1] == "batches":
            return anthropicBatches(method, Array(parts.dropFirst(2)), body: body, server: server, host: host)
        default:
            return nil
        }
    }

    private func now() -> Int { Int(Date().timeIntervalSince1970) }

    private func newID(_ prefix: String) -> String {
        state.withLock { s in
            s.counter += 1
            return "\(prefix)\(String(format: "%012x", s.counter * 7919 + 0xabc))"
        }
    }

    /// A reproducible draw in 0..<1 for a custom id.
    private func draw(_ id: String, salt: String) -> Double {
        Double(UInt64(bitPattern: Hashing.contentHash(salt + id)) >> 11) / Double(1 << 53)
    }

    // MARK: - Files

    private func fileJSON(_ f: File) -> JSONValue {
        .object(["id": .string(f.id), "object": "file", "bytes": JSONValue(f.bytes.count), "created_at": JSONValue(f.created),
                 "filename": .string(f.filename), "purpose": .string(f.purpose), "status": "processed"])
    }

    private func files(_ method: HTTPMethod, _ rest: [String], headers: HTTPHeaders, body: [UInt8]) -> Reply {
        switch (method, rest.count) {
        case (.POST, 0):
            guard let type = headers.first(name: "content-type"), type.lowercased().hasPrefix("multipart/form-data"),
                  let boundary = type.components(separatedBy: "boundary=").last?.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")),
                  !boundary.isEmpty else {
                return Self.openAIError(.badRequest, "expected multipart/form-data with a boundary")
            }
            let form = Multipart.parse(body, boundary: boundary)
            guard let purpose = form.first(where: { $0.name == "purpose" }).map({ String(decoding: $0.data, as: UTF8.self) }) else {
                return Self.openAIError(.badRequest, "missing purpose")
            }
            guard purpose == "batch" else { return Self.openAIError(.badRequest, "purpose must be batch (mock)") }
            guard let file = form.first(where: { $0.name == "file" }) else { return Self.openAIError(.badRequest, "missing file") }
            let f = File(id: newID("file-"), filename: file.filename ?? "upload.jsonl", purpose: purpose, bytes: file.data, created: now())
            state.withLock { $0.files[f.id] = f }
            return Self.json(fileJSON(f))
        case (.GET, 1):
            guard let f = state.withLock({ $0.files[rest[0]] }) else { return Self.openAIError(.notFound, "No such File object: \(rest[0])") }
            return Self.json(fileJSON(f))
        case (.GET, 2) where rest[1] == "content":
            guard let f = state.withLock({ $0.files[rest[0]] }) else { return Self.openAIError(.notFound, "No such File object: \(rest[0])") }
            return Reply(status: .ok, contentType: "application/octet-stream", body: f.bytes)
        case (.DELETE, 1):
            let removed = state.withLock { $0.files.removeValue(forKey: rest[0]) != nil }
            return removed ? Self.json(.object(["id": .string(rest[0]), "object": "file", "deleted": true]))
                : Self.openAIError(.notFound, "No such File object: \(rest[0])")
        default:
            return Self.openAIError(.notFound, "no route \(method) /v1/files/\(rest.joined(separator: "/"))")
        }
    }

    // MARK: - OpenAI batches

    private func batchJSON(_ b: OpenAIBatch) -> JSONValue {
        var o: JSONObject = ["id": .string(b.id), "object": "batch", "endpoint": .string(b.endpoint), "errors": b.errors,
                             "input_file_id": .string(b.inputFileID), "completion_window": .string(b.window), "status": .string(b.status),
                             "output_file_id": b.outputFileID.map(JSONValue.string) ?? .null,
                             "error_file_id": b.errorFileID.map(JSONValue.string) ?? .null,
                             "created_at": JSONValue(b.created), "expires_at": JSONValue(b.created + 86_400)]
        for key in ["in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at"] {
            o[key] = b.times[key].map { JSONValue($0) } ?? .null
        }
        o["request_counts"] = .object(["total": JSONValue(b.total), "completed": JSONValue(b.completed), "failed": JSONValue(b.failed)])
        o["metadata"] = b.metadata
        return .object(o)
    }

    private func openAIBatches(_ method: HTTPMethod, _ rest: [String], body: [UInt8], server: MockServer) -> Reply {
        switch (method, rest.count) {
        case (.POST, 0):
            guard case .success(let v) = body.withUnsafeBytes({ JSONParser.result($0) }), case .object = v else {
                return Self.openAIError(.badRequest, "request body is not a JSON object")
            }
            guard let fileID = v["input_file_id"]?.stringValue else { return Self.openAIError(.badRequest, "missing input_file_id") }
            guard state.withLock({ $0.files[fileID] }) != nil else { return Self.openAIError(.notFound, "No such File object: \(fileID)") }
            let endpoint = v["endpoint"]?.stringValue ?? ""
            guard ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"].contains(endpoint) else {
                return Self.openAIError(.badRequest, "Invalid 'endpoint': '\(endpoint)'. Expected /v1/chat/completions, /v1/completions, /v1/embeddings or /v1/responses.")
            }
            guard v["completion_window"]?.stringValue == "24h" else { return Self.openAIError(.badRequest, "completion_window must be 24h") }
            var b = OpenAIBatch(id: newID("batch_"), inputFileID: fileID, endpoint: endpoint, window: "24h", created: now())
            b.metadata = v["metadata"] ?? .null
            let reply = batchJSON(b)
            state.withLock { s in
                s.openAI[b.id] = b
                s.openAIOrder.append(b.id)
            }
            return Self.json(reply)
        case (.GET, 0):
            let list = state.withLock { s in s.openAIOrder.reversed().compactMap { s.openAI[$0] } }
            return Self.json(.object(["object": "list", "data": .array(list.map(batchJSON)), "has_more": false]))
        case (.GET, 1):
            guard let b = advance(rest[0], server: server) else { return Self.openAIError(.notFound, "No such Batch object: \(rest[0])") }
            return Self.json(batchJSON(b))
        case (.POST, 2) where rest[1] == "cancel":
            let result: OpenAIBatch? = state.withLock { s in
                guard var b = s.openAI[rest[0]] else { return nil }
                if ["validating", "in_progress", "finalizing"].contains(b.status) {
                    b.status = "cancelling"
                    b.times["cancelling_at"] = now()
                    b.polls = 0
                    s.openAI[b.id] = b
                }
                return b
            }
            guard let result else { return Self.openAIError(.notFound, "No such Batch object: \(rest[0])") }
            return Self.json(batchJSON(result))
        default:
            return Self.openAIError(.notFound, "no route \(method) /v1/batches/\(rest.joined(separator: "/"))")
        }
    }

    /// One status request: counts a poll and moves the batch on when it has waited enough.
    private func advance(_ id: String, server: MockServer) -> OpenAIBatch? {
        guard var b = state.withLock({ $0.openAI[id] }) else { return nil }
        b.polls += 1
        if b.polls >= configuration.pollsPerStage && !["completed", "failed", "expired", "cancelled"].contains(b.status) {
            b.polls = 0
            let t = now()
            switch b.status {
            case "validating":
                let file = state.withLock { $0.files[b.inputFileID] }
                switch validate(file?.bytes ?? [], endpoint: b.endpoint) {
                case .failure(let invalid):
                    b.status = "failed"
                    b.errors = .object(["object": "list", "data": .array(invalid.errors)])
                    b.times["failed_at"] = t
                case .success(let lines):
                    b.lines = lines
                    b.total = lines.count
                    if configuration.outcome == .failed {
                        b.status = "failed"
                        b.errors = .object(["object": "list", "data": .array([.object(["code": "mock_failure", "message": "The batch failed (mock-server --batch-outcome failed).",
                                                                                        "param": .null, "line": .null])])])
                        b.times["failed_at"] = t
                    } else {
                        b.status = "in_progress"
                        b.times["in_progress_at"] = t
                    }
                }
            case "in_progress":
                if configuration.outcome == .expired {
                    run(&b, server: server, answered: b.lines.count / 2, cutReason: "expired")
                    b.status = "expired"
                    b.times["expired_at"] = t
                } else {
                    b.status = "finalizing"
                    b.times["finalizing_at"] = t
                }
            case "finalizing":
                run(&b, server: server, answered: b.lines.count, cutReason: nil)
                b.status = "completed"
                b.times["completed_at"] = t
            case "cancelling":
                if b.lines.isEmpty, case .success(let lines) = validate(state.withLock({ $0.files[b.inputFileID] })?.bytes ?? [], endpoint: b.endpoint) {
                    b.lines = lines
                    b.total = lines.count
                }
                run(&b, server: server, answered: b.lines.count / 2, cutReason: "cancelled")
                b.status = "cancelled"
                b.times["cancelled_at"] = t
            default:
                break
            }
        }
        let snapshot = b
        state.withLock { $0.openAI[id] = snapshot }
        return b
    }

    /// Checks an input file as OpenAI does before running it: one JSON object a line with a
    /// unique `custom_id`, `method` POST, `url` equal to the batch's endpoint, an object `body`.
    struct InvalidFile: Error { var errors: [JSONValue] }

    func validate(_ bytes: [UInt8], endpoint: String) -> Result<[(String, [UInt8])], InvalidFile> {
        var errors: [JSONValue] = []
        var lines: [(String, [UInt8])] = []
        var seen = Set<String>()
        func fail(_ line: Int, _ code: String, _ message: String, param: String? = nil) {
            if errors.count < 20 {
                errors.append(.object(["code": .string(code), "message": .string(message), "param": param.map(JSONValue.string) ?? .null,
                                       "line": JSONValue(line)]))
            }
        }
        var n = 0
        for raw in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            n += 1
            let line = raw.last == 0x0D ? raw.dropLast() : raw
            if line.isEmpty { continue }
            guard case .success(let v) = Array(line).withUnsafeBytes({ JSONParser.result($0) }), case .object = v else {
                fail(n, "invalid_json_line", "This line is not parseable as valid JSON."); continue
            }
            guard let id = v["custom_id"]?.stringValue, !id.isEmpty else { fail(n, "missing_required_parameter", "Missing custom_id.", param: "custom_id"); continue }
            guard seen.insert(id).inserted else { fail(n, "duplicate_custom_id", "The custom_id for this request is a duplicate of another request.", param: "custom_id"); continue }
            guard v["method"]?.stringValue == "POST" else { fail(n, "invalid_method", "Only POST is supported.", param: "method"); continue }
            guard v["url"]?.stringValue == endpoint else {
                fail(n, "mismatched_endpoint", "The provided url '\(v["url"]?.stringValue ?? "")' does not match the batch endpoint '\(endpoint)'.", param: "url"); continue
            }
            guard case .object = v["body"] ?? .null, v["body"]?["model"]?.stringValue != nil else {
                fail(n, "invalid_request", "The request body must be an object with a model.", param: "body"); continue
            }
            lines.append((id, Array(v["body"]!.jsonText.utf8)))
        }
        if lines.isEmpty && errors.isEmpty { fail(1, "empty_file", "The input file is empty.") }
        return errors.isEmpty ? .success(lines) : .failure(InvalidFile(errors: errors))
    }

    /// Answers the first `answered` requests with the mock model, writes the output and error
    /// files; the rest get `response: null` with `batch_<cutReason>` when cut, else nothing.
    private func run(_ b: inout OpenAIBatch, server: MockServer, answered: Int, cutReason: String?) {
        var output: [(String, String)] = []
        var errors: [(String, String)] = []
        for (i, (id, body)) in b.lines.enumerated() {
            let requestID = "batch_req_\(String(format: "%08x", i))\(b.id.suffix(6))"
            if i >= answered {
                guard cutReason == "expired" else { continue }
                let line: JSONValue = .object(["id": .string(requestID), "custom_id": .string(id), "response": nil,
                                               "error": .object(["code": "batch_expired", "message": "This request could not be executed before the completion window expired."])])
                errors.append((id, line.jsonText))
                continue
            }
            let r = draw(id, salt: b.id)
            if r < configuration.nullRate {
                let line: JSONValue = .object(["id": .string(requestID), "custom_id": .string(id), "response": nil,
                                               "error": .object(["code": "server_error", "message": "The request could not be processed (mock)."])])
                errors.append((id, line.jsonText))
                continue
            }
            let (status, answer): (Int, JSONValue)
            if r < configuration.nullRate + configuration.errorRate {
                status = 400
                answer = .object(["error": .object(["message": "Invalid request (mock error line).", "type": "invalid_request_error",
                                                    "param": .null, "code": .null])])
            } else {
                let reply = server.answer(path: "/v1/chat/completions", body: body)
                status = Int(reply.status.code)
                answer = (try? JSONParser.parse(reply.body)) ?? .null
            }
            let line: JSONValue = .object(["id": .string(requestID), "custom_id": .string(id),
                                           "response": .object(["status_code": JSONValue(status), "request_id": .string("req_\(requestID.suffix(14))"), "body": answer]),
                                           "error": nil])
            if status == 200 { output.append((id, line.jsonText)) } else { errors.append((id, line.jsonText)) }
        }
        b.completed = output.count
        b.failed = errors.count
        // Not in input order: sorted by a hash of the custom id.
        func file(_ lines: [(String, String)], _ name: String) -> String? {
            guard !lines.isEmpty else { return nil }
            let sorted = lines.sorted { Hashing.contentHash($0.0) < Hashing.contentHash($1.0) }
            let bytes = Array(sorted.map { $0.1 + "\n" }.joined().utf8)
            let f = File(id: newID("file-"), filename: name, purpose: "batch_output", bytes: bytes, created: now())
            state.withLock { $0.files[f.id] = f }
            return f.id
        }
        b.outputFileID = file(output, "\(b.id)_output.jsonl")
        b.errorFileID = file(errors, "\(b.id)_error.jsonl")
    }

    // MARK: - Anthropic message batches

    private func anthropicJSON(_ b: AnthropicBatch, host: String) -> JSONValue {
        let processing = b.status == "ended" ? 0 : b.requests.count
        return .object([
            "id": .string(b.id), "type": "message_batch", "processing_status": .string(b.status),
            "request_counts": .object(["processing": JSONValue(processing), "succeeded": JSONValue(b.succeeded), "errored": JSONValue(b.errored),
                                       "canceled": JSONValue(b.canceled), "expired": JSONValue(b.expired)]),
            "ended_at": b.ended.map { .string(Timestamp.format(Date(timeIntervalSince1970: Double($0)))) } ?? .null,
            "created_at": .string(Timestamp.format(Date(timeIntervalSince1970: Double(b.created)))),
            "expires_at": .string(Timestamp.format(Date(timeIntervalSince1970: Double(b.created + 86_400)))),
            "archived_at": .null,
            "cancel_initiated_at": b.cancelInitiated.map { .string(Timestamp.format(Date(timeIntervalSince1970: Double($0)))) } ?? .null,
            "results_url": b.results == nil ? .null : .string("http://\(host)/v1/messages/batches/\(b.id)/results"),
        ])
    }

    private func anthropicBatches(_ method: HTTPMethod, _ rest: [String], body: [UInt8], server: MockServer, host: String) -> Reply {
        switch (method, rest.count) {
        case (.POST, 0):
            guard case .success(let v) = body.withUnsafeBytes({ JSONParser.result($0) }), case .array(let list)? = v["requests"] else {
                return Self.anthropicError(.badRequest, "requests: expected a list of {custom_id, params}")
            }
            guard !list.isEmpty else { return Self.anthropicError(.badRequest, "requests: must not be empty") }
            var requests: [(String, JSONValue)] = []
            var seen = Set<String>()
            for (i, item) in list.enumerated() {
                guard let id = item["custom_id"]?.stringValue, BatchLine.isAnthropicSafe(id) else {
                    return Self.anthropicError(.badRequest, "requests.\(i).custom_id: must match ^[a-zA-Z0-9_-]{1,64}$")
                }
                guard seen.insert(id).inserted else { return Self.anthropicError(.badRequest, "requests.\(i).custom_id: duplicate custom_id \(id)") }
                guard let params = item["params"], params["model"]?.stringValue != nil, params["max_tokens"] != nil, params["messages"] != nil else {
                    return Self.anthropicError(.badRequest, "requests.\(i).params: model, max_tokens and messages are required")
                }
                requests.append((id, params))
            }
            let b = AnthropicBatch(id: newID("msgbatch_"), requests: requests, created: now())
            state.withLock { s in
                s.anthropic[b.id] = b
                s.anthropicOrder.append(b.id)
            }
            return Self.json(anthropicJSON(b, host: host))
        case (.GET, 0):
            let list = state.withLock { s in s.anthropicOrder.reversed().compactMap { s.anthropic[$0] } }
            return Self.json(.object(["data": .array(list.map { anthropicJSON($0, host: host) }), "has_more": false,
                                      "first_id": list.first.map { .string($0.id) } ?? .null, "last_id": list.last.map { .string($0.id) } ?? .null]))
        case (.GET, 1):
            guard let b = advanceAnthropic(rest[0], server: server) else { return Self.anthropicError(.notFound, "no message batch \(rest[0])", type: "not_found_error") }
            return Self.json(anthropicJSON(b, host: host))
        case (.GET, 2) where rest[1] == "results":
            guard let b = state.withLock({ $0.anthropic[rest[0]] }) else { return Self.anthropicError(.notFound, "no message batch \(rest[0])", type: "not_found_error") }
            guard let results = b.results else { return Self.anthropicError(.badRequest, "the batch has not ended; its results are not ready") }
            return Reply(status: .ok, contentType: "application/binary", body: results)
        case (.POST, 2) where rest[1] == "cancel":
            let b: AnthropicBatch? = state.withLock { s in
                guard var b = s.anthropic[rest[0]] else { return nil }
                if b.status == "in_progress" {
                    b.status = "canceling"
                    b.cancelInitiated = now()
                    b.polls = 0
                    s.anthropic[b.id] = b
                }
                return b
            }
            guard let b else { return Self.anthropicError(.notFound, "no message batch \(rest[0])", type: "not_found_error") }
            return Self.json(anthropicJSON(b, host: host))
        default:
            return Self.anthropicError(.notFound, "no route \(method) /v1/messages/batches/\(rest.joined(separator: "/"))", type: "not_found_error")
        }
    }

    private func advanceAnthropic(_ id: String, server: MockServer) -> AnthropicBatch? {
        guard var b = state.withLock({ $0.anthropic[id] }) else { return nil }
        b.polls += 1
        let due = b.status == "canceling" ? configuration.pollsPerStage : 2 * configuration.pollsPerStage
        if b.status != "ended" && b.polls >= due {
            let answered = (b.status == "canceling" || configuration.outcome == .expired) ? b.requests.count / 2 : b.requests.count
            let cut = b.status == "canceling" ? "canceled" : "expired"
            var lines: [(String, String)] = []
            for (i, (cid, params)) in b.requests.enumerated() {
                let result: JSONValue
                if i >= answered {
                    result = .object(["type": .string(cut)])
                    if cut == "canceled" { b.canceled += 1 } else { b.expired += 1 }
                } else if draw(cid, salt: b.id) < configuration.errorRate + configuration.nullRate {
                    result = .object(["type": "errored", "error": .object(["type": "error", "error": .object(["type": "invalid_request_error",
                                                                                                             "message": "Invalid request (mock error line)."])])])
                    b.errored += 1
                } else {
                    let reply = server.answer(path: "/v1/messages", body: Array(params.jsonText.utf8))
                    let body = (try? JSONParser.parse(reply.body)) ?? .null
                    if reply.status == .ok {
                        result = .object(["type": "succeeded", "message": body])
                        b.succeeded += 1
                    } else {
                        result = .object(["type": "errored", "error": body])
                        b.errored += 1
                    }
                }
                lines.append((cid, JSONValue.object(["custom_id": .string(cid), "result": result]).jsonText))
            }
            let sorted = lines.sorted { Hashing.contentHash($0.0) < Hashing.contentHash($1.0) }
            b.results = Array(sorted.map { $0.1 + "\n" }.joined().utf8)
            b.status = "ended"
            b.ended = now()
        }
        let snapshot = b
        state.withLock { $0.anthropic[id] = snapshot }
        return b
    }
}

/// multipart/form-data, as far as file uploads need it.
enum Multipart {
    struct Part { var name: String; var filename: String?; var data: [UInt8] }

    static func parse(_ body: [UInt8], boundary: String) -> [Part] {
        let delimiter = Array(("--" + boundary).utf8)
        var parts: [Part] = []
        var positions: [Int] = []
        var i = 0
        while i + delimiter.count <= body.count {
            if body[i] == delimiter[0] && body[i..<(i + delimiter.count)].elementsEqual(delimiter) {
                positions.append(i)
                i += delimiter.count
            } else { i += 1 }
        }
        for (n, start) in positions.enumerated() where n + 1 < positions.count {
            var s = start + delimiter.count
            if s + 1 < body.count && body[s] == 0x0D && body[s + 1] == 0x0A { s += 2 }
            var e = positions[n + 1]
            if e >= 2 && body[e - 2] == 0x0D && body[e - 1] == 0x0A { e -= 2 }
            guard s < e else { continue }
            let chunk = Array(body[s..<e])
            guard let split = find([0x0D, 0x0A, 0x0D, 0x0A], in: chunk) else { continue }
            let head = String(decoding: chunk[0..<split], as: UTF8.self)
            let data = Array(chunk[(split + 4)...])
            var name = "", filename: String?
            for line in head.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition") {
                for piece in line.components(separatedBy: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                    if piece.hasPrefix("name=") { name = piece.dropFirst(5).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
                    if piece.hasPrefix("filename=") { filename = piece.dropFirst(9).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
                }
            }
            parts.append(Part(name: name, filename: filename, data: data))
        }
        return parts
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }
}
