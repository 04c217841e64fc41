import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A fault `rollout mock-server` injects into a share of its responses.
public enum MockFault: String, Sendable, CaseIterable {
    /// 429 with `Retry-After: 1` and an OpenAI-style error body.
    case rateLimited = "429"
    case serverError = "500"
    case badGateway = "502"
    case unavailable = "503"
    /// Never answers; the connection stays open until the client gives up.
    case timeout
    /// A 200 whose body is not valid JSON.
    case malformed
    /// A 200 whose body stops before its Content-Length, then the connection closes.
    case truncated
    /// The connection is closed as soon as the request arrives, with no response.
    case reset

    /// Parses `RATE:KIND` (`0.1:429`, `0.05:reset`).
    public static func parseRule(_ text: String) throws -> (rate: Double, fault: MockFault) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let rate = Double(parts[0]), (0...1).contains(rate), let fault = MockFault(rawValue: parts[1]) else {
            throw MockServerError("--fail expects RATE:KIND with RATE in 0…1 and KIND one of \(allCases.map(\.rawValue).joined(separator: ", ")); got \"\(text)\"")
        }
        return (rate, fault)
    }
}

public struct MockServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// How the mock server behaves.
public struct MockServerConfiguration: Sendable {
    public var latencyMs: Int = 0
    public var jitterMs: Int = 0
    public var faults: [(rate: Double, fault: MockFault)] = []
    /// Seeds fault draws and latency jitter (the model itself is seeded per request).
    public var seed: UInt64 = 0
    /// Settings for the mock model, as a registry entry's extra keys would give them.
    public var modelSettings: JSONObject = [:]
    /// The Files and Batches endpoints (MockBatches.swift).
    public var batches = MockBatchConfiguration()

    public init(latencyMs: Int = 0, jitterMs: Int = 0, faults: [(rate: Double, fault: MockFault)] = [], seed: UInt64 = 0,
                modelSettings: JSONObject = [:]) {
        self.latencyMs = latencyMs
        self.jitterMs = jitterMs
        self.faults = faults
        self.seed = seed
        self.modelSettings = modelSettings
    }
}

/// A loopback HTTP server speaking the OpenAI chat-completions and Anthropic Messages JSON with
/// the built-in mock model behind it, and fault injection. The tests and benchmarks use it as
/// the real HTTP peer; users dry-run configs against it.
///
/// Routes: `POST /v1/chat/completions` (also `/chat/completions`), `POST /v1/messages`,
/// `GET /v1/models`, `GET /health`. The model's role comes from the request's model name:
/// a name containing "user" is the user simulator, "judge" the judge, anything else the agent.
public final class MockServer: Sendable {
    public let configuration: MockServerConfiguration
    private let settings: MockModel.Settings
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let counter = Atomic<UInt64>(0)
    private let served = Atomic<Int>(0)
    let batches: MockBatchService

    /// The port it listens on (useful when started on port 0).
    public var port: Int { channel.localAddress?.port ?? 0 }
    /// Requests received so far.
    public var requestCount: Int { Int(counter.load(ordering: .relaxed)) }

    private init(configuration: MockServerConfiguration, settings: MockModel.Settings, group: MultiThreadedEventLoopGroup,
                 channel: any Channel) {
        self.configuration = configuration
        self.settings = settings
        self.group = group
        self.channel = channel
        self.batches = MockBatchService(configuration: configuration.batches)
    }

    /// Starts listening on `host:port` (port 0 picks a free one).
    public static func start(host: String = "127.0.0.1", port: Int = 0, configuration: MockServerConfiguration = .init(),
                             threads: Int = System.coreCount) async throws -> MockServer {
        let settings: MockModel.Settings
        do { settings = try MockModel.Settings(configuration.modelSettings) } catch { throw MockServerError("\(error)") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let box = ServerBox()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Our own response headers are fixed and valid: no per-response header validation.
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withServerUpgrade: nil, withErrorHandling: true,
                        withOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(MockHTTPHandler(box: box))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw MockServerError("cannot listen on \(host):\(port): \(error)")
        }
        let server = MockServer(configuration: configuration, settings: settings, group: group, channel: channel)
        box.server.withLock { $0 = server }
        return server
    }

    /// Stops listening and closes every connection.
    public func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }

    /// Runs until the listening channel closes.
    public func wait() async throws {
        try await channel.closeFuture.get()
    }

    /// SplitMix64 over the request number: reproducible draws whatever the thread.
    private func draw(_ n: UInt64, salt: UInt64) -> Double {
        var z = (n &+ (configuration.seed &* 0x1000_0000_01B3) &+ (salt << 56)) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }

    /// What to do with request number `n`: a fault or nil, and the delay before answering.
    func plan() -> (fault: MockFault?, delayMs: Int) {
        let n = counter.add(1, ordering: .relaxed).newValue
        var fault: MockFault?
        var r = draw(n, salt: 1)
        for rule in configuration.faults {
            if r < rule.rate { fault = rule.fault; break }
            r -= rule.rate
        }
        var delay = configuration.latencyMs
        if configuration.jitterMs > 0 { delay += Int(draw(n, salt: 2) * Double(configuration.jitterMs)) }
        return (fault, delay)
    }

    /// The mock model for a requested model name: "judge" in it → judge, "user" → user simulator,
    /// anything else the agent.
    func model(_ name: String) -> MockModel {
        let lower = name.lowercased()
        let role: MockModel.Role = lower.contains("judge") ? .judge : lower.contains("user") ? .user : .agent
        return MockModel(role: role, settings: settings)
    }

    /// The mock model's answer to a request body on `path`: status, headers, body.
    func answer(path: String, body: [UInt8]) -> (status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        func failure(_ status: HTTPResponseStatus, _ message: String, type: String = "invalid_request_error") -> (HTTPResponseStatus, String, [UInt8]) {
            let json: JSONValue = path.hasSuffix("/messages")
                ? .object(["type": "error", "error": .object(["type": .string(type), "message": .string(message)])])
                : .object(["error": .object(["message": .string(message), "type": .string(type), "code": JSONValue(Int(status.code))])])
            return (status, "application/json", Array(json.jsonText.utf8))
        }
        let value: JSONValue
        switch body.withUnsafeBytes({ JSONParser.result($0) }) {
        case .success(let v): value = v
        case .failure(let e): return failure(.badRequest, "request body is not valid JSON: \(e.description)")
        }
        let created = Int(Date().timeIntervalSince1970)
        do {
            if path.hasSuffix("/messages") {
                let request = try MockServerWire.anthropicRequest(value)
                let response = model(request.model).respond(to: request)
                return (.ok, "application/json", Array(MockServerWire.anthropicResponse(response).jsonText.utf8))
            }
            let (request, stream) = try MockServerWire.openAIRequest(value)
            let response = model(request.model).respond(to: request)
            if stream { return (.ok, "text/event-stream", MockServerWire.openAIStream(response, created: created)) }
            return (.ok, "application/json", Array(MockServerWire.openAIResponse(response, created: created).jsonText.utf8))
        } catch let e as FieldError {
            return failure(.badRequest, "\(e.field): \(e.reason)")
        } catch {
            return failure(.badRequest, "\(error)")
        }
    }
}

/// Lets connection handlers reach the server once it exists.
final class ServerBox: Sendable {
    let server = Mutex<MockServer?>(nil)
}

/// One connection's HTTP handling. Lives on its channel's event loop.
final class MockHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let box: ServerBox
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(box: ServerBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.removeAll(keepingCapacity: true)
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head, let server = box.server.withLock({ $0 }) else { return }
            self.head = nil
            respond(context: context, head: head, server: server)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, server: MockServer) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        if let reply = server.batches.handle(method: head.method, path: path, headers: head.headers, body: body, server: server) {
            write(context: context, head: head, status: reply.status, contentType: reply.contentType, body: reply.body)
            return
        }
        if head.method == .GET {
            let json: JSONValue = path.hasSuffix("/models")
                ? .object(["object": "list", "data": .array(["mock/agent", "mock/user", "mock/judge"].map {
                    .object(["id": .string($0), "object": "model", "owned_by": "rollout"])
                })])
                : .object(["status": "ok"])
            write(context: context, head: head, status: .ok, contentType: "application/json", body: Array(json.jsonText.utf8))
            return
        }
        guard head.method == .POST, path.hasSuffix("/chat/completions") || path.hasSuffix("/messages") else {
            write(context: context, head: head, status: .notFound, contentType: "application/json",
                  body: Array(#"{"error":{"message":"no route \#(path)","type":"invalid_request_error","code":404}}"#.utf8))
            return
        }
        let arrived = NIODeadline.now()
        let (fault, delay) = server.plan()
        let requestBody = body
        let loop = context.eventLoop.assumeIsolated()
        // The answer is computed on arrival and sent when the latency is up, so the latency is
        // measured from the request's arrival and the model's work overlaps it (as a real
        // server's compute is part of its latency) instead of adding to it.
        let answer = fault == nil || fault == .truncated ? server.answer(path: path, body: requestBody) : nil
        let act = {
            switch fault {
            case .timeout?:
                return // hold the connection open; the client's timeout ends it
            case .reset?:
                context.close(promise: nil)
            case .rateLimited?, .serverError?, .badGateway?, .unavailable?:
                let code = Int(fault!.rawValue)!
                let message = code == 429 ? "Rate limit reached (mock)" : "The server had an error (mock \(code))"
                let json: JSONValue = .object(["error": .object(["message": .string(message),
                                                                 "type": .string(code == 429 ? "rate_limit_exceeded" : "server_error"),
                                                                 "code": JSONValue(code)])])
                self.write(context: context, head: head, status: HTTPResponseStatus(statusCode: code), contentType: "application/json",
                           body: Array(json.jsonText.utf8), extraHeaders: code == 429 ? [("Retry-After", "1")] : [])
            case .malformed?:
                self.write(context: context, head: head, status: .ok, contentType: "application/json",
                           body: Array(#"{"id": "chatcmpl-mock", "choices": [{"index": 0, "message": {"role": "assis"#.utf8))
            case .truncated?:
                let full = answer!.body
                var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(full.count))])
                headers.add(name: "Connection", value: "close")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
                var buffer = context.channel.allocator.buffer(capacity: full.count / 2)
                buffer.writeBytes(full.prefix(full.count / 2))
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                context.close(promise: nil)
            case nil:
                let (status, type, bytes) = answer!
                self.write(context: context, head: head, status: status, contentType: type, body: bytes)
            }
        }
        let due = arrived + .milliseconds(Int64(delay))
        if delay > 0 && due > .now() {
            loop.scheduleTask(deadline: due) { act() }
        } else {
            act()
        }
    }

    private func write(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, contentType: String,
                       body: [UInt8], extraHeaders: [(String, String)] = []) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.count))])
        for (k, v) in extraHeaders { headers.add(name: k, value: v) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }
}
