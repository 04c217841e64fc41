import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to launch one MCP tool server over stdio (a `servers` row).
public struct MCPServerSpec: Sendable, Hashable {
    public var name: String
    public var command: String
    public var args: [String]
    /// Extra environment for the child; values may hold `${VAR}` / `${VAR:-default}` references,
    /// expanded only when the process is spawned.
    public var env: [String: String]
    public var cwd: String?

    public init(name: String, command: String, args: [String] = [], env: [String: String] = [:], cwd: String? = nil) {
        self.name = name
        self.command = command
        self.args = args
        self.env = env
        self.cwd = cwd
    }
}

/// What a `tools/call` returned.
public struct MCPToolResult: Sendable, Equatable {
    /// The text content blocks joined with "\n"; other blocks (images, resources) as compact JSON.
    public var text: String
    /// The server's `isError` (false when absent).
    public var isError: Bool
    /// The server's `structuredContent`, when it sent one.
    public var structured: JSONValue?

    public init(text: String, isError: Bool, structured: JSONValue? = nil) {
        self.text = text
        self.isError = isError
        self.structured = structured
    }

    /// Maps a JSON-RPC `result` of `tools/call`.
    init(result: JSONValue, server: String) throws(MCPError) {
        guard case .object(let object) = result else {
            throw MCPError(.protocolError, server: server, "tools/call answered with a \(result.typeName) where an object was expected")
        }
        var parts: [String] = []
        if case .array(let blocks)? = object["content"] {
            for block in blocks {
                if block["type"]?.stringValue == "text", let text = block["text"]?.stringValue {
                    parts.append(text)
                } else {
                    parts.append(block.jsonText)
                }
            }
        }
        let structured = object["structuredContent"].flatMap { $0.isNull ? nil : $0 }
        // A result with only structured content still gives the model something to read.
        if parts.isEmpty, let structured { parts.append(structured.jsonText) }
        self.init(text: parts.joined(separator: "\n"), isError: object["isError"]?.boolValue ?? false, structured: structured)
    }
}

/// A failure talking to an MCP server. `kind` says which; `description` names the server and,
/// for a dead process, its exit status and the last lines it wrote to stderr. Expanded
/// environment values never appear here.
public struct MCPError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. New kinds can be added without breaking callers' `switch`es.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The program could not be started (not found, not executable, bad working directory).
        public static let spawnFailed = Kind("spawn failed")
        /// The process exited or closed its output; calls in flight fail with this.
        public static let processExited = Kind("process exited")
        /// The server answered with a JSON-RPC error (`rpcCode`, `message`).
        public static let rpc = Kind("rpc error")
        /// No answer within the call timeout; the server is left running.
        public static let timeout = Kind("timeout")
        /// The server answered something that is not valid MCP.
        public static let protocolError = Kind("protocol error")
        /// The client was shut down.
        public static let shutDown = Kind("shut down")
        /// The warehouse has no usable launch definition for the server.
        public static let notConfigured = Kind("not configured")
    }

    public let kind: Kind
    /// The server's name ("" when not known).
    public let server: String
    /// What happened, without the server name.
    public let message: String
    /// The JSON-RPC error code, for `.rpc`.
    public let rpcCode: Int?
    /// The last lines the process wrote to stderr, for `.processExited` and `.spawnFailed`.
    public let stderrTail: [String]

    init(_ kind: Kind, server: String, _ message: String, rpcCode: Int? = nil, stderrTail: [String] = []) {
        self.kind = kind
        self.server = server
        // Both come from the server (its JSON-RPC errors, its stderr): a server that prints
        // its token must not put it in our errors, logs or database.
        self.message = Secrets.mask(message)
        self.rpcCode = rpcCode
        self.stderrTail = stderrTail.map { Secrets.mask($0) }
    }

    public var description: String {
        var text = server.isEmpty ? "MCP: \(message)" : "MCP server \"\(server)\": \(message)"
        if !stderrTail.isEmpty {
            text += "\n  last stderr lines:\n" + stderrTail.map { "    " + $0 }.joined(separator: "\n")
        }
        return text
    }
}

/// A client for one MCP server over stdio: newline-delimited JSON-RPC 2.0 to a child process.
///
/// Many calls may be in flight at once (ids from an atomic counter, one line per request
/// written in order by a writer thread, responses matched by id on a reader thread, so no
/// caller ever blocks on a pipe). When the process dies,
/// every pending call fails at once with `.processExited` and the next call respawns and
/// re-initializes it (`restartCount`). Each call has a timeout that fails only that call.
public final class MCPClient: Sendable {
    public let spec: MCPServerSpec
    let callTimeout: Duration
    let environment: [String: String]

    /// Versions we accept in the server's `initialize` answer.
    public static let supportedProtocolVersions = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
    /// The version we ask for.
    public static let requestedProtocolVersion = "2025-06-18"
    /// Sent as `clientInfo.version`.
    public static let clientVersion = "0.1.0"

    /// How many times a process in a row may die during the handshake before `start` gives up.
    static let handshakeAttempts = 3
    /// A failed start is reported again, without respawning, to callers arriving this soon after.
    static let startFailureCooldown: Duration = .seconds(2)

    private struct State {
        var connection: MCPConnection?
        var starting: Task<MCPConnection, any Error>?
        var everConnected = false
        var restartCount = 0
        var protocolVersion: String?
        var shutDown = false
        var lastStartFailure: (error: MCPError, at: ContinuousClock.Instant)?
    }

    private let state = Mutex(State())
    private let ids = Atomic<Int>(0)

    public init(spec: MCPServerSpec, callTimeout: Duration = .seconds(120),
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.spec = spec
        self.callTimeout = callTimeout
        self.environment = environment
    }

    deinit {
        // A client dropped without `shutdown()` must not leave its process behind.
        state.withLock { $0.connection }?.abandon()
    }

    /// Times the process was started again after the first successful start.
    public var restartCount: Int { state.withLock { $0.restartCount } }

    /// The protocol version the server answered in its `initialize` result.
    public var protocolVersion: String? { state.withLock { $0.protocolVersion } }

    /// The running process's id (nil when none is running). For tests and diagnostics.
    public var pid: Int32? {
        state.withLock { s in s.connection.flatMap { $0.isAlive ? $0.pid : nil } }
    }

    /// Calls sent to the running process that await an answer.
    public var callsInFlight: Int {
        state.withLock { $0.connection }?.pendingCount ?? 0
    }

    /// Spawns the process and runs the `initialize` handshake; does nothing when it is running.
    public func start() async throws {
        _ = try await connection()
    }

    /// The server's tools (`tools/list`, following `nextCursor` pages), as the server sent them.
    public func listTools() async throws -> [JSONValue] {
        var tools: [JSONValue] = []
        var cursor: String?
        var seenCursors = Set<String>()
        repeat {
            var params = JSONObject()
            if let cursor { params["cursor"] = .string(cursor) }
            let result = try await request("tools/list", params: params, label: "tools/list")
            guard case .array(let page)? = result["tools"] else {
                throw MCPError(.protocolError, server: spec.name, "tools/list answered without a \"tools\" array")
            }
            tools += page
            cursor = result["nextCursor"]?.stringValue
            if let c = cursor, !seenCursors.insert(c).inserted {
                throw MCPError(.protocolError, server: spec.name, "tools/list repeated the cursor \"\(c)\"; stopping instead of looping")
            }
        } while cursor != nil
        return tools
    }

    /// Calls a tool. `sessionID` goes to the server as `params._meta.sessionId`, so servers that
    /// keep state per session can tell dialogues apart. A JSON-RPC error throws `.rpc`; a tool
    /// that failed but answered comes back with `isError` set.
    public func callTool(name: String, arguments: JSONObject, sessionID: String?) async throws -> MCPToolResult {
        var params = JSONObject()
        params["name"] = .string(name)
        params["arguments"] = .object(arguments)
        if let sessionID { params["_meta"] = .object(["sessionId": .string(sessionID)]) }
        let result = try await request("tools/call", params: params, label: "tools/call \"\(name)\"")
        return try MCPToolResult(result: result, server: spec.name)
    }

    /// Closes the server's stdin, waits up to about 2 s for it to exit, then sends SIGTERM and
    /// finally SIGKILL, and reaps it. Calls still in flight fail. Safe to call more than once.
    public func shutdown() async {
        let (connection, starting) = state.withLock { s in
            s.shutDown = true
            let c = s.connection
            s.connection = nil
            return (c, s.starting)
        }
        if let starting { _ = await starting.result }  // a start in progress sees shutDown and stops its process
        await connection?.terminate()
    }

    // MARK: - Requests

    private func nextID() -> Int {
        ids.wrappingAdd(1, ordering: .relaxed).newValue
    }

    private func request(_ method: String, params: JSONObject, label: String) async throws -> JSONValue {
        // A call that never reached a process that was already dead is sent again on the new one.
        var attempts = 0
        while true {
            let connection = try await self.connection()
            do {
                return try await connection.call(id: nextID(), method: method, params: .object(params),
                                                 timeout: callTimeout, label: label)
            } catch let e as MCPConnection.NotSent {
                attempts += 1
                if attempts >= 3 { throw e.error }
            }
        }
    }

    /// The live connection, starting (or restarting) the process when needed. Concurrent callers
    /// share one start.
    private func connection() async throws -> MCPConnection {
        enum Step { case ready(MCPConnection), wait(Task<MCPConnection, any Error>) }
        let step: Step = try state.withLock { s in
            if s.shutDown { throw MCPError(.shutDown, server: spec.name, "the client was shut down") }
            if let c = s.connection, c.isAlive { return .ready(c) }
            if let t = s.starting { return .wait(t) }
            if let f = s.lastStartFailure, ContinuousClock.now - f.at < Self.startFailureCooldown { throw f.error }
            let t = Task { try await self.startProcess() }
            s.starting = t
            return .wait(t)
        }
        switch step {
        case .ready(let c): return c
        case .wait(let t): return try await t.value
        }
    }

    /// Body of the shared start task: spawn and handshake, retrying a process that dies during
    /// the handshake, then publish the connection.
    private func startProcess() async throws -> MCPConnection {
        do {
            var deaths = 0
            while true {
                do {
                    let (connection, version) = try await spawnAndInitialize()
                    let stopped = state.withLock { s -> Bool in
                        s.starting = nil
                        if s.shutDown { return true }
                        if s.everConnected { s.restartCount += 1 }
                        s.everConnected = true
                        s.connection = connection
                        s.protocolVersion = version
                        s.lastStartFailure = nil
                        return false
                    }
                    if stopped {
                        await connection.terminate()
                        throw MCPError(.shutDown, server: spec.name, "the client was shut down")
                    }
                    return connection
                } catch let e as MCPError where e.kind == .processExited {
                    deaths += 1
                    if deaths >= Self.handshakeAttempts {
                        throw MCPError(.processExited, server: spec.name,
                                       "the server process died during the initialize handshake \(deaths) times in a row (last: \(e.message)); check its command, arguments and environment",
                                       stderrTail: e.stderrTail)
                    }
                    if state.withLock({ $0.shutDown }) { throw e }
                    try await Task.sleep(for: .milliseconds(100 * deaths))
                }
            }
        } catch {
            let e = (error as? MCPError) ?? MCPError(.spawnFailed, server: spec.name, "\(error)")
            state.withLock { s in
                s.starting = nil
                if e.kind != .shutDown { s.lastStartFailure = (e, .now) }
            }
            throw e
        }
    }

    private func spawnAndInitialize() async throws -> (MCPConnection, String) {
        let child = try spawnChild()
        let connection = MCPConnection(child: child, server: spec.name, sweepEvery: Self.sweepInterval(callTimeout))
        connection.begin()
        do {
            let params: JSONObject = [
                "protocolVersion": .string(Self.requestedProtocolVersion),
                "capabilities": .object([:]),
                "clientInfo": .object(["name": "rollout", "version": .string(Self.clientVersion)]),
            ]
            // Starting can be slow (interpreters, package downloads), so never less than 30 s.
            let handshakeTimeout = max(callTimeout, .seconds(30))
            let result: JSONValue
            do {
                result = try await connection.call(id: nextID(), method: "initialize", params: .object(params),
                                                   timeout: handshakeTimeout, label: "initialize")
            } catch let e as MCPConnection.NotSent {
                throw e.error
            }
            guard let version = result["protocolVersion"]?.stringValue else {
                throw MCPError(.protocolError, server: spec.name, "the initialize result has no protocolVersion")
            }
            guard Self.supportedProtocolVersions.contains(version) else {
                throw MCPError(.protocolError, server: spec.name,
                               "the server speaks MCP \(version); supported: \(Self.supportedProtocolVersions.joined(separator: ", "))")
            }
            connection.notify("notifications/initialized")
            return (connection, version)
        } catch {
            await connection.terminate()
            throw error
        }
    }

    static func sweepInterval(_ timeout: Duration) -> Duration {
        min(.seconds(1), max(.milliseconds(10), timeout / 10))
    }

    // MARK: - Spawning

    private func spawnChild() throws -> ChildProcess {
        var childEnvironment = environment
        for key in spec.env.keys.sorted() {
            do {
                childEnvironment[key] = try EnvReference.expandSecret(spec.env[key]!, environment: environment,
                                                                      keyPath: "servers.\(spec.name).env.\(key)")
            } catch let e as ConfigError {
                throw MCPError(.spawnFailed, server: spec.name, e.reason)
            }
        }
        var arguments: [String] = []
        for (n, arg) in spec.args.enumerated() {
            do {
                arguments.append(try EnvReference.expandSecret(arg, environment: environment, keyPath: "servers.\(spec.name).args[\(n)]"))
            } catch let e as ConfigError {
                throw MCPError(.spawnFailed, server: spec.name, "argument \(n + 1) \(e.reason)")
            }
        }
        guard let executable = Self.resolveExecutable(spec.command, path: childEnvironment["PATH"], cwd: spec.cwd) else {
            throw MCPError(.spawnFailed, server: spec.name,
                           "cannot start \"\(spec.command)\": not found on PATH (give a full path, or install it)")
        }
        do {
            return try ChildProcess.spawn(executable: executable, arguments: [spec.command] + arguments,
                                          environment: childEnvironment, cwd: spec.cwd)
        } catch let failure as SpawnFailure {
            let reason = String(cString: strerror(failure.code))
            let cwdNote = spec.cwd.map { " in \($0)" } ?? ""
            throw MCPError(.spawnFailed, server: spec.name, "cannot start \"\(executable)\"\(cwdNote): \(reason)")
        }
    }

    /// The program to run: a path as given (relative to `cwd` when set), `rollout` as this very
    /// binary when it is named rollout, otherwise the first executable match on `PATH`.
    static func resolveExecutable(_ command: String, path: String?, cwd: String?) -> String? {
        guard !command.isEmpty else { return nil }
        if command.contains("/") {
            if command.hasPrefix("/") { return command }
            if let cwd { return URL(fileURLWithPath: cwd).appending(path: command).path }
            return command
        }
        if command == "rollout", let me = currentExecutable(), URL(fileURLWithPath: me).lastPathComponent == "rollout" {
            return me
        }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + command
            var isDirectory: ObjCBool = false
            if access(candidate, X_OK) == 0, FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory),
               !isDirectory.boolValue {
                return candidate
            }
        }
        return nil
    }

    static func currentExecutable() -> String? {
        #if os(Linux)
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return buffer.withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0).prefix(n), as: UTF8.self) }
        #else
        return Bundle.main.executablePath
        #endif
    }
}

extension ToolSpecification {
    /// An MCP tool (`{name, description?, inputSchema?}`) as a model tool. A missing
    /// `inputSchema` becomes an empty object schema. The name is kept as the server spells it;
    /// the warehouse's `tools.api_name` holds the API-safe form where they differ.
    public init(mcpTool: JSONValue) throws {
        guard case .object(let tool) = mcpTool else {
            throw MCPError(.protocolError, server: "", "a tool must be a JSON object, found \(mcpTool.typeName)")
        }
        guard let name = tool["name"]?.stringValue, !name.isEmpty else {
            throw MCPError(.protocolError, server: "", "a tool without a name: \(mcpTool.jsonText.prefix(200))")
        }
        var parameters: JSONValue = .object(["type": "object", "properties": .object([:])])
        if let schema = tool["inputSchema"], !schema.isNull {
            guard case .object = schema else {
                throw MCPError(.protocolError, server: "", "tool \"\(name)\": inputSchema must be an object, found \(schema.typeName)")
            }
            parameters = schema
        }
        self.init(name: name, description: tool["description"]?.stringValue, parameters: parameters)
    }
}

// MARK: - One process and its pipes

/// One running server process: the writer side, the reader and stderr threads, and the table
/// of calls waiting for an answer. Once dead it stays dead; the client makes a new one.
final class MCPConnection: Sendable {
    /// Thrown by `call` when the connection was already dead before the request was written,
    /// so the client may send it to a fresh process.
    struct NotSent: Error { let error: MCPError }

    private struct Pending {
        var continuation: CheckedContinuation<JSONValue, any Error>
        var deadline: ContinuousClock.Instant
        var label: String
        var timeout: Duration
    }

    private struct State {
        var pending: [Int: Pending] = [:]
        /// Set once: why the connection is finished.
        var dead: MCPError?
        /// The wait status once the process has been reaped.
        var exitStatus: Int32?
        var stderrTail: [String] = []
        var stderrDone = false
        var terminating = false
        /// Stdout reached its end: nothing more will be answered.
        var closed = false
    }

    let pid: Int32
    let server: String
    private let child: ChildProcess
    private let sweepEvery: Duration
    private let state = Mutex(State())
    /// Lines waiting for the writer thread. Callers never block on a full pipe (a server that
    /// stops reading must not stall the cooperative thread pool); the thread writes them in
    /// order, many per write when they pile up.
    private struct Outbox {
        var lines: [[UInt8]] = []
        var closing = false
    }
    private let outbox = Mutex(Outbox())
    private let wakeWriter = DispatchSemaphore(value: 0)
    private static let logger = Logger(label: "rollout.mcp")
    static let stderrLines = 20

    init(child: ChildProcess, server: String, sweepEvery: Duration) {
        self.child = child
        self.pid = child.pid
        self.server = server
        self.sweepEvery = sweepEvery
    }

    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// False from the moment stdout closes (the process is going), before it is reaped.
    var isAlive: Bool { state.withLock { $0.dead == nil && !$0.closed } }

    /// Starts the stdin writer, the stdout reader, the stderr drain and the timeout sweeper.
    func begin() {
        let writer = Thread { [self] in writeLoop() }
        writer.name = "mcp-\(server)-stdin"
        writer.start()
        let reader = Thread { [self] in readLoop() }
        reader.name = "mcp-\(server)-stdout"
        reader.start()
        let drain = Thread { [self] in stderrLoop() }
        drain.name = "mcp-\(server)-stderr"
        drain.start()
        Task.detached { [weak self] in
            while let interval = self?.sweepEvery {
                try? await Task.sleep(for: interval)
                guard let self, self.isAlive else { return }
                self.expire()
            }
        }
    }

    // MARK: Calls

    func call(id: Int, method: String, params: JSONValue, timeout: Duration, label: String) async throws -> JSONValue {
        let line = Self.encode(["jsonrpc": "2.0", "id": JSONValue(id), "method": .string(method), "params": params])
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                // After stdout closed but before the exit is known (`finish` is reaping the
                // process and collecting its last stderr lines), the call waits with the others:
                // `finish` fails them all with the exit status and stderr, not a bare "closed".
                let refused = state.withLock { s -> MCPError? in
                    if let dead = s.dead { return dead }
                    s.pending[id] = Pending(continuation: continuation, deadline: .now + timeout, label: label, timeout: timeout)
                    return nil
                }
                if let refused {
                    continuation.resume(throwing: NotSent(error: refused))
                    return
                }
                if Task.isCancelled {
                    cancel(id)
                    return
                }
                if !enqueue(line), let p = state.withLock({ s in s.closed ? nil : s.pending.removeValue(forKey: id) }) {
                    p.continuation.resume(throwing: NotSent(error: MCPError(.processExited, server: server, "the server's stdin is closed")))
                }
            }
        } onCancel: {
            cancel(id)
        }
    }

    /// Sends a notification (no answer expected).
    func notify(_ method: String, params: JSONObject? = nil) {
        var message: JSONObject = ["jsonrpc": "2.0", "method": .string(method)]
        if let params { message["params"] = .object(params) }
        _ = enqueue(Self.encode(message))
    }

    private func cancel(_ id: Int) {
        guard let p = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        p.continuation.resume(throwing: CancellationError())
        notify("notifications/cancelled", params: ["requestId": JSONValue(id), "reason": "cancelled by the client"])
    }

    /// Fails calls past their deadline; the process stays up.
    private func expire() {
        let now = ContinuousClock.now
        let expired = state.withLock { s -> [(Int, Pending)] in
            let ids = s.pending.filter { $0.value.deadline <= now }.map(\.key)
            return ids.map { ($0, s.pending.removeValue(forKey: $0)!) }
        }
        for (id, p) in expired {
            p.continuation.resume(throwing: MCPError(.timeout, server: server,
                                                     "\(p.label) got no answer within \(Self.format(p.timeout))"))
            notify("notifications/cancelled", params: ["requestId": JSONValue(id), "reason": "timed out"])
        }
    }

    static func format(_ d: Duration) -> String {
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        return seconds >= 1 && seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(Int((seconds * 1000).rounded())) ms"
    }

    private static func encode(_ message: JSONObject) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        JSONWriter.compact.write(.object(message), into: &bytes)
        bytes.append(0x0A)
        return bytes
    }

    /// Queues one line for the writer thread; false once stdin is being closed.
    private func enqueue(_ line: [UInt8]) -> Bool {
        let queued = outbox.withLock { o -> Bool in
            guard !o.closing else { return false }
            o.lines.append(line)
            return true
        }
        if queued { wakeWriter.signal() }
        return queued
    }

    /// Lets the writer finish what is queued, then close the child's stdin.
    private func closeStdin() {
        let first = outbox.withLock { o -> Bool in
            defer { o.closing = true }
            return !o.closing
        }
        if first { wakeWriter.signal() }
    }

    private func writeLoop() {
        let fd = child.stdin
        var broken = false
        var batch: [UInt8] = []
        while true {
            wakeWriter.wait()
            let (lines, closing) = outbox.withLock { o -> ([[UInt8]], Bool) in
                defer { o.lines.removeAll(keepingCapacity: true) }
                return (o.lines, o.closing)
            }
            // After a failed write (the process is gone) lines are dropped; the reader fails
            // their calls with the exit status once stdout closes.
            if !broken && !lines.isEmpty {
                batch.removeAll(keepingCapacity: true)
                for line in lines { batch.append(contentsOf: line) }
                broken = !writeAll(fd, batch)
            }
            if closing { break }
        }
        close(fd)
    }

    // MARK: Reading

    private func readLoop() {
        let fd = child.stdout
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var carry: [UInt8] = []
        reading: while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 1000)
            if ready == 0 {
                // Idle: the process may have died while a child of its own holds stdout open.
                if tryReap() != nil { break reading }
                continue
            }
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                break
            }
            buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                var start = 0
                while let newline = chunk[start...].firstIndex(of: 0x0A) {
                    if carry.isEmpty {
                        handleLine(UnsafeRawBufferPointer(rebasing: chunk[start..<newline]))
                    } else {
                        carry.append(contentsOf: chunk[start..<newline])
                        carry.withUnsafeBytes { handleLine($0) }
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = newline + 1
                }
                if start < n { carry.append(contentsOf: chunk[start..<n]) }
            }
        }
        close(fd)
        finish()
    }

    private func handleLine(_ line: UnsafeRawBufferPointer) {
        var i = 0
        while i < line.count, line[i] == 0x20 || line[i] == 0x09 || line[i] == 0x0D { i += 1 }
        // Servers print banners and logs on stdout; only JSON objects are protocol.
        guard i < line.count, line[i] == UInt8(ascii: "{"),
              case .object(let message)? = try? JSONParser.parse(line) else {
            if i < line.count { Self.logger.debug("ignored a non-JSON line from the server", metadata: ["server": "\(server)"]) }
            return
        }
        if let method = message["method"]?.stringValue {
            if let id = message["id"] { answerServerRequest(id: id, method: method) }
            return  // notifications (logging, progress, list changes) are not used
        }
        guard let idValue = message["id"], let id = Self.intID(idValue),
              let p = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return }
        if let error = message["error"], !error.isNull {
            let code = error["code"].flatMap { $0.doubleValue }.map { Int($0) }
            let text = error["message"]?.stringValue ?? error.jsonText
            p.continuation.resume(throwing: MCPError(.rpc, server: server,
                                                     "\(p.label) failed with JSON-RPC error \(code.map(String.init) ?? "?"): \(text)",
                                                     rpcCode: code))
        } else if let result = message["result"] {
            p.continuation.resume(returning: result)
        } else {
            p.continuation.resume(throwing: MCPError(.protocolError, server: server, "the answer to \(p.label) has neither result nor error"))
        }
    }

    /// Requests from the server: `ping` is answered; anything else is refused as unknown.
    private func answerServerRequest(id: JSONValue, method: String) {
        var reply: JSONObject = ["jsonrpc": "2.0", "id": id]
        if method == "ping" {
            reply["result"] = .object([:])
        } else {
            reply["error"] = .object(["code": JSONValue(-32601), "message": .string("Method not found: \(method)")])
        }
        _ = enqueue(Self.encode(reply))
    }

    private static func intID(_ value: JSONValue) -> Int? {
        switch value {
        case .number(let n): Int(n)
        case .string(let s): Int(s)
        default: nil
        }
    }

    private func stderrLoop() {
        let fd = child.stderr
        var buffer = [UInt8](repeating: 0, count: 1 << 14)
        var partial: [UInt8] = []
        func keep(_ bytes: some Collection<UInt8>) {
            let line = String(decoding: bytes.prefix(400), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty else { return }
            state.withLock { s in
                s.stderrTail.append(line)
                if s.stderrTail.count > Self.stderrLines { s.stderrTail.removeFirst(s.stderrTail.count - Self.stderrLines) }
            }
        }
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            var start = 0
            while let newline = buffer[start..<n].firstIndex(of: 0x0A) {
                if partial.isEmpty {
                    keep(buffer[start..<newline])
                } else {
                    partial.append(contentsOf: buffer[start..<newline])
                    keep(partial)
                    partial.removeAll(keepingCapacity: true)
                }
                start = newline + 1
            }
            if start < n && partial.count < 4096 { partial.append(contentsOf: buffer[start..<n]) }
        }
        if !partial.isEmpty { keep(partial) }
        close(fd)
        state.withLock { $0.stderrDone = true }
    }

    // MARK: Exit

    /// After stdout closed: reap the process (killing it if it lingers), then fail every
    /// pending call with its exit status and last stderr lines.
    private func finish() {
        state.withLock { $0.closed = true }
        var status = tryReap()
        var waited = 0
        while status == nil && waited < 100 {
            usleep(10_000)
            waited += 1
            status = tryReap()
        }
        if status == nil {
            // It closed stdout but lives on: it cannot answer anything, so it goes.
            signalGroup(SIGKILL)
            status = reapBlocking()
        }
        // Give the stderr drain a moment to collect the final lines.
        for _ in 0..<30 where !state.withLock({ $0.stderrDone }) { usleep(10_000) }
        closeStdin()
        let how = Self.describe(status: status ?? 0)
        // Marking the connection dead and taking the pending calls in one step: a call cannot
        // slip in between and wait forever.
        let (pending, error) = state.withLock { s -> ([Int: Pending], MCPError) in
            let error = MCPError(.processExited, server: server,
                                 s.terminating ? "the server was shut down (\(how))" : "the server process exited (\(how))",
                                 stderrTail: s.terminating ? [] : s.stderrTail)
            s.dead = error
            let p = s.pending
            s.pending = [:]
            return (p, error)
        }
        for (_, p) in pending {
            p.continuation.resume(throwing: MCPError(.processExited, server: server, "\(p.label): \(error.message)",
                                                     stderrTail: error.stderrTail))
        }
    }

    /// The exit status once the process has exited (reaping it); nil while it runs.
    private func tryReap() -> Int32? {
        if let known = state.withLock({ $0.exitStatus }) { return known }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid || (r < 0 && errno == ECHILD) {
            let s = r == pid ? status : 0
            state.withLock { $0.exitStatus = s }
            return s
        }
        return nil
    }

    private func reapBlocking() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        state.withLock { $0.exitStatus = status }
        return status
    }

    static func describe(status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exit status \((status >> 8) & 0xFF)" }
        let names: [Int32: String] = [SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT",
                                      SIGINT: "SIGINT", SIGPIPE: "SIGPIPE", SIGHUP: "SIGHUP", SIGBUS: "SIGBUS"]
        return "killed by signal \(signal)" + (names[signal].map { " (\($0))" } ?? "")
    }

    /// Signals the process's group (it leads its own), so helpers it started go too.
    private func signalGroup(_ signal: Int32) {
        guard state.withLock({ $0.exitStatus == nil }) else { return }
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// Reaped, and every pending call failed.
    private var reaped: Bool { state.withLock { $0.exitStatus != nil && $0.dead != nil } }

    private func waitReaped(for duration: Duration) async -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if reaped { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return reaped
    }

    /// Graceful stop: close stdin, wait ~2 s, SIGTERM, wait ~2 s, SIGKILL; returns once reaped.
    func terminate() async {
        state.withLock { $0.terminating = true }
        closeStdin()
        if await waitReaped(for: .seconds(2)) { return }
        signalGroup(SIGTERM)
        if await waitReaped(for: .seconds(2)) { return }
        signalGroup(SIGKILL)
        while !(await waitReaped(for: .seconds(5))) { signalGroup(SIGKILL) }
    }

    /// For a client released without `shutdown()`: close stdin and kill; the reader thread reaps.
    func abandon() {
        state.withLock { $0.terminating = true }
        closeStdin()
        signalGroup(SIGKILL)
    }
}

// MARK: - posix_spawn

/// An errno from setting up or spawning the child.
struct SpawnFailure: Error { let code: Int32 }

/// A spawned child with pipes on its stdin, stdout and stderr. Its process group is its own.
struct ChildProcess: Sendable {
    let pid: pid_t
    let stdin: Int32
    let stdout: Int32
    let stderr: Int32

    private typealias AddChdir = @convention(c) (UnsafeMutableRawPointer, UnsafePointer<CChar>) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

    /// glibc ≥ 2.29 / 2.34 and macOS have these, but Swift's Glibc module does not import them.
    private static let addChdir: AddChdir? = symbol("posix_spawn_file_actions_addchdir_np")
    private static let addCloseFrom: AddCloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")

    private static func symbol<T>(_ name: String) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: T.self)
    }

    /// Writing to a pipe whose reader died must be an error, not a signal that ends us.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    static func spawn(executable: String, arguments: [String], environment: [String: String], cwd: String?) throws -> ChildProcess {
        _ = ignoreSIGPIPE
        if let cwd {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw SpawnFailure(code: ENOTDIR)
            }
        }
        let inPipe = try makePipe(), outPipe = try makePipe(), errPipe = try makePipe()
        var ok = false
        defer {
            // Our copies of the child's ends always go; ours go too when spawning failed.
            close(inPipe.read); close(outPipe.write); close(errPipe.write)
            if !ok { close(inPipe.write); close(outPipe.read); close(errPipe.read) }
        }

        #if canImport(Glibc)
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #else
        var actions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        posix_spawn_file_actions_adddup2(&actions, inPipe.read, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe.write, 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe.write, 2)
        withUnsafeMutablePointer(to: &actions) { pointer in
            // Descriptors we opened without close-on-exec (none of ours) must not leak either.
            _ = addCloseFrom?(UnsafeMutableRawPointer(pointer), 3)
        }
        if let cwd {
            guard let addChdir else { throw SpawnFailure(code: ENOSYS) }
            let r = withUnsafeMutablePointer(to: &actions) { pointer in
                cwd.withCString { addChdir(UnsafeMutableRawPointer(pointer), $0) }
            }
            if r != 0 { throw SpawnFailure(code: r) }
        }

        var flags = Int32(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        #if canImport(Darwin)
        flags |= Int32(POSIX_SPAWN_CLOEXEC_DEFAULT)
        #endif
        posix_spawnattr_setflags(&attributes, Int16(flags))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard r == 0 else { throw SpawnFailure(code: r) }
        ok = true
        return ChildProcess(pid: pid, stdin: inPipe.write, stdout: outPipe.read, stderr: errPipe.read)
    }

    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    /// Linux's pipe2, looked up because Swift's Glibc module does not import it.
    private static let pipe2: Pipe2? = symbol("pipe2")

    /// A pipe whose both ends close on exec (only the dup2'd copies reach the child). Without
    /// pipe2 the flag is set right after; the spawn's closefrom(3) covers that window for our
    /// own children.
    private static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        if let pipe2 {
            guard pipe2(&fds, O_CLOEXEC) == 0 else { throw SpawnFailure(code: errno) }
        } else {
            guard pipe(&fds) == 0 else { throw SpawnFailure(code: errno) }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }
        return (fds[0], fds[1])
    }
}
