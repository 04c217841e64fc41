import Foundation
import GRDB
@testable import RolloutKit
@testable import RolloutViewer
import Testing

/// Every version of schema/ that ever landed, as Fixtures/schema-history holds it: the files as
/// they stood at each commit of `git log -- schema/` (files/NAME@SHA12.sql, each distinct
/// content once) and, per commit, which of them made a warehouse (versions.tsv). Made with
/// `git show COMMIT:schema/FILE`; see Fixtures/README.md.
enum SchemaHistory {
    static let dir = Fixture.root.appending(path: "schema-history")

    struct Version: Sendable, CustomTestStringConvertible {
        let commit: String
        let date: String
        /// (migration identifier, fixture file name) in the order the migrator applied them.
        let files: [(identifier: String, file: String)]
        var testDescription: String { "\(commit.prefix(7)) (\(date), \(files.map(\.file).joined(separator: " ")))" }
    }

    static let versions: [Version] = {
        let text = (try? String(contentsOf: dir.appending(path: "versions.tsv"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { line in
            let fields = line.split(separator: "\t").map(String.init)
            let files = fields[2].split(separator: " ").map { name in
                (identifier: String(name.split(separator: "@")[0]), file: String(name))
            }
            return Version(commit: fields[0], date: fields[1], files: files)
        }
    }()

    static func sql(_ file: String) throws -> String {
        try String(contentsOf: dir.appending(path: "files/\(file).sql"), encoding: .utf8)
    }

    /// A warehouse as the rollout of `version` made it: a WAL file, application_id set on the
    /// new file, each migration applied by GRDB's migrator (so grdb_migrations names it), then
    /// user_version = the number applied. Every version from 946d893 on stamped it this way.
    static func build(_ version: Version, at path: String) throws {
        let pool = try DatabasePool(path: path)
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA application_id = \(Warehouse.applicationID)")
        }
        var migrator = DatabaseMigrator()
        for f in version.files {
            let sql = try Self.sql(f.file)
            migrator.registerMigration(f.identifier) { db in try db.execute(sql: sql) }
        }
        try migrator.migrate(pool)
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA user_version = \(version.files.count)")
            try seed(db)
        }
        try pool.close()
    }

    static let t0 = "2026-11-20T10:00:00.000Z", t1 = "2026-11-21T10:00:00.000Z"
    /// Verdicts per task (two samples each): pass@1 = (1 + 0.5 + 0) / 3, pass@2 = 2/3.
    static let verdicts = [[1, 1], [1, 0], [0, 0]]

    /// Rows in whatever shape the version has: two ingests (the tasks created by the first,
    /// changed by the second), three tasks, a run of six rollouts with messages, grades and LLM
    /// calls; the search index filled as that version's indexer would have.
    static func seed(_ db: Database) throws {
        let taskColumns = Set(try String.fetchAll(db, sql: "SELECT name FROM pragma_table_xinfo('tasks')"))
        let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
        try db.execute(sql: "INSERT INTO ingests(id, kind, source, started_at) VALUES (1, 'qa', 'seed.jsonl', ?), (2, 'qa', 'seed.jsonl', ?)",
                       arguments: [t0, t1])
        try db.execute(sql: "INSERT INTO datasets(id, name, kind, created_at, updated_at) VALUES (1, 'seed', 'qa', ?, ?)", arguments: [t0, t1])
        for i in 1...3 {
            let opening = "Question \(i) about zebracorns"
            let record = #"{"id":"t\#(i)","question":"\#(opening)"}"#
            if taskColumns.contains("created_ingest") {
                try db.execute(sql: """
                    INSERT INTO tasks(id, dataset_id, external_id, opening_text, answer, record, content_hash, created_ingest, changed_ingest, seen_ingest)
                    VALUES (?, 1, ?, ?, '4', ?, ?, 1, 2, 2)
                    """, arguments: [i, "t\(i)", opening, record, i])
            } else {
                let openingColumn = taskColumns.contains("opening_text") ? "opening_text" : "opening"
                try db.execute(sql: """
                    INSERT INTO tasks(id, dataset_id, external_id, \(openingColumn), answer, record, content_hash, ingest_id, created_at, updated_at)
                    VALUES (?, 1, ?, ?, '4', ?, ?, 2, ?, ?)
                    """, arguments: [i, "t\(i)", opening, record, i, t0, t1])
            }
        }
        if tables.contains("graders") {
            try db.execute(sql: """
                INSERT OR IGNORE INTO graders(name, version, kind, definition, created_at)
                VALUES ('stop-reason', 1, 'stop-reason', '{"kind":"stop-reason","passing":["answer","user_stop"],"rev":1}', ?)
                """, arguments: [t1])
        }
        try db.execute(sql: "INSERT INTO runs(id, name, mode, status, created_at) VALUES (1, 'seedrun', 'imported', 'completed', ?)", arguments: [t1])
        for (task, samples) in verdicts.enumerated() {
            for (sample, passed) in samples.enumerated() {
                try db.execute(sql: """
                    INSERT INTO rollouts(run_id, task_id, sample, attempt, status, stop_reason) VALUES (1, ?, ?, 0, ?, ?)
                    """, arguments: [task + 1, sample, passed == 1 ? "completed" : "failed", passed == 1 ? "answer" : "max_turns"])
                let rollout = db.lastInsertedRowID
                try db.execute(sql: "INSERT INTO messages(rollout_id, idx, role, content) VALUES (?, 0, 'user', ?), (?, 1, 'assistant', 'A zebracorn says 4')",
                               arguments: [rollout, "Question \(task + 1) about zebracorns", rollout])
                try db.execute(sql: "INSERT INTO grades(rollout_id, grader, grader_version, value, passed, created_at) VALUES (?, 'stop-reason', 1, ?, ?, ?)",
                               arguments: [rollout, passed, passed, t1])
                try db.execute(sql: """
                    INSERT INTO llm_calls(run_id, rollout_id, role, model, prompt_tokens, completion_tokens, latency_ms, cost_usd, created_at)
                    VALUES (1, ?, 'agent', 'mock/agent', 100, 10, 5.0, 0.001, ?)
                    """, arguments: [rollout, t1])
            }
        }
        if tables.contains("message_search") {
            // What that version's indexer left: every message indexed (with the role when the
            // index had that column) and, once search_terms existed, their words counted.
            let roleIndexed = try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info('message_search')").contains("role")
            try db.execute(sql: roleIndexed
                ? "INSERT INTO message_search(rowid, content, reasoning_content, role) SELECT id, content, reasoning_content, role FROM messages"
                : "INSERT INTO message_search(rowid, content, reasoning_content) SELECT id, content, reasoning_content FROM messages")
            try db.execute(sql: "UPDATE message_search_state SET indexed_upto = (SELECT max(id) FROM messages)")
            if tables.contains("search_terms") {
                try db.execute(sql: "INSERT INTO search_terms(term, docs) VALUES ('zebracorns', 6), ('zebracorn', 6), ('question', 6), ('says', 6), ('a', 6), ('about', 6), ('1', 2), ('2', 2), ('3', 2), ('4', 6)")
            }
        }
    }
}

@Suite("Migration history", .serialized)
struct MigrationHistoryTests {
    /// SHA-256 of every landed file in schema/. A landed migration is never edited (a warehouse
    /// made by it would keep the old shape while claiming the new); a change is a new file.
    static let pinned: [String: String] = [
        "0001_warehouse.sql": "62bffcacf10133e1eb9c90e4f701204d0ce24ceed2de8fd90420fd8464efbb53",
        "0002_engine.sql": "0e5f85253e67c3caeaadad5344d0188eecdaf77c182fcf31b0071aedefd90d20",
        "0003_server_sessions.sql": "bea7be638083cb26bcbb9ab0d765ae2ef8596d6c4c12c3cce4ef49e2f802193d",
        "0004_eval.sql": "9fb5b80749c4ef9c4743d684f26d7a9cc92c33477a8a5de4c67921f4d94782f8",
        "0005_export.sql": "2c8d4f45dec49d790c83258bf63280e9c49fba0e960005278c97bf016a70c413",
        "0007_batch.sql": "1c6672d273315909edf48a28cfbd2a694940908b3b30ac7155fb2266a0f7347b",
        "0008_viewer.sql": "abdbf07dcd15baa8ec682eaf58b49823bb180d8cb303611caf5697cc406366e4",
        "0009_migration_history.sql": "fcc79592946bdd4b9049142625f93a0f6c2d9311fe4ccdd8fc3d628d099fcb51",
        "0010_run_workers.sql": "c3c6afe4a7f5b21ccbb8e2a3ebc5af63529aec58410b1f66c7291121673770b6",
    ]

    @Test func landedMigrationsAreNeverEdited() throws {
        let schema = CLITests.root.appending(path: "schema")
        let files = try FileManager.default.contentsOfDirectory(atPath: schema.path).filter { $0.hasSuffix(".sql") }.sorted()
        for file in files {
            let bytes = try Data(contentsOf: schema.appending(path: file))
            let hash = Hashing.sha256Hex(Array(bytes))
            guard let pin = Self.pinned[file] else {
                Issue.record("schema/\(file) is new: add \"\(file)\": \"\(hash)\" to MigrationHistoryTests.pinned when it lands (and never edit it after)")
                continue
            }
            #expect(hash == pin, "schema/\(file) was edited after it landed (sha256 \(hash), pinned \(pin)); put the change in a new migration file and restore this one")
        }
        for file in Self.pinned.keys where !files.contains(file) {
            Issue.record("schema/\(file) was deleted or renamed after it landed; warehouses record it by name")
        }
        // The binary carries exactly these files.
        #expect(MigrationFile.bundled.map { $0.identifier + ".sql" } == files)
        for m in MigrationFile.bundled { #expect(Self.pinned[m.identifier + ".sql"] == m.sha256, "\(m.identifier)") }
    }

    /// The fixtures are what they say: each file's name carries the start of its SHA-256, and
    /// every version is listed once, oldest first, the last one today's files before 0009.
    @Test func historyFixturesAreIntact() throws {
        #expect(SchemaHistory.versions.count == 17)
        for v in SchemaHistory.versions {
            for f in v.files {
                let hash = Hashing.sha256Hex(Array(try SchemaHistory.sql(f.file).utf8))
                #expect(f.file.hasSuffix("@" + hash.prefix(12)), "\(f.file)")
            }
        }
        let last = try #require(SchemaHistory.versions.last)
        #expect(last.files.map { "\($0.identifier).sql" } == Self.pinned.keys.sorted().filter { $0 < "0009" })
        #expect(last.files.allSatisfy { Self.pinned["\($0.identifier).sql"]!.hasPrefix(String($0.file.split(separator: "@")[1])) })
    }

    static func problems(_ w: Warehouse) throws -> [[String]] {
        try QueryRunner(w).run("grade-counts-check")[0].rows.map { $0.map(\.text) }
    }

    /// run_outcomes and run_usage against a recount (their triggers are not in the check query).
    static func counterDrift(_ w: Warehouse) throws -> Int {
        try w.int("""
            SELECT (SELECT count(*) FROM (
                SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3
                EXCEPT SELECT run_id, status, stop_reason, n FROM run_outcomes))
             + (SELECT count(*) FROM (
                SELECT run_id, status, stop_reason, n FROM run_outcomes
                EXCEPT SELECT run_id, status, coalesce(stop_reason, ''), count(*) FROM latest_rollouts GROUP BY 1, 2, 3))
             + (SELECT count(*) FROM (
                SELECT run_id, role, model, count(*), sum(coalesce(prompt_tokens, 0)) FROM llm_calls WHERE run_id IS NOT NULL GROUP BY 1, 2, 3
                EXCEPT SELECT run_id, role, model, calls, prompt_tokens FROM run_usage))
            """) ?? -1
    }

    static func passAtK(_ w: Warehouse, run: String, k: String, by: String) throws -> [String: Double] {
        let r = try QueryRunner(w).run("pass-at-k", parameters: ["run": run, "k": k, "by": by])[0]
        var out: [String: Double] = [:]
        for (key, (kk, value)) in zip(r.column("key"), zip(r.column("k"), r.column("pass_at_k"))) {
            out["\(key.text) k=\(kk.text)"] = Double(value.text)
        }
        return out
    }

    /// A warehouse made by each landed version of the schema opens with today's binary at
    /// today's shape, its rows kept, its counters right and pass@k, the search index and the
    /// quickstart working in it.
    @Test(arguments: SchemaHistory.versions)
    func everyLandedVersionUpgrades(_ version: SchemaHistory.Version) throws {
        let tmp = try TempDir()
        let path = tmp.file("old.db")
        try SchemaHistory.build(version, at: path)

        let w = try Warehouse.open(path: path, create: false)
        let status = try w.status()
        #expect(status.applied == Warehouse.knownMigrations)
        #expect(status.checksums == Warehouse.knownMigrations.count)
        #expect(try w.int("PRAGMA user_version") == Warehouse.knownMigrations.count)
        #expect(try w.int("PRAGMA application_id") == Int(Warehouse.applicationID))
        #expect(try w.int("PRAGMA foreign_key_check") == nil)

        // Today's shape: every table, index, view and trigger as today's files make them.
        let today = try Warehouse.inMemory()
        func shape(_ w: Warehouse) throws -> [String] {
            try w.writer.read { db in try SchemaRepair.objects(db).map { "\($0.type) \($0.name): \(SchemaRepair.normalize($0.sql))" }.sorted() }
        }
        let got = try shape(w)
        let want = try shape(today)
        #expect(got == want, "differs: \(Set(got).symmetricDifference(want).sorted())")

        // The rows, as they were.
        #expect(try w.rows("SELECT external_id, opening, created_ingest, changed_ingest, seen_ingest FROM tasks ORDER BY id")
            .map { "\($0[0] as String) \($0[1] as String) \($0[2] as Int) \($0[3] as Int) \($0[4] as Int)" }
            == (1...3).map { "t\($0) Question \($0) about zebracorns 1 2 2" })
        #expect(try w.count("rollouts") == 6)
        #expect(try w.count("messages") == 12)
        #expect(try w.count("grades") == 6)
        #expect(try w.count("llm_calls") == 6)
        #expect(try w.count("run_tasks") == 0)

        // The counters and pass@k over them.
        #expect(try Self.problems(w).isEmpty)
        #expect(try Self.counterDrift(w) == 0)
        #expect(try w.int("SELECT sum(tasks) FROM grade_histogram") == 3)
        let p = try Self.passAtK(w, run: "seedrun", k: "1,2", by: "dataset")
        #expect(abs((p["seed k=1"] ?? -1) - 0.5) < 1e-9, "\(p)")
        #expect(abs((p["seed k=2"] ?? -1) - 2.0 / 3) < 1e-9, "\(p)")

        // The search index: caught up by the viewer's indexer, every message found once.
        _ = try SearchIndexer(writer: w.writer).catchUp()
        #expect(try w.int("SELECT count(*) FROM message_search WHERE message_search MATCH 'zebracorn*'") == 12)
        #expect(try w.int("SELECT docs FROM search_terms WHERE term = 'zebracorns'") == 6)
        try w.writer.write { db in
            try db.execute(sql: "INSERT INTO message_search(message_search, rank) VALUES ('integrity-check', 1)")
        }
        try (w.writer as? DatabasePool)?.close()

        // The quickstart, as a user runs it, in the upgraded file; then everything checks again.
        if FileManager.default.isExecutableFile(atPath: CLITests.binary) {
            let (code, out, err) = try EvalFixtures.run(CLITests.binary, ["quickstart", "--db", path, "--examples", tmp.file("example")], in: tmp.url)
            #expect(code == 0, "quickstart: \(err)")
            #expect(out.contains("run quickstart: 51 rollouts"), "\(out)")
            let again = try Warehouse.open(path: path, create: false)
            #expect(try Self.problems(again).isEmpty)
            #expect(try Self.counterDrift(again) == 0)
            #expect(try Self.passAtK(again, run: "quickstart", k: "1", by: "run")["quickstart k=1"] != nil)
            #expect(try again.count("tasks") > 3)
            try (again.writer as? DatabasePool)?.close()
        }
    }

    /// A warehouse whose recorded hash of a migration is not this binary's file's (a build with
    /// an edited migration made it) does not open; the message names the migration and the
    /// command that repairs it, which brings the shape back and records today's hashes.
    @Test func editedMigrationIsReportedAndRepaired() throws {
        let tmp = try TempDir()
        let path = tmp.file("dev.db")
        // A dev build whose 0008 was the role-indexed version (009a2ee), and today's 0009.
        let dev = try #require(SchemaHistory.versions.first { $0.commit.hasPrefix("009a2ee") })
        let pool = try DatabasePool(path: path)
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA application_id = \(Warehouse.applicationID)") }
        var migrator = DatabaseMigrator()
        let recorded = try dev.files.map { ($0.identifier, Hashing.sha256Hex(try SchemaHistory.sql($0.file))) }
        for f in dev.files {
            let sql = try SchemaHistory.sql(f.file)
            migrator.registerMigration(f.identifier) { db in try db.execute(sql: sql) }
        }
        let history = try #require(MigrationFile.bundled.first { $0.identifier == "0009_migration_history" })
        migrator.registerMigration(history.identifier) { db in
            try db.execute(sql: history.sql)
            for (id, hash) in recorded + [(history.identifier, history.sha256)] {
                try db.execute(sql: "INSERT INTO schema_migrations VALUES (?, ?, '2026-12-03T00:00:00Z')", arguments: [id, hash])
            }
        }
        try migrator.migrate(pool)
        try pool.writeWithoutTransaction { db in try SchemaHistory.seed(db) }
        try pool.close()

        let error = #expect(throws: WarehouseError.self) { try Warehouse.open(path: path, create: false) }
        let message = error?.description ?? ""
        #expect(message.contains("0008_viewer") && message.contains("rollout db repair --db \(path)"), "\(message)")
        #expect(!message.contains("\n") && !message.contains("SELECT"))

        // The CLI says the same, and changes nothing.
        if FileManager.default.isExecutableFile(atPath: CLITests.binary) {
            let before = try Self.contents(path)
            let (code, _, err) = try EvalFixtures.run(CLITests.binary, ["stats", "--db", path], in: tmp.url)
            #expect(code != 0 && err.contains("0008_viewer") && err.contains("rollout db repair"), "\(err)")
            #expect(try Self.contents(path) == before)

            let (fixed, out, fixErr) = try EvalFixtures.run(CLITests.binary, ["db", "repair", "--db", path], in: tmp.url)
            #expect(fixed == 0, "\(fixErr)")
            #expect(out.contains("repaired") && out.contains("message_search"), "\(out)")
            let (again, out2, _) = try EvalFixtures.run(CLITests.binary, ["db", "repair", "--db", path], in: tmp.url)
            #expect(again == 0 && out2.contains("already in this binary's schema"), "\(out2)")
        } else {
            let changes = try Warehouse.repair(path: path)
            #expect(changes.replaced.contains("message_search"))
        }
        let w = try Warehouse.open(path: path, create: false)
        #expect(try w.int("SELECT count(*) FROM schema_migrations WHERE sha256 <> '' ") == Warehouse.knownMigrations.count)
        #expect(try Self.problems(w).isEmpty)
        _ = try SearchIndexer(writer: w.writer).catchUp()
        #expect(try w.int("SELECT count(*) FROM message_search WHERE message_search MATCH 'zebracorn*'") == 12)
        try w.writer.write { db in
            try db.execute(sql: "INSERT INTO message_search(message_search, rank) VALUES ('integrity-check', 1)")
        }
    }

    /// The schema, the migration records and the rows of the file, read without writing.
    static func contents(_ path: String) throws -> [String] {
        var config = Configuration()
        config.readonly = true
        let q = try DatabaseQueue(path: path, configuration: config)
        defer { try? q.close() }
        return try q.read { db in
            try String.fetchAll(db, sql: "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name")
                + String.fetchAll(db, sql: "SELECT identifier || ' ' || sha256 FROM schema_migrations ORDER BY 1")
                + String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY 1")
                + [String(try Int.fetchOne(db, sql: "PRAGMA user_version") ?? -1), String(try Int.fetchOne(db, sql: "SELECT count(*) FROM messages") ?? -1)]
        }
    }

    /// A record changed after the fact (not only an edited file) is caught the same way.
    @Test func alteredRecordIsReported() throws {
        let tmp = try TempDir()
        let path = tmp.file("w.db")
        do {
            let w = try Warehouse.open(path: path)
            try w.writer.write { db in
                try db.execute(sql: "UPDATE schema_migrations SET sha256 = '00' WHERE identifier = '0004_eval'")
            }
            try (w.writer as? DatabasePool)?.close()
        }
        let error = #expect(throws: WarehouseError.self) { try Warehouse.open(path: path) }
        #expect(error?.description.contains("schema migration 0004_eval was applied from a different file") == true, "\(String(describing: error))")
        _ = try Warehouse.repair(path: path)
        #expect(try Warehouse.open(path: path).status().checksums == Warehouse.knownMigrations.count)
    }

    /// Each warehouse keeps its own migration records: a merge neither copies nor reports them.
    @Test func mergeLeavesMigrationRecordsAlone() throws {
        let tmp = try TempDir()
        let source = try Warehouse.open(path: tmp.file("a.db"))
        _ = try source.ingestTau2(directory: Fixture.path("tau2/mock"))
        try (source.writer as? DatabasePool)?.close()
        let w = try Warehouse.open(path: tmp.file("b.db"))
        let before = try w.strings("SELECT identifier || sha256 || applied_at FROM schema_migrations ORDER BY 1")
        let report = try w.merge(from: tmp.file("a.db"))
        #expect(!report.notMerged.contains { $0.contains("schema_migrations") }, "\(report.notMerged)")
        #expect(try w.strings("SELECT identifier || sha256 || applied_at FROM schema_migrations ORDER BY 1") == before)
    }

    /// A command that does not create a warehouse leaves an empty file, or an empty SQLite
    /// database, exactly as it was (before: `rollout stats` made it a warehouse).
    @Test func readOnlyCommandsNeverCreateOrConvert() throws {
        let tmp = try TempDir()
        let empty = try tmp.write("empty.db", "")
        let error = #expect(throws: WarehouseError.self) { try Warehouse.open(path: empty, create: false) }
        #expect(error?.description.contains("an empty file, not a rollout warehouse") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: empty)).isEmpty)

        // An empty SQLite database (another tool's new file): refused, not converted.
        let blank = tmp.file("blank.db")
        do {
            let q = try DatabaseQueue(path: blank)
            try q.write { db in try db.execute(sql: "PRAGMA user_version = 0") }
            try q.close()
        }
        let blankBytes = try Data(contentsOf: URL(fileURLWithPath: blank))
        #expect(throws: WarehouseError.self) { try Warehouse.open(path: blank, create: false) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: blank)) == blankBytes)

        guard FileManager.default.isExecutableFile(atPath: CLITests.binary) else { return }
        for command in [["stats"], ["query", "runs"], ["db", "status"], ["eval", "--run", "x"], ["domains"], ["serve", "--port", "0"]] {
            let (code, _, err) = try EvalFixtures.run(CLITests.binary, command + ["--db", empty], in: tmp.url)
            #expect(code != 0, "\(command)")
            #expect(err.contains("not a rollout warehouse") && err.contains("nothing was written"), "\(command): \(err)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: empty)).isEmpty, "\(command)")
            #expect(!FileManager.default.fileExists(atPath: empty + "-wal"), "\(command)")
        }
        // A file that creates (ingest, quickstart) still may.
        let (code, _, err) = try EvalFixtures.run(CLITests.binary, ["quickstart", "--db", empty, "--examples", tmp.file("ex")], in: tmp.url)
        #expect(code == 0, "\(err)")
        #expect(try Warehouse.open(path: empty, create: false).status().upToDate)
    }
}
