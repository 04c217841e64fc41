import Foundation

/// A JSON Lines file written atomically through `OutputTarget`: lines go to a temporary
/// sibling that is renamed over the target when complete, so a reader never sees half a file
/// and a rerun replaces the old file instead of appending to it; a target that is not a
/// regular file (a link, a pipe, a device) is refused. (The same rules as Export's writer,
/// which has its own writing thread.)
final class OutputFile {
    let path: String
    private let pending: OutputTarget.Pending
    private var buffer: [UInt8] = []
    private let hasher = BackgroundHasher()
    private(set) var bytes = 0
    private(set) var lines = 0
    private var finished = false
    private var closed = false
    private var digest: String?
    private let sync: Bool
    private let hashing: Bool

    /// `sync: false` skips the fsync (still renamed into place whole) and the checksum: for
    /// many small files.
    init(path: String, sync: Bool = true) throws {
        self.path = path
        self.sync = sync
        self.hashing = sync
        pending = try OutputTarget.create(path)
        buffer.reserveCapacity(sync ? 1 << 20 : 1 << 12)
    }

    deinit { if !finished { abandon() } }

    /// One JSON value as a line, serialized straight into the buffer.
    func write(json value: JSONValue) throws {
        JSONWriter.compact.write(value, into: &buffer)
        buffer.append(0x0A)
        lines += 1
        if buffer.count >= 1 << 20 { try drain() }
    }

    /// A line already serialized, with its newline.
    func write(serializedLine bytes: [UInt8]) throws {
        buffer.append(contentsOf: bytes)
        lines += 1
        if buffer.count >= 1 << 20 { try drain() }
    }

    func write(line: String) throws {
        buffer.append(contentsOf: line.utf8)
        buffer.append(0x0A)
        lines += 1
        if buffer.count >= 1 << 20 { try drain() }
    }

    func write(bytes data: [UInt8]) throws {
        buffer.append(contentsOf: data)
        if buffer.count >= 1 << 20 { try drain() }
    }

    private func drain() throws {
        guard !buffer.isEmpty else { return }
        if hashing { hasher.update(buffer) }  // on another thread, while this one goes on
        bytes += buffer.count
        guard writeAll(pending.fd, buffer) else {
            throw OutputFileError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes and closes the temporary file and returns its sha256; the target is untouched
    /// until `publish`.
    @discardableResult
    func finish() throws -> String {
        if let digest { return digest }
        do { try drain() } catch {
            abandon()
            throw error
        }
        if sync && fsync(pending.fd) != 0 {
            let reason = String(cString: strerror(errno))
            abandon()
            throw OutputFileError("cannot write \(path): \(reason)")
        }
        closed = true
        if close(pending.fd) != 0 {
            let reason = String(cString: strerror(errno))
            abandon()
            throw OutputFileError("cannot write \(path): \(reason)")
        }
        let sha = hasher.hexDigest()
        digest = sha
        return sha
    }

    /// Renames the finished temporary file over the target.
    func publish() throws {
        _ = try finish()
        guard !finished else { return }
        finished = true
        try OutputTarget.publish(pending)
    }

    /// Flushes, renames into place, and returns the file's sha256.
    @discardableResult
    func commit() throws -> String {
        let sha = try finish()
        try publish()
        return sha
    }

    func abandon() {
        guard !finished else { return }
        finished = true
        if !closed {
            closed = true
            close(pending.fd)
        }
        OutputTarget.discard(pending)
    }

    /// Writes `lines` to `path` at once.
    static func write(_ path: String, lines: [String]) throws -> (bytes: Int, sha256: String) {
        let file = try OutputFile(path: path)
        for l in lines { try file.write(line: l) }
        let sha = try file.commit()
        return (file.bytes, sha)
    }
}

/// SHA-256 of a file's bytes computed on a serial queue of its own, so hashing a large output
/// overlaps with making the next lines. @unchecked Sendable: `state` is touched only on
/// `queue`.
final class BackgroundHasher: @unchecked Sendable {
    private let queue = DispatchQueue(label: "rollout.output-hash")
    private var state = SHA256()

    func update(_ bytes: [UInt8]) {
        queue.async { self.state.update(bytes) }
    }

    func hexDigest() -> String {
        queue.sync { state.hexDigest() }
    }
}
