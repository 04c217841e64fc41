import Foundation

/// A file the tool writes could not be put where it was asked to go.
public struct OutputFileError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The one set of rules for every file the tool writes whole (exports, batch request files and
/// downloads, run-local's errors file, Agentless outputs, generated configs, the bundled
/// example); run-local's appended output file is checked with `check`:
/// - a target that exists must be a regular file: a symbolic link is refused, not followed (the
///   bytes would land wherever it points, and renaming over it would silently drop the link),
///   and so are a directory, a FIFO, a device and a socket — a rename over `/dev/null` as root
///   turns the device into a regular file;
/// - the bytes go to a temporary sibling that is renamed over the target only when complete, so
///   a failed write (ENOSPC, EIO, a failed rename) leaves the old file as it was;
/// - a replaced file keeps its permission bits (and, for root, its owner); a new one is 0644
///   less the umask.
public enum OutputTarget {
    /// Writes `bytes` to `path` under these rules (a small file, written at once).
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let file = try OutputFile(path: path)
        try file.write(bytes: bytes)
        try file.commit()
    }

    /// What is at `path` now: nil when nothing is, else its `lstat`. Throws for anything that is
    /// not a regular file. `option` ("--out") is named in the message when given.
    @discardableResult
    static func check(_ path: String, option: String? = nil) throws -> stat? {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw OutputFileError("\(label(path, option)): cannot write there: \(String(cString: strerror(code)))")
        }
        let kind = st.st_mode & S_IFMT
        if kind == S_IFREG { return st }
        let what: String
        var advice = "give the path of a regular file, or of one that does not exist yet"
        switch kind {
        case S_IFLNK:
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)).map { " (to \($0))" } ?? ""
            what = "a symbolic link\(target)"
            advice = "give the path of the file itself, or remove the link first"
        case S_IFDIR: what = "a directory"
        case S_IFIFO: what = "a FIFO (named pipe)"
        case S_IFCHR: what = "a character device"
        case S_IFBLK: what = "a block device"
        case S_IFSOCK: what = "a socket"
        default: what = "not a regular file"
        }
        throw OutputFileError("\(label(path, option)) is \(what); refusing to replace it with a file or write through it (left as it is): \(advice)")
    }

    private static func label(_ path: String, _ option: String?) -> String {
        option.map { "\($0) \(path)" } ?? path
    }

    /// A file being written: `fd` is open on `temporary`, a sibling of `path`.
    struct Pending {
        let path: String
        let temporary: String
        let fd: Int32
    }

    /// Checks `path`, creates its folder, and opens a new temporary sibling with the mode (and
    /// owner) the finished file is to have.
    static func create(_ path: String) throws -> Pending {
        let existing = try check(path)
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw OutputFileError("cannot create the folder \(dir) for \(path): \((error as NSError).localizedDescription)")
        }
        let suffix = ".tmp-\(getpid())-\(UUID().uuidString.prefix(8))"
        // A name near the 255-byte limit has no room for the suffix: use a short hidden name.
        let name = url.lastPathComponent
        let temporary = name.utf8.count + suffix.utf8.count <= 255
            ? path + suffix : (dir as NSString).appendingPathComponent(".rollout" + suffix)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw OutputFileError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        if let existing {
            _ = fchmod(fd, existing.st_mode & 0o7777)
            if geteuid() == 0 { _ = fchown(fd, existing.st_uid, existing.st_gid) }
        }
        return Pending(path: path, temporary: temporary, fd: fd)
    }

    /// Renames the finished (closed) temporary file over the target, checking the target again
    /// (it may have been replaced by a link or a pipe meanwhile). On failure the temporary file
    /// is removed and the old file is left as it was.
    static func publish(_ p: Pending) throws {
        do { try check(p.path) } catch {
            unlink(p.temporary)
            throw error
        }
        if rename(p.temporary, p.path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(p.temporary)
            throw OutputFileError("cannot put \(p.path) in place (renaming the finished temporary file failed: \(reason)); the old file, if any, is unchanged")
        }
    }

    /// Removes the temporary file of a write that is given up.
    static func discard(_ p: Pending) {
        unlink(p.temporary)
    }
}
