import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Several `rollout run` processes on one run. Each registers a worker (`run_workers`), claims
/// pending rollouts in small batches with one short write transaction each, and beats a
/// heartbeat. A worker that stopped without leaving is recognised as gone — on this host by
/// its pid no longer being alive, on any host by a heartbeat older than `leaseSeconds` — and
/// its running rollouts are interrupted and re-attempted by whichever process notices.
enum RunWorkers {
    /// Seconds between heartbeats.
    static let heartbeatSeconds = 5.0
    /// A worker whose heartbeat is older than this is gone, whatever host it ran on.
    static let leaseSeconds = 60.0

    /// This machine's name, as stored in `run_workers.host`.
    static let host: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    static let pid = Int64(getpid())

    /// Workers of this process whose engine is running (a plan made but never run leaves a
    /// registered worker behind that is not live), by `liveKey`.
    static let liveHere = Mutex(Set<String>())

    /// A worker of the database `db` is connected to: its file, or for an in-memory database
    /// the connection (tests run engines on several warehouses in one process).
    static func liveKey(_ db: Database, worker: Int64) -> String {
        let file = sqlite3_db_filename(db.sqliteConnection, "main").map { String(cString: $0) } ?? ""
        let where_ = file.isEmpty ? "memory:\(UInt(bitPattern: db.sqliteConnection))" : file
        return "\(where_)#\(worker)"
    }

    /// A registered worker as another process sees it.
    struct Worker: Sendable, CustomStringConvertible {
        var id: Int64
        var pid: Int64
        var host: String
        /// Seconds since its last heartbeat.
        var heartbeatAge: Double

        var description: String {
            "pid \(pid) on \(host) (heartbeat \(Int(heartbeatAge.rounded())) s ago)"
        }
    }

    /// Whether a worker is gone.
    static func isGone(_ db: Database, id: Int64, pid: Int64, host: String, heartbeatAge: Double) -> Bool {
        if heartbeatAge > leaseSeconds { return true }
        guard host == Self.host else { return false }
        if pid == Self.pid {
            let key = liveKey(db, worker: id)
            return !liveHere.withLock { $0.contains(key) }
        }
        return kill(pid_t(pid), 0) != 0 && errno == ESRCH
    }

    /// Marks the gone workers of `runID` finished and interrupts the running rollouts of gone
    /// workers (and of none: left by a binary from before workers), inserting the next attempt
    /// as pending. Returns the workers still live, `exclude` left out.
    @discardableResult
    static func reap(_ db: Database, runID: Int64, exclude: Int64?, now: String) throws -> [Worker] {
        var live: [Worker] = []
        for row in try Row.fetchAll(db, sql: """
            SELECT id, pid, host, (julianday('now') - julianday(heartbeat_at)) * 86400 AS age
            FROM run_workers WHERE run_id = ? AND finished_at IS NULL
            """, arguments: [runID]) {
            let id: Int64 = row["id"]
            if id == exclude { continue }
            let worker = Worker(id: id, pid: row["pid"], host: row["host"], heartbeatAge: row["age"] ?? .infinity)
            if isGone(db, id: id, pid: worker.pid, host: worker.host, heartbeatAge: worker.heartbeatAge) {
                try db.execute(sql: "UPDATE run_workers SET finished_at = ? WHERE id = ?", arguments: [now, id])
            } else {
                live.append(worker)
            }
        }
        // Running attempts whose worker is gone (finished, reaped, or none recorded).
        let orphans = try Row.fetchAll(db, sql: """
            SELECT r.id, r.task_id, r.sample, r.attempt FROM rollouts r LEFT JOIN run_workers w ON w.id = r.worker
            WHERE r.run_id = ? AND r.status = 'running' AND (w.id IS NULL OR w.finished_at IS NOT NULL)
            """, arguments: [runID])
        for row in orphans {
            try db.execute(sql: """
                UPDATE rollouts SET status = 'interrupted', stop_reason = coalesce(stop_reason, 'interrupted'),
                    finished_at = coalesce(finished_at, ?) WHERE id = ?
                """, arguments: [now, row["id"]])
            try requeue(db, runID: runID, taskID: row["task_id"], sample: row["sample"], after: row["attempt"])
        }
        return live
    }

    /// Inserts the attempt after `attempt` as pending, unless a later attempt exists already.
    static func requeue(_ db: Database, runID: Int64, taskID: Int64, sample: Int, after attempt: Int) throws {
        try db.execute(sql: """
            INSERT INTO rollouts(run_id, task_id, sample, attempt, status)
            SELECT ?1, ?2, ?3, ?4 + 1, 'pending'
            WHERE NOT EXISTS (SELECT 1 FROM rollouts WHERE run_id = ?1 AND task_id = ?2 AND sample = ?3 AND attempt > ?4)
            """, arguments: [runID, taskID, sample, attempt])
    }

    /// Registers this process as a worker of `runID`.
    static func register(_ db: Database, runID: Int64, now: String) throws -> Int64 {
        try db.execute(sql: """
            INSERT INTO run_workers(run_id, pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
            """, arguments: [runID, pid, host, now, now])
        return db.lastInsertedRowID
    }
}

/// Beats a worker's heartbeat from its own thread (not the cooperative pool, which a busy run
/// can keep occupied for longer than the lease), and reports when another process has taken
/// the worker's rollouts over (its heartbeat lapsed, e.g. the process was suspended).
final class Heartbeat: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false
    private var thread: Thread?

    init(warehouse: Warehouse, worker: Int64, onLost: @escaping @Sendable () -> Void) {
        let t = Thread { [self] in
            while true {
                condition.lock()
                if !stopped { _ = condition.wait(until: Date(timeIntervalSinceNow: RunWorkers.heartbeatSeconds)) }
                let done = stopped
                condition.unlock()
                if done { return }
                // A failed beat (the file locked past the busy timeout) is retried at the next
                // tick; the lease is many beats long.
                let kept = try? warehouse.writer.write { db -> Bool in
                    try db.execute(sql: "UPDATE run_workers SET heartbeat_at = ? WHERE id = ? AND finished_at IS NULL",
                                   arguments: [Timestamp.now(), worker])
                    return db.changesCount > 0
                }
                if kept == false {
                    onLost()
                    return
                }
            }
        }
        t.name = "rollout-heartbeat"
        thread = t
        t.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }
}
