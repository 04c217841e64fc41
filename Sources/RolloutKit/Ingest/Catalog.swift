import Foundation
import GRDB
import GRDBSQLite

/// A domain or cross-domain combination, named by its members in any order.
public struct DomainKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Member names, sorted.
    public let members: [String]

    public init(_ names: [String]) throws {
        var seen = Set<String>()
        for n in names {
            guard !n.isEmpty, !n.contains("+"), !n.contains("/"), n.trimmingCharacters(in: .whitespaces) == n else {
                throw FieldError(field: "domain", reason: "invalid domain name \"\(n)\" (no '+', '/', or surrounding spaces)")
            }
            seen.insert(n)
        }
        guard !seen.isEmpty else { throw FieldError(field: "domain", reason: "no domain given") }
        members = seen.sorted()
    }

    public var key: String { members.joined(separator: "+") }
    public var description: String { key }
    public var isCombination: Bool { members.count > 1 }
    public static func < (a: DomainKey, b: DomainKey) -> Bool { a.key < b.key }
}

/// Find-or-create helpers for the catalog tables that ingest commands share.
struct Catalog {
    let session: IngestSession
    var db: Database { session.db }
    var now: String { session.now }

    func dataset(named name: String, kind: String, source: String) throws -> Int64 {
        if let row = try Row.fetchOne(db, sql: "SELECT id, kind FROM datasets WHERE name = ?", arguments: [name]) {
            let existing: String = row["kind"]
            guard existing == kind else {
                throw IngestError(file: source, "dataset \"\(name)\" already holds \(existing) tasks; ingest \(kind) tasks under another --dataset name")
            }
            try db.execute(sql: "UPDATE datasets SET updated_at = ?, source = ? WHERE id = ?", arguments: [now, source, row["id"] as Int64])
            session.report.count("datasets", .unchanged)
            return row["id"]
        }
        try db.execute(sql: "INSERT INTO datasets(name, kind, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                       arguments: [name, kind, source, now, now])
        session.report.count("datasets", .inserted)
        return db.lastInsertedRowID
    }

    /// The row of a domain key, creating it (and its members' rows) when new.
    func domain(_ key: DomainKey) throws -> Int64 {
        if key.isCombination {
            for m in key.members { _ = try domain(try DomainKey([m])) }
        }
        if let id = try Int64.fetchOne(db, sql: "SELECT id FROM domains WHERE key = ?", arguments: [key.key]) {
            return id
        }
        try db.execute(sql: "INSERT INTO domains(key, size, created_at, updated_at) VALUES (?, ?, ?, ?)",
                       arguments: [key.key, key.members.count, now, now])
        session.report.count("domains", .inserted)
        return db.lastInsertedRowID
    }

    func setPolicy(_ key: DomainKey, text: String, source: String) throws {
        let id = try domain(key)
        let current = try Row.fetchOne(db, sql: "SELECT policy FROM domains WHERE id = ?", arguments: [id])
        let old: String? = current?["policy"]
        if old == text {
            session.report.count("policies", .unchanged)
            return
        }
        try db.execute(sql: "UPDATE domains SET policy = ?, policy_source = ?, updated_at = ? WHERE id = ?",
                       arguments: [text, source, now, id])
        session.report.count("policies", old == nil ? .inserted : .updated)
    }

    func server(named name: String) throws -> Int64 {
        if let id = try Int64.fetchOne(db, sql: "SELECT id FROM servers WHERE name = ?", arguments: [name]) { return id }
        try db.execute(sql: "INSERT INTO servers(name, created_at, updated_at) VALUES (?, ?, ?)", arguments: [name, now, now])
        session.report.count("servers", .inserted)
        return db.lastInsertedRowID
    }

    func link(domain: Int64, server: Int64) throws {
        try db.execute(sql: "INSERT OR IGNORE INTO domain_servers(domain_id, server_id) VALUES (?, ?)", arguments: [domain, server])
    }

    /// The tools offered to a domain key, in order: each member's servers (by name), each
    /// server's tools in file order. Used for the Rollout framework's id hash.
    func toolObjects(for key: DomainKey) throws -> [JSONValue] {
        var out: [JSONValue] = []
        for m in key.members {
            let schemas = try String.fetchAll(db, sql: """
                SELECT t.schema FROM tools t
                JOIN domain_servers ds ON ds.server_id = t.server_id
                JOIN domains d ON d.id = ds.domain_id
                JOIN servers s ON s.id = t.server_id
                WHERE d.key = ? ORDER BY s.name, t.ordinal
                """, arguments: [m])
            for s in schemas { out.append(try JSONParser.parse(s)) }
        }
        return out
    }
}

/// Writes task rows: insert, update when the record changed, nothing when it did not. A second
/// record with the same id in the same ingest is a duplicate (identical) or an error (different).
/// This is the hot path of a million-line ingest: statements are prepared once and driven
/// through the SQLite C API, and the record is bound straight from the read buffer.
final class TaskWriter {
    /// A record's source text and its content hash, both made on the reading thread.
    struct RecordText: Sendable {
        let bytes: [UInt8]
        let hash: Int64

        init(_ raw: RawRecord) {
            bytes = Array(raw.bytes)
            hash = Hashing.contentHash(raw.bytes)
        }

        init(_ text: String) {
            bytes = Array(text.utf8)
            hash = bytes.withUnsafeBytes { Hashing.contentHash($0) }
        }
    }

    struct Task: Sendable {
        var externalID: String
        var domainID: Int64?
        var opening: String?
        var userPrompt: String?
        var answer: String?
        var criteria: String?
        var splits: String?
        var record: RecordText
        var file: String
        var line: Int?
    }

    let session: IngestSession
    let datasetID: Int64
    var entity = "tasks"
    private let lookup: Statement
    private let insert: Statement
    private let update: Statement
    private let touch: Statement

    init(session: IngestSession, datasetID: Int64) throws {
        self.session = session
        self.datasetID = datasetID
        let db = session.db
        lookup = try db.makeStatement(sql: """
            SELECT id, content_hash, seen_ingest, source_file, source_line, domain_id FROM tasks
            WHERE dataset_id = ? AND external_id = ?
            """)
        insert = try db.makeStatement(sql: """
            INSERT INTO tasks(dataset_id, external_id, domain_id, opening_text, user_prompt_text, answer, criteria, splits,
                record, content_hash, source_file, source_line, created_ingest, changed_ingest, seen_ingest)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?13)
            ON CONFLICT (dataset_id, external_id) DO NOTHING
            """)
        update = try db.makeStatement(sql: """
            UPDATE tasks SET domain_id = ?3, opening_text = ?4, user_prompt_text = ?5, answer = ?6, criteria = ?7, splits = ?8,
                record = ?9, content_hash = ?10, source_file = ?11, source_line = ?12, changed_ingest = ?13, seen_ingest = ?13
            WHERE id = ?1
            """)
        touch = try db.makeStatement(sql: "UPDATE tasks SET seen_ingest = ?, source_file = ?, source_line = ? WHERE id = ?")
    }

    /// Returns the task's row id.
    @discardableResult
    func write(_ t: Task) throws -> Int64 {
        let hash = t.record.hash
        // Most records are new: insert first, and look the id up only when it already exists.
        try run(insert, t, hash: hash, first: datasetID)
        if sqlite3_changes(session.db.sqliteConnection) > 0 {
            session.report.count(entity, .inserted)
            return session.db.lastInsertedRowID
        }
        let stmt = lookup.sqliteStatement
        defer { sqlite3_reset(stmt); sqlite3_clear_bindings(stmt) }
        sqlite3_bind_int64(stmt, 1, datasetID)
        bindText(stmt, 2, t.externalID)
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW {
            let id = sqlite3_column_int64(stmt, 0)
            let storedDomain: Int64? = sqlite3_column_type(stmt, 5) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, 5)
            let sameContent = sqlite3_column_int64(stmt, 1) == hash && storedDomain == t.domainID
            let storedIngest: Int64? = sqlite3_column_type(stmt, 2) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, 2)
            if storedIngest == session.ingestID {
                if sameContent {
                    session.report.count(entity, .duplicate)
                    return id
                }
                let firstFile = sqlite3_column_text(stmt, 3).map { String(cString: $0) }
                let firstLine = sqlite3_column_type(stmt, 4) == SQLITE_NULL ? nil : String(sqlite3_column_int64(stmt, 4))
                let first = [firstFile, firstLine].compactMap { $0 }.joined(separator: ":")
                throw FieldError(field: "id", reason: "id \"\(t.externalID)\" appears twice with different content (first at \(first))")
            }
            if sameContent {
                try touch.execute(arguments: [session.ingestID, t.file, t.line, id])
                session.report.count(entity, .unchanged)
                return id
            }
            try run(update, t, hash: hash, first: id)
            session.report.count(entity, .updated)
            return id
        }
        throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(session.db.sqliteConnection)))
    }

    /// Binds the 13 parameters shared by the insert and update statements and steps once.
    private func run(_ statement: Statement, _ t: Task, hash: Int64, first: Int64) throws {
        let stmt = statement.sqliteStatement
        defer { sqlite3_reset(stmt); sqlite3_clear_bindings(stmt) }
        sqlite3_bind_int64(stmt, 1, first)
        bindText(stmt, 2, t.externalID)
        if let d = t.domainID { sqlite3_bind_int64(stmt, 3, d) }
        bindText(stmt, 4, t.opening)
        bindText(stmt, 5, t.userPrompt)
        bindText(stmt, 6, t.answer)
        bindText(stmt, 7, t.criteria)
        bindText(stmt, 8, t.splits)
        sqlite3_bind_int64(stmt, 10, hash)
        bindText(stmt, 11, t.file)
        if let l = t.line { sqlite3_bind_int64(stmt, 12, Int64(l)) }
        sqlite3_bind_int64(stmt, 13, session.ingestID)
        // The record is bound without a copy (SQLITE_STATIC): the bytes stay put until the
        // step inside this closure is done, and the deferred reset unbinds them.
        let rc = t.record.bytes.withUnsafeBytes { b in
            if let p = b.baseAddress {
                _ = sqlite3_bind_text(stmt, 9, p.assumingMemoryBound(to: CChar.self), Int32(b.count), nil)
            } else {
                _ = sqlite3_bind_text(stmt, 9, "", 0, sqliteTransient)
            }
            let rc = sqlite3_step(stmt)
            sqlite3_clear_bindings(stmt)
            return rc
        }
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(session.db.sqliteConnection)))
        }
    }
}

/// SQLITE_TRANSIENT: SQLite copies the bound bytes before the call returns.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

@inline(__always)
func bindText(_ stmt: OpaquePointer?, _ index: Int32, _ text: String?) {
    guard var text else { sqlite3_bind_null(stmt, index); return }
    text.withUTF8 { b in
        if let p = b.baseAddress {
            _ = sqlite3_bind_text(stmt, index, UnsafeRawPointer(p).assumingMemoryBound(to: CChar.self), Int32(b.count), sqliteTransient)
        } else {
            _ = sqlite3_bind_text(stmt, index, "", 0, sqliteTransient)
        }
    }
}
