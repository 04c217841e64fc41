import Foundation
import GRDB
import RolloutKit

enum RunPages {
    /// `/`: every run, newest first, with its counts, tokens and cost; filters by model, mode,
    /// status and name.
    static func list(_ req: PageRequest) throws -> Page {
        let db = req.db
        let model = req.query["model"], mode = req.query["mode"], status = req.query["status"], name = req.query["name"]
        let before = try req.int("before")
        let rows = try Row.fetchAll(db, sql: """
            SELECT \(RunInfo.columns) FROM runs
            WHERE (?1 IS NULL OR agent_model = ?1 OR user_model = ?1) AND (?2 IS NULL OR mode = ?2)
              AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR instr(lower(name), lower(?4)) > 0)
              AND (?5 IS NULL OR id < ?5)
            ORDER BY id DESC LIMIT ?6
            """, arguments: [model, mode, status, name, before, pageSize + 1])
        let runs = rows.prefix(pageSize).map(RunInfo.init)
        var body: Markup = "<h1>Runs</h1>"
        let models = try String.fetchAll(db, sql: """
            SELECT DISTINCT m FROM (SELECT agent_model AS m FROM runs UNION SELECT user_model FROM runs) WHERE m IS NOT NULL ORDER BY m
            """)
        body += """
            <form class="filters" method="get" action="/">
            \(Layout.select("model", "model", models.map { ($0, $0) }, selected: model))
            \(Layout.select("mode", "mode", ["dialogue", "task", "batch", "imported"].map { ($0, $0) }, selected: mode))
            \(Layout.select("status", "status", ["pending", "running", "completed", "failed", "interrupted"].map { ($0, $0) }, selected: status))
            <label>name <input type="text" name="name" value="\(name)"></label>
            <button type="submit">Filter</button></form>
            """
        var table: [[Markup]] = []
        for run in runs {
            let outcome = try outcomes(db, runID: run.id)
            let usage = try RunUsage.total(db, runID: run.id)
            table.append([
                "<a href=\"\(run.link)\">\(run.name)</a>",
                "\(run.mode)", statusBadge(run.status),
                "\(run.agentModel ?? "—")", "\(run.userModel ?? "—")",
                "\(Fmt.int(outcome.total))", "<span class=\"pass\">\(Fmt.int(outcome.byStatus["completed"] ?? 0))</span>",
                "<span class=\"fail\">\(Fmt.int(outcome.byStatus["failed"] ?? 0))</span>",
                "\(Fmt.int(usage.promptTokens + usage.completionTokens))", "\(usage.costText)",
                "\(run.createdAt)",
            ])
        }
        body += Layout.table(["run", "mode", "status", "agent", "user", "rollouts", "completed", "failed", "tokens", "cost", "created"], table)
        let here = Link("/", [("model", model), ("mode", mode), ("status", status), ("name", name), ("before", before.map(String.init))])
        let next = rows.count > pageSize ? here.with("before", String(runs.last!.id)) : nil
        body += Layout.pager(first: here, next: next, shown: runs.count)
        return Page(title: "Runs", body: body)
    }

    /// Latest-attempt rollouts of a run by status and by stop reason (from run_outcomes).
    struct Outcomes {
        var byStatus: [String: Int] = [:]
        var byStop: [(String, Int)] = []
        var total = 0
    }

    static func outcomes(_ db: Database, runID: Int64) throws -> Outcomes {
        var o = Outcomes()
        var stops: [String: Int] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT status, stop_reason, n FROM run_outcomes WHERE run_id = ?", arguments: [runID]) {
            let n: Int = row["n"]
            o.byStatus[row["status"], default: 0] += n
            stops[row["stop_reason"], default: 0] += n
            o.total += n
        }
        o.byStop = stops.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
        return o
    }

    /// `/runs/{id}`: what the run is, how it ended, what it cost, and its scores.
    static func overview(_ req: PageRequest, runID: Int64) throws -> Page {
        let db = req.db
        let run = try RunInfo.load(db, id: runID)
        let outcome = try outcomes(db, runID: runID)
        var body: Markup = "<h1>Run \(run.name) \(statusBadge(run.status))</h1>"
        body += """
            <p><a href="\(Link("/runs/\(runID)/tasks"))">Tasks</a> · <a href="\(Link("/runs/\(runID)/rollouts"))">Rollouts</a> · \
            <a href="\(Link("/runs/\(runID)/tasks", [("outcome", "flip")]))">Flips</a> · \
            <a href="\(Link("/search", [("run", String(runID))]))">Search this run</a></p>
            """
        var facts: [(String, Markup)] = [
            ("mode", "\(run.mode)"), ("agent model", "\(run.agentModel ?? "—")"), ("user model", "\(run.userModel ?? "—")"),
            ("created", "\(run.createdAt)"), ("started", "\(run.startedAt ?? "—")"), ("finished", "\(run.finishedAt ?? "—")"),
        ]
        if let d = Fmt.duration(run.startedAt, run.finishedAt) { facts.append(("wall time", "\(d)")) }
        if let s = run.source { facts.append(("source", "\(s)")) }
        if let h = run.configHash { facts.append(("config sha256", "<code>\(h)</code>")) }
        body += "<div class=\"cards\"><div><h2>Run</h2><dl class=\"facts\">"
        for (k, v) in facts { body += "<dt>\(k)</dt><dd>\(v)</dd>" }
        body += "</dl></div>"

        // Outcomes: counts link to the filtered rollout list.
        let statusRows: [[Markup]] = ["completed", "failed", "interrupted", "running", "pending"].compactMap { s in
            guard let n = outcome.byStatus[s] else { return nil }
            return ["<a href=\"\(Link("/runs/\(runID)/rollouts", [("status", s)]))\">\(s)</a>", "\(Fmt.int(n))"]
        }
        body += "<div><h2>Rollouts (\(Fmt.int(outcome.total)))</h2>\(Layout.table(["status", "latest attempts"], statusRows))</div>"
        let stopRows: [[Markup]] = outcome.byStop.map { stop, n in
            let key = stop.isEmpty ? "(none)" : stop
            return ["<a href=\"\(Link("/runs/\(runID)/rollouts", [("stop", key)]))\">\(key)</a>", "\(Fmt.int(n))",
                    "\(Fmt.percent(outcome.total > 0 ? Double(n) / Double(outcome.total) : nil))"]
        }
        body += "<div><h2>Stop reasons</h2>\(Layout.table(["stop reason", "rollouts", "share"], stopRows))</div>"
        // Driven by the reviews (a reviewer's few thousand at most), not by the run's rollouts.
        let reviews = try Row.fetchAll(db, sql: """
            SELECT v.verdict, count(*) AS n FROM latest_reviews v CROSS JOIN rollouts r ON r.id = v.rollout_id
            WHERE r.run_id = ? GROUP BY v.verdict ORDER BY v.verdict
            """, arguments: [runID])
        if !reviews.isEmpty {
            let rows: [[Markup]] = reviews.map { r in
                let v: String = r["verdict"]
                return ["<a href=\"\(Link("/runs/\(runID)/rollouts", [("review", v), ("attempts", "all")]))\">\(v)</a>", "\(Fmt.int(r["n"]))"]
            }
            body += "<div><h2>Reviews</h2>\(Layout.table(["verdict", "rollouts"], rows))</div>"
        }
        body += "</div>"

        body += "<h2>LLM usage</h2>\(try RunUsage.table(db, runID: runID))"
        body += try scores(req, run: run)

        let domains = try Row.fetchAll(db, sql: """
            SELECT d.key, length(rd.policy) AS policy_chars, json_array_length(rd.tools) AS tools, rd.hash
            FROM run_domains rd JOIN domains d ON d.id = rd.domain_id WHERE rd.run_id = ? ORDER BY d.key
            """, arguments: [runID])
        if !domains.isEmpty {
            let rows: [[Markup]] = domains.map { r in
                let key: String = r["key"]
                let chars: Int? = r["policy_chars"]
                return ["<a href=\"\(Link("/runs/\(runID)/rollouts", [("domain", key)]))\">\(key)</a>",
                        "\(chars.map { Fmt.int($0) + " chars" } ?? "none")", "\(Fmt.int(r["tools"]))",
                        "<code>\(String((r["hash"] as String).prefix(12)))</code>"]
            }
            body += "<h2>Domains</h2>\(Layout.table(["domain", "policy", "tools", "hash"], rows))"
        }
        let exports = try Row.fetchAll(db, sql: """
            SELECT format, path, count, dropped, split, sha256, created_at FROM exports WHERE run_id = ? ORDER BY id DESC LIMIT 10
            """, arguments: [runID])
        if !exports.isEmpty {
            let rows: [[Markup]] = exports.map { r in
                ["\(r["format"] as String)", "\(r["path"] as String)", "\(Fmt.int(r["count"]))", "\(Fmt.int(r["dropped"]))",
                 "\(r["split"] as String? ?? "—")", "<code>\(String((r["sha256"] as String? ?? "").prefix(12)))</code>", "\(r["created_at"] as String)"]
            }
            body += "<h2>Exports (latest 10)</h2>\(Layout.table(["format", "file", "records", "dropped", "split", "sha256", "when"], rows))"
        }
        body += "<h2>Configuration</h2><details><summary>resolved configuration (no secrets)</summary><pre>\(prettyJSON(run.config))</pre></details>"
        return Page(title: "Run \(run.name)", crumbs: [(run.name, nil)], body: body)
    }

    /// The pass@k table of the chosen grader, by the chosen grouping, from queries/pass-at-k.sql
    /// (the numbers `rollout eval` prints). k runs over 1, 2, 4, … up to the fewest samples a
    /// graded task has, so no estimate is refused.
    static func scores(_ req: PageRequest, run: RunInfo) throws -> Markup {
        let base = run.link
        guard let grader = try GraderChoice.resolve(req, runID: run.id) else {
            return "<h2>Scores</h2><p class=\"none\">No grades yet: <code>rollout grade --run \(run.name) --grader stop-reason</code></p>"
        }
        let by = req.query["by"] ?? "domain"
        guard ["domain", "dataset", "agent_model", "user_model", "run"].contains(by) else {
            throw PageError(400, "by must be domain, dataset, agent_model, user_model or run, not \"\(by)\"")
        }
        let minN = try Int.fetchOne(req.db, sql: """
            SELECT min(n) FROM grade_histogram WHERE grader = ? AND grader_version = ? AND run_id = ?
            """, arguments: [grader.name, grader.version, run.id]) ?? 1
        var ks = [1]
        while ks.last! * 2 <= minN { ks.append(ks.last! * 2) }
        if ks.last! < minN { ks.append(minN) }
        let table = try QueryRunner.run("pass-at-k", parameters: [
            "run": run.name, "grader": grader.name, "version": String(grader.version),
            "k": ks.map(String.init).joined(separator: ","), "by": by,
        ], in: req.db)[0]
        var h: Markup = "<h2>Scores</h2><p>\(grader.switcher(base)) · group by: "
        h += Markup.join(["domain", "dataset", "agent_model", "run"].map { b in
            b == by ? "<strong>\(b)</strong>" : "<a href=\"\(base.with("by", b))\">\(b)</a>"
        }, separator: " · ")
        h += "</p>"
        let cols = ["key", "k", "tasks", "samples", "pass_at_k", "pass_hat_k", "avg_at_n", "mixed", "note"]
        let idx = cols.map { c in table.columns.firstIndex(of: c) }
        var rows: [[Markup]] = []
        for row in table.rows {
            var cells: [Markup] = []
            for (c, i) in zip(cols, idx) {
                guard let i else { cells.append(""); continue }
                let v = row[i]
                switch (c, v) {
                case ("pass_at_k", .real(let x)), ("pass_hat_k", .real(let x)), ("avg_at_n", .real(let x)), ("mixed", .real(let x)):
                    cells.append("\(Fmt.percent(x))")
                case ("key", _) where v.text != "all" && by == "domain":
                    cells.append("<a href=\"\(Link("/runs/\(run.id)/tasks", [("grader", grader.name), ("version", String(grader.version)), ("domain", v.text)]))\">\(v.text)</a>")
                default:
                    cells.append("\(v.text)")
                }
            }
            rows.append(cells)
        }
        h += Layout.table(["group", "k", "tasks", "samples", "pass@k", "pass^k", "avg@n", "mixed", "note"], rows)
        h += "<p class=\"muted\">The same numbers: <code>rollout eval --run \(run.name) --grader \(grader.name) --k \(ks.map(String.init).joined(separator: ",")) --by \(by)</code></p>"
        return h
    }
}

/// LLM usage of a run from run_usage.
struct RunUsage {
    var calls = 0, failed = 0, promptTokens = 0, completionTokens = 0, reasoningTokens = 0, cachedTokens = 0, priced = 0
    var cost = 0.0, latency = 0.0

    var costText: String { priced == 0 ? "—" : Fmt.cost(cost) + (priced < calls - failed ? " (partial)" : "") }

    init() {}

    init(_ row: Row) {
        calls = row["calls"] ?? 0
        failed = row["failed"] ?? 0
        promptTokens = row["prompt_tokens"] ?? 0
        completionTokens = row["completion_tokens"] ?? 0
        reasoningTokens = row["reasoning_tokens"] ?? 0
        cachedTokens = row["cached_tokens"] ?? 0
        priced = row["priced"] ?? 0
        cost = row["cost_usd"] ?? 0
        latency = row["latency_ms"] ?? 0
    }

    static let sums = """
        sum(calls) AS calls, sum(failed) AS failed, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
        sum(reasoning_tokens) AS reasoning_tokens, sum(cached_tokens) AS cached_tokens, sum(priced) AS priced,
        sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms
        """

    static func total(_ db: Database, runID: Int64) throws -> RunUsage {
        try Row.fetchOne(db, sql: "SELECT \(sums) FROM run_usage WHERE run_id = ?", arguments: [runID]).map(RunUsage.init) ?? RunUsage()
    }

    static func table(_ db: Database, runID: Int64) throws -> Markup {
        let rows = try Row.fetchAll(db, sql: "SELECT role, model, \(sums) FROM run_usage WHERE run_id = ? GROUP BY role, model ORDER BY role, model",
                                    arguments: [runID])
        guard !rows.isEmpty else { return "<p class=\"none\">No LLM calls recorded for this run.</p>" }
        var all = RunUsage()
        var cells: [[Markup]] = []
        for r in rows {
            let u = RunUsage(r)
            all.add(u)
            cells.append(u.cells(role: r["role"], model: r["model"]))
        }
        if rows.count > 1 { cells.append(all.cells(role: "all", model: "")) }
        return Layout.table(["role", "model", "calls", "failed", "prompt tokens", "completion tokens", "reasoning", "cached", "cost", "mean latency"], cells)
    }

    mutating func add(_ u: RunUsage) {
        calls += u.calls; failed += u.failed; promptTokens += u.promptTokens; completionTokens += u.completionTokens
        reasoningTokens += u.reasoningTokens; cachedTokens += u.cachedTokens; priced += u.priced; cost += u.cost; latency += u.latency
    }

    func cells(role: String, model: String) -> [Markup] {
        ["\(role)", "\(model)", "\(Fmt.int(calls))", failed > 0 ? "<span class=\"fail\">\(Fmt.int(failed))</span>" : "0",
         "\(Fmt.int(promptTokens))", "\(Fmt.int(completionTokens))", "\(Fmt.int(reasoningTokens))", "\(Fmt.int(cachedTokens))",
         "\(costText)", "\(Fmt.ms(calls > 0 ? latency / Double(calls) : nil))"]
    }
}
