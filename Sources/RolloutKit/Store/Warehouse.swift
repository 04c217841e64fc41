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
    public static func open(path: String, create: Bool = true) throws -> Warehouse {
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists && !create {
            throw WarehouseError(.missing, path: path,
                                 "no warehouse here; create one with `rollout quickstart` or any `rollout ingest` command, or pass --db PATH")
        }
        if exists {
            try checkHeader(path: path)
            try checkIdentity(path: path)
        }
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration(path: path))
        } catch let error as DatabaseError {
            throw WarehouseError(.notOurs, path: path, "cannot open as SQLite: \(error.message ?? "\(error)")")
        }
        let warehouse = Warehouse(writer: pool, path: path)
        try warehouse.prepareSchema()
        return warehouse
    }

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
    private static func checkHeader(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw WarehouseError(.unreadable, path: path, "cannot read the file (check its permissions)")
        }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 16)) ?? Data()
        if header.isEmpty { return } // an empty file becomes a new database
        if header != Data("SQLite format 3\0".utf8) {
            throw WarehouseError(.notOurs, path: path, "not a SQLite database, so not a rollout warehouse; pass --db with a new or existing warehouse file")
        }
    }

    /// Looks at an existing file through a read-only connection first, so a database that is
    /// not ours is refused before anything (even its journal mode) is changed.
    private static func checkIdentity(path: String) throws {
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
        _ = try isNew(probe, path: path)
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

    /// The migrations, one per bundled `schema/NNNN_name.sql` file, in order.
    static func migrator() -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for path in BundledFiles.paths(under: "schema") where path.hasSuffix(".sql") {
            let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            let sql = BundledFiles.text(path)!
            migrator.registerMigration(name) { db in
                try db.execute(sql: sql)
            }
        }
        return migrator
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
            if try migrator.hasBeenSuperseded(db) {
                let applied = try migrator.appliedIdentifiers(db)
                let unknown = applied.subtracting(Set(migrator.migrations)).sorted()
                throw WarehouseError(.newer, path: where_,
                                     "made by a newer rollout (schema \(unknown.joined(separator: ", ")) unknown to this binary, which knows up to \(migrator.migrations.last ?? "none")); upgrade rollout to open it")
            }
            return try migrator.appliedMigrations(db).count
        }
        // Writes only when a migration is due, so opening a current warehouse changes nothing.
        guard applied < migrator.migrations.count else { return }
        try migrator.migrate(writer)
        try writer.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA user_version = \(migrator.migrations.count)")
        }
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
        public var bytes: Int { pageCount * pageSize }
        public var upToDate: Bool { applied == known }
    }

    public func status() throws -> Status {
        try writer.read { db in
            Status(path: path ?? ":memory:",
                   applied: try Self.migrator().appliedMigrations(db),
                   known: Self.knownMigrations,
                   journalMode: try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "?",
                   sqliteVersion: try String.fetchOne(db, sql: "SELECT sqlite_version()") ?? "?",
                   pageCount: try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0,
                   pageSize: try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0)
        }
    }
}

/// A database that cannot be used as a warehouse.
public struct WarehouseError: Error, CustomStringConvertible {
    enum Code { case missing, unreadable, notOurs, newer }
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
