import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// How `rollout batch run-local` runs a batch file.
public struct LocalRunOptions: Sendable {
    public var input: String
    /// Successful results, in the provider's output format. Default: INPUT without `.jsonl`
    /// plus `.output.jsonl`.
    public var output: String?
    /// Failed requests after every retry (OpenAI error-file lines). Default: `.errors.jsonl`.
    public var errors: String?
    /// The server's base URL: `http://host:8000/v1` for an OpenAI-compatible server,
    /// `http://host` for an Anthropic-compatible one.
    public var endpoint: String
    public var apiKey: String?
    public var concurrency = 64
    /// Replaces every body's `model` (a local server serves its own name).
    public var model: String?
    public var range: IDRange?
    public var policy = RetryPolicy()

    public init(input: String, endpoint: String) {
        self.input = input
        self.endpoint = endpoint
    }

    var stem: String { input.hasSuffix(".jsonl") ? String(input.dropLast(6)) : input }
    public var outputPath: String { output ?? stem + ".output.jsonl" }
    public var errorsPath: String { errors ?? stem + ".errors.jsonl" }
}

public struct LocalRunReport: Sendable, Codable {
    public var provider: String
    public var requests = 0
    /// Already in the output file from an earlier run (not sent again).
    public var alreadyDone = 0
    public var succeeded = 0
    public var failed = 0
    public var output: String
    public var errors: String
    public var seconds = 0.0

    public var summary: String {
        "run-local: \(requests) request(s) selected, \(alreadyDone) already done, \(succeeded) succeeded now, \(failed) failed"
            + String(format: " (%.1fs)", seconds) + "\n  output: \(output)" + (failed > 0 ? "\n  errors: \(errors) (run again to retry them)" : "")
    }
}

/// Runs a batch request file against a server of one's own, the local equivalent of a batch
/// job. Successes are appended to the output file as they arrive (one write per line, synced
/// now and then), so a run that is stopped resumes where it was: requests already in the
/// output are not sent again, a partial last line is cut off, and failures — kept out of the
/// output and written to the errors file at the end — are retried by the next run.
public enum LocalBatchRunner {
    struct Entry: Sendable { var id: String; var offset: Int; var length: Int }

    /// What the workers share.
    final class Shared: Sendable {
        let next = Atomic<Int>(0)
        let finished = Atomic<Int>(0)
        let succeeded = Atomic<Int>(0)
        let failures = Mutex<[(String, String)]>([])
        let writes = Mutex<Int>(0)
    }

    public static func run(_ o: LocalRunOptions, progress: (@Sendable (Int, Int) -> Void)? = nil) async throws -> LocalRunReport {
        let started = ContinuousClock.now
        let (provider, entries) = try index(o.input)
        var report = LocalRunReport(provider: provider.rawValue, output: o.outputPath, errors: o.errorsPath)
        let sorted = entries.sorted { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
        let selected = Array(o.range.map { $0.apply(sorted) } ?? sorted[...])
        report.requests = selected.count
        let ids = Set(entries.map(\.id))
        // Everything that could lose data is refused here, before a request is sent.
        try checkTargets(o)
        try checkExisting(o.errorsPath, option: "--errors", input: o.input, ids: ids)
        let done = try resume(o.outputPath, input: o.input, ids: ids)
        let todo = selected.filter { !done.contains($0.id) }
        report.alreadyDone = selected.count - todo.count

        // Checked above to be a regular file or nothing; O_NOFOLLOW keeps a link made since out.
        let fd = open(o.outputPath, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BatchError("cannot write \(o.outputPath): \(String(cString: strerror(errno)))") }
        defer { fsync(fd); close(fd) }
        let input = open(o.input, O_RDONLY)
        guard input >= 0 else { throw BatchError("cannot read \(o.input)") }
        defer { close(input) }

        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, o.concurrency))
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .milliseconds(Int64(o.policy.connectTimeout * 1000)))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let shared = Shared()
        let url = provider == .openai
            ? (o.endpoint.hasSuffix("/chat/completions") ? o.endpoint : o.endpoint.trimmingSuffix("/") + "/chat/completions")
            : (o.endpoint.hasSuffix("/messages") ? o.endpoint : o.endpoint.trimmingSuffix("/") + (o.endpoint.hasSuffix("/v1") ? "/messages" : "/v1/messages"))
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        Secrets.register(o.apiKey)
        if provider == .openai, let key = o.apiKey, !key.isEmpty { headers.append(("Authorization", "Bearer \(key)")) }
        if provider == .anthropic {
            if let key = o.apiKey { headers.append(("x-api-key", key)) }
            headers.append(("anthropic-version", "2023-06-01"))
        }
        let fixedHeaders = headers
        let total = todo.count
        let runError: (any Error)?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<max(1, min(o.concurrency, todo.count)) {
                    group.addTask {
                        while true {
                            try Task.checkCancellation()
                            let i = shared.next.add(1, ordering: .relaxed).oldValue
                            guard i < todo.count else { return }
                            let entry = todo[i]
                            let body = try requestBody(input: input, entry: entry, provider: provider, model: o.model)
                            let outcome = await send(http: http, url: url, headers: fixedHeaders, body: body, policy: o.policy)
                            let serial = String(format: "%08x", Int(Hashing.contentHash(entry.id) & 0xffff_ffff))
                            switch outcome {
                            case .success(let responseBody):
                                let line = resultLine(provider: provider, id: entry.id, serial: serial, status: 200, body: responseBody, error: nil)
                                var bytes = Array(line.utf8)
                                bytes.append(0x0A)
                                let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                                if written != bytes.count { throw BatchError("cannot append to \(o.outputPath): \(String(cString: strerror(errno)))") }
                                if shared.writes.withLock({ n in n += 1; return n % 256 == 0 }) { fsync(fd) }
                                shared.succeeded.add(1, ordering: .relaxed)
                            case .failure(let f):
                                shared.failures.withLock { $0.append((entry.id, resultLine(provider: provider, id: entry.id, serial: serial, status: f.status,
                                                                                     body: f.body.map { Secrets.mask(json: $0) }, error: Secrets.mask(f.message)))) }
                            }
                            let n = shared.finished.add(1, ordering: .relaxed).newValue
                            progress?(n, total)
                        }
                    }
                }
                try await group.waitForAll()
            }
            runError = nil
        } catch {
            runError = error
        }
        try? await http.shutdown()
        // The errors file holds this run's failures only: the ones retried successfully are gone.
        let failed = shared.failures.withLock { $0 }.sorted { $0.0 < $1.0 }
        if failed.isEmpty {
            // Checked before the run to be a regular file holding only this input's error lines.
            if (try? OutputTarget.check(o.errorsPath)) != nil { unlink(o.errorsPath) }
        } else {
            _ = try OutputFile.write(o.errorsPath, lines: failed.map(\.1))
        }
        report.succeeded = shared.succeeded.load(ordering: .relaxed)
        report.failed = failed.count
        report.seconds = started.secondsSince
        if let runError { throw runError }
        return report
    }

    /// Custom ids and where each line is; the provider from the lines' shape.
    static func index(_ path: String) throws -> (BatchProvider, [Entry]) {
        try RecordFiles.checkRegularFile(path)
        var provider: BatchProvider?
        var entries: [Entry] = []
        var seen = Set<String>()
        var offset = 0
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw BatchError("cannot read \(path)") }
        defer { close(fd) }
        try LineReader(path: path).forEachLine { line in
            let length = line.bytes.count
            // LineReader drops a "\r" before "\n": look at the byte after the line to step over it.
            var next: UInt8 = 0
            let stripped = pread(fd, &next, 1, off_t(offset + length)) == 1 && next == 0x0D
            defer { offset += length + (stripped ? 1 : 0) + 1 }
            if line.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { return }
            guard line.bytes.firstInvalidUTF8Offset() == nil else { throw IngestError(file: path, line: line.number, "not valid UTF-8") }
            let v: JSONValue
            switch JSONParser.result(line.bytes) {
            case .success(let x): v = x
            case .failure(let e): throw IngestError(file: path, line: line.number, e.description)
            }
            guard let id = v["custom_id"]?.scalarText, !id.isEmpty else { throw IngestError(file: path, line: line.number, field: "custom_id", "missing (required)") }
            let kind: BatchProvider
            if case .object? = v["params"] { kind = .anthropic } else if case .object? = v["body"] { kind = .openai } else {
                throw IngestError(file: path, line: line.number, field: "body", "missing: a request line is {custom_id, method, url, body} (OpenAI) or {custom_id, params} (Anthropic)")
            }
            if kind == .openai, let u = v["url"]?.stringValue, !u.hasSuffix("/chat/completions") {
                throw IngestError(file: path, line: line.number, field: "url", "\"\(u)\": run-local runs chat completions only (/v1/chat/completions)")
            }
            if let provider, provider != kind { throw IngestError(file: path, line: line.number, "mixes OpenAI and Anthropic request lines") }
            provider = kind
            guard seen.insert(id).inserted else { throw IngestError(file: path, line: line.number, field: "custom_id", "\"\(id)\" appears twice") }
            entries.append(Entry(id: id, offset: offset, length: length))
        }
        guard let provider else { throw IngestError(file: path, "empty file: no request lines") }
        return (provider, entries)
    }

    /// Refuses output and errors files that would lose data: the input itself, the two being
    /// one file (the errors file would replace the output), and anything that is not a regular
    /// file. Paths are compared as files (device and inode, so links and hard links count),
    /// or, for files not there yet, by their resolved folders.
    static func checkTargets(_ o: LocalRunOptions) throws {
        try OutputTarget.check(o.outputPath, option: "--output")
        try OutputTarget.check(o.errorsPath, option: "--errors")
        if sameFile(o.outputPath, o.input) {
            throw BatchError("--output \(o.outputPath) is the input file \(o.input); run-local appends results to its output, which would mix them into the requests: give another --output (the default is \(o.stem).output.jsonl)")
        }
        if sameFile(o.errorsPath, o.input) {
            throw BatchError("--errors \(o.errorsPath) is the input file \(o.input); the errors file is replaced at the end of every run: give another --errors (the default is \(o.stem).errors.jsonl)")
        }
        if sameFile(o.outputPath, o.errorsPath) {
            throw BatchError("--output and --errors name the same file (\(o.outputPath)); the errors file is replaced (or removed) at the end of the run, which would lose the results: give two different files")
        }
    }

    /// True when the two paths name one file: the same device and inode when both exist, else
    /// the same resolved path.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        if stat(a, &sa) == 0 && stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
        return resolved(a) == resolved(b)
    }

    /// The path with its folder's links resolved (the file itself need not exist).
    static func resolved(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if let real = realpath(url.path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        let dir = url.deletingLastPathComponent().path
        guard let real = realpath(dir, nil) else { return url.path }
        defer { free(real) }
        return (String(cString: real) as NSString).appendingPathComponent(url.lastPathComponent)
    }

    /// An existing output or errors file must hold run-local result lines of this input only:
    /// a JSON object per line whose `custom_id` is one of the input's requests. Anything else
    /// (notes, another batch's results) is refused rather than appended to or replaced. A last
    /// line cut short by an interrupted write is allowed when it starts as a result line does.
    static func checkExisting(_ path: String, option: String, input: String, ids: Set<String>) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        try LineReader(path: path).forEachLine { line in
            if line.bytes.isBlank { return }
            if !line.terminated && line.bytes.first == UInt8(ascii: "{") { return }
            func refuse(_ why: String) -> BatchError {
                BatchError("\(option) \(path) already exists and is not run-local output of \(input) (line \(line.number): \(why)); it was left as it is: give another \(option), or remove the file to start over")
            }
            guard case .success(let v) = JSONParser.result(line.bytes) else { throw refuse("not a JSON result line") }
            guard let id = v["custom_id"]?.scalarText else { throw refuse("no custom_id") }
            guard ids.contains(id) else { throw refuse("custom_id \"\(id)\" is not a request of the input") }
        }
    }

    /// The custom ids already in the output file (checked by `checkExisting` to be results of
    /// this input); a partial last line (an interrupted write) is cut off.
    static func resume(_ path: String, input: String, ids: Set<String>) throws -> Set<String> {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        try checkExisting(path, option: "--output", input: input, ids: ids)
        var done = Set<String>()
        var goodBytes = 0
        var offset = 0
        var cut = false
        try LineReader(path: path).forEachLine { line in
            let length = line.bytes.count
            defer { offset += length + 1 }
            guard line.terminated, case .success(let v) = JSONParser.result(line.bytes), let id = v["custom_id"]?.scalarText else {
                cut = true
                return
            }
            if cut { return }
            done.insert(id)
            goodBytes = offset + length + 1
        }
        if cut { truncate(path, off_t(goodBytes)) }
        return done
    }

    /// The body of one request, read back from the input file, with `model` replaced if asked.
    static func requestBody(input: Int32, entry: Entry, provider: BatchProvider, model: String?) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: entry.length)
        let n = bytes.withUnsafeMutableBytes { pread(input, $0.baseAddress, entry.length, off_t(entry.offset)) }
        guard n == entry.length else { throw BatchError("cannot read request \(entry.id) back from the input file") }
        if bytes.last == 0x0D { bytes.removeLast() }
        let v = try JSONParser.parse(bytes)
        guard case .object(var body)? = provider == .openai ? v["body"] : v["params"] else { throw BatchError("request \(entry.id) has no body") }
        if let model { body["model"] = .string(model) }
        body["stream"] = nil
        return Array(JSONValue.object(body).jsonText.utf8)
    }

    struct Failure: Error { var status: Int?; var body: JSONValue?; var message: String }

    /// One request with the retry policy of the model client: 408, 409, 429 and 5xx, dropped
    /// connections and broken 2xx bodies are retried with backoff; other answers are final.
    static func send(http: HTTPClient, url: String, headers: [(String, String)], body: [UInt8], policy: RetryPolicy) async -> Result<JSONValue, Failure> {
        var attempt = 0
        while true {
            attempt += 1
            var retryAfter: Double?
            let failure: Failure
            var retryable = false
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                for (k, v) in headers { request.headers.add(name: k, value: v) }
                let limits = ResponseLimits(maxBody: ResponseLimits.defaultMaxBody, readTimeout: policy.readTimeout,
                                            requestTimeout: policy.requestTimeout)
                let response = try await limits.fetch(request, body: body, on: http, host: ResponseLimits.authority(of: url))
                let status = response.status
                retryAfter = response.headers.first(name: "retry-after").flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
                let bytes = response.body
                let parsed = try? JSONParser.parse(bytes)
                if status == 200, let parsed, case .object = parsed { return .success(parsed) }
                let message = parsed?["error"]?["message"]?.stringValue ?? String(decoding: bytes.prefix(300), as: UTF8.self)
                failure = Failure(status: status, body: parsed, message: status == 200 ? "a 200 whose body is not a JSON object" : message)
                retryable = LLMError.isRetryable(status: status) || status == 200
            } catch is CancellationError {
                return .failure(Failure(status: nil, body: nil, message: "cancelled"))
            } catch let e as LLMError {
                failure = Failure(status: nil, body: nil, message: e.description)
                retryable = true
            } catch {
                failure = Failure(status: nil, body: nil, message: "no response: \(error)")
                retryable = true
            }
            guard retryable, attempt < policy.maxAttempts, !Task.isCancelled else { return .failure(failure) }
            let wait = policy.delay(afterAttempt: attempt, retryAfter: retryAfter)
            do { try await Task.sleep(for: .milliseconds(Int64(wait * 1000))) } catch { return .failure(failure) }
        }
    }

    /// An output or error line in the provider's format.
    static func resultLine(provider: BatchProvider, id: String, serial: String, status: Int?, body: JSONValue?, error: String?) -> String {
        switch provider {
        case .openai:
            var line: JSONObject = ["id": .string("batch_req_local_\(serial)"), "custom_id": .string(id)]
            if let status {
                line["response"] = .object(["status_code": JSONValue(status), "request_id": .string("local_\(serial)"), "body": body ?? .object([:])])
                line["error"] = .null
            } else {
                line["response"] = .null
                line["error"] = .object(["code": "connection_error", "message": .string(error ?? "no response")])
            }
            return JSONValue.object(line).jsonText
        case .anthropic:
            let result: JSONValue = status == 200
                ? .object(["type": "succeeded", "message": body ?? .null])
                : .object(["type": "errored", "error": body ?? .object(["type": "error", "error": .object(["type": "api_error", "message": .string(error ?? "no response")])])])
            return JSONValue.object(["custom_id": .string(id), "result": result]).jsonText
        }
    }
}

extension String {
    func trimmingSuffix(_ s: String) -> String { hasSuffix(s) ? String(dropLast(s.count)) : self }
}
