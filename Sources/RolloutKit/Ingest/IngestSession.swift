import Foundation
import GRDB

/// What one ingest command wrote, for printing and for `--json`.
public struct IngestReport: Sendable, Codable {
    public struct Counts: Sendable, Codable {
        public var entity: String
        public var inserted = 0
        public var updated = 0
        public var unchanged = 0
        public var removed = 0
        public var total: Int { inserted + updated + unchanged }
    }

    public var kind: String
    public var source: String
    public var ingestID: Int64 = 0
    public var counts: [Counts] = []
    /// Records that repeated an earlier one of the same file exactly (ignored).
    public var duplicates = 0
    /// Records passed over under --skip-invalid (also in `ingest_errors`).
    public var skipped = 0
    public var skippedErrors: [IngestError] = []
    /// Things the user should know that are not errors (a tool given an API-safe name, ...).
    public var notices: [String] = []
    public var files = 0
    public var lines = 0

    public init(kind: String, source: String) {
        self.kind = kind
        self.source = source
    }

    public subscript(entity: String) -> Counts {
        get { counts.first { $0.entity == entity } ?? Counts(entity: entity) }
        set {
            if let i = counts.firstIndex(where: { $0.entity == entity }) { counts[i] = newValue } else { counts.append(newValue) }
        }
    }

    mutating func count(_ entity: String, _ outcome: UpsertOutcome) {
        var c = self[entity]
        switch outcome {
        case .inserted: c.inserted += 1
        case .updated: c.updated += 1
        case .unchanged: c.unchanged += 1
        case .duplicate: duplicates += 1
        }
        self[entity] = c
    }

    /// A few lines for a person.
    public var summary: String {
        var out: [String] = []
        let wrote = counts.map { c in
            var parts = ["\(c.inserted) inserted", "\(c.updated) updated", "\(c.unchanged) unchanged"]
            if c.removed > 0 { parts.append("\(c.removed) removed") }
            return "  \(c.entity): " + parts.joined(separator: ", ")
        }
        out.append("ingested \(source) (\(kind), ingest #\(ingestID))" + (wrote.isEmpty ? ": nothing written" : ":"))
        out += wrote
        if duplicates > 0 { out.append("  \(duplicates) exact duplicate record(s) ignored") }
        for n in notices { out.append("  note: \(n)") }
        if skipped > 0 {
            out.append("  \(skipped) invalid record(s) skipped (see: rollout query ingest-errors --param ingest=\(ingestID)):")
            for e in skippedErrors.prefix(10) { out.append("    \(e)") }
            if skipped > 10 { out.append("    …") }
        }
        return out.joined(separator: "\n")
    }
}

enum UpsertOutcome { case inserted, updated, unchanged, duplicate }

/// Options every ingest command takes.
public struct IngestOptions: Sendable {
    /// Record bad records in `ingest_errors` and go on, instead of aborting with no change.
    public var skipInvalid = false
    /// Called now and then with the number of records read so far (for a progress line).
    public var progress: (@Sendable (Int) -> Void)?

    public init(skipInvalid: Bool = false, progress: (@Sendable (Int) -> Void)? = nil) {
        self.skipInvalid = skipInvalid
        self.progress = progress
    }
}

/// One ingest command inside its one write transaction: the `ingests` row, counters, and the
/// policy for bad records.
final class IngestSession {
    let db: Database
    let options: IngestOptions
    let now: String
    let ingestID: Int64
    var report: IngestReport

    init(db: Database, kind: String, source: String, options: IngestOptions) throws {
        self.db = db
        self.options = options
        self.now = Timestamp.now()
        try db.execute(sql: "INSERT INTO ingests(kind, source, started_at) VALUES (?, ?, ?)",
                       arguments: [kind, source, now])
        self.ingestID = db.lastInsertedRowID
        self.report = IngestReport(kind: kind, source: source)
        self.report.ingestID = ingestID
    }

    /// Either throws `error` (aborting the transaction) or, with --skip-invalid, records it.
    func reject(_ error: IngestError) throws {
        guard options.skipInvalid else { throw error }
        try db.execute(sql: "INSERT INTO ingest_errors(ingest_id, file, line, field, reason) VALUES (?, ?, ?, ?, ?)",
                       arguments: [ingestID, error.file, error.line, error.field, error.reason])
        report.skipped += 1
        if report.skippedErrors.count < 100 { report.skippedErrors.append(error) }
    }

    /// Runs `body` for one record; a `FieldError` or `IngestError` it throws becomes a located
    /// error, rejected according to the options. Multi-row records run in a savepoint so a
    /// skipped record leaves nothing behind.
    func record(file: String, line: Int?, savepoint: Bool = false, _ body: () throws -> Void) throws {
        // Counts made by a record that is then rolled back must go with it.
        let saved = savepoint ? report : nil
        let located: IngestError
        do {
            if savepoint {
                try db.inSavepoint {
                    try body()
                    return .commit
                }
            } else {
                try body()
            }
            return
        } catch let e as FieldError {
            located = IngestError(file: file, line: line, field: e.field, e.reason)
        } catch let e as IngestError {
            located = e
        } catch let e as JSONParseError {
            located = IngestError(file: file, line: line, field: e.field, e.description)
        }
        if let saved { report = saved }
        try reject(located)
    }

    func finish() throws -> IngestReport {
        let totals = report.counts.reduce(into: (0, 0, 0)) { $0.0 += $1.inserted; $0.1 += $1.updated; $0.2 += $1.unchanged }
        try db.execute(sql: """
            UPDATE ingests SET finished_at = ?, inserted = ?, updated = ?, unchanged = ?, skipped = ? WHERE id = ?
            """, arguments: [Timestamp.now(), totals.0, totals.1, totals.2, report.skipped, ingestID])
        return report
    }
}

/// One file's ingest, for `ingestTogether`.
struct IngestStep {
    var kind: String
    var source: String
    var body: (IngestSession) throws -> Void
}

extension Warehouse {
    /// Runs one ingest command as one transaction: on any thrown error nothing is written.
    /// `files` and `folders` are the inputs, checked (`RecordFiles.checkInputs`) before the
    /// transaction opens, so a FIFO among them is refused instead of blocking with the lock held.
    func ingest(kind: String, source: String, files: [String] = [], folders: [String] = [], options: IngestOptions,
                _ body: (IngestSession) throws -> Void) throws -> IngestReport {
        try RecordFiles.checkInputs(files: files, folders: folders)
        return try withoutActuallyEscaping(body) { body in
            try ingestTogether([IngestStep(kind: kind, source: source, body: body)], options: options)[0]
        }
    }

    /// Several ingests (each with its own `ingests` row) as one transaction: when one fails,
    /// none of them is written, so a command that ingests several files changes all or nothing.
    func ingestTogether(_ steps: [IngestStep], options: IngestOptions) throws -> [IngestReport] {
        let bulk = enterBulkMode()
        defer { if bulk { leaveBulkMode() } }
        return try writer.write { db in
            try steps.map { step in
                let session = try IngestSession(db: db, kind: step.kind, source: step.source, options: options)
                try step.body(session)
                return try session.finish()
            }
        }
    }

    /// An ingest gets a 64 MiB page cache for its transaction (the B-trees it extends stay in
    /// memory instead of being spilled and read back). It runs in WAL like every other write,
    /// so readers — other commands, `rollout serve`, the sqlite3 shell — keep working while it
    /// runs, and another writer waits for it (see `LockWait`) instead of failing. A rollback
    /// journal would write each page once instead of twice, but locks every reader out for
    /// the whole ingest.
    private func enterBulkMode() -> Bool {
        guard path != nil else { return false }
        return (try? writer.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }) != nil
    }

    private func leaveBulkMode() {
        try? writer.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA cache_size = -2000")
        }
    }
}
