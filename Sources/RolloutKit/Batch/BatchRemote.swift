import AsyncHTTPClient
import Foundation
import GRDB
import NIOCore
import NIOHTTP1

/// Where a provider's Files and Batches endpoints are. `apiKey` is the expanded secret; it lives
/// only in memory.
public struct BatchEndpoint: Sendable {
    public var provider: BatchProvider
    /// OpenAI: `https://api.openai.com/v1` (with /v1); Anthropic: `https://api.anthropic.com`.
    public var apiBase: String
    public var apiKey: String? { didSet { Secrets.register(apiKey) } }
    public var anthropicVersion = "2023-06-01"

    public init(provider: BatchProvider, apiBase: String, apiKey: String?) {
        self.provider = provider
        self.apiBase = apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase
        self.apiKey = apiKey
        Secrets.register(apiKey); Secrets.register(self.apiBase)
    }

    /// The provider's public endpoint with the key from the usual variable.
    public static func standard(_ provider: BatchProvider, environment: [String: String] = ProcessInfo.processInfo.environment) -> BatchEndpoint {
        switch provider {
        case .openai: BatchEndpoint(provider: .openai, apiBase: "https://api.openai.com/v1", apiKey: environment["OPENAI_API_KEY"])
        case .anthropic: BatchEndpoint(provider: .anthropic, apiBase: "https://api.anthropic.com", apiKey: environment["ANTHROPIC_API_KEY"])
        }
    }

    func url(_ path: String) -> String {
        switch provider {
        case .openai: apiBase + path
        case .anthropic: apiBase + (apiBase.hasSuffix("/v1") ? "" : "/v1") + path
        }
    }

    var headers: [(String, String)] {
        switch provider {
        case .openai: apiKey.map { $0.isEmpty ? [] : [("Authorization", "Bearer \($0)")] } ?? []
        case .anthropic: (apiKey.map { [("x-api-key", $0)] } ?? []) + [("anthropic-version", anthropicVersion)]
        }
    }
}

/// One part's state as `rollout batch status` prints it.
public struct BatchPartStatus: Sendable, Codable {
    public var name: String
    public var part: Int
    public var provider: String
    public var status: String
    public var remoteID: String?
    public var requests: Int
    public var completed: Int?
    public var failed: Int?
    public var outputFile: String?
    public var errorFile: String?
    public var message: String?
}

/// The provider's Batch API over HTTP: submit, poll, fetch, cancel. Every state it learns is
/// written to the part's `batches` row at once (one transaction per part), so an interrupted
/// command loses nothing it already did.
public final class BatchClient: Sendable {
    let http: HTTPClient
    let warehouse: Warehouse
    /// Per request: the whole-request timeout, the default read timeout, and a body cap that
    /// fits a batch's result file (held in memory before it is written).
    let limits: ResponseLimits

    public init(warehouse: Warehouse, timeoutSeconds: Int64 = 600) {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10))
        configuration.decompression = .enabled(limit: .ratio(50))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.warehouse = warehouse
        limits = ResponseLimits(maxBody: 1 << 31, readTimeout: RetryPolicy.defaultReadTimeout, requestTimeout: Double(timeoutSeconds))
    }

    public func shutdown() async throws { try await http.shutdown() }

    struct Part: Sendable {
        var id: Int64
        var part: Int
        var provider: BatchProvider
        var status: String
        var remoteID: String?
        var inputFile: String?
        var outputFileID: String?
        var errorFileID: String?
        var requests: Int
    }

    func parts(_ name: String) throws -> [Part] {
        let rows = try warehouse.writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, part, provider, status, remote_id, input_file, output_file_id, error_file_id, requests FROM batches WHERE name = ? ORDER BY part
                """, arguments: [name]).map {
                    Part(id: $0["id"], part: $0["part"], provider: BatchProvider(rawValue: $0["provider"]) ?? .openai, status: $0["status"],
                         remoteID: $0["remote_id"], inputFile: $0["input_file"], outputFileID: $0["output_file_id"],
                         errorFileID: $0["error_file_id"], requests: $0["requests"])
                }
        }
        guard !rows.isEmpty else { throw BatchError("no batch named \(name) (see: rollout batch list)") }
        return rows
    }

    // MARK: - HTTP

    struct Response { var status: Int; var body: [UInt8] }

    func send(_ method: HTTPMethod, _ url: String, endpoint: BatchEndpoint, body: [UInt8]? = nil, contentType: String = "application/json",
              retry: Bool) async throws -> Response {
        var attempt = 0
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: url)
            request.method = method
            for (k, v) in endpoint.headers { request.headers.add(name: k, value: v) }
            if body != nil {
                request.headers.add(name: "Content-Type", value: contentType)
            }
            do {
                let response = try await limits.fetch(request, body: body, on: http, host: ResponseLimits.authority(of: url))
                let bytes = response.body
                let status = response.status
                if retry, attempt < 5, status == 429 || status >= 500 {
                    try await Task.sleep(for: .milliseconds(500 << (attempt - 1)))
                    continue
                }
                return Response(status: status, body: bytes)
            } catch let e as CancellationError {
                throw e
            } catch {
                if retry, attempt < 5 {
                    try await Task.sleep(for: .milliseconds(500 << (attempt - 1)))
                    continue
                }
                throw BatchError("\(method) \(url): no response: \((error as? LLMError)?.message ?? ResponseLimits.describe(error))")
            }
        }
    }

    /// The JSON of a 2xx answer, else the provider's error message.
    func json(_ r: Response, _ what: String) throws -> JSONValue {
        let value = try? JSONParser.parse(r.body)
        guard (200..<300).contains(r.status), let value else {
            let message = value?["error"]?["message"]?.stringValue ?? String(decoding: r.body.prefix(300), as: UTF8.self)
            throw BatchError("\(what): HTTP \(r.status): \(LLMError(.apiError, message: message).message)")
        }
        return value
    }

    // MARK: - Submit

    /// Uploads and starts every part not yet submitted (a part already submitted is left alone).
    public func submit(_ name: String, endpoint: BatchEndpoint, metadata: [String: String] = [:]) async throws -> [BatchPartStatus] {
        for p in try parts(name) where p.remoteID == nil {
            guard p.provider == endpoint.provider else {
                throw BatchError("batch \(name) was written for \(p.provider.rawValue), not \(endpoint.provider.rawValue)")
            }
            guard let path = p.inputFile, let data = FileManager.default.contents(atPath: path) else {
                throw BatchError("batch \(name) part \(p.part): cannot read its request file \(p.inputFile ?? "?") (recreate it with rollout batch create)")
            }
            let now = Timestamp.now()
            switch p.provider {
            case .openai:
                let boundary = "rollout-\(UUID().uuidString)"
                var form = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n".utf8)
                form += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(URL(fileURLWithPath: path).lastPathComponent)\"\r\nContent-Type: application/jsonl\r\n\r\n".utf8)
                form += [UInt8](data)
                form += Array("\r\n--\(boundary)--\r\n".utf8)
                let file = try json(try await send(.POST, endpoint.url("/files"), endpoint: endpoint, body: form,
                                                   contentType: "multipart/form-data; boundary=\(boundary)", retry: true), "upload \(path)")
                guard let fileID = file["id"]?.stringValue else { throw BatchError("upload \(path): the answer has no file id") }
                var meta = JSONObject(pairs: metadata.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string($0.value)) })
                meta["rollout_batch"] = .string("\(name)#\(p.part)")
                let create: JSONValue = .object(["input_file_id": .string(fileID), "endpoint": .string(BatchProvider.openai.endpoint),
                                                 "completion_window": "24h", "metadata": .object(meta)])
                let batch = try json(try await send(.POST, endpoint.url("/batches"), endpoint: endpoint, body: Array(create.jsonText.utf8),
                                                    retry: false), "create batch \(name) part \(p.part)")
                guard let id = batch["id"]?.stringValue else { throw BatchError("create batch: the answer has no id") }
                try record(p, batch: batch, provider: .openai, extra: ["remote_id": id, "input_file_id": fileID, "api_base": endpoint.apiBase, "submitted_at": now])
            case .anthropic:
                var requests: [JSONValue] = []
                for line in data.split(separator: 0x0A) where !line.isEmpty {
                    requests.append(try JSONParser.parse([UInt8](line)))
                }
                let body = Array(JSONValue.object(["requests": .array(requests)]).jsonText.utf8)
                let batch = try json(try await send(.POST, endpoint.url("/messages/batches"), endpoint: endpoint, body: body, retry: false),
                                     "create message batch \(name) part \(p.part)")
                guard let id = batch["id"]?.stringValue else { throw BatchError("create message batch: the answer has no id") }
                try record(p, batch: batch, provider: .anthropic, extra: ["remote_id": id, "api_base": endpoint.apiBase, "submitted_at": now])
            }
        }
        return try statusRows(name)
    }

    /// Writes what a batch object says into the part's row.
    func record(_ p: Part, batch: JSONValue, provider: BatchProvider, extra: [String: String] = [:]) throws {
        let status: String
        var counts: JSONValue?
        var ended: String?
        var outputID: String?, errorID: String?
        switch provider {
        case .openai:
            status = batch["status"]?.stringValue ?? "validating"
            counts = batch["request_counts"]
            outputID = batch["output_file_id"]?.stringValue
            errorID = batch["error_file_id"]?.stringValue
            for key in ["completed_at", "failed_at", "expired_at", "cancelled_at"] {
                if let t = batch[key]?.intValue { ended = Timestamp.format(Date(timeIntervalSince1970: Double(t))) }
            }
        case .anthropic:
            switch batch["processing_status"]?.stringValue {
            case "ended"?: status = "ended"
            case "canceling"?: status = "cancelling"
            default: status = "in_progress"
            }
            if let c = batch["request_counts"] {
                let ok = c["succeeded"]?.intValue ?? 0
                let bad = (c["errored"]?.intValue ?? 0) + (c["canceled"]?.intValue ?? 0) + (c["expired"]?.intValue ?? 0)
                counts = .object(["total": JSONValue(ok + bad + (c["processing"]?.intValue ?? 0)), "completed": JSONValue(ok),
                                  "failed": JSONValue(bad), "anthropic": c])
            }
            ended = batch["ended_at"]?.stringValue
            outputID = batch["results_url"]?.stringValue
        }
        let errors = batch["errors"].flatMap { $0.isNull ? nil : $0.jsonText }
        try warehouse.writer.write { db in
            try db.execute(sql: """
                UPDATE batches SET status = ?, request_counts = coalesce(?, request_counts), output_file_id = coalesce(?, output_file_id),
                    error_file_id = coalesce(?, error_file_id), errors = coalesce(?, errors), ended_at = coalesce(?, ended_at),
                    remote_id = coalesce(?, remote_id), input_file_id = coalesce(?, input_file_id), api_base = coalesce(?, api_base),
                    submitted_at = coalesce(?, submitted_at), updated_at = ? WHERE id = ?
                """, arguments: [status, counts?.jsonText, outputID, errorID, errors, ended, extra["remote_id"], extra["input_file_id"],
                                 extra["api_base"], extra["submitted_at"], Timestamp.now(), p.id])
        }
    }

    // MARK: - Status

    static let terminal: Set<String> = ["completed", "failed", "expired", "cancelled", "ended"]

    /// Asks the provider about every submitted part that has not ended, records the answers,
    /// and returns every part's state.
    public func refresh(_ name: String, endpoint: BatchEndpoint) async throws -> [BatchPartStatus] {
        for p in try parts(name) where p.remoteID != nil && !Self.terminal.contains(p.status) {
            let path = p.provider == .openai ? "/batches/\(p.remoteID!)" : "/messages/batches/\(p.remoteID!)"
            let batch = try json(try await send(.GET, endpoint.url(path), endpoint: endpoint, retry: true), "status of \(name) part \(p.part)")
            try record(p, batch: batch, provider: p.provider)
        }
        return try statusRows(name)
    }

    /// Polls until every part has ended (or `deadline` passes).
    public func wait(_ name: String, endpoint: BatchEndpoint, interval: Duration, deadline: Duration? = nil,
                     onPoll: @Sendable ([BatchPartStatus]) -> Void = { _ in }) async throws -> [BatchPartStatus] {
        let start = ContinuousClock.now
        while true {
            let rows = try await refresh(name, endpoint: endpoint)
            onPoll(rows)
            if rows.allSatisfy({ Self.terminal.contains($0.status) || $0.remoteID == nil }) { return rows }
            if let deadline, ContinuousClock.now - start > deadline { return rows }
            try await Task.sleep(for: interval)
        }
    }

    public func statusRows(_ name: String) throws -> [BatchPartStatus] {
        try warehouse.writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT name, part, provider, status, remote_id, requests, request_counts, output_file, error_file, errors FROM batches WHERE name = ? ORDER BY part
                """, arguments: [name]).map { row in
                    let counts = (row["request_counts"] as String?).flatMap { try? JSONParser.parse($0) }
                    let errors = (row["errors"] as String?).flatMap { try? JSONParser.parse($0) }
                    let message = errors?["data"]?[0].flatMap { e in
                        [e["line"]?.intValue.map { "line \($0)" }, e["code"]?.stringValue, e["message"]?.stringValue].compactMap { $0 }.joined(separator: ": ")
                    }
                    return BatchPartStatus(name: row["name"], part: row["part"], provider: row["provider"], status: row["status"],
                                           remoteID: row["remote_id"], requests: row["requests"], completed: counts?["completed"]?.intValue,
                                           failed: counts?["failed"]?.intValue, outputFile: row["output_file"], errorFile: row["error_file"],
                                           message: message)
                }
        }
    }

    // MARK: - Fetch

    /// Downloads the output and error files of every part that has ended into `directory`
    /// (written whole, replacing an earlier download), records their paths, and ingests them.
    public func fetch(_ name: String, endpoint: BatchEndpoint, directory: String, ingest: Bool = true) async throws -> (files: [String], report: BatchIngestReport?) {
        var files: [String] = []
        for p in try parts(name) where Self.terminal.contains(p.status) && p.remoteID != nil {
            let stem = (directory as NSString).appendingPathComponent("\(SafeFileName.make(name)).part\(p.part)")
            var output: String?, errors: String?
            switch p.provider {
            case .openai:
                if let id = p.outputFileID {
                    output = stem + ".output.jsonl"
                    try await download(endpoint.url("/files/\(id)/content"), endpoint: endpoint, to: output!)
                }
                if let id = p.errorFileID {
                    errors = stem + ".errors.jsonl"
                    try await download(endpoint.url("/files/\(id)/content"), endpoint: endpoint, to: errors!)
                }
            case .anthropic:
                output = stem + ".results.jsonl"
                let url = p.outputFileID ?? endpoint.url("/messages/batches/\(p.remoteID!)/results")
                try await download(url, endpoint: endpoint, to: output!)
            }
            let (outputPath, errorsPath) = (output.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
                                            errors.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
            try await warehouse.writer.write { db in
                try db.execute(sql: "UPDATE batches SET output_file = coalesce(?, output_file), error_file = coalesce(?, error_file), updated_at = ? WHERE id = ?",
                               arguments: [outputPath, errorsPath, Timestamp.now(), p.id])
            }
            files += [output, errors].compactMap { $0 }
        }
        // A part's empty file (no lines) holds nothing to ingest, and ingest refuses empty files.
        let results = try files.filter { try RecordFiles.hasContent($0) }
        guard ingest, !results.isEmpty else { return (files, nil) }
        return (files, try warehouse.ingestBatchResults(files: results, batch: name))
    }

    func download(_ url: String, endpoint: BatchEndpoint, to path: String) async throws {
        let r = try await send(.GET, url, endpoint: endpoint, retry: true)
        guard (200..<300).contains(r.status) else { _ = try json(r, "download \(url)"); return }
        let file = try OutputFile(path: path)
        try file.write(bytes: r.body)
        try file.commit()
    }

    // MARK: - Cancel

    /// Asks the provider to cancel every part that has not ended.
    public func cancel(_ name: String, endpoint: BatchEndpoint) async throws -> [BatchPartStatus] {
        for p in try parts(name) where p.remoteID != nil && !Self.terminal.contains(p.status) {
            let path = p.provider == .openai ? "/batches/\(p.remoteID!)/cancel" : "/messages/batches/\(p.remoteID!)/cancel"
            let batch = try json(try await send(.POST, endpoint.url(path), endpoint: endpoint, body: Array("{}".utf8), retry: true),
                                 "cancel \(name) part \(p.part)")
            try record(p, batch: batch, provider: p.provider)
        }
        return try statusRows(name)
    }
}

/// One part of a batch, as stored.
public struct BatchPart: Sendable {
    public var name: String
    public var part: Int
    public var provider: String
    public var status: String
    public var apiBase: String?
    public var remoteID: String?
    public var inputFile: String?
    public var requests: Int
}

extension Warehouse {
    /// The parts of batch `name`, in order (none when there is no such batch).
    public func batchParts(_ name: String) throws -> [BatchPart] {
        try writer.read { db in
            try Row.fetchAll(db, sql: "SELECT name, part, provider, status, api_base, remote_id, input_file, requests FROM batches WHERE name = ? ORDER BY part",
                             arguments: [name]).map {
                BatchPart(name: $0["name"], part: $0["part"], provider: $0["provider"], status: $0["status"], apiBase: $0["api_base"],
                          remoteID: $0["remote_id"], inputFile: $0["input_file"], requests: $0["requests"])
            }
        }
    }
}
