import Foundation
import Synchronization

/// The busy handler of every warehouse connection: waits for a lock another connection holds
/// (another process's write transaction, mostly) up to the busy timeout, and after a second of
/// waiting tells `Warehouse.onLockWait` what it waits for — the file, and on Linux the pid and
/// command line of the process holding the write lock.
final class LockWait: Sendable {
    let path: String?
    let timeout: Double
    /// Per waiting thread: when its current wait began and when it last reported.
    private let waits = Mutex([UInt: (start: ContinuousClock.Instant, reported: Double)]())

    init(path: String?, timeout: Double) {
        self.path = path
        self.timeout = timeout
    }

    /// SQLite's busy callback: true to try again, false to give up with SQLITE_BUSY.
    func callback(_ tries: Int) -> Bool {
        let key = UInt(bitPattern: ObjectIdentifier(Thread.current).hashValue)
        let now = ContinuousClock.now
        let (start, reported) = waits.withLock { w -> (ContinuousClock.Instant, Double) in
            if tries == 0 || w[key] == nil { w[key] = (now, 0) }
            return w[key]!
        }
        let d = now - start
        let waited = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        if waited >= timeout {
            waits.withLock { _ = $0.removeValue(forKey: key) }
            return false
        }
        // Once after a second, then every ten.
        if waited >= 1, reported == 0 || waited - reported >= 10, let report = Warehouse.onLockWait {
            waits.withLock { $0[key]?.reported = waited }
            report(message(waited: waited))
        }
        // SQLite's own back-off: short sleeps first, then 100 ms.
        let delays: [UInt32] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50]
        usleep((tries < delays.count ? delays[tries] : 100) * 1000)
        return true
    }

    private func message(waited: Double) -> String {
        let file = path.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "the warehouse"
        let holder = path.flatMap(Self.holder(of:)).map { "held by \($0)" } ?? "held by another connection"
        return "waiting for another writer on \(file) (\(holder)): \(Int(waited)) s so far, giving up after \(Int(timeout)) s"
    }

    /// The process holding the write lock of the database at `path`, from /proc/locks (Linux):
    /// in WAL mode the lock byte at offset 120 of the `-shm` file, under a rollback journal the
    /// reserved/pending bytes of the database file. Never opens either file: closing a
    /// descriptor would drop this process's own SQLite locks on it.
    static func holder(of path: String) -> String? {
        guard let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return nil }
        func identity(_ file: String) -> String? {
            var info = stat()
            guard stat(file, &info) == 0 else { return nil }
            let dev = UInt64(info.st_dev)
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
            let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
            return String(format: "%02llx:%02llx:%llu", major, minor, UInt64(info.st_ino))
        }
        let targets: [(id: String, lockByte: UInt64)] = [
            identity(path + "-shm").map { ($0, 120) }, identity(path).map { ($0, 0x4000_0001) },
        ].compactMap { $0 }
        let me = getpid()
        for line in locks.split(separator: "\n") {
            // "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 120 120"
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 8, f[1] == "POSIX", f[3] == "WRITE", let pid = Int32(f[4]), pid != me,
                  let from = UInt64(f[6]) else { continue }
            let to = f[7] == "EOF" ? UInt64.max : UInt64(f[7]) ?? 0
            let file = String(f[5])
            guard targets.contains(where: { $0.id == file && from <= $0.lockByte && $0.lockByte <= to }) else { continue }
            let command = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")))
                .map { String(decoding: $0.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces) }
            let short = command.map { $0.count > 80 ? String($0.prefix(77)) + "…" : $0 }
            return "pid \(pid)" + (short.map { ": \($0)" } ?? "")
        }
        return nil
    }
}

extension Warehouse {
    private static let lockWaitReporter = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Called (from the waiting thread) when a connection has waited more than a second for a
    /// lock, and every ten seconds after, with a sentence saying what it waits for. The CLI
    /// prints it on stderr; nil (the default) says nothing.
    public static var onLockWait: (@Sendable (String) -> Void)? {
        get { lockWaitReporter.withLock { $0 } }
        set { lockWaitReporter.withLock { $0 = newValue } }
    }
}
