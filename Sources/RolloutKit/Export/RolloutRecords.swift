import Foundation
import GRDB
import Synchronization

/// A file an export wrote.
public struct ExportedFile: Sendable, Equatable {
    public var path: String
    public var count: Int
    public var bytes: Int
    public var sha256: String
}

/// Writes a file atomically through `OutputTarget`: into a temporary sibling, renamed over the
/// target when complete, so a reader never sees half a file and a rerun never appends to an
/// old one; a target that is not a regular file (a link, a pipe, a device) is refused, and a
/// replaced file keeps its mode. Full 1 MiB
/// buffers go to a second thread that hashes (SHA-256) and writes them, so rendering on the
/// calling thread overlaps with both.
final class AtomicFileWriter {
    let path: String
    private let pending: OutputTarget.Pending
    private var buffer = JSONBytes(capacity: 0)
    private(set) var bytes = 0
    private let pipe: FilePipe
    private var finished: String?

    init(path: String) throws {
        self.path = path
        pending = try OutputTarget.create(path)
        pipe = FilePipe(fd: pending.fd, path: path)
        buffer.out.reserveCapacity(Self.chunk + (Self.chunk >> 2))
    }

    private static let chunk = 1 << 20

    func write(line: String) throws {
        try appendLine { $0.raw(Array(line.utf8)) }
    }

    /// Appends one line that `body` writes straight into the file's buffer (a newline is added).
    func appendLine<R>(_ body: (inout JSONBytes) throws -> R) throws -> R {
        let result = try body(&buffer)
        buffer.byte(0x0A)
        if buffer.out.count >= Self.chunk { try drain() }
        return result
    }

    private func drain() throws {
        guard !buffer.out.isEmpty else { return }
        bytes += buffer.out.count
        var full = pipe.spareBuffer() ?? []
        if full.capacity == 0 { full.reserveCapacity(Self.chunk + (Self.chunk >> 2)) }
        swap(&full, &buffer.out)
        try pipe.send(full)
    }

    /// Flushes and syncs the temporary file and returns its sha256; the target is untouched
    /// until `publish`.
    func finish() throws -> String {
        if let finished { return finished }
        try drain()
        let sha = try pipe.close()
        finished = sha
        return sha
    }

    /// Renames the finished temporary file over the target.
    func publish() throws {
        try OutputTarget.publish(pending)
    }

    /// Flushes, renames into place, and returns the file's sha256.
    func commit() throws -> String {
        let sha = try finish()
        try publish()
        return sha
    }

    func abandon() {
        pipe.cancel()
        OutputTarget.discard(pending)
    }
}

/// The thread behind an `AtomicFileWriter`: hashes and writes the buffers it is sent, in order.
/// `@unchecked Sendable`: `hasher`, `failure` and `done` are touched by the worker thread until
/// it signals `finishedSignal`, and read by the owner only after waiting for it.
private final class FilePipe: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let channel = BatchChannel<[UInt8]>(capacity: 4)
    /// Written buffers, emptied, for the writer to fill again (fresh pages cost page faults).
    private let spares = Mutex<[[UInt8]]>([])
    private let finishedSignal = DispatchSemaphore(value: 0)
    private var hasher = SHA256()
    private var failure: String?
    private var closed = false

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        let thread = Thread { [self] in self.work() }
        thread.start()
    }

    private func work() {
        while var batch = channel.receive() {
            guard !batch.isEmpty else { break }  // an empty batch ends the stream
            var chunk = batch.removeLast()  // unique, so it can be emptied in place and reused
            if failure != nil { continue }
            chunk.withUnsafeBytes { raw in
                hasher.update(raw)
                if !writeAll(fd, raw) { failure = "cannot write \(path): \(String(cString: strerror(errno)))" }
            }
            chunk.removeAll(keepingCapacity: true)
            let spare = chunk
            spares.withLock { if $0.count < 4 { $0.append(spare) } }
        }
        finishedSignal.signal()
    }

    func send(_ chunk: [UInt8]) throws {
        channel.send([chunk])
    }

    func spareBuffer() -> [UInt8]? { spares.withLock { $0.popLast() } }

    /// Waits for every buffer to be written, syncs and closes; returns the sha256.
    func close() throws -> String {
        guard !closed else { throw ExportError("\(path): closed twice") }
        closed = true
        channel.send([])
        finishedSignal.wait()
        channel.cancel()
        defer { _ = Foundation.close(fd) }
        if let failure { throw ExportError(failure) }
        if fsync(fd) != 0 { throw ExportError("cannot sync \(path): \(String(cString: strerror(errno)))") }
        return hasher.hexDigest()
    }

    func cancel() {
        guard !closed else { return }
        closed = true
        channel.send([])
        finishedSignal.wait()
        channel.cancel()
        _ = Foundation.close(fd)
    }
}

extension Warehouse {
    /// The messages of a rollout in order, tool calls attached, in the canonical shape.
    func transcript(rollout: Int64, _ db: Database) throws -> [ChatMessage] {
        var calls: [Int64: [ToolCall]] = [:]
        let callRows = try Row.fetchCursor(db, sql: "SELECT message_id, call_id, name, arguments FROM tool_calls WHERE rollout_id = ? ORDER BY message_id, idx",
                                           arguments: [rollout])
        while let row = try callRows.next() {
            calls[row[0], default: []].append(ToolCall(id: row[1], name: row[2], arguments: row[3] ?? "{}"))
        }
        var out: [ChatMessage] = []
        let rows = try Row.fetchCursor(db, sql: """
            SELECT id, role, content, reasoning_content, tool_call_id, name FROM messages WHERE rollout_id = ? ORDER BY idx
            """, arguments: [rollout])
        while let row = try rows.next() {
            out.append(ChatMessage(role: row[1], content: row[2], reasoningContent: row[3], toolCalls: calls[row[0]] ?? [],
                                   toolCallID: row[4], name: row[5]))
        }
        return out
    }
}
