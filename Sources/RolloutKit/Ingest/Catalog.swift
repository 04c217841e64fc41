import Foundation
import GRDB

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

    /// Parses "A+B" (and, leniently, "A_B" when `underscore` is set) into a key.
    public init(parsing text: String) throws {
        try self.init(text.split(separator: "+").map(String.init))
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
struct TaskWriter {
    struct Task {
        var externalID: String
        var domainID: Int64?
        var opening: String?
        var userPrompt: String?
        var answer: String?
        var criteria: String?
        var splits: String?
        var record: String
        var file: String
        var line: Int?
    }

    let session: IngestSession
    let datasetID: Int64
    var entity = "tasks"

    /// Returns the task's row id.
    @discardableResult
    func write(_ t: Task) throws -> Int64 {
        let db = session.db
        let hash = Hashing.fnv1a64(t.record)
        let lookup = try db.cachedStatement(sql: """
            SELECT id, content_hash, ingest_id, source_file, source_line, domain_id FROM tasks
            WHERE dataset_id = ? AND external_id = ?
            """)
        lookup.setUncheckedArguments([datasetID, t.externalID])
        if let row = try Row.fetchOne(lookup) {
            let id: Int64 = row[0]
            let sameContent = (row[1] as Int64) == hash && (row[5] as Int64?) == t.domainID
            if (row[2] as Int64?) == session.ingestID {
                if sameContent {
                    session.report.count(entity, .duplicate)
                    return id
                }
                let firstFile: String? = row[3]
                let firstLine: Int? = row[4]
                let first = [firstFile, firstLine.map(String.init)].compactMap { $0 }.joined(separator: ":")
                throw FieldError(field: "id", reason: "id \"\(t.externalID)\" appears twice with different content (first at \(first))")
            }
            if sameContent {
                let touch = try db.cachedStatement(sql: "UPDATE tasks SET ingest_id = ?, source_file = ?, source_line = ? WHERE id = ?")
                try touch.execute(arguments: [session.ingestID, t.file, t.line, id])
                session.report.count(entity, .unchanged)
                return id
            }
            let update = try db.cachedStatement(sql: """
                UPDATE tasks SET domain_id = ?, opening = ?, user_prompt = ?, answer = ?, criteria = ?, splits = ?,
                    record = ?, content_hash = ?, source_file = ?, source_line = ?, ingest_id = ?, updated_at = ?
                WHERE id = ?
                """)
            try update.execute(arguments: [t.domainID, t.opening, t.userPrompt, t.answer, t.criteria, t.splits,
                                           t.record, hash, t.file, t.line, session.ingestID, session.now, id])
            session.report.count(entity, .updated)
            return id
        }
        let insert = try db.cachedStatement(sql: """
            INSERT INTO tasks(dataset_id, external_id, domain_id, opening, user_prompt, answer, criteria, splits,
                record, content_hash, source_file, source_line, ingest_id, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try insert.execute(arguments: [datasetID, t.externalID, t.domainID, t.opening, t.userPrompt, t.answer,
                                       t.criteria, t.splits, t.record, hash, t.file, t.line, session.ingestID,
                                       session.now, session.now])
        session.report.count(entity, .inserted)
        return db.lastInsertedRowID
    }
}
