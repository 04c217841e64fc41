import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix

/// A lean HTTP/1.1 client for plain `http://` endpoints (local vLLM / SGLang servers,
/// `rollout mock-server`): a keep-alive pool per event loop, one request in flight per
/// connection, the whole response collected on the connection's loop and handed over once.
/// A caller already running on one of the group's loops (a rollout bound to it) gets a
/// connection of that loop, so a call costs no thread hop. `https://` goes through
/// async-http-client (TLS, HTTP/2); both answer in the same `LLMError` terms.
///
/// Behaviour kept from the async-http-client setup it stands in for: `Accept-Encoding: deflate,
/// gzip` with responses decompressed (ratio limit 50), connect timeout, a refused connection
/// failing at once, a whole-request deadline, cancellation closing the connection, a body cut
/// short reported as truncated, idle connections dropped after 60 s. The peer is not trusted
/// (`ResponseLimits`): its declared length is checked and never sizes a buffer, the body is
/// capped, and `readTimeout` seconds without a byte fail the request.
final class PlainHTTPClient: Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    private let group: MultiThreadedEventLoopGroup
    private let pools: [ObjectIdentifier: LoopPool]
    private let connectTimeout: TimeAmount

    init(group: MultiThreadedEventLoopGroup = .singleton, connectTimeout: Double) {
        self.group = group
        var pools: [ObjectIdentifier: LoopPool] = [:]
        for loop in group.makeIterator() { pools[ObjectIdentifier(loop)] = LoopPool(loop: loop) }
        self.pools = pools
        self.connectTimeout = .milliseconds(Int64(connectTimeout * 1000))
    }

    /// The pool of the loop the caller runs on, else the next loop's.
    private func pool() -> LoopPool {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let p = pools[ObjectIdentifier(current)] { return p }
        return pools[ObjectIdentifier(group.next())]!
    }

    /// POSTs `body` to `http://host:port/path` and returns the complete response.
    func post(host: String, port: Int, path: String, headers: [(String, String)], body: [UInt8],
              limits: ResponseLimits) async throws -> Response {
        let pool = pool()
        let exchange = Exchange(promise: pool.loop.makePromise(of: Response.self))
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.reserveCapacity(headers.count + 3)
        head.headers.add(name: "Host", value: port == 80 ? host : "\(host):\(port)")
        for (k, v) in headers { head.headers.add(name: k, value: v) }
        head.headers.add(name: "Content-Length", value: String(body.count))
        let request = Request(host: host, port: port, head: head, body: body,
                              deadline: .now() + .milliseconds(Int64(limits.requestTimeout * 1000)), limits: limits)
        let connectTimeout = self.connectTimeout
        return try await withTaskCancellationHandler {
            if pool.loop.inEventLoop {
                pool.assumeIsolated.submit(request, exchange, connectTimeout: connectTimeout)
            } else {
                pool.loop.execute { pool.assumeIsolated.submit(request, exchange, connectTimeout: connectTimeout) }
            }
            return try await exchange.promise.futureResult.get()
        } onCancel: {
            pool.loop.execute { exchange.assumeIsolated(on: pool.loop).cancel() }
        }
    }

    /// Closes every idle connection.
    func shutdown() async {
        for pool in pools.values {
            try? await pool.loop.submit { pool.assumeIsolated.closeAll() }.get()
        }
    }

    struct Request: Sendable {
        var host: String
        var port: Int
        var head: HTTPRequestHead
        var body: [UInt8]
        var deadline: NIODeadline
        var limits: ResponseLimits
    }

    /// One request's outcome, completed once (response, error or cancellation) on its loop.
    final class Exchange: @unchecked Sendable {
        let promise: EventLoopPromise<Response>
        /// Loop-confined from here on.
        var done = false
        var channel: (any Channel)?
        var timer: Scheduled<Void>?
        /// The idle watch: when a byte last arrived, and the check due at `lastByte + readTimeout`.
        var lastByte = NIODeadline.now()
        var idleTimer: Scheduled<Void>?

        init(promise: EventLoopPromise<Response>) { self.promise = promise }

        func assumeIsolated(on loop: any EventLoop) -> Exchange {
            loop.preconditionInEventLoop()
            return self
        }

        func succeed(_ r: Response) {
            guard !done else { return }
            done = true
            timer?.cancel()
            idleTimer?.cancel()
            promise.succeed(r)
        }

        func fail(_ e: any Error) {
            guard !done else { return }
            done = true
            timer?.cancel()
            idleTimer?.cancel()
            promise.fail(e)
        }

        /// Starts the idle watch from now: the request is on the wire. One timer per request,
        /// moved on when it finds that bytes came meanwhile (a byte costs a clock read, not a timer).
        func watchIdle(on loop: any EventLoop, limits: ResponseLimits, host: String) {
            lastByte = .now()
            let interval = TimeAmount.milliseconds(Int64(limits.readTimeout * 1000))
            @Sendable func arm(at deadline: NIODeadline) {
                idleTimer = loop.scheduleTask(deadline: deadline) { [self] in
                    guard !done else { return }
                    if NIODeadline.now() - lastByte >= interval {
                        fail(limits.idle(host: host))
                        channel?.close(promise: nil)
                    } else {
                        arm(at: lastByte + interval)
                    }
                }
            }
            idleTimer?.cancel()
            arm(at: lastByte + interval)
        }

        func cancel() {
            guard !done else { return }
            fail(CancellationError())
            channel?.close(promise: nil)
        }
    }
}

/// `http://host[:port]/path` split for `PlainHTTPClient`; nil for any other URL (https, or
/// one it cannot read), which goes to async-http-client.
struct PlainTarget: Sendable, Equatable {
    var host: String
    var port: Int
    var path: String

    init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.isEmpty { port = 80 } else {
                guard after.hasPrefix(":"), let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        } else {
            host = String(authority)
            port = 80
        }
        if host.isEmpty { return nil }
    }
}

/// The idle connections of one loop, by host and port. Touched only on its loop.
final class LoopPool: @unchecked Sendable {
    let loop: any EventLoop
    private var idle: [String: [(channel: any Channel, handler: PlainHTTPHandler, since: NIODeadline)]] = [:]
    private static let idleLimit: TimeAmount = .seconds(55)

    init(loop: any EventLoop) { self.loop = loop }

    var assumeIsolated: LoopPool {
        loop.preconditionInEventLoop()
        return self
    }

    func submit(_ request: PlainHTTPClient.Request, _ exchange: PlainHTTPClient.Exchange, connectTimeout: TimeAmount) {
        guard !exchange.done else { return }
        exchange.timer = loop.scheduleTask(deadline: request.deadline) {
            exchange.fail(request.limits.expired())
            exchange.channel?.close(promise: nil)
        }
        let key = "\(request.host):\(request.port)"
        let now = NIODeadline.now()
        while var list = idle[key], let last = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            if last.channel.isActive && now - last.since < Self.idleLimit && last.handler.isIdle {
                send(request, exchange, on: last.channel, handler: last.handler, reused: true, connectTimeout: connectTimeout)
                return
            }
            last.channel.close(promise: nil)
        }
        connect(request, exchange, connectTimeout: connectTimeout)
    }

    private func connect(_ request: PlainHTTPClient.Request, _ exchange: PlainHTTPClient.Exchange, connectTimeout: TimeAmount) {
        let handler = PlainHTTPHandler()
        let bytes = ByteActivity(handler)
        ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(bytes)
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(NIOHTTPResponseDecompressor(limit: .ratio(50)))
                    try sync.addHandler(handler)
                }
            }
            .connect(host: request.host, port: request.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    if exchange.done {
                        channel.close(promise: nil)
                    } else {
                        self.send(request, exchange, on: channel, handler: handler, reused: false, connectTimeout: connectTimeout)
                    }
                case .failure(let error):
                    exchange.fail(LLMError.transport("connection: cannot connect to \(request.host):\(request.port): \(error)",
                                                     status: nil))
                }
            }
    }

    private func send(_ request: PlainHTTPClient.Request, _ exchange: PlainHTTPClient.Exchange, on channel: any Channel,
                      handler: PlainHTTPHandler, reused: Bool, connectTimeout: TimeAmount) {
        exchange.channel = channel
        exchange.watchIdle(on: loop, limits: request.limits, host: authority(request))
        handler.reused = reused
        handler.start(exchange, request: request) { [self] outcome in
            switch outcome {
            case .keepAlive:
                idle[request.host + ":" + String(request.port), default: []].append((channel, handler, .now()))
            case .close:
                channel.close(promise: nil)
            case .retryFresh:
                // A kept-alive connection the server had already closed, nothing answered:
                // the request goes once more, on a new connection.
                exchange.channel = nil
                if !exchange.done { connect(request, exchange, connectTimeout: connectTimeout) }
            }
        }
        var buffer = channel.allocator.buffer(capacity: request.body.count)
        buffer.writeBytes(request.body)
        channel.write(HTTPClientRequestPart.head(request.head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    func closeAll() {
        for list in idle.values { for entry in list { entry.channel.close(promise: nil) } }
        idle = [:]
    }

    private func authority(_ request: PlainHTTPClient.Request) -> String {
        request.port == 80 ? request.host : "\(request.host):\(request.port)"
    }
}

/// Sits before the HTTP decoder and tells the handler that bytes arrived, any bytes (a
/// header line, a chunk), so the idle watch measures silence and not parsing progress.
final class ByteActivity: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let handler: PlainHTTPHandler

    init(_ handler: PlainHTTPHandler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        handler.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// Collects one response at a time on a connection and says what becomes of the connection.
final class PlainHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    enum After { case keepAlive, close, retryFresh }

    private var exchange: PlainHTTPClient.Exchange?
    private var onDone: ((After) -> Void)?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var received = 0
    private var expected: Int?
    private var closed = false
    /// The current request's (set in `start`).
    private var limits = ResponseLimits(maxBody: ResponseLimits.defaultMaxBody, readTimeout: RetryPolicy.defaultReadTimeout,
                                        requestTimeout: 600)
    var reused = false

    var isIdle: Bool { exchange == nil && !closed }

    func start(_ exchange: PlainHTTPClient.Exchange, request: PlainHTTPClient.Request, onDone: @escaping (After) -> Void) {
        self.exchange = exchange
        self.onDone = onDone
        limits = request.limits
        head = nil
        body.clear()
        received = 0
        expected = nil
    }

    func bytesArrived() {
        exchange?.lastByte = .now()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Parts after a failed response (a body past the cap) are dropped; the connection closes.
        guard exchange != nil else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            do {
                expected = try limits.declaredLength(h.headers, status: Int(h.status.code))
            } catch {
                finish(.failure(error), .close)
                return
            }
            body.reserveCapacity(ResponseLimits.initialCapacity(expected))
        case .body(var chunk):
            received += chunk.readableBytes
            if received > limits.maxBody {
                finish(.failure(limits.tooLarge(status: head.map { Int($0.status.code) })), .close)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            let response = PlainHTTPClient.Response(status: Int(head.status.code), headers: head.headers, body: body)
            body = ByteBuffer()
            finish(.success(response), head.isKeepAlive ? .keepAlive : .close)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTPDecompression.DecompressionError {
            // Not a body cut short: what came expands too far (or is not gzip/deflate at all).
            finish(.failure(LLMError.transport(ResponseLimits.describe(error), status: head.map { Int($0.status.code) })), .close)
        } else if error is HTTPParserError {
            fail(reason: ResponseLimits.describe(error), malformed: true)
        } else {
            fail(reason: "\(error)")
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        fail(reason: "the server closed the connection")
        context.fireChannelInactive()
    }

    /// The connection broke or closed mid-response. `malformed`: the bytes were not HTTP, so
    /// the reason is the whole story and a fresh connection is not tried.
    private func fail(reason: String, malformed: Bool = false) {
        guard let exchange else { return }
        if let head {
            finish(.failure(ResponseLimits.truncated(received: received, expected: expected, reason: reason,
                                                     status: Int(head.status.code))), .close)
        } else if malformed {
            finish(.failure(LLMError.transport(reason, status: nil)), .close)
        } else if reused && !exchange.done {
            self.exchange = nil
            let done = onDone
            onDone = nil
            done?(.retryFresh)
        } else {
            finish(.failure(LLMError.transport("connection: \(reason) before answering", status: nil)), .close)
        }
    }

    private func finish(_ result: Result<PlainHTTPClient.Response, any Error>, _ after: After) {
        guard let exchange else { return }
        self.exchange = nil
        let done = onDone
        onDone = nil
        switch result {
        case .success(let r): exchange.succeed(r)
        case .failure(let e): exchange.fail(e)
        }
        done?(closed ? .close : after)
    }
}
