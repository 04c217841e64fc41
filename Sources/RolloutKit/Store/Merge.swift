import Foundation
import GRDB

/// What merging one warehouse into another did, table by table.
public struct MergeReport: Sendable, Codable {
    /// One table's rows from the input: copied (`inserted`), already here (`alreadyPresent`),
    /// here and changed by the merge (`updated`: a run's status, a plan's samples raised, a
    /// pending placeholder rollout filled in), or here and different (`conflicts`: this
    /// warehouse's row was kept).
    public struct Counts: Sendable, Codable, Equatable {
        public var table: String
        public var inserted = 0
        public var alreadyPresent = 0
        public var updated = 0
        public var conflicts = 0

        public init(table: String) { self.table = table }
        public var isEmpty: Bool { inserted == 0 && alreadyPresent == 0 && updated == 0 && conflicts == 0 }
    }

    /// The input warehouse.
    public var source: String
    /// The warehouse merged into.
    public var target: String
    public var tables: [Counts] = []
    /// The conflicts for a person, at most `MergeReport.listed` of each kind (the counts are exact).
    public var conflicts: [String] = []
    /// Rows the merge does not copy, by table, with why.
    public var notMerged: [String] = []
    /// Conflicts of every table.
    public var conflictCount = 0
    /// True when the input added and changed nothing (it had been merged before).
    public var nothingNew = true

    /// How many conflicts of one kind are spelt out.
    public static let listed = 20

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }

    public subscript(table: String) -> Counts {
        get { tables.first { $0.table == table } ?? Counts(table: table) }
        set {
            if let i = tables.firstIndex(where: { $0.table == table }) { tables[i] = newValue } else { tables.append(newValue) }
        }
    }

    /// A few lines for a person.
    public var summary: String {
        let head = !nothingNew ? ":"
            : conflictCount == 0 ? ": nothing new (everything in it was already here)"
            : ": nothing new (the rest was already here, apart from the conflicts below)"
        var out = ["merged \(source) into \(target)" + head]
        for c in tables where !c.isEmpty {
            var parts = ["\(c.inserted) inserted", "\(c.alreadyPresent) already present"]
            if c.updated > 0 { parts.append("\(c.updated) updated") }
            if c.conflicts > 0 { parts.append("\(c.conflicts) conflict\(c.conflicts == 1 ? "" : "s")") }
            out.append("  \(c.table): " + parts.joined(separator: ", "))
        }
        if conflictCount > 0 {
            out.append("  conflicts (this warehouse's rows kept):")
            out += conflicts.map { "    \($0)" }
        }
        for n in notMerged { out.append("  not merged: \(n)") }
        return out.joined(separator: "\n")
    }
}

/// A merge that was refused (nothing changed) or could not start.
public struct MergeError: Error, CustomStringConvertible {
    public let description: String
    /// Runs whose configuration differs between the two warehouses.
    public let runs: [String]

    init(_ description: String, runs: [String] = []) {
        self.description = description
        self.runs = runs
    }
}

extension Warehouse {
    /// Copies what the warehouse at `path` has and this one lacks, in one transaction (on an
    /// error nothing changes). Rows are matched by natural key, never by id: datasets, runs,
    /// models and servers by name, domains by key, tools by (server, name), tasks by (dataset,
    /// external id), ingests by (kind, source, start time), rollouts by (run, task, sample,
    /// attempt). A row present on both sides with other content is a conflict: reported, and
    /// this warehouse's row kept. A run present on both sides with another configuration hash
    /// refuses the whole merge unless `force` (then this warehouse's configuration is kept and
    /// the input's rollouts join the run). Merging the same input again inserts nothing.
    public func merge(from path: String, force: Bool = false) throws -> MergeReport {
        try checkMergeSource(path)
        try Self.withMergeSource(path) { _ in }
        var report = MergeReport(source: path, target: self.path ?? ":memory:")
        try writer.writeWithoutTransaction { db in
            // ATTACH and DETACH cannot run inside a transaction: the merge is one transaction
            // between them.
            try db.execute(sql: "ATTACH DATABASE ? AS src", arguments: [path])
            let outcome = Result {
                try db.inTransaction(.immediate) {
                    let job = MergeJob(db: db, force: force, report: report)
                    try job.run()
                    report = job.report
                    return .commit
                }
            }
            for table in MergeJob.tempTables { try? db.execute(sql: "DROP TABLE IF EXISTS temp.\(table)") }
            do {
                try db.execute(sql: "DETACH DATABASE src")
            } catch {
                if case .success = outcome { throw error } // else the merge's own error says more
            }
            try outcome.get()
        }
        return report
    }

    /// The runs the merge of `path` would refuse: same name here and there, another
    /// configuration hash (or mode). Reads both; changes nothing.
    public func mergeRefusals(from path: String) throws -> [String] {
        try checkMergeSource(path)
        let theirs = try Self.withMergeSource(path) { source in
            try source.writer.read { db in
                try Row.fetchAll(db, sql: "SELECT name, mode, config_hash FROM runs ORDER BY name")
            }
        }
        return try writer.read { db in
            try theirs.compactMap { row -> String? in
                let name: String = row["name"]
                guard let ours = try Row.fetchOne(db, sql: "SELECT mode, config_hash FROM runs WHERE name = ?", arguments: [name]) else {
                    return nil
                }
                let same = (ours["mode"] as String) == (row["mode"] as String)
                    && (ours["config_hash"] as String?) == (row["config_hash"] as String?)
                return same ? nil : name
            }
        }
    }

    /// Refuses a missing input or this warehouse itself.
    private func checkMergeSource(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw MergeError("\(path): no such warehouse to merge from")
        }
        if let own = self.path, let a = Self.fileIdentity(own), let b = Self.fileIdentity(path), a == b {
            throw MergeError("\(path) is the warehouse being merged into; give another input")
        }
    }

    /// Opens the input as a warehouse for `body`: checks it is one and brings its schema up to
    /// the one this binary knows (as every command does), so both sides have the same tables.
    private static func withMergeSource<T>(_ path: String, _ body: (Warehouse) throws -> T) throws -> T {
        let source = try Warehouse.open(path: path, create: false)
        defer { try? (source.writer as? DatabasePool)?.close() }
        return try body(source)
    }

    private static func fileIdentity(_ path: String) -> [UInt64]? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return [UInt64(truncatingIfNeeded: info.st_dev), UInt64(truncatingIfNeeded: info.st_ino)]
    }
}

/// One merge inside its transaction, with `src` attached. Each table is mapped in SQL through a
/// temporary table `temp.merge_T(src_id, dst_id, state)`; new rows get ids after this
/// warehouse's largest, in the input's order, so children are copied with set-based
/// INSERT … SELECT joins and no row passes through Swift.
private final class MergeJob {
    static let tempTables = ["merge_ingests", "merge_datasets", "merge_domains", "merge_servers", "merge_tools",
                             "merge_models", "merge_repo_structures", "merge_tasks", "merge_runs", "merge_rollouts",
                             "merge_messages", "merge_graders"]
    /// Tables that are copied (or deliberately not), so a table added by a later schema and not
    /// known here is reported rather than silently left behind.
    static let handled: Set<String> = ["ingests", "ingest_errors", "datasets", "domains", "servers", "domain_servers",
                                       "tools", "tasks", "repo_structures", "models", "runs", "rollouts", "messages",
                                       "tool_calls", "llm_calls", "grades", "run_domains", "run_tasks", "graders",
                                       // kept by triggers on grades and rollouts: right by construction
                                       "grade_counts",
                                       // each warehouse records the migrations it was made with
                                       "schema_migrations",
                                       // the processes that ran the input's rollouts, on its machine: not
                                       // copied, and copied rollouts name no worker (one left running is
                                       // re-attempted by the next `rollout run`, as its worker is unknown)
                                       "run_workers"]
    static let skipped: [(table: String, why: String)] = [
        ("scores", "stored evaluation tables; compute them again on the merged warehouse"),
        ("exports", "records of files written on the input's machine"),
        ("export_drops", "records of files written on the input's machine"),
        ("labels", "label the merged runs again: rollout label --run R"),
        ("label_prompts", "label the merged runs again: rollout label --run R"),
        ("label_toolsets", "label the merged runs again: rollout label --run R"),
        ("batches", "Batch API jobs stay with the warehouse that submitted them"),
        ("batch_requests", "Batch API jobs stay with the warehouse that submitted them"),
        ("batch_results", "Batch API jobs stay with the warehouse that submitted them"),
    ]

    let db: Database
    let force: Bool
    var report: MergeReport

    init(db: Database, force: Bool, report: MergeReport) {
        self.db = db
        self.force = force
        self.report = report
    }

    func run() throws {
        try checkRuns()
        try ingests()
        try dimension("datasets", join: "LEFT JOIN main.datasets d ON d.name = s.name", differs: "d.kind <> s.kind",
                      columns: ["name", "kind", "source", "created_at", "updated_at"],
                      conflict: "'dataset ' || s.name || ': kind ' || d.kind || ' here, ' || s.kind || ' in the input'")
        try dimension("domains", join: "LEFT JOIN main.domains d ON d.key = s.key",
                      differs: "s.policy IS NOT d.policy OR s.size <> d.size",
                      columns: ["key", "size", "policy", "policy_source", "created_at", "updated_at"],
                      conflict: "'domain ' || s.key || ': the policy differs'")
        try dimension("servers", join: "LEFT JOIN main.servers d ON d.name = s.name",
                      differs: """
                          s.command IS NOT d.command OR s.args <> d.args OR s.env <> d.env OR s.cwd IS NOT d.cwd
                          OR s.session_argument IS NOT d.session_argument OR s.session_template IS NOT d.session_template
                          """,
                      columns: ["name", "command", "args", "env", "cwd", "session_argument", "session_template",
                                "created_at", "updated_at"],
                      conflict: "'server ' || s.name || ': how to launch it differs'")
        try domainServers()
        try tools()
        try dimension("models", join: "LEFT JOIN main.models d ON d.name = s.name",
                      differs: """
                          s.provider <> d.provider OR s.api_base IS NOT d.api_base OR s.mode IS NOT d.mode
                          OR s.price_input IS NOT d.price_input OR s.price_output IS NOT d.price_output
                          OR s.price_cached IS NOT d.price_cached OR s.settings <> d.settings
                          """,
                      columns: ["name", "provider", "api_base", "mode", "price_input", "price_output", "price_cached",
                                "settings", "created_at", "updated_at"],
                      conflict: "'model ' || s.name || ': provider, endpoint, prices or settings differ'")
        try dimension("repo_structures", join: "LEFT JOIN main.repo_structures d ON d.instance_id = s.instance_id",
                      differs: "s.content_hash <> d.content_hash",
                      columns: ["instance_id", "repo", "base_commit", "structure", "bytes", "content_hash", "source_file",
                                "created_at", "updated_at"],
                      conflict: "'repo structure ' || s.instance_id || ': content differs'")
        try tasks()
        try runs()
        try runDomains()
        try runTasks()
        try rollouts()
        try children()
        try graders()
        try grades()
        try runStatus()
        try notMerged()
        report.conflictCount = report.tables.reduce(0) { $0 + $1.conflicts }
        report.nothingNew = report.tables.allSatisfy { $0.inserted == 0 && $0.updated == 0 }
    }

    // MARK: Helpers

    @discardableResult
    func exec(_ sql: String, _ arguments: StatementArguments = []) throws -> Int {
        try db.execute(sql: sql, arguments: arguments)
        return db.changesCount
    }

    func int(_ sql: String, _ arguments: StatementArguments = []) throws -> Int {
        try Int.fetchOne(db, sql: sql, arguments: arguments) ?? 0
    }

    func count(_ map: String, _ states: String...) throws -> Int {
        try int("SELECT count(*) FROM temp.\(map) WHERE state IN (\(states.map { "'\($0)'" }.joined(separator: ",")))")
    }

    /// Fills `temp.<map>` from `src.<table> s <join>` (which LEFT JOINs `main.<table> d` on the
    /// natural key): matched rows keep their id here (state `present`, or `conflict` when
    /// `differs`), the others get fresh ids after the largest here (state `new`).
    func map(_ map: String, table: String, join: String, differs: String) throws {
        let base = try int("SELECT coalesce(max(id), 0) FROM main.\(table)")
        try exec("CREATE TEMP TABLE \(map)(src_id INTEGER PRIMARY KEY, dst_id INTEGER, state TEXT NOT NULL)")
        try exec("""
            INSERT INTO temp.\(map)(src_id, dst_id, state)
            SELECT s.id,
                   CASE WHEN d.id IS NULL THEN ?1 + row_number() OVER (PARTITION BY d.id IS NULL ORDER BY s.id) ELSE d.id END,
                   CASE WHEN d.id IS NULL THEN 'new' WHEN \(differs) THEN 'conflict' ELSE 'present' END
            FROM src.\(table) s \(join)
            """, [base])
    }

    /// Adds conflict lines from `sql` (one text column), at most `MergeReport.listed` of `total`.
    func listConflicts(_ total: Int, kind: String, _ sql: String) throws {
        guard total > 0 else { return }
        let lines = try String.fetchAll(db, sql: sql + " LIMIT \(MergeReport.listed)")
        report.conflicts += lines
        if total > lines.count { report.conflicts.append("… and \(total - lines.count) more \(kind) conflicts") }
    }

    /// A table matched by natural key with no ids of others to remap: map, copy the new rows,
    /// count, list conflicts.
    func dimension(_ table: String, join: String, differs: String, columns: [String], conflict: String) throws {
        let m = "merge_\(table)"
        try map(m, table: table, join: join, differs: differs)
        let list = columns.joined(separator: ", ")
        var c = MergeReport.Counts(table: table)
        c.inserted = try exec("""
            INSERT INTO main.\(table)(id, \(list))
            SELECT m.dst_id, \(columns.map { "s.\($0)" }.joined(separator: ", "))
            FROM temp.\(m) m JOIN src.\(table) s ON s.id = m.src_id WHERE m.state = 'new' ORDER BY m.src_id
            """)
        c.alreadyPresent = try count(m, "present")
        c.conflicts = try count(m, "conflict")
        report[table] = c
        try listConflicts(c.conflicts, kind: table, """
            SELECT \(conflict) FROM temp.\(m) m JOIN src.\(table) s ON s.id = m.src_id JOIN main.\(table) d ON d.id = m.dst_id
            WHERE m.state = 'conflict' ORDER BY m.src_id
            """)
    }

    // MARK: Tables

    /// A run on both sides with another configuration refuses the merge (unless forced).
    func checkRuns() throws {
        let differing = try Row.fetchAll(db, sql: """
            SELECT s.name, s.mode AS src_mode, d.mode AS dst_mode, s.config_hash AS src_hash, d.config_hash AS dst_hash
            FROM src.runs s JOIN main.runs d ON d.name = s.name
            WHERE s.config_hash IS NOT d.config_hash OR s.mode <> d.mode ORDER BY s.name
            """)
        guard !differing.isEmpty, !force else { return }
        func short(_ hash: String?) -> String { hash.map { String($0.prefix(12)) } ?? "none" }
        let lines = differing.map { row -> String in
            let name: String = row["name"]
            if (row["src_mode"] as String) != (row["dst_mode"] as String) {
                return "run \(name): mode \(row["dst_mode"] as String) here, \(row["src_mode"] as String) in the input"
            }
            return "run \(name): configuration \(short(row["dst_hash"])) here, \(short(row["src_hash"])) in the input"
        }
        let names = differing.map { $0["name"] as String }
        throw MergeError("""
            \(report.source): refusing to merge (nothing changed): \(names.count == 1 ? "a run has" : "runs have") the same name but another configuration (models, prompts, tools or limits) than here:
              \(lines.joined(separator: "\n  "))
            Shards of one run must use the same config. Pass --force to merge the input's rollouts into this warehouse's run anyway (its configuration is kept), or merge into another warehouse.
            """, runs: names)
    }

    /// Ingest rows are history with no unique key: matched by (kind, source, start time) so a
    /// second merge finds them; new ones are copied with their errors. (The `ingests.kind`
    /// CHECK has no 'merge' kind, so the input's rows are copied instead of one merge row.)
    func ingests() throws {
        try map("merge_ingests", table: "ingests", join: """
            LEFT JOIN main.ingests d ON d.id = (SELECT min(x.id) FROM main.ingests x
                                                WHERE x.kind = s.kind AND x.source = s.source AND x.started_at = s.started_at)
            """, differs: "0")
        var c = MergeReport.Counts(table: "ingests")
        c.inserted = try exec("""
            INSERT INTO main.ingests(id, kind, source, started_at, finished_at, inserted, updated, unchanged, skipped)
            SELECT m.dst_id, s.kind, s.source, s.started_at, s.finished_at, s.inserted, s.updated, s.unchanged, s.skipped
            FROM temp.merge_ingests m JOIN src.ingests s ON s.id = m.src_id WHERE m.state = 'new' ORDER BY m.src_id
            """)
        c.alreadyPresent = try count("merge_ingests", "present")
        report["ingests"] = c
        var e = MergeReport.Counts(table: "ingest_errors")
        e.inserted = try exec("""
            INSERT INTO main.ingest_errors(ingest_id, file, line, field, reason)
            SELECT m.dst_id, s.file, s.line, s.field, s.reason
            FROM src.ingest_errors s JOIN temp.merge_ingests m ON m.src_id = s.ingest_id WHERE m.state = 'new' ORDER BY s.id
            """)
        e.alreadyPresent = try int("""
            SELECT count(*) FROM src.ingest_errors s JOIN temp.merge_ingests m ON m.src_id = s.ingest_id WHERE m.state <> 'new'
            """)
        report["ingest_errors"] = e
    }

    func domainServers() throws {
        let pairs = """
            FROM src.domain_servers s JOIN temp.merge_domains md ON md.src_id = s.domain_id
            JOIN temp.merge_servers ms ON ms.src_id = s.server_id
            """
        var c = MergeReport.Counts(table: "domain_servers")
        c.alreadyPresent = try int("""
            SELECT count(*) \(pairs)
            WHERE EXISTS (SELECT 1 FROM main.domain_servers d WHERE d.domain_id = md.dst_id AND d.server_id = ms.dst_id)
            """)
        c.inserted = try exec("""
            INSERT INTO main.domain_servers(domain_id, server_id) SELECT md.dst_id, ms.dst_id \(pairs)
            WHERE NOT EXISTS (SELECT 1 FROM main.domain_servers d WHERE d.domain_id = md.dst_id AND d.server_id = ms.dst_id)
            """)
        report["domain_servers"] = c
    }

    /// Tools by (server name, tool name); a new tool whose API-safe name another tool of the
    /// server has here is a conflict too (the API name is unique per server).
    func tools() throws {
        try map("merge_tools", table: "tools", join: """
            JOIN temp.merge_servers ms ON ms.src_id = s.server_id
            LEFT JOIN main.tools d ON d.server_id = ms.dst_id AND d.name = s.name
            """, differs: "s.schema <> d.schema OR s.api_name <> d.api_name")
        try exec("""
            UPDATE temp.merge_tools SET state = 'clash' WHERE state = 'new' AND EXISTS (
                SELECT 1 FROM src.tools s JOIN temp.merge_servers ms ON ms.src_id = s.server_id
                JOIN main.tools d ON d.server_id = ms.dst_id AND d.api_name = s.api_name
                WHERE s.id = merge_tools.src_id)
            """)
        var c = MergeReport.Counts(table: "tools")
        c.inserted = try exec("""
            INSERT INTO main.tools(id, server_id, ordinal, name, api_name, description, schema, created_at, updated_at)
            SELECT m.dst_id, ms.dst_id, s.ordinal, s.name, s.api_name, s.description, s.schema, s.created_at, s.updated_at
            FROM temp.merge_tools m JOIN src.tools s ON s.id = m.src_id JOIN temp.merge_servers ms ON ms.src_id = s.server_id
            WHERE m.state = 'new' ORDER BY m.src_id
            """)
        c.alreadyPresent = try count("merge_tools", "present")
        c.conflicts = try count("merge_tools", "conflict", "clash")
        report["tools"] = c
        try listConflicts(c.conflicts, kind: "tools", """
            SELECT 'tool ' || sv.name || '/' || s.name || CASE m.state
                       WHEN 'clash' THEN ': its API name ' || s.api_name || ' belongs to another tool here; not copied'
                       ELSE ': schema or API name differs' END
            FROM temp.merge_tools m JOIN src.tools s ON s.id = m.src_id JOIN src.servers sv ON sv.id = s.server_id
            WHERE m.state IN ('conflict', 'clash') ORDER BY m.src_id
            """)
    }

    /// Tasks by (dataset name, external id). New ones are copied with their domain and ingest
    /// references remapped; one here with another content hash is a conflict, and the input's
    /// rollouts of it are not copied (they were made from other task content).
    func tasks() throws {
        try map("merge_tasks", table: "tasks", join: """
            JOIN temp.merge_datasets md ON md.src_id = s.dataset_id
            LEFT JOIN main.tasks d ON d.dataset_id = md.dst_id AND d.external_id = s.external_id
            """, differs: "s.content_hash <> d.content_hash")
        var c = MergeReport.Counts(table: "tasks")
        c.inserted = try exec("""
            INSERT INTO main.tasks(id, dataset_id, external_id, domain_id, opening_text, user_prompt_text, answer, criteria,
                                   splits, record, content_hash, source_file, source_line,
                                   created_ingest, changed_ingest, seen_ingest)
            SELECT m.dst_id, md.dst_id, s.external_id, mdo.dst_id, s.opening_text, s.user_prompt_text, s.answer, s.criteria,
                   s.splits, s.record, s.content_hash, s.source_file, s.source_line, ic.dst_id, ih.dst_id, iv.dst_id
            FROM temp.merge_tasks m JOIN src.tasks s ON s.id = m.src_id
            JOIN temp.merge_datasets md ON md.src_id = s.dataset_id
            LEFT JOIN temp.merge_domains mdo ON mdo.src_id = s.domain_id
            JOIN temp.merge_ingests ic ON ic.src_id = s.created_ingest
            JOIN temp.merge_ingests ih ON ih.src_id = s.changed_ingest
            JOIN temp.merge_ingests iv ON iv.src_id = s.seen_ingest
            WHERE m.state = 'new' ORDER BY m.src_id
            """)
        c.alreadyPresent = try count("merge_tasks", "present")
        c.conflicts = try count("merge_tasks", "conflict")
        report["tasks"] = c
        try listConflicts(c.conflicts, kind: "task", """
            SELECT 'task ' || ds.name || '/' || s.external_id || ': content differs (ingested from other data); the input''s rollouts of it are not copied'
            FROM temp.merge_tasks m JOIN src.tasks s ON s.id = m.src_id JOIN src.datasets ds ON ds.id = s.dataset_id
            WHERE m.state = 'conflict' ORDER BY m.src_id
            """)
    }

    /// Runs by name. A `conflict` here is a run merged under --force (another configuration).
    func runs() throws {
        try map("merge_runs", table: "runs", join: "LEFT JOIN main.runs d ON d.name = s.name",
                differs: "s.config_hash IS NOT d.config_hash OR s.mode <> d.mode")
        var c = MergeReport.Counts(table: "runs")
        c.inserted = try exec("""
            INSERT INTO main.runs(id, name, mode, config, config_hash, agent_model, user_model, source, status,
                                  created_at, started_at, finished_at)
            SELECT m.dst_id, s.name, s.mode, s.config, s.config_hash, s.agent_model, s.user_model, s.source, s.status,
                   s.created_at, s.started_at, s.finished_at
            FROM temp.merge_runs m JOIN src.runs s ON s.id = m.src_id WHERE m.state = 'new' ORDER BY m.src_id
            """)
        c.alreadyPresent = try count("merge_runs", "present")
        c.conflicts = try count("merge_runs", "conflict")
        report["runs"] = c
        try listConflicts(c.conflicts, kind: "run", """
            SELECT 'run ' || s.name || ': another configuration in the input; merged anyway (--force), this warehouse''s configuration kept'
            FROM temp.merge_runs m JOIN src.runs s ON s.id = m.src_id WHERE m.state = 'conflict' ORDER BY m.src_id
            """)
    }

    func runDomains() throws {
        let rows = """
            FROM src.run_domains s JOIN temp.merge_runs mr ON mr.src_id = s.run_id
            JOIN temp.merge_domains md ON md.src_id = s.domain_id
            LEFT JOIN main.run_domains d ON d.run_id = mr.dst_id AND d.domain_id = md.dst_id
            """
        var c = MergeReport.Counts(table: "run_domains")
        c.alreadyPresent = try int("SELECT count(*) \(rows) WHERE d.hash = s.hash")
        c.conflicts = try int("SELECT count(*) \(rows) WHERE d.hash <> s.hash")
        try listConflicts(c.conflicts, kind: "run domain", """
            SELECT 'run ' || r.name || ', domain ' || k.key || ': the policy or tools given to the agent differ'
            \(rows) JOIN src.runs r ON r.id = s.run_id JOIN src.domains k ON k.id = s.domain_id
            WHERE d.hash <> s.hash ORDER BY r.name, k.key
            """)
        c.inserted = try exec("""
            INSERT INTO main.run_domains(run_id, domain_id, policy, tools, routes, hash, created_at)
            SELECT mr.dst_id, md.dst_id, s.policy, s.tools, s.routes, s.hash, s.created_at \(rows) WHERE d.run_id IS NULL
            """)
        report["run_domains"] = c
    }

    /// The plan: a task planned on both sides keeps the larger number of samples.
    func runTasks() throws {
        let rows = """
            FROM src.run_tasks s JOIN temp.merge_runs mr ON mr.src_id = s.run_id
            JOIN temp.merge_tasks mt ON mt.src_id = s.task_id
            LEFT JOIN main.run_tasks d ON d.run_id = mr.dst_id AND d.task_id = mt.dst_id
            """
        var c = MergeReport.Counts(table: "run_tasks")
        c.alreadyPresent = try int("SELECT count(*) \(rows) WHERE d.samples >= s.samples")
        c.updated = try exec("""
            UPDATE main.run_tasks SET samples = x.samples
            FROM (SELECT mr.dst_id AS run_id, mt.dst_id AS task_id, s.samples
                  FROM src.run_tasks s JOIN temp.merge_runs mr ON mr.src_id = s.run_id
                  JOIN temp.merge_tasks mt ON mt.src_id = s.task_id) AS x
            WHERE run_tasks.run_id = x.run_id AND run_tasks.task_id = x.task_id AND run_tasks.samples < x.samples
            """)
        c.inserted = try exec("""
            INSERT INTO main.run_tasks(run_id, task_id, job, samples)
            SELECT mr.dst_id, mt.dst_id, s.job, s.samples \(rows) WHERE d.run_id IS NULL
            """)
        report["run_tasks"] = c
    }

    /// Rollouts by (run, task, sample, attempt). On both sides: `same` (the same record: status,
    /// message count and times), `equivalent` (both completed with as many messages: counted as
    /// present), `fill` (pending and untouched here, finished in the input: filled in from the
    /// input), else `conflict`. Not here: `new`, or `task_conflict` when its task conflicts.
    func rollouts() throws {
        let base = try int("SELECT coalesce(max(id), 0) FROM main.rollouts")
        try exec("CREATE TEMP TABLE merge_rollouts(src_id INTEGER PRIMARY KEY, dst_id INTEGER, state TEXT NOT NULL)")
        try exec("""
            INSERT INTO temp.merge_rollouts(src_id, dst_id, state)
            SELECT src_id,
                   CASE WHEN dst_id IS NOT NULL THEN dst_id
                        WHEN task_state <> 'conflict'
                        THEN ?1 + row_number() OVER (PARTITION BY dst_id IS NULL AND task_state <> 'conflict' ORDER BY src_id)
                   END,
                   CASE WHEN dst_id IS NULL THEN CASE WHEN task_state = 'conflict' THEN 'task_conflict' ELSE 'new' END
                        WHEN ss = ds AND sn = dn AND same_times THEN 'same'
                        WHEN ss = 'completed' AND ds = 'completed' AND sn = dn THEN 'equivalent'
                        WHEN task_state = 'conflict' THEN 'conflict'
                        WHEN ds = 'pending' AND ss <> 'pending' AND dn = 0
                             AND NOT EXISTS (SELECT 1 FROM main.llm_calls x WHERE x.rollout_id = dst_id)
                             AND NOT EXISTS (SELECT 1 FROM main.tool_calls x WHERE x.rollout_id = dst_id)
                             AND NOT EXISTS (SELECT 1 FROM main.grades x WHERE x.rollout_id = dst_id) THEN 'fill'
                        ELSE 'conflict' END
            FROM (SELECT s.id AS src_id, d.id AS dst_id, mt.state AS task_state, s.status AS ss, d.status AS ds,
                         s.started_at IS d.started_at AND s.finished_at IS d.finished_at AS same_times,
                         CASE WHEN d.id IS NOT NULL THEN (SELECT count(*) FROM src.messages x WHERE x.rollout_id = s.id) END AS sn,
                         CASE WHEN d.id IS NOT NULL THEN (SELECT count(*) FROM main.messages x WHERE x.rollout_id = d.id) END AS dn
                  FROM src.rollouts s JOIN temp.merge_runs mr ON mr.src_id = s.run_id
                  JOIN temp.merge_tasks mt ON mt.src_id = s.task_id
                  LEFT JOIN main.rollouts d ON d.run_id = mr.dst_id AND d.task_id = mt.dst_id
                                           AND d.sample = s.sample AND d.attempt = s.attempt)
            """, [base])
        // A placeholder filled in is replaced by the input's row under the same id.
        let filled = try exec("""
            DELETE FROM main.rollouts WHERE id IN (SELECT dst_id FROM temp.merge_rollouts WHERE state = 'fill')
            """)
        var c = MergeReport.Counts(table: "rollouts")
        let copied = try exec("""
            INSERT INTO main.rollouts(id, run_id, task_id, sample, attempt, status, stop_reason, prediction, reward, error,
                                      turns, metadata, started_at, finished_at)
            SELECT m.dst_id, mr.dst_id, mt.dst_id, s.sample, s.attempt, s.status, s.stop_reason, s.prediction, s.reward,
                   s.error, s.turns, s.metadata, s.started_at, s.finished_at
            FROM temp.merge_rollouts m JOIN src.rollouts s ON s.id = m.src_id
            JOIN temp.merge_runs mr ON mr.src_id = s.run_id JOIN temp.merge_tasks mt ON mt.src_id = s.task_id
            WHERE m.state IN ('new', 'fill') ORDER BY m.dst_id
            """)
        c.inserted = copied - filled
        c.updated = filled
        c.alreadyPresent = try count("merge_rollouts", "same", "equivalent")
        c.conflicts = try count("merge_rollouts", "conflict", "task_conflict")
        report["rollouts"] = c
        try listConflicts(c.conflicts, kind: "rollout", """
            SELECT 'rollout of run ' || r.name || ', task ' || ds.name || '/' || t.external_id
                   || ', sample ' || s.sample || ', attempt ' || s.attempt || ': '
                   || CASE m.state WHEN 'task_conflict' THEN 'its task differs; not copied'
                      ELSE d.status || ' with ' || (SELECT count(*) FROM main.messages x WHERE x.rollout_id = d.id)
                           || ' messages here, ' || s.status || ' with '
                           || (SELECT count(*) FROM src.messages x WHERE x.rollout_id = s.id) || ' in the input' END
            FROM temp.merge_rollouts m JOIN src.rollouts s ON s.id = m.src_id
            JOIN src.runs r ON r.id = s.run_id JOIN src.tasks t ON t.id = s.task_id JOIN src.datasets ds ON ds.id = t.dataset_id
            LEFT JOIN main.rollouts d ON d.id = m.dst_id
            WHERE m.state IN ('conflict', 'task_conflict') ORDER BY m.src_id
            """)
    }

    /// Messages, tool calls and LLM calls of the rollouts copied; of the others, counted as
    /// present or (their rollout conflicting) as conflicts. LLM calls of no rollout (run-level
    /// or `rollout chat`) are copied unless an identical one is here.
    func children() throws {
        let base = try int("SELECT coalesce(max(id), 0) FROM main.messages")
        try exec("CREATE TEMP TABLE merge_messages(src_id INTEGER PRIMARY KEY, dst_id INTEGER NOT NULL)")
        try exec("""
            INSERT INTO temp.merge_messages(src_id, dst_id)
            SELECT s.id, ?1 + row_number() OVER (ORDER BY s.id)
            FROM src.messages s JOIN temp.merge_rollouts m ON m.src_id = s.rollout_id WHERE m.state IN ('new', 'fill')
            """, [base])
        var messages = MergeReport.Counts(table: "messages")
        messages.inserted = try exec("""
            INSERT INTO main.messages(id, rollout_id, idx, role, content, reasoning_content, tool_call_id, name, turn, extra,
                                      created_at)
            SELECT mm.dst_id, m.dst_id, s.idx, s.role, s.content, s.reasoning_content, s.tool_call_id, s.name, s.turn, s.extra,
                   s.created_at
            FROM temp.merge_messages mm JOIN src.messages s ON s.id = mm.src_id
            JOIN temp.merge_rollouts m ON m.src_id = s.rollout_id ORDER BY mm.src_id
            """)
        try countOthers(&messages, "messages")
        report["messages"] = messages

        var toolCalls = MergeReport.Counts(table: "tool_calls")
        toolCalls.inserted = try exec("""
            INSERT INTO main.tool_calls(rollout_id, message_id, idx, call_id, name, arguments, result_message_id, result,
                                        is_error, latency_ms, server_id, created_at)
            SELECT m.dst_id, mm.dst_id, s.idx, s.call_id, s.name, s.arguments, mres.dst_id, s.result,
                   s.is_error, s.latency_ms, ms.dst_id, s.created_at
            FROM src.tool_calls s JOIN temp.merge_rollouts m ON m.src_id = s.rollout_id
            JOIN temp.merge_messages mm ON mm.src_id = s.message_id
            LEFT JOIN temp.merge_messages mres ON mres.src_id = s.result_message_id
            LEFT JOIN temp.merge_servers ms ON ms.src_id = s.server_id
            WHERE m.state IN ('new', 'fill') ORDER BY s.id
            """)
        try countOthers(&toolCalls, "tool_calls")
        report["tool_calls"] = toolCalls

        let llmColumns = """
            role, model, provider, attempt, http_status, latency_ms, prompt_tokens, completion_tokens, reasoning_tokens,
            cached_tokens, cost_usd, finish_reason, error, request_hash, created_at
            """
        let fromSource = llmColumns.split(separator: ",").map { "s." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .joined(separator: ", ")
        var llm = MergeReport.Counts(table: "llm_calls")
        llm.inserted = try exec("""
            INSERT INTO main.llm_calls(run_id, rollout_id, \(llmColumns))
            SELECT mr.dst_id, m.dst_id, \(fromSource)
            FROM src.llm_calls s JOIN temp.merge_rollouts m ON m.src_id = s.rollout_id
            LEFT JOIN temp.merge_runs mr ON mr.src_id = s.run_id
            WHERE m.state IN ('new', 'fill') ORDER BY s.id
            """)
        try countOthers(&llm, "llm_calls")
        func loose(_ here: String) -> String {
            """
            FROM src.llm_calls s LEFT JOIN temp.merge_runs mr ON mr.src_id = s.run_id
            WHERE s.rollout_id IS NULL AND \(here) (
                SELECT 1 FROM main.llm_calls d WHERE d.rollout_id IS NULL AND d.run_id IS mr.dst_id AND d.role = s.role
                AND d.model = s.model AND d.attempt = s.attempt AND d.created_at = s.created_at
                AND d.request_hash IS s.request_hash)
            """
        }
        llm.alreadyPresent += try int("SELECT count(*) \(loose("EXISTS"))")
        llm.inserted += try exec("""
            INSERT INTO main.llm_calls(run_id, rollout_id, \(llmColumns))
            SELECT mr.dst_id, NULL, \(fromSource) \(loose("NOT EXISTS")) ORDER BY s.id
            """)
        report["llm_calls"] = llm
    }

    /// Rows of `table` whose rollout was not copied: present (their rollout is) or conflicts.
    func countOthers(_ c: inout MergeReport.Counts, _ table: String) throws {
        let rows = try Row.fetchAll(db, sql: """
            SELECT m.state IN ('same', 'equivalent') AS present, count(*) AS n
            FROM temp.merge_rollouts m JOIN src.\(table) s ON s.rollout_id = m.src_id
            WHERE m.state NOT IN ('new', 'fill') GROUP BY 1
            """)
        for row in rows {
            if row["present"] as Bool { c.alreadyPresent += row["n"] as Int } else { c.conflicts += row["n"] as Int }
        }
    }

    /// Grades by (rollout, grader, version): copied with their rollout, and added to a rollout
    /// that is the same record on both sides; one graded differently here is a conflict. Grades
    /// of an `equivalent` rollout (another record) are not copied.
    func grades() throws {
        let rows = """
            FROM src.grades s JOIN temp.merge_rollouts m ON m.src_id = s.rollout_id
            LEFT JOIN temp.merge_graders mg ON mg.name = s.grader AND mg.src_version = s.grader_version
            LEFT JOIN main.grades d ON m.state = 'same' AND d.rollout_id = m.dst_id
                                   AND d.grader = s.grader AND d.grader_version = coalesce(mg.dst_version, s.grader_version)
            """
        var c = MergeReport.Counts(table: "grades")
        c.alreadyPresent = try int("""
            SELECT count(*) \(rows) WHERE m.state = 'equivalent'
                OR (d.id IS NOT NULL AND d.value IS s.value AND d.passed IS s.passed)
            """)
        c.conflicts = try int("""
            SELECT count(*) \(rows) WHERE m.state IN ('conflict', 'task_conflict')
                OR (d.id IS NOT NULL AND (d.value IS NOT s.value OR d.passed IS NOT s.passed))
            """)
        try listConflicts(try int("SELECT count(*) \(rows) WHERE d.id IS NOT NULL AND (d.value IS NOT s.value OR d.passed IS NOT s.passed)"),
                          kind: "grade", """
            SELECT 'grade ' || s.grader || ' v' || s.grader_version || ' of rollout ' || m.dst_id || ': value '
                   || coalesce(d.value, 'null') || ' here, ' || coalesce(s.value, 'null') || ' in the input'
            \(rows) WHERE d.id IS NOT NULL AND (d.value IS NOT s.value OR d.passed IS NOT s.passed) ORDER BY s.id
            """)
        c.inserted = try exec("""
            INSERT INTO main.grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
            SELECT m.dst_id, s.grader, coalesce(mg.dst_version, s.grader_version), s.value, s.passed, s.explanation, s.created_at
            \(rows) WHERE m.state IN ('new', 'fill') OR (m.state = 'same' AND d.id IS NULL) ORDER BY s.id
            """)
        report["grades"] = c
    }

    /// Grader versions by definition: a definition OUT has (under any version) maps the input's
    /// version to OUT's; a new one keeps its number when OUT does not use it, else gets OUT's
    /// next. The input's grades are copied under the mapped versions.
    func graders() throws {
        try exec("CREATE TEMP TABLE merge_graders(name TEXT NOT NULL, src_version INTEGER NOT NULL, dst_version INTEGER, PRIMARY KEY (name, src_version))")
        try exec("""
            INSERT INTO temp.merge_graders(name, src_version, dst_version)
            SELECT s.name, s.version, d.version FROM src.graders s
            LEFT JOIN main.graders d ON d.name = s.name AND d.definition = s.definition
            """)
        var c = MergeReport.Counts(table: "graders")
        c.alreadyPresent = try int("SELECT count(*) FROM temp.merge_graders WHERE dst_version IS NOT NULL")
        let new = try Row.fetchAll(db, sql: """
            SELECT s.name, s.version, s.kind, s.definition, s.created_at FROM src.graders s
            JOIN temp.merge_graders m ON m.name = s.name AND m.src_version = s.version AND m.dst_version IS NULL
            ORDER BY s.name, s.version
            """)
        for row in new {
            let name: String = row[0]
            let wanted: Int = row[1]
            let taken = try int("""
                SELECT (SELECT count(*) FROM main.graders WHERE name = ?1 AND version = ?2)
                     + (SELECT count(*) FROM main.grades WHERE grader = ?1 AND grader_version = ?2)
                """, [name, wanted])
            let version = taken == 0 ? wanted : 1 + max(try int("SELECT coalesce(max(version), 0) FROM main.graders WHERE name = ?", [name]),
                                                        try int("SELECT coalesce(max(grader_version), 0) FROM main.grades WHERE grader = ?", [name]))
            try exec("INSERT INTO main.graders(name, version, kind, definition, created_at) VALUES (?, ?, ?, ?, ?)",
                     [name, version, row[2] as String, row[3] as String, row[4] as String])
            try exec("UPDATE temp.merge_graders SET dst_version = ? WHERE name = ? AND src_version = ?", [version, name, wanted])
            c.inserted += 1
        }
        report["graders"] = c
    }

    /// A run on both sides gets a status from both: `completed` when every planned sample
    /// (run_tasks) has a finished latest rollout (completed, or failed after its attempts) and
    /// neither side is still running — or, for a run without a plan (imported), when both
    /// sides are completed; otherwise the least finished of the two (failed, interrupted,
    /// running, pending in that order). Start is the earlier, finish the later.
    func runStatus() throws {
        let pairs = try Row.fetchAll(db, sql: """
            SELECT d.id, d.status AS ds, s.status AS ss, d.started_at AS dstart, s.started_at AS sstart,
                   d.finished_at AS dfin, s.finished_at AS sfin
            FROM temp.merge_runs m JOIN src.runs s ON s.id = m.src_id JOIN main.runs d ON d.id = m.dst_id
            WHERE m.state <> 'new'
            """)
        var c = report["runs"]
        for row in pairs {
            let id: Int64 = row["id"]
            let statuses: [String] = [row["ds"], row["ss"]]
            let planned = try int("SELECT coalesce(sum(samples), 0) FROM main.run_tasks WHERE run_id = ?", [id])
            var completed = statuses.allSatisfy { $0 == "completed" }
            if planned > 0 && !statuses.contains("running") {
                let finished = try int("""
                    SELECT count(*) FROM main.run_tasks t JOIN main.rollouts r
                        ON r.run_id = t.run_id AND r.task_id = t.task_id AND r.sample < t.samples
                    WHERE t.run_id = ?1 AND r.status IN ('completed', 'failed')
                      AND r.attempt = (SELECT max(x.attempt) FROM main.rollouts x
                                       WHERE x.run_id = r.run_id AND x.task_id = r.task_id AND x.sample = r.sample)
                    """, [id])
                completed = finished == planned
            }
            let status = completed ? "completed"
                : ["failed", "interrupted", "running", "pending"].first { statuses.contains($0) } ?? "interrupted"
            let started = [row["dstart"], row["sstart"]].compactMap { $0 as String? }.min()
            let finished = ["running", "pending"].contains(status)
                ? nil : [row["dfin"], row["sfin"]].compactMap { $0 as String? }.max()
            let changed = try exec("""
                UPDATE main.runs SET status = ?2, started_at = ?3, finished_at = ?4
                WHERE id = ?1 AND (status IS NOT ?2 OR started_at IS NOT ?3 OR finished_at IS NOT ?4)
                """, [id, status, started, finished])
            if changed > 0 {
                c.updated += 1
                c.alreadyPresent -= try int("SELECT state = 'present' FROM temp.merge_runs WHERE dst_id = ?", [id])
            }
        }
        report["runs"] = c
    }

    /// What the input has that the merge leaves out.
    func notMerged() throws {
        for (table, why) in Self.skipped {
            let n = try int("SELECT count(*) FROM src.\(table)")
            if n > 0 { report.notMerged.append("\(table): \(n) row\(n == 1 ? "" : "s") (\(why))") }
        }
        let known = Self.handled.union(Self.skipped.map(\.table))
        let others = try String.fetchAll(db, sql: """
            SELECT name FROM src.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'grdb_%'
            ORDER BY name
            """).filter { !known.contains($0) }
        for table in others {
            let n = try int("SELECT count(*) FROM src.\"\(table)\"")
            if n > 0 { report.notMerged.append("\(table): \(n) row\(n == 1 ? "" : "s") (a table this merge does not know)") }
        }
    }
}
