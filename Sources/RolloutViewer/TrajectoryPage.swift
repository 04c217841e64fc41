import Foundation
import GRDB
import RolloutKit

/// `/rollouts/{id}`: one trajectory as a conversation, with its grades, reviews and the
/// ledger of its LLM calls beside it.
enum TrajectoryPage {
    static func render(_ req: PageRequest, rolloutID: Int64) throws -> Page {
        let db = req.db
        guard let r = try Row.fetchOne(db, sql: """
            SELECT r.*, t.external_id, t.opening, t.user_prompt, t.answer, ds.name AS dataset, d.key AS domain
            FROM rollouts r JOIN tasks t ON t.id = r.task_id JOIN datasets ds ON ds.id = t.dataset_id LEFT JOIN domains d ON d.id = t.domain_id
            WHERE r.id = ?
            """, arguments: [rolloutID]) else {
            throw PageError(404, "no rollout with id \(rolloutID)")
        }
        let runID: Int64 = r["run_id"], taskID: Int64 = r["task_id"], sample: Int = r["sample"]
        let run = try RunInfo.load(db, id: runID)
        let messages = try Row.fetchAll(db, sql: """
            SELECT id, idx, role, content, reasoning_content, tool_call_id, name, turn, created_at FROM messages WHERE rollout_id = ? ORDER BY idx
            """, arguments: [rolloutID])
        let calls = try Row.fetchAll(db, sql: """
            SELECT message_id, idx, call_id, name, arguments, result_message_id, is_error, latency_ms FROM tool_calls
            WHERE rollout_id = ? ORDER BY message_id, idx
            """, arguments: [rolloutID])
        let ledger = try Row.fetchAll(db, sql: """
            SELECT id, role, model, attempt, http_status, latency_ms, prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens,
                   cost_usd, finish_reason, error, created_at
            FROM llm_calls WHERE rollout_id = ? ORDER BY id
            """, arguments: [rolloutID])
        let grades = try Row.fetchAll(db, sql: """
            SELECT grader, grader_version, value, passed, explanation, created_at FROM grades WHERE rollout_id = ? ORDER BY grader, grader_version
            """, arguments: [rolloutID])
        let reviews = try Row.fetchAll(db, sql: "SELECT verdict, note, reviewer, created_at FROM reviews WHERE rollout_id = ? ORDER BY id DESC",
                                       arguments: [rolloutID])
        let attempts = try Row.fetchAll(db, sql: """
            SELECT id, attempt, status FROM rollouts WHERE run_id = ? AND task_id = ? AND sample = ? ORDER BY attempt
            """, arguments: [runID, taskID, sample])
        let grader = try GraderChoice.resolve(req, runID: runID)
        let siblings = try ListPages.sampleCells(db, runID: runID, taskIDs: [taskID], grader: grader)[taskID] ?? []
        let neighbours = try Row.fetchOne(db, sql: """
            SELECT (SELECT max(id) FROM rollouts INDEXED BY rollouts_by_run WHERE run_id = ?1 AND id < ?2) AS prev,
                   (SELECT min(id) FROM rollouts INDEXED BY rollouts_by_run WHERE run_id = ?1 AND id > ?2) AS next
            """, arguments: [runID, rolloutID])

        // Tool calls by the message that made them; results by the message that holds them.
        var callsByMessage: [Int64: [Row]] = [:]
        var callByResult: [Int64: Row] = [:]
        var callByID: [String: Row] = [:]
        for c in calls {
            callsByMessage[c["message_id"], default: []].append(c)
            if let m: Int64 = c["result_message_id"] { callByResult[m] = c }
            if let id: String = c["call_id"] { callByID[id] = c }
        }
        // Step timing: the k-th answered agent call made the k-th assistant message (and the
        // k-th answered user-simulator call the k-th simulated user message), when the counts agree.
        let answered = ledger.filter(answeredCall)
        let agentCalls = answered.filter { ($0["role"] as String) == "agent" }
        let userCalls = answered.filter { ($0["role"] as String) == "user" }
        let assistantCount = messages.filter { ($0["role"] as String) == "assistant" }.count
        let userMessages = messages.filter { ($0["role"] as String) == "user" }.count
        let pairAgent = agentCalls.count == assistantCount
        // The opening user message is the dataset's, not the simulator's.
        let userOffset = userMessages - userCalls.count
        let pairUser = !userCalls.isEmpty && (userOffset == 0 || userOffset == 1)

        var convo: Markup = ""
        var assistantSeen = 0, userSeen = 0
        for m in messages {
            let role: String = m["role"]
            var step: Row?
            if role == "assistant" {
                if pairAgent { step = agentCalls[assistantSeen] }
                assistantSeen += 1
            } else if role == "user" {
                let k = userSeen - userOffset
                if pairUser && k >= 0 && k < userCalls.count { step = userCalls[k] }
                userSeen += 1
            }
            convo += message(m, calls: callsByMessage[m["id"]] ?? [], result: callByResult[m["id"]]
                             ?? (m["tool_call_id"] as String?).flatMap { callByID[$0] }, step: step)
        }
        if messages.isEmpty { convo = "<p class=\"none\">No messages recorded.</p>" }

        var body: Markup = "<h1>Rollout #\(rolloutID) \(statusBadge(r["status"]))</h1>"
        var nav: [Markup] = ["<a href=\"\(Link("/runs/\(runID)/rollouts", [("task", String(taskID))]))\">all rollouts of this task</a>"]
        if let p: Int64 = neighbours?["prev"] { nav.insert("<a rel=\"prev\" href=\"/rollouts/\(p)\">« previous</a>", at: 0) }
        if let n: Int64 = neighbours?["next"] { nav.append("<a rel=\"next\" href=\"/rollouts/\(n)\">next »</a>") }
        body += "<p>\(Markup.join(nav, separator: " · "))</p>"
        body += "<div class=\"grid\"><section class=\"conversation\"><h2>Conversation (\(messages.count) messages)</h2>\(convo)</section><aside>"

        var facts: [(String, Markup)] = [
            ("run", "<a href=\"\(run.link)\">\(run.name)</a>"),
            ("task", "\(r["external_id"] as String) <span class=\"muted\">\(r["dataset"] as String)</span>"),
            ("domain", "\(r["domain"] as String? ?? "—")"),
            ("sample", "\(sample) <div class=\"samples\">\(siblings)</div>"),
        ]
        if attempts.count > 1 {
            facts.append(("attempts", Markup.join(attempts.map { a in
                let id: Int64 = a["id"]
                let label = "\(a["attempt"] as Int) (\(a["status"] as String))"
                return id == rolloutID ? "<strong>\(label)</strong>" : "<a href=\"/rollouts/\(id)\">\(label)</a>"
            }, separator: " · ")))
        } else {
            facts.append(("attempt", "\(r["attempt"] as Int)"))
        }
        facts.append(("stop reason", "\(r["stop_reason"] as String? ?? "—")"))
        if let turns: Int = r["turns"] { facts.append(("turns", "\(turns)")) }
        facts.append(("started", "\(r["started_at"] as String? ?? "—")"))
        if let d = Fmt.duration(r["started_at"], r["finished_at"]) { facts.append(("duration", "\(d)")) }
        if let p: String = r["prediction"] { facts.append(("prediction", "<div class=\"text\">\(p)</div>")) }
        if let a: String = r["answer"] { facts.append(("reference answer", "<div class=\"text\">\(a)</div>")) }
        if let reward: Double = r["reward"] { facts.append(("reward", "\(Fmt.fixed(reward, 3))")) }
        if let e = Secrets.mask(r["error"] as String?) { facts.append(("error", "<div class=\"text fail\">\(e)</div>")) }
        body += "<h2>Rollout</h2><dl class=\"facts\">"
        for (k, v) in facts { body += "<dt>\(k)</dt><dd>\(v)</dd>" }
        body += "</dl>"
        if r["opening"] as String? != nil || r["user_prompt"] as String? != nil {
            body += "<details><summary>task text</summary>"
            if let o: String = r["opening"] { body += "<h3>opening</h3><div class=\"text\">\(o)</div>" }
            if let u: String = r["user_prompt"] { body += "<h3>user simulator scenario</h3><div class=\"text\">\(u)</div>" }
            body += "</details>"
        }

        body += "<h2>Grades</h2>"
        body += Layout.table(["grader", "verdict", "value", "explanation"], grades.map { g in
            ["\(g["grader"] as String) v\(g["grader_version"] as Int)", verdictBadge(g["passed"], graded: true),
             "\((g["value"] as Double?).map { Fmt.fixed($0, 3) } ?? "—")", "<div class=\"text\">\(g["explanation"] as String? ?? "")</div>"]
        })

        body += "<h2 id=\"review\">Review</h2><div class=\"review\">"
        if let done = req.query["reviewed"] { body += "<div class=\"notice\">Recorded: \(done).</div>" }
        body += """
            <form method="post" action="/rollouts/\(rolloutID)/review">
            <input type="hidden" name="token" value="\(req.formToken)">
            <label>note<br><textarea name="note" placeholder="why (optional)"></textarea></label>
            <label>reviewer<br><input type="text" name="reviewer" value="\(req.reviewer)" placeholder="your name (optional)"></label>
            <p><button type="submit" name="verdict" value="accepted">Accept</button><button type="submit" name="verdict" value="rejected">Reject</button></p>
            </form>
            """
        if reviews.isEmpty {
            body += "<p class=\"none\">Not reviewed yet.</p>"
        } else {
            body += Layout.table(["verdict", "note", "by", "when"], reviews.map { v in
                [reviewBadge(v["verdict"]), "<div class=\"text\">\(v["note"] as String? ?? "")</div>", "\(v["reviewer"] as String? ?? "")",
                 "\(v["created_at"] as String)"]
            })
        }
        body += "</div>"

        body += "<h2>LLM calls (\(ledger.count))</h2>"
        body += Layout.table(["#", "role", "model", "try", "status", "latency", "in", "out", "cost", "finish"], ledger.map { c in
            let status: Int? = c["http_status"]
            // Rows written before errors were masked may still hold a key.
            let error = Secrets.mask(c["error"] as String?)
            let ok = answeredCall(c)
            return ["\(c["id"] as Int64)", "\(c["role"] as String)", "\(c["model"] as String)", "\(c["attempt"] as Int)",
                    ok ? "\(status.map(String.init) ?? "")" : "<span class=\"fail\" title=\"\(error ?? "")\">\(status.map(String.init) ?? "error")</span>",
                    "\(Fmt.ms(c["latency_ms"]))", "\((c["prompt_tokens"] as Int?).map(Fmt.int) ?? "—")",
                    "\((c["completion_tokens"] as Int?).map(Fmt.int) ?? "—")", "\((c["cost_usd"] as Double?).map(Fmt.cost) ?? "—")",
                    "\(c["finish_reason"] as String? ?? "")"]
        }, classes: "ledger")
        body += "</aside></div>"
        return Page(title: "Rollout #\(rolloutID)", crumbs: [(run.name, run.link), ("rollout #\(rolloutID)", nil)], body: body)
    }

    /// A call that got an answer: no error and a 2xx status (in-process mock calls have none).
    static func answeredCall(_ c: Row) -> Bool {
        (c["error"] as String?) == nil && (c["http_status"] as Int?).map { (200..<300).contains($0) } ?? true
    }

    /// One message: role, timing and tokens of the call that produced it, text, reasoning
    /// (collapsed), the tool calls it made, or the call it answers.
    static func message(_ m: Row, calls: [Row], result: Row?, step: Row?) -> Markup {
        let role: String = m["role"], idx: Int = m["idx"]
        let isError = role == "tool" && (result.map { ($0["is_error"] as Int) == 1 } ?? false)
        var meta: [String] = []
        if let turn: Int = m["turn"] { meta.append("turn \(turn)") }
        if let step {
            meta.append(Fmt.ms(step["latency_ms"]))
            if let p: Int = step["prompt_tokens"], let c: Int = step["completion_tokens"] { meta.append("\(Fmt.int(p)) in / \(Fmt.int(c)) out") }
            if let cost: Double = step["cost_usd"] { meta.append(Fmt.cost(cost)) }
        }
        if role == "tool", let result {
            meta.append("result of \(result["name"] as String)")
            if let l: Double = result["latency_ms"] { meta.append(Fmt.ms(l)) }
        }
        var h: Markup = "<div class=\"msg \(role)\(isError ? " error" : "")\" id=\"m\(idx)\"><span class=\"who\">\(role)</span>"
        if let name: String = m["name"], role != "tool" { h += " <code>\(name)</code>" }
        if isError { h += " <span class=\"badge fail\">tool error</span>" }
        h += "<span class=\"meta\"><a href=\"#m\(idx)\">#\(idx)</a> · \(meta.joined(separator: " · "))</span>"
        let content: String? = m["content"]
        if role == "system", let content {
            h += "<details><summary>\(preview(content, 100)) (\(Fmt.int(content.count)) chars)</summary><div class=\"text\">\(content)</div></details>"
        } else if let content, !content.isEmpty {
            h += role == "tool" ? "<pre>\(prettyJSON(content))</pre>" : "<div class=\"text\">\(content)</div>"
        }
        if let reasoning: String = m["reasoning_content"], !reasoning.isEmpty {
            h += "<details class=\"reasoning\"><summary>reasoning (\(Fmt.int(reasoning.count)) chars)</summary><div class=\"text\">\(reasoning)</div></details>"
        }
        for c in calls {
            let isErr = (c["is_error"] as Int) == 1
            h += "<div class=\"call\"><span class=\"name\">\(c["name"] as String)</span> <span class=\"muted\">\(c["call_id"] as String? ?? "")</span>"
            if isErr { h += " <span class=\"badge fail\">error</span>" }
            if let l: Double = c["latency_ms"] { h += " <span class=\"muted\">\(Fmt.ms(l))</span>" }
            h += "<pre>\(prettyJSON(c["arguments"] as String? ?? ""))</pre></div>"
        }
        h += "</div>"
        return h
    }
}
