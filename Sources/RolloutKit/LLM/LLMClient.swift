import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// Where and how to send one model's requests. Built from a registry entry; `apiKey` is the
/// expanded secret and lives only in memory.
public struct Endpoint: Sendable {
    public var provider: ModelEntry.Provider
    /// `https://api.openai.com/v1`, `http://host:8000/v1`, `https://api.anthropic.com`.
    public var apiBase: String
    public var apiKey: String?
    /// The model name the provider knows.
    public var model: String
    public var thinkingStyle: ThinkingStyle
    public var anthropicVersion = "2023-06-01"
    /// Seconds without a byte from the server before an attempt fails (the entry's
    /// `read_timeout`); nil: the retry policy's.
    public var readTimeout: Double?

    public init(provider: ModelEntry.Provider, apiBase: String, apiKey: String?, model: String,
                thinkingStyle: ThinkingStyle = .none) {
        self.provider = provider
        self.apiBase = apiBase.hasSuffix("/") ? String(apiBase.dropLast()) : apiBase
        self.apiKey = apiKey
        self.model = model
        self.thinkingStyle = thinkingStyle
        Secrets.register(apiKey); Secrets.register(self.apiBase)
    }

    /// The registry entry resolved for calling: `${VAR}` references expanded now.
    public init(entry: ModelEntry, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let model = String(entry.name.split(separator: "/", maxSplits: 1).last ?? Substring(entry.name))
        let base = try EnvReference.expand(entry.apiBase ?? "", environment: environment, keyPath: "models.\(entry.name).api_base")
        let key = try entry.apiKey.map { try EnvReference.expand($0, environment: environment, keyPath: "models.\(entry.name).api_key") }
        let style = entry.settings["thinking_style"]?.stringValue.flatMap(ThinkingStyle.init(rawValue:))
            ?? (entry.mode == "chat_template_kwargs" ? .chatTemplateKwargs : .none)
        self.init(provider: entry.provider, apiBase: base, apiKey: key, model: entry.settings["model"]?.stringValue ?? model,
                  thinkingStyle: style)
        readTimeout = entry.settings["read_timeout"].flatMap { $0.doubleValue ?? $0.stringValue.flatMap(Double.init) }
    }

    var url: String {
        switch provider {
        case .anthropic: apiBase + (apiBase.hasSuffix("/v1") ? "/messages" : "/v1/messages")
        default: apiBase + "/chat/completions"
        }
    }
}

/// How hard to try: attempts per call, exponential backoff with jitter, timeouts.
public struct RetryPolicy: Sendable {
    /// Attempts per call, the first included.
    public var maxAttempts = 5
    public var baseDelay: Double = 0.5
    public var maxDelay: Double = 30
    /// Longest `Retry-After` honoured; a server asking for more is waited for this long.
    public var maxRetryAfter: Double = 120
    public var connectTimeout: Double = 10
    /// Whole request, connection to last byte.
    public var requestTimeout: Double = 600
    /// Seconds without a byte from the server (before the head, or between body parts) before
    /// the attempt fails; a model's `read_timeout` overrides it.
    public var readTimeout: Double = RetryPolicy.defaultReadTimeout
    /// Long enough for a slow first token, short enough that a silent server fails a call in
    /// minutes; models that think longer before answering set `read_timeout`.
    public static let defaultReadTimeout: Double = 120

    public init(maxAttempts: Int = 5, baseDelay: Double = 0.5, maxDelay: Double = 30, maxRetryAfter: Double = 120,
                connectTimeout: Double = 10, requestTimeout: Double = 600,
                readTimeout: Double = RetryPolicy.defaultReadTimeout) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.readTimeout = readTimeout
    }

    /// The limits of one attempt at `endpoint`.
    func limits(for endpoint: Endpoint, maxBody: Int) -> ResponseLimits {
        ResponseLimits(maxBody: maxBody, readTimeout: endpoint.readTimeout ?? readTimeout, requestTimeout: requestTimeout)
    }

    /// Delay before attempt `attempt + 1` (attempt counts from 1): full-jitter exponential,
    /// never below the server's `Retry-After`.
    public func delay(afterAttempt attempt: Int, retryAfter: Double?, random: Double = .random(in: 0...1)) -> Double {
        let ceiling = min(maxDelay, baseDelay * pow(2, Double(attempt - 1)))
        let backoff = ceiling * (0.5 + 0.5 * random)
        guard let retryAfter else { return backoff }
        return max(backoff, min(retryAfter, maxRetryAfter))
    }
}

/// Retries shared by a whole run, so a persistently failing endpoint ends the run quickly
/// instead of every call spending its own retries.
public final class RetryBudget: Sendable {
    private let remaining: Mutex<Int>
    public init(retries: Int) { remaining = Mutex(retries) }

    /// Takes one retry; false when the budget is spent.
    public func take() -> Bool {
        remaining.withLock { n in
            guard n > 0 else { return false }
            n -= 1
            return true
        }
    }

    public var left: Int { remaining.withLock { $0 } }
}

/// One HTTP attempt, as the ledger (`llm_calls`) records it.
public struct CallAttempt: Sendable, Equatable {
    public var attempt: Int
    public var httpStatus: Int?
    public var latencyMs: Double
    public var usage: TokenUsage?
    public var finishReason: String?
    /// What went wrong, with no secret in it; nil for a success.
    public var error: String?
    /// sha256 of the request body, so identical requests can be found.
    public var requestHash: String
}

/// The shared HTTP client for every model call of the process: one connection pool sized to
/// the concurrency, retries with backoff, and a record of every attempt.
public final class LLMClient: Sendable {
    /// https (and anything that is not plain http).
    let http: HTTPClient
    /// Plain http: our own keep-alive client on the same event loops.
    let plain: PlainHTTPClient
    /// Largest response body accepted, on both transports.
    let maxBody: Int

    /// `maxConnectionsPerHost` should be at least the number of requests in flight.
    public convenience init(maxConnectionsPerHost: Int = 64, connectTimeout: Double = 10) {
        self.init(maxConnectionsPerHost: maxConnectionsPerHost, connectTimeout: connectTimeout, trustRoots: nil)
    }

    /// `trustRoots`: a PEM file of certificates to trust for https instead of the system's
    /// (tests' self-signed servers). `maxBody`: the body cap in bytes.
    init(maxConnectionsPerHost: Int = 64, connectTimeout: Double = 10, trustRoots: String?,
         maxBody: Int = ResponseLimits.defaultMaxBody) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60),
                                             concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, maxConnectionsPerHost))
        // A refused connection fails the attempt at once (our retry policy decides what
        // follows) instead of being retried inside the pool until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout = .init(connect: .milliseconds(Int64(connectTimeout * 1000)))
        configuration.decompression = .enabled(limit: .ratio(50))
        if let trustRoots {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(trustRoots)
            configuration.tlsConfiguration = tls
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        plain = PlainHTTPClient(connectTimeout: connectTimeout)
        self.maxBody = maxBody
    }

    public func shutdown() async throws {
        await plain.shutdown()
        try await http.shutdown()
    }

    /// A request ready to send: body, headers, and the body's sha256 for the ledger.
    public struct EncodedRequest: Sendable {
        public let body: [UInt8]
        public let headers: [(String, String)]
        public let hash: String
    }

    /// The request body and headers for `request` at `endpoint`.
    public static func encode(_ request: ChatRequest, for endpoint: Endpoint) -> EncodedRequest {
        var r = request
        r.model = endpoint.model
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        let body: JSONValue
        switch endpoint.provider {
        case .anthropic:
            body = AnthropicCodec.body(for: r)
            if let key = endpoint.apiKey { headers.append(("x-api-key", key)) }
            headers.append(("anthropic-version", endpoint.anthropicVersion))
        default:
            body = OpenAICodec.body(for: r, thinkingStyle: endpoint.thinkingStyle)
            if let key = endpoint.apiKey, !key.isEmpty { headers.append(("Authorization", "Bearer \(key)")) }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8192)
        JSONWriter.compact.write(body, into: &bytes)
        return EncodedRequest(body: bytes, headers: headers, hash: Hashing.sha256Hex(bytes))
    }

    /// Sends `request`, retrying what is worth retrying, and reports every attempt to
    /// `onAttempt` (failed ones included) before returning or throwing the last error.
    public func complete(_ request: ChatRequest, endpoint: Endpoint, policy: RetryPolicy = .init(), budget: RetryBudget? = nil,
                         onAttempt: @Sendable (CallAttempt) -> Void = { _ in }) async throws -> ChatResponse {
        try await complete(Self.encode(request, for: endpoint), endpoint: endpoint, policy: policy, budget: budget,
                           onAttempt: onAttempt)
    }

    /// Sends an already encoded request (callers that need its size first encode it once).
    public func complete(_ encoded: EncodedRequest, endpoint: Endpoint, policy: RetryPolicy = .init(), budget: RetryBudget? = nil,
                         onAttempt: @Sendable (CallAttempt) -> Void = { _ in }) async throws -> ChatResponse {
        let (body, headers, hash) = (encoded.body, encoded.headers, encoded.hash)
        let target = PlainTarget(endpoint.url)
        let limits = policy.limits(for: endpoint, maxBody: maxBody)
        let host = ResponseLimits.authority(of: endpoint.url)
        var attempt = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            let started = ContinuousClock.now
            var status: Int?
            var retryAfter: Double?
            let failure: LLMError
            do {
                if let target {
                    let response = try await plain.post(host: target.host, port: target.port, path: target.path, headers: headers,
                                                        body: body, limits: limits)
                    status = response.status
                    retryAfter = response.headers.first(name: "retry-after").flatMap(Self.parseRetryAfter)
                    let decoded = try Self.decode(Array(response.body.readableBytesView), status: response.status,
                                                  provider: endpoint.provider)
                    onAttempt(CallAttempt(attempt: attempt, httpStatus: status, latencyMs: started.millisecondsSince,
                                          usage: decoded.usage, finishReason: decoded.finishReason, error: nil, requestHash: hash))
                    return decoded
                }
                var http = HTTPClientRequest(url: endpoint.url)
                http.method = .POST
                for (k, v) in headers { http.headers.add(name: k, value: v) }
                let response = try await limits.fetch(http, body: body, on: self.http, host: host)
                status = response.status
                retryAfter = response.headers.first(name: "retry-after").flatMap(Self.parseRetryAfter)
                let decoded = try Self.decode(response.body, status: response.status, provider: endpoint.provider)
                onAttempt(CallAttempt(attempt: attempt, httpStatus: status, latencyMs: started.millisecondsSince,
                                      usage: decoded.usage, finishReason: decoded.finishReason, error: nil, requestHash: hash))
                return decoded
            } catch let e as LLMError {
                failure = e
            } catch is CancellationError {
                onAttempt(CallAttempt(attempt: attempt, httpStatus: status, latencyMs: started.millisecondsSince,
                                      error: "cancelled", requestHash: hash))
                throw CancellationError()
            } catch {
                failure = LLMError.transport(ResponseLimits.describe(error), status: status)
            }
            onAttempt(CallAttempt(attempt: attempt, httpStatus: failure.status ?? status, latencyMs: started.millisecondsSince,
                                  error: failure.description, requestHash: hash))
            guard Self.shouldRetry(failure), attempt < policy.maxAttempts, budget?.take() ?? true else { throw failure }
            let wait = policy.delay(afterAttempt: attempt, retryAfter: retryAfter)
            try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
        }
    }

    /// Retry what may go differently next time: retryable statuses, a dropped or timed-out
    /// connection, and a 2xx whose body arrived broken (cut short, empty, not JSON).
    static func shouldRetry(_ e: LLMError) -> Bool {
        if e.retryable || e.kind == .connection { return true }
        let success = e.status.map { (200..<300).contains($0) } ?? true
        return success && [.truncatedBody, .emptyBody, .invalidJSON].contains(e.kind)
    }

    static func decode(_ bytes: [UInt8], status: Int, provider: ModelEntry.Provider) throws(LLMError) -> ChatResponse {
        switch provider {
        case .anthropic: try AnthropicCodec.decode(bytes, status: status)
        default: try OpenAICodec.decode(bytes, status: status)
        }
    }

    /// Seconds from `Retry-After` (delta-seconds or an HTTP date).
    static func parseRetryAfter(_ text: String) -> Double? {
        if let s = Double(text.trimmingCharacters(in: .whitespaces)) { return max(0, s) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text).map { max(0, $0.timeIntervalSinceNow) }
    }
}

extension LLMError {
    /// The connection failed, timed out or was reset before a full response arrived.
    static func transport(_ message: String, status: Int?) -> LLMError {
        LLMError(.connection, status: status, message: message)
    }

    /// The connection ended before the body was complete.
    static func truncated(_ message: String) -> LLMError {
        LLMError(.truncatedBody, message: message)
    }
}
