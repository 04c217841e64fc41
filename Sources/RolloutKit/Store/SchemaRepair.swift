import Foundation
import GRDB

/// One `schema/NNNN_name.sql` file as this binary carries it.
public struct MigrationFile: Sendable {
    /// The file name without `.sql`: GRDB's migration identifier.
    public let identifier: String
    public let sql: String
    /// SHA-256 of the file's bytes, lowercase hex: what `schema_migrations` records.
    public let sha256: String

    /// The bundled migration files, oldest first.
    public static let bundled: [MigrationFile] = BundledFiles.paths(under: "schema")
        .filter { $0.hasSuffix(".sql") }
        .map { path in
            let bytes = BundledFiles.data(path)!
            return MigrationFile(identifier: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent,
                                 sql: String(decoding: bytes, as: UTF8.self),
                                 sha256: Hashing.sha256Hex(Array(bytes)))
        }
}

/// Brings a warehouse's schema to the shape a list of migration files makes on an empty
/// database, keeping its data. Landed migrations were edited in place before their hashes were
/// pinned (0001 twice, 0002 once, 0008 four times), so warehouses exist whose grdb_migrations
/// name every migration but whose tables, indexes, triggers and search index are an earlier
/// file's. The target shape is read from a scratch in-memory database made from today's files;
/// every object whose SQL differs (comments and spacing aside) or is missing is made anew:
/// tables of another shape are rebuilt with their rows (renamed columns mapped below), indexes,
/// views and triggers replaced, and derived data that depends on what changed recounted (the
/// counters) or reset for the indexer to redo (the search index). Runs inside the caller's
/// transaction with foreign keys off (GRDB migrations run that way); the caller checks them.
public enum SchemaRepair {
    /// Objects earlier versions of landed migrations made and today's files do not: dropped.
    /// (Tables are never dropped: a table today's files lack is left with its rows.)
    static let retired: [(type: String, name: String)] = [
        ("index", "grade_counts_by_n"), // 0008_viewer.sql as of 5dbf2c0; replaced by grade_histogram
    ]

    /// Where a rebuilt table's column comes from when the old table has no column of that name:
    /// the first rule whose `needs` columns the old table has (as stored columns) gives the
    /// expression, over the old row `old`. Found by diffing every version of schema/ in git.
    static let columnSources: [String: [String: [(needs: [String], expression: String)]]] = [
        "tasks": [
            // Before b03d37f `opening` and `user_prompt` were stored columns; now they are
            // computed from *_text (else the record), so the stored text moves there as it was.
            "opening_text": [(["opening"], "old.opening")],
            "user_prompt_text": [(["user_prompt"], "old.user_prompt")],
            // Before a793575 a task had ingest_id (the last ingest that read it) and created_at /
            // updated_at (the writing ingest's start time). The ingests that started at those
            // times are the ones that created and last changed it; ingest_id if none matches.
            "created_ingest": [(["created_at", "ingest_id"],
                                "coalesce((SELECT max(i.id) FROM ingests i WHERE i.started_at <= old.created_at), old.ingest_id, (SELECT min(id) FROM ingests))")],
            "changed_ingest": [(["updated_at", "ingest_id"],
                                "coalesce((SELECT max(i.id) FROM ingests i WHERE i.started_at <= old.updated_at), old.ingest_id, (SELECT min(id) FROM ingests))")],
            "seen_ingest": [(["ingest_id"], "coalesce(old.ingest_id, (SELECT max(id) FROM ingests))")],
        ],
    ]

    /// Counter tables kept by triggers, with the statement that fills one from its base tables
    /// (the same as the migration that made it) and the columns that statement writes. Recounted
    /// when the table was created here or a trigger that writes it was replaced; skipped if the
    /// target shape gives the table other columns (a later migration then owns the recount).
    static let counters: [(table: String, columns: [String], fill: String)] = [
        ("grade_counts", ["run_id", "task_id", "grader", "grader_version", "n", "c", "u", "f", "fc", "fu"], """
            INSERT INTO grade_counts(run_id, task_id, grader, grader_version, n, c, u, f, fc, fu)
            SELECT r.run_id, r.task_id, g.grader, g.grader_version, count(*), sum(g.passed IS 1), sum(g.passed IS NULL),
                   sum(r.status = 'failed'), sum(r.status = 'failed' AND g.passed IS 1), sum(r.status = 'failed' AND g.passed IS NULL)
            FROM grades g JOIN latest_rollouts r ON r.id = g.rollout_id
            GROUP BY r.run_id, r.task_id, g.grader, g.grader_version
            """),
        ("grade_histogram", ["grader", "grader_version", "run_id", "domain_id", "dataset_id", "n", "c", "u", "f", "fc", "fu", "tasks"], """
            INSERT INTO grade_histogram(grader, grader_version, run_id, domain_id, dataset_id, n, c, u, f, fc, fu, tasks)
            SELECT gc.grader, gc.grader_version, gc.run_id, coalesce(t.domain_id, 0), t.dataset_id, gc.n, gc.c, gc.u, gc.f, gc.fc, gc.fu, count(*)
            FROM grade_counts gc JOIN tasks t ON t.id = gc.task_id
            GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
            """),
        ("run_outcomes", ["run_id", "status", "stop_reason", "n"], """
            INSERT INTO run_outcomes(run_id, status, stop_reason, n)
            SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3
            """),
        ("run_usage", ["run_id", "role", "model", "calls", "failed", "prompt_tokens", "completion_tokens",
                       "reasoning_tokens", "cached_tokens", "priced", "cost_usd", "latency_ms"], """
            INSERT INTO run_usage
            SELECT run_id, role, model, count(*),
                   sum(error IS NOT NULL OR coalesce(http_status, 200) NOT BETWEEN 200 AND 299),
                   sum(coalesce(prompt_tokens, 0)), sum(coalesce(completion_tokens, 0)), sum(coalesce(reasoning_tokens, 0)),
                   sum(coalesce(cached_tokens, 0)), sum(cost_usd IS NOT NULL), sum(coalesce(cost_usd, 0)), sum(coalesce(latency_ms, 0))
            FROM llm_calls WHERE run_id IS NOT NULL GROUP BY run_id, role, model
            """),
    ]

    /// The full-text index's tables: if any was made anew, the index is emptied and its
    /// watermark set to 0, so `rollout serve` indexes every message again (messages are kept).
    static let searchTables = ["message_search", "message_search_state", "search_terms", "message_search_pending"]

    /// A schema object as sqlite_master holds it.
    struct Object {
        let type: String
        let name: String
        let table: String
        let sql: String
        var normalized: String { SchemaRepair.normalize(sql) }
    }

    /// The objects `files` make on an empty database, in creation order, with each table's
    /// columns.
    struct Shape {
        var objects: [Object]
        var columns: [String: [Column]]
    }

    static func shape(of files: [MigrationFile]) throws -> Shape {
        let scratch = try DatabaseQueue()
        return try scratch.writeWithoutTransaction { db in
            for file in files { try db.execute(sql: file.sql) }
            let objects = try objects(db)
            var columns: [String: [Column]] = [:]
            for o in objects where o.type == "table" { columns[o.name] = try tableColumns(db, o.name) }
            return Shape(objects: objects, columns: columns)
        }
    }

    /// Schema objects with SQL, in creation order; the shadow tables of virtual tables and
    /// GRDB's grdb_migrations left out (no file's statement makes them).
    static func objects(_ db: Database) throws -> [Object] {
        let shadows = Set(try String.fetchAll(db, sql: "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'"))
        return try Row.fetchAll(db, sql: """
            SELECT type, name, tbl_name, sql FROM sqlite_master
            WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND name <> 'grdb_migrations' ORDER BY rowid
            """).compactMap { row in
            let o = Object(type: row[0], name: row[1], table: row[2], sql: row[3])
            return shadows.contains(o.name) ? nil : o
        }
    }

    /// A table column as `PRAGMA table_xinfo` describes it.
    struct Column {
        let name: String
        let type: String
        let notNull: Bool
        let hasDefault: Bool
        let pk: Int
        /// A generated column (hidden 2 or 3): never inserted.
        let generated: Bool
    }

    static func tableColumns(_ db: Database, _ table: String) throws -> [Column] {
        try Row.fetchAll(db, sql: "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden FROM pragma_table_xinfo(?)",
                         arguments: [table]).map { row in
            Column(name: row[0], type: row[1], notNull: row[2], hasDefault: row[3], pk: row[4], generated: (row[5] as Int) >= 2)
        }
    }

    /// SQL with `--` comments dropped and runs of white space made one space, so objects that
    /// differ only in layout compare equal.
    static func normalize(_ sql: String) -> String {
        var out = ""
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            var text = Substring(line)
            if let dash = line.range(of: "--") { text = line[..<dash.lowerBound] }
            out += String(text)
            out += " "
        }
        return out.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).joined(separator: " ")
    }

    /// What a reconcile changed, for `rollout db repair` to print.
    public struct Changes: Sendable {
        /// Tables of another shape, made anew with their rows.
        public var rebuilt: [String] = []
        /// Tables, indexes, views and triggers that were missing.
        public var created: [String] = []
        /// Virtual tables, indexes, views and triggers whose definition differed.
        public var replaced: [String] = []
        /// Objects of earlier versions that today's schema no longer has.
        public var dropped: [String] = []
        /// Counter tables filled again from their base tables.
        public var recounted: [String] = []
        /// The full-text index was emptied for the indexer to redo.
        public var searchReset = false
        /// Nothing needed changing.
        public var isEmpty: Bool {
            rebuilt.isEmpty && created.isEmpty && replaced.isEmpty && dropped.isEmpty && recounted.isEmpty && !searchReset
        }

        /// One line per kind of change.
        public var lines: [String] {
            var out: [String] = []
            if !rebuilt.isEmpty { out.append("rebuilt with their rows: \(rebuilt.joined(separator: ", "))") }
            if !created.isEmpty { out.append("created: \(created.joined(separator: ", "))") }
            if !replaced.isEmpty { out.append("replaced: \(replaced.joined(separator: ", "))") }
            if !dropped.isEmpty { out.append("dropped (no longer in the schema): \(dropped.joined(separator: ", "))") }
            if !recounted.isEmpty { out.append("recounted from their base tables: \(recounted.joined(separator: ", "))") }
            if searchReset { out.append("search index emptied; `rollout serve` rebuilds it from the messages") }
            return out
        }
    }

    /// Brings `db` to the shape `files` make. Must run in a transaction with foreign keys off.
    @discardableResult
    static func reconcile(_ db: Database, to files: [MigrationFile]) throws -> Changes {
        let target = try shape(of: files)
        var live = Dictionary(try objects(db).map { ("\($0.type) \($0.name)", $0) }, uniquingKeysWith: { a, _ in a })
        var changes = Changes()
        var made = Set<String>() // tables created or rebuilt
        var remade = Set<String>() // triggers created or replaced

        // Tables and virtual tables first: a rebuilt table loses its indexes and triggers, which
        // the passes below then find missing.
        for o in target.objects where o.type == "table" {
            let virtual = o.sql.uppercased().hasPrefix("CREATE VIRTUAL TABLE")
            guard let old = live["table \(o.name)"] else {
                try db.execute(sql: o.sql)
                changes.created.append(o.name)
                made.insert(o.name)
                continue
            }
            guard old.normalized != o.normalized else { continue }
            if virtual {
                try db.execute(sql: "DROP TABLE \(quote(o.name))")
                try db.execute(sql: o.sql)
                changes.replaced.append(o.name)
            } else {
                try rebuild(db, table: o, columns: target.columns[o.name] ?? [], live: &live)
                changes.rebuilt.append(o.name)
            }
            made.insert(o.name)
        }
        live = Dictionary(try objects(db).map { ("\($0.type) \($0.name)", $0) }, uniquingKeysWith: { a, _ in a })

        for (type, name) in retired where live["\(type) \(name)"] != nil && !target.objects.contains(where: { $0.name == name }) {
            try db.execute(sql: "DROP \(type.uppercased()) \(quote(name))")
            changes.dropped.append(name)
        }
        for type in ["index", "view", "trigger"] {
            for o in target.objects where o.type == type {
                if let old = live["\(type) \(o.name)"] {
                    guard old.normalized != o.normalized else { continue }
                    try db.execute(sql: "DROP \(type.uppercased()) \(quote(o.name))")
                    try db.execute(sql: o.sql)
                    changes.replaced.append(o.name)
                } else {
                    try db.execute(sql: o.sql)
                    changes.created.append(o.name)
                }
                if type == "trigger" { remade.insert(o.name) }
            }
        }

        let targetTables = Set(target.objects.filter { $0.type == "table" }.map(\.name))
        if searchTables.contains(where: { made.contains($0) }), searchTables.allSatisfy(targetTables.contains) {
            try db.execute(sql: """
                INSERT INTO message_search(message_search) VALUES ('delete-all');
                DELETE FROM search_terms;
                DELETE FROM message_search_pending;
                INSERT OR REPLACE INTO message_search_state(id, indexed_upto) VALUES (1, 0);
                """)
            changes.searchReset = true
        }
        let remadeTriggers = target.objects.filter { $0.type == "trigger" && remade.contains($0.name) }
        var recountedAny = false
        for counter in counters where targetTables.contains(counter.table) {
            let columns = (target.columns[counter.table] ?? []).filter { !$0.generated }.map(\.name)
            guard columns == counter.columns else { continue }
            // A trigger that writes the table was replaced, the table is new, or a counter it
            // is folded from (grade_counts before grade_histogram) was recounted.
            let fedByRemade = remadeTriggers.contains { trigger in
                let body = normalize(trigger.sql).lowercased()
                return ["into ", "update ", "delete from "].contains { body.contains($0 + counter.table + " ") || body.contains($0 + counter.table + "(") }
            }
            guard made.contains(counter.table) || fedByRemade || (recountedAny && counter.table == "grade_histogram") else { continue }
            try db.execute(sql: "DELETE FROM \(quote(counter.table))")
            try db.execute(sql: counter.fill)
            changes.recounted.append(counter.table)
            recountedAny = true
        }
        return changes
    }

    /// Rebuilds `table` in the target's shape with the old rows: the old table is renamed aside
    /// (legacy rename, so other tables' foreign keys and triggers keep naming `table`), the new
    /// one made from the target's SQL exactly, rows copied column by column, the old dropped.
    private static func rebuild(_ db: Database, table o: Object,
                                columns: [Column],
                                live: inout [String: Object]) throws {
        let aside = "\(o.name)_before_repair"
        let oldColumns = try tableColumns(db, o.name).filter { !$0.generated }.map(\.name)
        // The old table's indexes and triggers would follow it aside and be dropped with it;
        // dropping them now keeps their names free for the target's.
        for (key, object) in live where object.table == o.name && (object.type == "index" || object.type == "trigger") {
            try db.execute(sql: "DROP \(object.type.uppercased()) \(quote(object.name))")
            live[key] = nil
        }
        let legacy = try Bool.fetchOne(db, sql: "PRAGMA legacy_alter_table") ?? false
        try db.execute(sql: "PRAGMA legacy_alter_table = ON")
        defer { if !legacy { try? db.execute(sql: "PRAGMA legacy_alter_table = OFF") } }
        try db.execute(sql: "ALTER TABLE \(quote(o.name)) RENAME TO \(quote(aside))")
        try db.execute(sql: o.sql)

        var into: [String] = []
        var from: [String] = []
        for c in columns where !c.generated {
            if oldColumns.contains(c.name) {
                into.append(quote(c.name))
                from.append("old.\(quote(c.name))")
            } else if let rule = columnSources[o.name]?[c.name]?.first(where: { $0.needs.allSatisfy(oldColumns.contains) }) {
                into.append(quote(c.name))
                from.append(rule.expression)
            } else if c.notNull && !c.hasDefault {
                throw SchemaRepairError(table: o.name, column: c.name)
            }
        }
        // A rowid table without an INTEGER PRIMARY KEY keeps its rowids too (tests and tools
        // address rows by them); from a WITHOUT ROWID table there are none to keep.
        let integerKey = columns.filter { $0.pk > 0 }.count == 1 && columns.contains { $0.pk == 1 && $0.type.uppercased() == "INTEGER" }
        let oldHasRowid = (try? db.execute(sql: "SELECT rowid FROM \(quote(aside)) LIMIT 0")) != nil
        let newHasRowid = !normalize(o.sql).uppercased().hasSuffix("WITHOUT ROWID")
        if !integerKey && oldHasRowid && newHasRowid {
            into.insert("rowid", at: 0)
            from.insert("old.rowid", at: 0)
        }
        try db.execute(sql: "INSERT INTO \(quote(o.name))(\(into.joined(separator: ", "))) SELECT \(from.joined(separator: ", ")) FROM \(quote(aside)) AS old")
        try db.execute(sql: "DROP TABLE \(quote(aside))")
    }

    static func quote(_ name: String) -> String { "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
}

/// A table of an older shape has a required column no rule fills: a developer's error, found
/// by MigrationHistoryTests before it ships.
struct SchemaRepairError: Error, CustomStringConvertible {
    let table: String
    let column: String
    var description: String {
        "cannot bring table \(table) to this build's schema: its new column \(column) is required and nothing says how to fill it (SchemaRepair.columnSources)"
    }
}
