import Foundation
import GRDB
import RolloutKit

/// The tasks of a run with their samples side by side, and the filtered list of its rollouts.
/// Both page by keyset (`after` = the last id shown), so page 10,000 costs what page 1 does.
enum ListPages {
    /// A domain named in the URL (`domain=KEY`).
    static func domainID(_ req: PageRequest) throws -> (key: String, id: Int64)? {
        guard let key = req.query["domain"] else { return nil }
        guard let id = try Int64.fetchOne(req.db, sql: "SELECT id FROM domains WHERE key = ?", arguments: [key]) else {
            throw PageError(404, "no domain \"\(key)\"")
        }
        return (key, id)
    }

    /// Domain keys to offer in a filter: the run's own (run_domains).
    static func runDomains(_ db: Database, runID: Int64) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT d.key FROM run_domains rd JOIN domains d ON d.id = rd.domain_id WHERE rd.run_id = ? ORDER BY d.key",
                            arguments: [runID])
    }

    static func domainFilter(_ keys: [String], selected: String?) -> Markup {
        keys.isEmpty
            ? "<label>domain <input type=\"text\" name=\"domain\" value=\"\(selected)\" size=\"14\"></label>"
            : Layout.select("domain", "domain", keys.map { ($0, $0) }, selected: selected)
    }

    static func placeholders(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ",") }

    // MARK: tasks

    static func tasks(_ req: PageRequest, runID: Int64) throws -> Page {
        let db = req.db
        let run = try RunInfo.load(db, id: runID)
        let grader = try GraderChoice.resolve(req, runID: runID)
        let outcome = req.query["outcome"]
        let domain = try domainID(req)
        let after = try req.int("after") ?? Int64.min
        let base = Link("/runs/\(runID)/tasks", [("grader", req.query["grader"]), ("version", req.query["version"]),
                                                 ("outcome", outcome), ("domain", domain?.key)])
        // The page's tasks, with (n, correct) under the grader when there is one.
        var ids: [Int64] = []
        var counts: [Int64: (n: Int, correct: Int, undecided: Int)] = [:]
        let domainClause = domain == nil ? "" : " AND (SELECT domain_id FROM tasks WHERE id = task_id) = \(domain!.id)"
        if let grader {
            let outcomeClause: String
            switch outcome {
            case nil, "all": outcomeClause = ""
            case "pass": outcomeClause = " AND c - fc = n"
            case "fail": outcomeClause = " AND c - fc = 0"
            case "flip": outcomeClause = " AND c - fc > 0 AND c - fc < n"
            case let o?: throw PageError(400, "outcome must be all, pass, fail or flip, not \"\(o)\"")
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT task_id, n, c - fc AS correct, u FROM grade_counts
                WHERE grader = ? AND grader_version = ? AND run_id = ? AND task_id > ?\(outcomeClause)\(domainClause)
                ORDER BY task_id LIMIT ?
                """, arguments: [grader.name, grader.version, runID, after, pageSize + 1]) {
                let id: Int64 = row["task_id"]
                ids.append(id)
                counts[id] = (row["n"], row["correct"], row["u"])
            }
        } else {
            if let outcome, outcome != "all" { throw PageError(400, "outcome=\(outcome) needs grades; this run has none yet") }
            ids = try Int64.fetchAll(db, sql: """
                SELECT DISTINCT task_id FROM rollouts WHERE run_id = ? AND task_id > ?\(domainClause) ORDER BY task_id LIMIT ?
                """, arguments: [runID, after, pageSize + 1])
        }
        let more = ids.count > pageSize
        if more { ids.removeLast() }

        var body: Markup = "<h1>Tasks of \(run.name)</h1>"
        body += "<form class=\"filters\" method=\"get\" action=\"/runs/\(runID)/tasks\">"
        if let g = req.query["grader"] { body += "<input type=\"hidden\" name=\"grader\" value=\"\(g)\">" }
        if let v = req.query["version"] { body += "<input type=\"hidden\" name=\"version\" value=\"\(v)\">" }
        body += Layout.select("outcome", "outcome", [("pass", "all samples pass"), ("fail", "no sample passes"), ("flip", "flips (some pass)")],
                              selected: outcome, any: "all")
        body += domainFilter(try runDomains(db, runID: runID), selected: domain?.key)
        body += "<button type=\"submit\">Filter</button> \(grader?.switcher(base) ?? "<span class=\"muted\">no grades yet</span>")</form>"

        let details = try taskDetails(db, ids)
        let cells = try sampleCells(db, runID: runID, taskIDs: ids, grader: grader)
        var rows: [[Markup]] = []
        for id in ids {
            let t = details[id]
            var row: [Markup] = [
                "<a href=\"\(Link("/runs/\(runID)/rollouts", [("task", String(id)), ("grader", req.query["grader"])]))\">\(t?.externalID ?? "#\(id)")</a>"
                    + "<div class=\"muted\">\(t?.dataset ?? "")</div>",
                "\(t?.domain ?? "—")",
            ]
            if grader != nil {
                if let c = counts[id] {
                    let flip = c.correct > 0 && c.correct < c.n
                    row.append("\(c.correct)/\(c.n)\(flip ? " <span class=\"badge flip\">flip</span>" as Markup : "")")
                } else {
                    row.append("<span class=\"muted\">—</span>")
                }
            }
            row.append("<div class=\"samples\">\(cells[id] ?? [])</div>")
            row.append("<span class=\"muted\">\(preview(t?.opening, 90))</span>")
            rows.append(row)
        }
        body += Layout.table(grader == nil ? ["task", "domain", "samples", "opening"] : ["task", "domain", "passed", "samples", "opening"], rows)
        body += "<p class=\"muted\">✓ pass · ✗ fail · ? undecided · · not graded · … not finished; each cell opens that sample's latest attempt.</p>"
        let here = after == Int64.min ? base : base.with("after", String(after))
        body += Layout.pager(first: here, next: more ? base.with("after", String(ids.last!)) : nil, shown: ids.count)
        return Page(title: "Tasks of \(run.name)", crumbs: [(run.name, run.link), ("tasks", nil)], body: body)
    }

    struct TaskDetail {
        let externalID: String
        let dataset: String
        let domain: String?
        let opening: String?
    }

    static func taskDetails(_ db: Database, _ ids: [Int64]) throws -> [Int64: TaskDetail] {
        guard !ids.isEmpty else { return [:] }
        var out: [Int64: TaskDetail] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT t.id, t.external_id, ds.name AS dataset, d.key AS domain, substr(t.opening, 1, 300) AS opening
            FROM tasks t JOIN datasets ds ON ds.id = t.dataset_id LEFT JOIN domains d ON d.id = t.domain_id
            WHERE t.id IN (\(placeholders(ids.count)))
            """, arguments: StatementArguments(ids)) {
            out[row["id"]] = TaskDetail(externalID: row["external_id"], dataset: row["dataset"], domain: row["domain"], opening: row["opening"])
        }
        return out
    }

    /// One cell per sample (its latest attempt) of each task, in sample order.
    static func sampleCells(_ db: Database, runID: Int64, taskIDs: [Int64], grader: GraderChoice?) throws -> [Int64: [Markup]] {
        guard !taskIDs.isEmpty else { return [:] }
        var latest: [Int64: [Int: Row]] = [:]
        for row in try Row.fetchAll(db, sql: """
            SELECT r.id, r.task_id, r.sample, r.attempt, r.status, r.stop_reason, g.passed, g.id IS NOT NULL AS graded
            FROM rollouts r LEFT JOIN grades g ON g.rollout_id = r.id AND g.grader = ? AND g.grader_version = ?
            WHERE r.run_id = ? AND r.task_id IN (\(placeholders(taskIDs.count)))
            ORDER BY r.task_id, r.sample, r.attempt
            """, arguments: StatementArguments([grader?.name as (any DatabaseValueConvertible)?, grader?.version, runID] + taskIDs)) {
            latest[row["task_id"], default: [:]][row["sample"]] = row
        }
        return latest.mapValues { bySample in
            bySample.keys.sorted().map { sample in cell(bySample[sample]!) }
        }
    }

    static func cell(_ row: Row) -> Markup {
        let status: String = row["status"]
        let graded: Bool = row["graded"]
        let passed: Int? = row["passed"]
        let (cls, mark): (String, String) =
            status == "pending" || status == "running" ? (status, "…")
            : !graded ? ("", "·")
            : passed == 1 ? ("pass", "✓") : passed == 0 ? ("fail", "✗") : ("undecided", "?")
        let title = "sample \(row["sample"] as Int) · attempt \(row["attempt"] as Int) · \(status)"
            + ((row["stop_reason"] as String?).map { " · \($0)" } ?? "")
        return "<a class=\"cell \(cls)\" href=\"/rollouts/\(row["id"] as Int64)\" title=\"\(title)\">\(mark)</a>"
    }

    // MARK: rollouts

    static func rollouts(_ req: PageRequest, runID: Int64) throws -> Page {
        let db = req.db
        let run = try RunInfo.load(db, id: runID)
        let grader = try GraderChoice.resolve(req, runID: runID)
        let status = req.query["status"], stop = req.query["stop"], verdict = req.query["verdict"], review = req.query["review"]
        let domain = try domainID(req)
        let task = try req.int("task")
        let allAttempts = req.query["attempts"] == "all"
        let after = try req.int("after") ?? 0
        if let status, !["pending", "running", "completed", "failed", "interrupted"].contains(status) {
            throw PageError(400, "status must be pending, running, completed, failed or interrupted, not \"\(status)\"")
        }
        if let verdict, !["pass", "fail", "undecided", "ungraded"].contains(verdict) {
            throw PageError(400, "verdict must be pass, fail, undecided or ungraded, not \"\(verdict)\"")
        }
        if verdict != nil && grader == nil { throw PageError(400, "verdict filters need grades; this run has none yet") }
        if let review, !["accepted", "rejected", "unreviewed"].contains(review) {
            throw PageError(400, "review must be accepted, rejected or unreviewed, not \"\(review)\"")
        }

        // The driving rows come from the narrowest index the filters allow; the other filters
        // are conditions on each row. `r.id > after` and `ORDER BY r.id` make it a keyset page.
        // The order is the driving index's own (g.rollout_id, not the equal r.id, for grades):
        // SQLite does not see that r.id orders the join, and would sort every match first.
        var from: String
        var order = "r.id"
        var conditions: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let verdict, verdict != "ungraded", let grader {
            from = "grades g CROSS JOIN rollouts r ON r.id = g.rollout_id"
            order = "g.rollout_id"
            conditions.append("g.grader = ? AND g.grader_version = ? AND g.passed IS ? AND g.rollout_id > ? AND r.run_id = ?")
            args += [grader.name, grader.version, verdict == "pass" ? 1 : verdict == "fail" ? 0 : nil, after, runID]
        } else if let task {
            // A task's rollouts (in every run) in id order; rollouts_by_run would read the run.
            from = "rollouts r INDEXED BY rollouts_by_task"
            conditions.append("r.task_id = ? AND r.run_id = ? AND r.id > ?")
            args += [task, runID, after]
        } else if let stop {
            from = "rollouts r INDEXED BY rollouts_by_run_stop"
            conditions.append("r.run_id = ? AND r.stop_reason IS ? AND r.id > ?")
            args += [runID, stop == "(none)" ? nil : stop, after]
        } else {
            from = "rollouts r INDEXED BY rollouts_by_run"
            conditions.append("r.run_id = ? AND r.id > ?")
            args += [runID, after]
        }
        if let stop, task != nil || (verdict != nil && verdict != "ungraded") {
            conditions.append("r.stop_reason IS ?")
            args.append(stop == "(none)" ? nil : stop)
        }
        if let status { conditions.append("r.status = ?"); args.append(status) }
        if let domain { conditions.append("(SELECT domain_id FROM tasks WHERE id = r.task_id) = ?"); args.append(domain.id) }
        if verdict == "ungraded", let grader {
            conditions.append("NOT EXISTS (SELECT 1 FROM grades x WHERE x.rollout_id = r.id AND x.grader = ? AND x.grader_version = ?)")
            args += [grader.name, grader.version]
        }
        switch review {
        case "accepted", "rejected":
            conditions.append("(SELECT verdict FROM reviews v WHERE v.rollout_id = r.id ORDER BY v.id DESC LIMIT 1) = ?")
            args.append(review)
        case "unreviewed":
            conditions.append("NOT EXISTS (SELECT 1 FROM reviews v WHERE v.rollout_id = r.id)")
        default: break
        }
        if !allAttempts {
            conditions.append("""
                NOT EXISTS (SELECT 1 FROM rollouts x WHERE x.run_id = r.run_id AND x.task_id = r.task_id AND x.sample = r.sample AND x.attempt > r.attempt)
                """)
        }
        args.append(pageSize + 1)
        var rows = try Row.fetchAll(db, sql: """
            SELECT r.id, r.task_id, r.sample, r.attempt, r.status, r.stop_reason, r.turns, r.started_at, r.finished_at, r.error
            FROM \(from) WHERE \(conditions.joined(separator: " AND ")) ORDER BY \(order) LIMIT ?
            """, arguments: StatementArguments(args))
        let more = rows.count > pageSize
        if more { rows.removeLast() }
        let ids: [Int64] = rows.map { $0["id"] }
        let details = try taskDetails(db, Array(Set(rows.map { $0["task_id"] as Int64 })))
        var verdicts: [Int64: Int?] = [:]
        var reviews: [Int64: String] = [:]
        var messageCounts: [Int64: Int] = [:]
        if !ids.isEmpty {
            if let grader {
                // `+grader`: probe each rollout's grades (grades' unique key), not the grader's
                // whole range in grades_by_verdict, which SQLite would otherwise pick as covering.
                for g in try Row.fetchAll(db, sql: """
                    SELECT rollout_id, passed FROM grades WHERE +grader = ? AND +grader_version = ? AND rollout_id IN (\(placeholders(ids.count)))
                    """, arguments: StatementArguments([grader.name, grader.version] as [any DatabaseValueConvertible] + ids)) {
                    verdicts[g["rollout_id"]] = .some(g["passed"])
                }
            }
            for v in try Row.fetchAll(db, sql: """
                SELECT rollout_id, verdict FROM reviews WHERE id IN (SELECT max(id) FROM reviews WHERE rollout_id IN (\(placeholders(ids.count))) GROUP BY rollout_id)
                """, arguments: StatementArguments(ids)) {
                reviews[v["rollout_id"]] = v["verdict"]
            }
            for m in try Row.fetchAll(db, sql: """
                SELECT rollout_id, count(*) AS n FROM messages WHERE rollout_id IN (\(placeholders(ids.count))) GROUP BY rollout_id
                """, arguments: StatementArguments(ids)) {
                messageCounts[m["rollout_id"]] = m["n"]
            }
        }

        var body: Markup = "<h1>Rollouts of \(run.name)</h1>"
        body += "<form class=\"filters\" method=\"get\" action=\"/runs/\(runID)/rollouts\">"
        for name in ["grader", "version", "task"] {
            if let v = req.query[name] { body += "<input type=\"hidden\" name=\"\(name)\" value=\"\(v)\">" }
        }
        body += Layout.select("status", "status", ["completed", "failed", "interrupted", "running", "pending"].map { ($0, $0) }, selected: status)
        let stops = try RunPages.outcomes(db, runID: runID).byStop.map { $0.0.isEmpty ? "(none)" : $0.0 }
        body += Layout.select("stop", "stop reason", stops.map { ($0, $0) }, selected: stop)
        if grader != nil {
            body += Layout.select("verdict", "verdict", ["pass", "fail", "undecided", "ungraded"].map { ($0, $0) }, selected: verdict)
        }
        body += domainFilter(try runDomains(db, runID: runID), selected: domain?.key)
        body += Layout.select("review", "review", ["accepted", "rejected", "unreviewed"].map { ($0, $0) }, selected: review)
        body += Layout.select("attempts", "attempts", [("all", "every attempt")], selected: allAttempts ? "all" : nil, any: "latest")
        body += "<button type=\"submit\">Filter</button></form>"
        let base = Link("/runs/\(runID)/rollouts", [
            ("grader", req.query["grader"]), ("version", req.query["version"]), ("task", task.map(String.init)), ("status", status), ("stop", stop),
            ("verdict", verdict), ("domain", domain?.key), ("review", review), ("attempts", allAttempts ? "all" : nil),
        ])
        if let grader { body += "<p>\(grader.switcher(base))</p>" }
        if let task, let t = details[task] { body += "<p>task <strong>\(t.externalID)</strong> <span class=\"muted\">\(preview(t.opening, 160))</span></p>" }

        var table: [[Markup]] = []
        for r in rows {
            let id: Int64 = r["id"]
            let t = details[r["task_id"]]
            let v = verdicts[id]
            table.append([
                "<a href=\"/rollouts/\(id)\">#\(id)</a>",
                "<a href=\"\(Link("/runs/\(runID)/rollouts", [("task", String(r["task_id"] as Int64))]))\">\(t?.externalID ?? "?")</a>",
                "\(r["sample"] as Int)", "\(r["attempt"] as Int)", statusBadge(r["status"]),
                "\(r["stop_reason"] as String? ?? "—")", "\((r["turns"] as Int?).map(String.init) ?? "—")",
                "\(messageCounts[id].map(String.init) ?? "0")",
                grader == nil ? "" : verdictBadge(v ?? nil, graded: v != nil),
                reviewBadge(reviews[id]),
                "\(Fmt.duration(r["started_at"], r["finished_at"]) ?? "—")",
                "<span class=\"muted\">\(preview(Secrets.mask(r["error"] as String?), 60))</span>",
            ])
        }
        body += Layout.table(["rollout", "task", "sample", "attempt", "status", "stop reason", "turns", "messages",
                              grader == nil ? "" : "verdict", "review", "duration", "error"], table)
        let here = after == 0 ? base : base.with("after", String(after))
        body += Layout.pager(first: here, next: more ? base.with("after", String(ids.last!)) : nil, shown: rows.count)
        return Page(title: "Rollouts of \(run.name)", crumbs: [(run.name, run.link), ("rollouts", nil)], body: body)
    }
}
