import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOSSL
import Synchronization

/// How much of a peer's response we accept and how long we wait for it: one set of rules and
/// messages for both transports (`PlainHTTPClient` for http://, async-http-client for https://)
/// and for every other reader of HTTP bodies (batch files, the local batch runner). A peer is
/// not trusted: a length it declares never sizes a buffer, and silence ends a call.
struct ResponseLimits: Sendable {
    /// Largest body accepted, in bytes.
    var maxBody: Int
    /// Seconds with no byte received before the attempt fails (`read_timeout`).
    var readTimeout: Double
    /// Seconds for the whole request, connection to last byte: the outer bound.
    var requestTimeout: Double

    /// A chat completion is kilobytes; a body this large is a broken or hostile server.
    static let defaultMaxBody = 256 << 20
    /// The most capacity reserved up front from a declared Content-Length; beyond it the
    /// buffer grows as bytes actually arrive.
    static let reserveBound = 1 << 20

    /// Capacity to reserve for a body of declared length `expected` (already checked).
    static func initialCapacity(_ expected: Int?) -> Int { min(expected ?? 0, reserveBound) }

    /// The declared Content-Length: nil when there is none; an error when it is not one
    /// non-negative integer (repeated values must agree) or is over `maxBody`.
    func declaredLength(_ headers: HTTPHeaders, status: Int?) throws(LLMError) -> Int? {
        let values = headers[canonicalForm: "content-length"]
        guard let first = values.first else { return nil }
        guard values.allSatisfy({ $0 == first }) else {
            throw LLMError.transport("malformed HTTP response: conflicting Content-Length headers", status: status)
        }
        guard !first.isEmpty, first.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw LLMError.transport("malformed HTTP response: Content-Length is not a byte count", status: status)
        }
        guard let length = Int(first), length <= maxBody else {
            throw LLMError.transport("the server declared a \(first)-byte body, over the \(Self.size(maxBody)) limit", status: status)
        }
        return length
    }

    /// The error for a body that grew past `maxBody` while arriving.
    func tooLarge(status: Int?) -> LLMError {
        LLMError.transport("the response body is over the \(Self.size(maxBody)) limit", status: status)
    }

    /// The error for a connection that ended (or broke) before the body was complete: a cut-short
    /// 2xx is `truncatedBody` (retried), any other status a connection failure.
    static func truncated(received: Int, expected: Int?, reason: String?, status: Int) -> LLMError {
        let message = "the response body ended early (\(received)\(expected.map { " of \($0)" } ?? "") bytes)"
            + (reason.map { ": \($0)" } ?? "")
        return (200..<300).contains(status) ? LLMError.truncated(message) : LLMError.transport("connection: \(message)", status: status)
    }

    /// The error for `readTimeout` seconds without a byte from `host`.
    func idle(host: String) -> LLMError {
        LLMError.transport("no data from \(host) for \(Self.seconds(readTimeout)) (read_timeout)", status: nil)
    }

    /// The error for a request that outlived `requestTimeout`.
    func expired(status: Int? = nil) -> LLMError {
        LLMError.transport("connection: no complete response within \(Self.seconds(requestTimeout)) (request timeout)", status: status)
    }

    /// What a transport error means to a user, without library internals: a malformed
    /// response, a TLS failure, a timeout, a closed connection.
    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPParserError { return "malformed HTTP response: \(parserReason(e))" }
        if let e = error as? NIOHTTPDecompression.DecompressionError {
            return e == .limit ? "the compressed response body expands to over 50 times its size (refused as a decompression bomb)"
                : "the compressed response body is corrupt"
        }
        if error is NIOHTTPDecompression.ExtraDecompressionError { return "the compressed response body is corrupt" }
        if let e = error as? NIOSSLError { return "TLS failure: \(e)" }
        if let e = error as? BoringSSLError { return "TLS failure: \(e)" }
        if let e = error as? HTTPClientError {
            switch e {
            case .remoteConnectionClosed: return "connection: the server closed the connection"
            case .connectTimeout: return "connection: no connection within the connect timeout"
            case .tlsHandshakeTimeout: return "connection: TLS handshake timed out"
            case .readTimeout: return "connection: read timed out"
            default: return "connection: \(e)"
            }
        }
        return "connection: \(error)"
    }

    /// The parser's complaint in plain words.
    private static func parserReason(_ e: HTTPParserError) -> String {
        switch e {
        case .invalidContentLength: "Content-Length is not a byte count"
        case .unexpectedContentLength: "a Content-Length the response may not have (repeated, or beside chunked encoding)"
        case .invalidChunkSize: "a chunk size that is malformed or too large"
        case .headerOverflow: "the response headers are too large"
        case .invalidEOFState: "the connection ended in the middle of the response"
        case .invalidStatus: "not a valid status line"
        case .invalidVersion: "not an HTTP/1.x response"
        default: "\(e.debugDescription)"
        }
    }

    static func size(_ bytes: Int) -> String {
        if bytes >= 1 << 20 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes >= 1 << 10 && bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(bytes) bytes"
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }
}

/// A response read through async-http-client under `ResponseLimits`.
struct FetchedResponse: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
}

extension ResponseLimits {
    /// Sends `request` (with `body`, if any) with `client` and reads the whole response within
    /// the limits: the declared length checked before any byte is kept, the body capped as it
    /// arrives, and a watchdog that ends the attempt after `readTimeout` seconds in which
    /// nothing moved (or at `requestTimeout`). async-http-client's own read timeout is per
    /// client, and models differ, so the idle time is enforced here, per request: the upload
    /// counts as activity piece by piece, then the wait for the head, then the gaps between body
    /// parts. The watchdog cancels the request, which closes its connection.
    func fetch(_ request: HTTPClientRequest, body: [UInt8]?, on client: HTTPClient, host: String) async throws -> FetchedResponse {
        let activity = Activity()
        let started = ContinuousClock.now
        var withBody = request
        if let body { withBody.body = .stream(UploadPieces(bytes: body, activity: activity), length: .known(Int64(body.count))) }
        let request = withBody
        do {
            return try await withThrowingTaskGroup(of: FetchedResponse.self) { group in
                group.addTask { try await self.exchange(request, on: client, activity: activity) }
                group.addTask {
                    let end = started + .milliseconds(Int64(requestTimeout * 1000))
                    while true {
                        let last = activity.last
                        try await Task.sleep(until: min(end, last + .milliseconds(Int64(readTimeout * 1000))), clock: .continuous)
                        if ContinuousClock.now >= end { throw expired(status: activity.status) }
                        if activity.last == last { throw idle(host: host) }
                    }
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
        } catch {
            // A cancelled call ends as cancelled, whatever its request failed with meanwhile.
            if Task.isCancelled { throw CancellationError() }
            throw error
        }
    }

    private func exchange(_ request: HTTPClientRequest, on client: HTTPClient, activity: Activity) async throws -> FetchedResponse {
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .milliseconds(Int64(requestTimeout * 1000)))
        } catch let e as HTTPClientError where e == .deadlineExceeded {
            throw expired()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw LLMError.transport(Self.describe(error), status: nil)
        }
        let status = Int(response.status.code)
        activity.touch(status: status)
        let expected = try declaredLength(response.headers, status: status)
        var out: [UInt8] = []
        out.reserveCapacity(Self.initialCapacity(expected))
        do {
            for try await chunk in response.body {
                activity.touch(status: status)
                if out.count + chunk.readableBytes > maxBody { throw tooLarge(status: status) }
                out.append(contentsOf: chunk.readableBytesView)
            }
        } catch let e as LLMError {
            throw e
        } catch let e as HTTPClientError where e == .deadlineExceeded {
            throw expired(status: status)
        } catch is CancellationError {
            throw CancellationError()
        } catch let e as NIOHTTPDecompression.DecompressionError {
            throw LLMError.transport(Self.describe(e), status: status)
        } catch {
            throw Self.truncated(received: out.count, expected: expected, reason: Self.describe(error), status: status)
        }
        if let expected, out.count < expected {
            throw Self.truncated(received: out.count, expected: expected, reason: nil, status: status)
        }
        return FetchedResponse(status: status, headers: response.headers, body: out)
    }

    /// `host[:port]` of a URL, for messages.
    static func authority(of url: String) -> String {
        var rest = Substring(url)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@").last ?? authority)
    }

    /// When something last moved (a piece sent, a byte received), and the status once the head is in.
    final class Activity: Sendable {
        private let state = Mutex<(last: ContinuousClock.Instant, status: Int?)>((ContinuousClock.now, nil))
        var last: ContinuousClock.Instant { state.withLock { $0.last } }
        var status: Int? { state.withLock { $0.status } }
        func touch(status: Int? = nil) { state.withLock { $0 = (ContinuousClock.now, status ?? $0.status) } }
    }

    /// A request body in 64 KiB pieces. The client takes the next piece when the connection
    /// can carry it, so each piece taken is upload progress: a large batch file on a slow link
    /// is not mistaken for a silent server.
    struct UploadPieces: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let bytes: [UInt8]
        let activity: Activity

        struct AsyncIterator: AsyncIteratorProtocol {
            let bytes: [UInt8]
            let activity: Activity
            var offset = 0

            mutating func next() async -> ByteBuffer? {
                guard offset < bytes.count else { return nil }
                activity.touch()
                let end = Swift.min(bytes.count, offset + (64 << 10))
                defer { offset = end }
                return ByteBuffer(bytes: bytes[offset..<end])
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes, activity: activity) }
    }
}
