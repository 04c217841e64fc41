import Foundation

/// A JSON Lines file written atomically: lines go to a temporary sibling that is renamed over
/// the target when complete, so a reader never sees half a file and a rerun replaces the old
/// file instead of appending to it. (The same pattern as Export's writer, kept separate so the
/// two can change independently.)
final class OutputFile {
    let path: String
    private let temporary: String
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private let hasher = BackgroundHasher()
    private(set) var bytes = 0
    private(set) var lines = 0
    private var finished = false
    private let sync: Bool
    private let hashing: Bool

    /// `sync: false` skips the fsync (still renamed into place whole) and the checksum: for
    /// many small files.
    init(path: String, sync: Bool = true) throws {
        self.path = path
        self.sync = sync
        self.hashing = sync
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw BatchError("cannot create the folder \(dir): \(error.localizedDescription)")
        }
        temporary = path + ".tmp-\(getpid())-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
              let h = FileHandle(forWritingAtPath: temporary) else {
            throw BatchError("cannot write \(path) (check the folder's permissions)")
        }
        handle = h
        buffer.reserveCapacity(1 << 20)
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
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, renames into place, and returns the file's sha256.
    @discardableResult
    func commit() throws -> String {
        try drain()
        if sync { try handle.synchronize() }
        try handle.close()
        finished = true
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw BatchError("cannot move \(temporary) to \(path): \(reason)")
        }
        return hasher.hexDigest()
    }

    func abandon() {
        guard !finished else { return }
        finished = true
        try? handle.close()
        unlink(temporary)
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
