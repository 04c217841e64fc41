import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
@testable import RolloutKit
import Synchronization
import Testing

/// A server on 127.0.0.1 that speaks deliberately broken HTTP, over plain TCP or TLS (the
/// committed self-signed `Fixtures/tls/localhost.*.pem`, valid 2000–2124). Each connection reads
/// the request head, then plays its `Script`.
final class HostilePeer: Sendable {
    enum Transport: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case plain, tls
        var testDescription: String { rawValue }
    }

    /// What the peer does once a request head is in.
    enum Script: Sendable {
        /// Sends these bytes and keeps the connection open.
        case send(String)
        /// Sends `head`, then `body` as raw bytes, and keeps the connection open.
        case sendBytes(head: String, body: [UInt8])
        /// Sends nothing, ever.
        case silent
        /// Sends `prefix`, then `unit` every `every` seconds, `times` times or until the client goes.
        case repeating(prefix: String, unit: String, every: Double, times: Int? = nil)
    }

    let channel: any Channel
    let transport: Transport
    /// Connections accepted and request heads read.
    private let counts: Counts

    let port: Int
    var connections: Int { counts.state.withLock { $0.connections } }
    var requests: Int { counts.state.withLock { $0.requests } }

    final class Counts: Sendable {
        let state = Mutex((connections: 0, requests: 0))
    }
    var url: String { "\(transport == .tls ? "https" : "http")://127.0.0.1:\(port)/v1" }

    static let certificate = Fixture.path("tls/localhost.cert.pem")

    private init(channel: any Channel, transport: Transport, counts: Counts) {
        self.counts = counts
        self.channel = channel
        self.transport = transport
        port = channel.localAddress?.port ?? 0
    }

    static func start(_ transport: Transport, _ script: Script) async throws -> HostilePeer {
        let tls: NIOSSLContext? = transport == .tls ? try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: Fixture.path("tls/localhost.key.pem"), format: .pem)))) : nil
        let counts = Counts()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counts.state.withLock { $0.connections += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                    try sync.addHandler(ScriptHandler(script, counts: counts))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return HostilePeer(channel: channel, transport: transport, counts: counts)
    }

    func stop() async { try? await channel.close() }

    /// Plays the script after the blank line that ends the request head.
    final class ScriptHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let script: Script
        var seen: [UInt8] = []
        var started = false
        var repeating: RepeatedTask?
        /// Units still to send; touched only on the channel's loop.
        var left = 0

        let counts: Counts

        init(_ script: Script, counts: Counts) {
            self.script = script
            self.counts = counts
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !started else { return }
            seen += unwrapInboundIn(data).readableBytesView
            guard seen.count >= 4, (0...(seen.count - 4)).contains(where: { seen[$0..<($0 + 4)].elementsEqual([13, 10, 13, 10]) })
            else { return }
            started = true
            counts.state.withLock { $0.requests += 1 }
            switch script {
            case .silent:
                break
            case .send(let text):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
            case .sendBytes(let head, let body):
                var buffer = ByteBuffer(string: head)
                buffer.writeBytes(body)
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            case .repeating(let prefix, let unit, let every, let times):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: prefix)), promise: nil)
                let channel = context.channel
                let chunk = ByteBuffer(string: unit)
                left = times ?? .max
                repeating = channel.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(Int64(every * 1000))) { [self] task in
                    guard channel.isActive, left > 0 else { task.cancel(); return }
                    // Waits for the client to take what was sent: a flood is bounded on this side too.
                    if channel.isWritable {
                        left -= 1
                        channel.writeAndFlush(chunk, promise: nil)
                    }
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            repeating?.cancel()
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// A hostile HTTP peer never crashes the process, never makes it reserve memory from what the
/// peer declares, and never holds a call for long: every case, over plain http
/// (`PlainHTTPClient`) and over TLS (async-http-client), ends in a plain `LLMError`.
@Suite("Hostile HTTP peers")
struct HostilePeerTests {
    final class Attempts: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [CallAttempt] = []
        @Sendable func add(_ a: CallAttempt) { lock.withLock { list.append(a) } }
        var all: [CallAttempt] { lock.withLock { list } }
    }

    /// One attempt unless a test says otherwise; a read timeout long enough that a case meant
    /// to fail on its headers cannot end by silence instead.
    static let patient = RetryPolicy(maxAttempts: 1, baseDelay: 0.01, maxDelay: 0.02, connectTimeout: 5,
                                     requestTimeout: 120, readTimeout: 60)

    static let request = ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: "hi")])

    /// Runs one call against a peer playing `script` and returns the error and the attempts.
    static func call(_ transport: HostilePeer.Transport, _ script: HostilePeer.Script, policy: RetryPolicy = patient,
                     maxBody: Int = ResponseLimits.defaultMaxBody) async throws -> (LLMError, [CallAttempt], HostilePeer) {
        let peer = try await HostilePeer.start(transport, script)
        let client = LLMClient(maxConnectionsPerHost: 8, connectTimeout: 5, trustRoots: HostilePeer.certificate, maxBody: maxBody)
        let attempts = Attempts()
        var caught: LLMError?
        do {
            _ = try await client.complete(request, endpoint: Endpoint(provider: .openai, apiBase: peer.url, apiKey: nil, model: "m"),
                                          policy: policy, onAttempt: attempts.add)
        } catch let e as LLMError {
            caught = e
        }
        try await client.shutdown()
        await peer.stop()
        let error = try #require(caught, "the call succeeded against a hostile peer")
        return (error, attempts.all, peer)
    }

    static func head(_ lines: String...) -> String {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + lines.map { $0 + "\r\n" }.joined() + "\r\n"
    }

    // MARK: - Content-Length

    /// 4294967296 used to kill the process (SIGILL: a ByteBuffer reserved from the declared
    /// length); 4000000000 reserved 4.6 GB before a byte arrived. Now the head alone fails the
    /// call: the peer sends no body and keeps the connection open, so an error that names the
    /// declared length (not a timeout) shows nothing waited for, or reserved for, the body.
    @Test(arguments: HostilePeer.Transport.allCases, ["4294967296", "4000000000", "268435457", "18446744073709551616"])
    func hugeDeclaredLengthFailsFromTheHead(transport: HostilePeer.Transport, length: String) async throws {
        let (error, attempts, _) = try await Self.call(transport, .send(Self.head("Content-Length: \(length)")))
        #expect(error.kind == .connection)
        #expect(attempts.count == 1)
        if length == "18446744073709551616" {
            // Past 64 bits the HTTP parser itself refuses the number.
            #expect(error.message == "malformed HTTP response: Content-Length is not a byte count", "\(error)")
        } else {
            #expect(error.message == "the server declared a \(length)-byte body, over the 256 MiB limit", "\(error)")
            #expect(error.status == 200)
        }
    }

    @Test(arguments: HostilePeer.Transport.allCases, ["-1", "abc", "12abc", "1e3", "0x10"])
    func malformedContentLengthIsACleanError(transport: HostilePeer.Transport, length: String) async throws {
        let (error, _, _) = try await Self.call(transport, .send(Self.head("Content-Length: \(length)") + "{}"))
        #expect(error.kind == .connection)
        #expect(error.message == "malformed HTTP response: Content-Length is not a byte count", "\(error)")
    }

    @Test(arguments: HostilePeer.Transport.allCases)
    func conflictingContentLengthsAreACleanError(transport: HostilePeer.Transport) async throws {
        let (error, _, _) = try await Self.call(transport, .send(Self.head("Content-Length: 2", "Content-Length: 7") + "{}"))
        #expect(error.kind == .connection)
        #expect(error.message == "malformed HTTP response: a Content-Length the response may not have (repeated, or beside chunked encoding)",
                "\(error)")
    }

    // MARK: - Compressed bodies

    /// 1 MiB of "0" gzipped to 1,052 bytes (Python `gzip.compress(b"0" * 2**20, 9, mtime=0)`):
    /// over the 50× expansion both transports allow.
    static let gzipBomb: [UInt8] = Array(Data(base64Encoded: "H4sIAAAAAAACA+3BMQEAAADCoErrn84QvkAB" + String(repeating: "A", count: 1353)
                                              + "HwG2nWmNwAAEAA=")!)

    @Test(arguments: HostilePeer.Transport.allCases)
    func decompressionBombIsRefused(transport: HostilePeer.Transport) async throws {
        #expect(Self.gzipBomb.count == 1052)
        let head = Self.head("Content-Encoding: gzip", "Content-Length: \(Self.gzipBomb.count)")
        let (error, _, _) = try await Self.call(transport, .sendBytes(head: head, body: Self.gzipBomb))
        #expect(error.kind == .connection)
        #expect(error.message == "the compressed response body expands to over 50 times its size (refused as a decompression bomb)",
                "\(error)")
    }

    // MARK: - Chunked bodies

    @Test(arguments: HostilePeer.Transport.allCases)
    func chunkSizeOverflowIsACleanError(transport: HostilePeer.Transport) async throws {
        let (error, _, _) = try await Self.call(transport, .send(Self.head("Transfer-Encoding: chunked") + "1FFFFFFFFFFFFFFFFF\r\nab"))
        // The head was fine: a 200 cut short by a bad chunk, retried like any truncated body.
        #expect(error.kind == .truncatedBody)
        #expect(error.message == "the response body ended early (0 bytes): malformed HTTP response: a chunk size that is malformed or too large",
                "\(error)")
    }

    /// A chunk that declares 2^63-1 bytes and streams without end stops at the body cap.
    @Test(arguments: HostilePeer.Transport.allCases)
    func hugeChunkStopsAtTheCap(transport: HostilePeer.Transport) async throws {
        let script = HostilePeer.Script.repeating(prefix: Self.head("Transfer-Encoding: chunked") + "7FFFFFFFFFFFFFFF\r\n",
                                                  unit: String(repeating: "x", count: 64 << 10), every: 0.002)
        let (error, _, _) = try await Self.call(transport, script, maxBody: 1 << 20)
        #expect(error.kind == .connection)
        #expect(error.message == "the response body is over the 1 MiB limit", "\(error)")
    }

    // MARK: - Bodies without end

    @Test(arguments: HostilePeer.Transport.allCases)
    func endlessBodyStopsAtTheCap(transport: HostilePeer.Transport) async throws {
        let script = HostilePeer.Script.repeating(prefix: Self.head("Transfer-Encoding: chunked"),
                                                  unit: "10000\r\n" + String(repeating: "y", count: 1 << 16) + "\r\n", every: 0.002)
        let (error, _, _) = try await Self.call(transport, script, maxBody: 1 << 20)
        #expect(error.message == "the response body is over the 1 MiB limit", "\(error)")
        #expect(error.status == 200)
    }

    /// A body that trickles one byte every 50 ms is never idle; the request timeout ends it.
    /// (The read timeout is set past the request timeout so a stall of the loaded test machine
    /// cannot end it by silence instead.)
    @Test(arguments: HostilePeer.Transport.allCases)
    func dripFedBodyEndsAtTheRequestTimeout(transport: HostilePeer.Transport) async throws {
        var policy = Self.patient
        policy.requestTimeout = 2
        policy.readTimeout = 30
        let (error, _, _) = try await Self.call(transport, .repeating(prefix: Self.head("Content-Length: 100000") + "{", unit: " ",
                                                                     every: 0.05), policy: policy)
        #expect(error.kind == .connection)
        #expect(error.message == "connection: no complete response within 2 s (request timeout)", "\(error)")
    }

    // MARK: - Headers without end

    @Test(arguments: HostilePeer.Transport.allCases)
    func endlessHeadersStopAtTheHeaderCap(transport: HostilePeer.Transport) async throws {
        let line = "X-Filler: " + String(repeating: "z", count: 1000) + "\r\n"
        let (error, _, _) = try await Self.call(transport, .repeating(prefix: "HTTP/1.1 200 OK\r\n", unit: String(repeating: line, count: 8),
                                                                     every: 0.002))
        #expect(error.kind == .connection)
        #expect(error.message == "malformed HTTP response: the response headers are too large", "\(error)")
    }

    /// Header bytes one at a time, under the 80 KiB header cap for hours: the request timeout
    /// ends it. (Over TLS async-http-client shows only whole heads, so there the read timeout
    /// would end it too; it is set past the request timeout here so both transports end alike.)
    @Test(arguments: HostilePeer.Transport.allCases)
    func dripFedHeadersEndAtTheRequestTimeout(transport: HostilePeer.Transport) async throws {
        var policy = Self.patient
        policy.requestTimeout = 2
        policy.readTimeout = 30
        let (error, _, _) = try await Self.call(transport, .repeating(prefix: "HTTP/1.1 200 OK\r\nX-Slow: ", unit: "a", every: 0.05),
                                                policy: policy)
        #expect(error.kind == .connection)
        #expect(error.message == "connection: no complete response within 2 s (request timeout)", "\(error)")
    }

    /// Over TLS the head is seen only whole: header bytes dripping for longer than the read
    /// timeout count as silence, and the read timeout ends the call before the request timeout.
    @Test func dripFedHeadersOverTLSEndAtTheReadTimeout() async throws {
        var policy = Self.patient
        policy.readTimeout = 1
        let (error, _, peer) = try await Self.call(.tls, .repeating(prefix: "HTTP/1.1 200 OK\r\nX-Slow: ", unit: "a", every: 0.05),
                                                   policy: policy)
        #expect(error.message == "no data from 127.0.0.1:\(peer.port) for 1 s (read_timeout)", "\(error)")
    }

    // MARK: - Silence

    /// A peer that accepts and never answers: each attempt ends after `read_timeout` (1 s here,
    /// against a 120 s request timeout), and the retry policy's two attempts are both made.
    @Test(arguments: HostilePeer.Transport.allCases)
    func silentPeerFailsEachAttemptAtTheReadTimeout(transport: HostilePeer.Transport) async throws {
        var policy = Self.patient
        policy.maxAttempts = 2
        policy.readTimeout = 1
        let (error, attempts, peer) = try await Self.call(transport, .silent, policy: policy)
        let expected = "no data from 127.0.0.1:\(peer.port) for 1 s (read_timeout)"
        #expect(error.kind == .connection)
        #expect(error.message == expected)
        #expect(attempts.count == 2)
        #expect(attempts.allSatisfy { $0.error == "no response: " + expected })
        // Each attempt ended by the idle timer, well before the 120 s request timeout.
        #expect(attempts.allSatisfy { $0.latencyMs >= 900 && $0.latencyMs < 60_000 }, "\(attempts.map(\.latencyMs))")
        // The hung connection is dropped, not reused: each request came on a connection of its
        // own (over TLS the second may still be in the server's accept queue when the test ends).
        #expect(peer.requests == peer.connections)
        if transport == .plain { #expect(peer.connections == 2) }
    }

    /// An answer that takes longer in all than the read timeout, with every gap well inside
    /// it, succeeds: idle means no byte at all, not a slow answer.
    @Test(arguments: HostilePeer.Transport.allCases)
    func slowButSteadyAnswerSucceeds(transport: HostilePeer.Transport) async throws {
        let body = #"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#
        // 20 gaps of 0.4 s (8 s in all) under a 5 s read timeout: a 12x margin per gap, so a
        // loaded machine (the whole suite at once) cannot stretch a gap into a timeout.
        let peer = try await HostilePeer.start(transport, .repeating(prefix: Self.head("Content-Length: \(body.utf8.count + 20)") + body,
                                                                     unit: " ", every: 0.4, times: 20))
        let client = LLMClient(maxConnectionsPerHost: 8, connectTimeout: 5, trustRoots: HostilePeer.certificate)
        var policy = Self.patient
        policy.readTimeout = 5
        var reply: ChatResponse?
        var failure: (any Error)?
        do {
            reply = try await client.complete(Self.request, endpoint: Endpoint(provider: .openai, apiBase: peer.url, apiKey: nil, model: "m"),
                                              policy: policy)
        } catch {
            failure = error
        }
        try await client.shutdown()
        await peer.stop()
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
        #expect(reply?.message.content == "ok")
    }
}

/// `read_timeout` in models.yml: checked when the registry loads, and carried to the calls.
@Suite("Model read_timeout")
struct ReadTimeoutSettingTests {
    @Test func registryReadTimeoutReachesTheCall() async throws {
        let peer = try await HostilePeer.start(.plain, .silent)
        let tmp = try TempDir()
        let file = try tmp.write("models.yml", """
            models:
              local/silent:
                provider: openai
                api_base: http://127.0.0.1:\(peer.port)/v1
                read_timeout: 1
            """)
        let registry = try ModelRegistry.load(file: file)
        let warehouse = try Warehouse.inMemory()
        let http = LLMClient()
        // The policy's own read timeout (and request timeout) are far longer: only the entry's
        // 1 s can end this call.
        let client = ModelClient(registry: registry, http: http, warehouse: warehouse,
                                 policy: RetryPolicy(maxAttempts: 1, requestTimeout: 300, readTimeout: 300))
        await #expect {
            _ = try await client.complete("local/silent", HostilePeerTests.request, context: CallContext(role: .agent))
        } throws: { error in
            (error as? LLMError)?.message == "no data from 127.0.0.1:\(peer.port) for 1 s (read_timeout)"
        }
        try await warehouse.writer.read { db in
            let errors = try String.fetchAll(db, sql: "SELECT error FROM llm_calls WHERE model = 'local/silent'")
            #expect(errors == ["no response: no data from 127.0.0.1:\(peer.port) for 1 s (read_timeout)"])
        }
        try await http.shutdown()
        await peer.stop()
    }

    @Test(arguments: ["0", "-5", "soon", "90000"])
    func badReadTimeoutIsRefusedAtLoad(value: String) throws {
        let tmp = try TempDir()
        let file = try tmp.write("models.yml", """
            models:
              local/agent:
                provider: openai
                api_base: http://127.0.0.1:9/v1
                read_timeout: \(value)
            """)
        #expect {
            _ = try ModelRegistry.load(file: file)
        } throws: { error in
            let text = "\(error)"
            return text.contains("models.yml:5") && text.contains("read_timeout") && text.contains("above 0")
        }
    }
}

/// The other readers of HTTP bodies (the local batch runner, the provider Batch API client)
/// go through the same limits.
@Suite("Hostile HTTP peers: batch paths")
struct HostilePeerBatchTests {
    @Test func localRunnerRefusesAHugeDeclaredLength() async throws {
        let peer = try await HostilePeer.start(.plain, .send(HostilePeerTests.head("Content-Length: 4294967296")))
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let result = await LocalBatchRunner.send(http: http, url: peer.url + "/chat/completions", headers: [], body: Array("{}".utf8),
                                            policy: RetryPolicy(maxAttempts: 1, requestTimeout: 120, readTimeout: 60))
        try await http.shutdown()
        await peer.stop()
        guard case .failure(let failure) = result else { Issue.record("a 4 GiB declared body was accepted"); return }
        #expect(failure.message == "no response (HTTP 200): the server declared a 4294967296-byte body, over the 256 MiB limit")
    }

    @Test func localRunnerEndsASilentCallAtTheReadTimeout() async throws {
        let peer = try await HostilePeer.start(.plain, .silent)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let result = await LocalBatchRunner.send(http: http, url: peer.url + "/chat/completions", headers: [], body: Array("{}".utf8),
                                            policy: RetryPolicy(maxAttempts: 1, requestTimeout: 120, readTimeout: 1))
        try await http.shutdown()
        await peer.stop()
        guard case .failure(let failure) = result else { Issue.record("a silent server answered"); return }
        #expect(failure.message == "no response: no data from 127.0.0.1:\(peer.port) for 1 s (read_timeout)")
    }

    @Test func batchDownloadRefusesAHugeDeclaredLength() async throws {
        let peer = try await HostilePeer.start(.plain, .send(HostilePeerTests.head("Content-Length: 4294967296")))
        let client = BatchClient(warehouse: try Warehouse.inMemory(), timeoutSeconds: 120)
        await #expect {
            _ = try await client.send(.GET, peer.url + "/files/x/content",
                                      endpoint: BatchEndpoint(provider: .openai, apiBase: peer.url, apiKey: nil), retry: false)
        } throws: { error in
            "\(error)" == "GET \(peer.url)/files/x/content: no response: the server declared a 4294967296-byte body, over the 2048 MiB limit"
        }
        try await client.shutdown()
        await peer.stop()
    }
}
