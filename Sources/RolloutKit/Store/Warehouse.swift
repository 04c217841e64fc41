import Foundation
import GRDB
import Logging

/// The warehouse: one SQLite database holding every artifact. Owns the process's connection
/// pool (WAL, so readers never block the one writer); tests use an in-memory queue.
public struct Warehouse: Sendable {
    /// `PRAGMA application_id` of our databases: "ROLL".
    public static let applicationID: Int32 = 0x524F_4C4C
    public static let defaultPath = "rollout.db"

    public let writer: any DatabaseWriter
    /// The file path, or nil in memory.
    public let path: String?

    /// Opens (creating with `create`) the warehouse at `path` and brings its schema up to date.
    /// Without `create` (the read-only commands) a missing file, an empty file or an empty
    /// SQLite database is refused and left as it is; a warehouse of an older schema is upgraded
    /// (it is ours, and today's commands need today's tables).
    public static func open(path: String, create: Bool = true) throws -> Warehouse {
        let warehouse = try openPool(path: path, create: create)
        try warehouse.prepareSchema()
        return warehouse
    }

    private static func openPool(path: String, create: Bool) throws -> Warehouse {
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && !create {
            throw WarehouseError(.missing, path: path,
                                 "no warehouse here; create one with `rollout quickstart` or any `rollout ingest` command, or pass --db PATH")
        }
        if exists {
            try checkHeader(path: path, create: create)
            try checkIdentity(path: path, create: create)
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration(path: path))
        } catch let error as DatabaseError {
            throw WarehouseError(.notOurs, path: path, "cannot open as SQLite: \(error.message ?? "\(error)")")
        }
        return Warehouse(writer: pool, path: path)
    }

    /// The message for a file that is not (yet) a warehouse, to a command that does not create one.
    private static let notCreating = "not a rollout warehouse, and this command does not create one (nothing was written); create one with `rollout quickstart` or any `rollout ingest` command, or pass --db PATH"

    /// A fresh in-memory warehouse (tests, scratch work).
    public static func inMemory() throws -> Warehouse {
        let queue = try DatabaseQueue(configuration: configuration())
        let warehouse = Warehouse(writer: queue, path: nil)
        try warehouse.prepareSchema()
        return warehouse
    }

    /// How long a connection waits for a lock another one holds.
    static let busyTimeoutMs = 30_000

    private static func configuration(path: String? = nil) -> Configuration {
        var config = Configuration()
        config.foreignKeysEnabled = true
        // The timeout, with a word on stderr (CLI) when a wait passes a second.
        let wait = LockWait(path: path, timeout: Double(busyTimeoutMs) / 1000)
        config.busyMode = .callback { tries in wait.callback(tries) }
        config.prepareDatabase { db in
            // 16 KiB pages for a new file (no effect on an existing one): records are JSON of
            // a few KB, and larger pages halve the B-tree work of bulk ingest and full scans.
            try db.execute(sql: "PRAGMA page_size = 16384")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        return config
    }

    /// Refuses a file that is not SQLite before SQLite or GRDB touch it.
    private static func checkHeader(path: String, create: Bool) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw WarehouseError(.unreadable, path: path, "cannot read the file (check its permissions)")
        }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 16)) ?? Data()
        if header.isEmpty { // an empty file becomes a new database, if the command creates one
            if create { return }
            throw WarehouseError(.missing, path: path, "an empty file, " + notCreating)
        }
        if header != Data("SQLite format 3\0".utf8) {
            throw WarehouseError(.notOurs, path: path, "not a SQLite database, so not a rollout warehouse; pass --db with a new or existing warehouse file")
        }
    }

    /// Looks at an existing file through a read-only connection first, so a database that is
    /// not ours is refused before anything (even its journal mode) is changed.
    private static func checkIdentity(path: String, create: Bool) throws {
        var config = Configuration()
        config.readonly = true
        let probe: (appID: Int32, objects: Int)
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            probe = try queue.read(identity)
            try queue.close()
        } catch let error as DatabaseError {
            throw WarehouseError(.notOurs, path: path, "cannot read as SQLite: \(error.message ?? "\(error)")")
        }
        if try isNew(probe, path: path) && !create {
            throw WarehouseError(.missing, path: path, "an empty SQLite database, " + notCreating)
        }
    }

    /// The database's application id and how many schema objects it has.
    private static func identity(_ db: Database) throws -> (appID: Int32, objects: Int) {
        (Int32(try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0),
         try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'") ?? 0)
    }

    /// True for an empty database (to become a warehouse), false for ours; throws for another
    /// application's.
    private static func isNew(_ probe: (appID: Int32, objects: Int), path: String) throws -> Bool {
        if probe.appID == 0 && probe.objects == 0 { return true }
        guard probe.appID == applicationID else {
            throw WarehouseError(.notOurs, path: path,
                                 "a SQLite database that is not a rollout warehouse (application_id \(probe.appID), \(probe.objects) schema objects); refusing to change it — pass --db with a new file")
        }
        return false
    }

    /// The migration that starts recording checksums (schema/0009_migration_history.sql).
    /// Before its SQL runs, the warehouse is brought to the shape of the files before it as they
    /// stand today (SchemaRepair), since earlier versions of them were edited after landing.
    static let historyMigration = "0009_migration_history"

    /// The migrations, one per bundled `schema/NNNN_name.sql` file, in order. Each applied
    /// migration is recorded in schema_migrations with its file's SHA-256 once that table
    /// exists. `fresh`: the database had no migration applied, so there is nothing to repair.
    static func migrator(fresh: Bool = false) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        let files = MigrationFile.bundled
        for (index, file) in files.enumerated() {
            migrator.registerMigration(file.identifier) { db in
                if file.identifier == historyMigration {
                    if !fresh { try SchemaRepair.reconcile(db, to: Array(files[..<index])) }
                    try db.execute(sql: file.sql)
                    try record(db, Array(files[...index]))
                } else {
                    try db.execute(sql: file.sql)
                    try record(db, [file])
                }
            }
        }
        return migrator
    }

    /// Records `files` as applied (their hashes, now) if the warehouse keeps such records yet.
    private static func record(_ db: Database, _ files: [MigrationFile]) throws {
        guard try db.tableExists("schema_migrations") else { return }
        for file in files {
            try db.execute(sql: "INSERT OR REPLACE INTO schema_migrations(identifier, sha256, applied_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                           arguments: [file.identifier, file.sha256])
        }
    }

    /// Applied migrations whose recorded hash is not the hash of this binary's file (or that
    /// have no record although the warehouse keeps records).
    static func checksumMismatches(_ db: Database, applied: [String]) throws -> [String] {
        let keepsRecords = try db.tableExists("schema_migrations")
        guard applied.contains(historyMigration) || keepsRecords else { return [] }
        guard keepsRecords else { return applied }
        let recorded = Dictionary(try Row.fetchAll(db, sql: "SELECT identifier, sha256 FROM schema_migrations")
            .map { ($0[0] as String, $0[1] as String) }, uniquingKeysWith: { a, _ in a })
        let known = Dictionary(MigrationFile.bundled.map { ($0.identifier, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        return applied.filter { recorded[$0] != known[$0] }
    }

    /// Names of the migrations this binary knows, oldest first.
    public static var knownMigrations: [String] { migrator().migrations }

    private func prepareSchema() throws {
        let migrator = Self.migrator()
        let where_ = path ?? ":memory:"
        let applied = try writer.barrierWriteWithoutTransaction { db -> Int in
            if try Self.isNew(try Self.identity(db), path: where_) {
                try db.execute(sql: "PRAGMA application_id = \(Self.applicationID)")
            }
            try Self.refuseNewer(db, migrator: migrator, path: where_)
            let applied = try migrator.appliedMigrations(db)
            let differing = try Self.checksumMismatches(db, applied: applied)
            if let first = differing.first {
                let more = differing.count > 1 ? " (and \(differing.dropFirst().joined(separator: ", ")))" : ""
                throw WarehouseError(.checksum, path: where_,
                                     "schema migration \(first)\(more) was applied from a different file than this rollout's schema/\(first).sql (a build with an edited migration made this warehouse); run `rollout db repair --db \(where_)` to bring it to this build's schema, data kept")
            }
            return applied.count
        }
        // Writes only when a migration is due, so opening a current warehouse changes nothing.
        guard applied < migrator.migrations.count else { return }
        do {
            try Self.migrator(fresh: applied == 0).migrate(writer)
        } catch let error as DatabaseError {
            // Each migration is one transaction: the failed one left nothing behind.
            throw WarehouseError(.upgrade, path: where_,
                                 "cannot bring the warehouse to this rollout's schema (\(error.message ?? "SQLite error \(error.resultCode.rawValue)")); the migration that failed wrote nothing, the ones before it stay applied")
        } catch let error as SchemaRepairError {
            throw WarehouseError(.upgrade, path: where_, error.description)
        }
        try writer.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA user_version = \(migrator.migrations.count)")
        }
    }

    private static func refuseNewer(_ db: Database, migrator: DatabaseMigrator, path: String) throws {
        guard try migrator.hasBeenSuperseded(db) else { return }
        let applied = try migrator.appliedIdentifiers(db)
        let unknown = applied.subtracting(Set(migrator.migrations)).sorted()
        throw WarehouseError(.newer, path: path,
                             "made by a newer rollout (schema \(unknown.joined(separator: ", ")) unknown to this binary, which knows up to \(migrator.migrations.last ?? "none")); upgrade rollout to open it")
    }

    /// `rollout db repair`: brings the warehouse at `path` to the shape this binary's files make
    /// for the migrations it has applied (whatever versions of them applied first), records
    /// today's hashes for them, then applies any migration still due. Data is kept; a derived
    /// table or index that had to be made anew is recounted or left for the indexer to redo.
    public static func repair(path: String) throws -> SchemaRepair.Changes {
        let warehouse = try openPool(path: path, create: false)
        let migrator = Self.migrator()
        let changes = try warehouse.writer.barrierWriteWithoutTransaction { db -> SchemaRepair.Changes in
            try refuseNewer(db, migrator: migrator, path: path)
            let applied = Set(try migrator.appliedIdentifiers(db))
            let files = MigrationFile.bundled.filter { applied.contains($0.identifier) }
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            defer { try? db.execute(sql: "PRAGMA foreign_keys = ON") }
            var changes = SchemaRepair.Changes()
            try db.inTransaction(.immediate) {
                changes = try SchemaRepair.reconcile(db, to: files)
                try record(db, files)
                try db.checkForeignKeys()
                return .commit
            }
            return changes
        }
        try warehouse.prepareSchema()
        return changes
    }

    /// Schema version facts for `rollout db status`.
    public struct Status: Sendable, Codable {
        public var path: String
        public var applied: [String]
        public var known: [String]
        public var journalMode: String
        public var sqliteVersion: String
        public var pageCount: Int
        public var pageSize: Int
        /// Migrations recorded in schema_migrations with their file's SHA-256 (all match: a
        /// warehouse whose records differ from the binary's files does not open).
        public var checksums: Int
        public var bytes: Int { pageCount * pageSize }
        public var upToDate: Bool { applied == known }
    }

    public func status() throws -> Status {
        try writer.read { db in
            let checksums = try db.tableExists("schema_migrations")
                ? Int.fetchOne(db, sql: "SELECT count(*) FROM schema_migrations") ?? 0 : 0
            return Status(path: path ?? ":memory:",
                   applied: try Self.migrator().appliedMigrations(db),
                   known: Self.knownMigrations,
                   journalMode: try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "?",
                   sqliteVersion: try String.fetchOne(db, sql: "SELECT sqlite_version()") ?? "?",
                   pageCount: try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0,
                   pageSize: try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0,
                   checksums: checksums)
        }
    }
}

/// A database that cannot be used as a warehouse.
public struct WarehouseError: Error, CustomStringConvertible {
    enum Code { case missing, unreadable, notOurs, newer, checksum, upgrade }
    let code: Code
    public let path: String
    public let reason: String

    init(_ code: Code, path: String, _ reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}
