import Foundation
import GRDB
import RolloutKit
import Synchronization

/// Full-text search over messages (the FTS5 table `message_search`, schema 0008).
enum SearchPage {
    /// Private-use characters that mark a snippet's matches before it is escaped.
    static let open = "\u{E000}", close = "\u{E001}"

    /// The FTS5 query for what a user typed: each word (or "quoted phrase") must appear, in
    /// either order; `word*` is a prefix. Nothing the user types is FTS5 syntax beyond that,
    /// so no input is a syntax error.
    static func ftsQuery(_ text: String) -> String? {
        var terms: [String] = []
        var rest = Substring(text)
        while let c = rest.first {
            if c.isWhitespace { rest = rest.dropFirst(); continue }
            if c == "\"" {
                let body = rest.dropFirst()
                let end = body.firstIndex(of: "\"") ?? body.endIndex
                let phrase = body[..<end].trimmingCharacters(in: .whitespaces)
                if !phrase.isEmpty { terms.append("\"" + phrase.replacingOccurrences(of: "\"", with: "\"\"") + "\"") }
                rest = end < body.endIndex ? body[body.index(after: end)...] : body[end...]
                continue
            }
            let end = rest.firstIndex(where: \.isWhitespace) ?? rest.endIndex
            var word = String(rest[..<end])
            rest = rest[end...]
            let prefix = word.hasSuffix("*") && word.count > 1
            if prefix { word.removeLast() }
            word = word.replacingOccurrences(of: "\"", with: "")
            guard word.contains(where: { $0.isLetter || $0.isNumber }) else { continue }
            terms.append("\"" + word + "\"" + (prefix ? "*" : ""))
        }
        return terms.isEmpty ? nil : terms.joined(separator: " ")
    }

    static func render(_ req: PageRequest, index: SearchIndexer.Progress) throws -> Page {
        let db = req.db
        let q = req.query["q"]
        let runID = try req.int("run")
        let role = req.query["role"]
        let before = try req.int("before")
        if let role, !["system", "user", "assistant", "tool"].contains(role) {
            throw PageError(400, "role must be system, user, assistant or tool, not \"\(role)\"")
        }
        var body: Markup = "<h1>Search messages</h1>"
        let runs = try Row.fetchAll(db, sql: "SELECT id, name FROM runs ORDER BY id DESC LIMIT 500")
        body += """
            <form class="filters" method="get" action="/search">
            <input type="search" name="q" value="\(q)" size="40" placeholder="words, &quot;a phrase&quot;, prefix*" autofocus>
            \(Layout.select("run", "run", runs.map { (String($0["id"] as Int64), $0["name"] as String) }, selected: runID.map(String.init)))
            \(Layout.select("role", "role", ["user", "assistant", "tool", "system"].map { ($0, $0) }, selected: role))
            <button type="submit">Search</button></form>
            """
        let indexed = try Int64.fetchOne(db, sql: "SELECT indexed_upto FROM message_search_state") ?? 0
        let newest = try Int64.fetchOne(db, sql: "SELECT max(id) FROM messages") ?? 0
        if indexed < newest {
            let state = index.running ? "the index is being built" : "the index is not up to date (start `rollout serve` without --no-index)"
            body += "<p class=\"notice\">Searching messages up to #\(Fmt.int(Int(indexed))) of \(Fmt.int(Int(newest))): \(state).</p>"
        }
        guard let q else {
            body += "<p class=\"muted\">Every word must appear (any order, accents ignored); \"quoted words\" must appear together; word* matches a prefix. Newest messages first.</p>"
            return Page(title: "Search", crumbs: [("search", nil)], body: body)
        }
        guard let match = ftsQuery(q) else {
            body += "<p class=\"errorbox\">Nothing to search for in \"\(q)\": give at least one word.</p>"
            return Page(title: "Search", crumbs: [("search", nil)], body: body, query: q)
        }
        // The words are looked for in the text columns only; a role is a term of the role column
        // (role was checked against the four names above).
        var conditions = ["message_search MATCH ?"]
        var args: [(any DatabaseValueConvertible)?] = ["{content reasoning_content} : (\(match))" + (role.map { " AND role : \"\($0)\"" } ?? "")]
        if let before { conditions.append("f.rowid < ?"); args.append(before) }
        if let runID {
            conditions.append("r.run_id = ?")
            args.append(runID)
            if let (low, high) = try smallRunMessages(db, runID: runID) {
                // FTS5 seeks its doclists to this range, instead of walking every newer match
                // of a common word to find the few of a small (or old) run.
                conditions.append("f.rowid BETWEEN ? AND ?")
                args += [low, high]
            }
        }
        if let role { conditions.append("m.role = ?"); args.append(role) }
        args.append(pageSize + 1)
        // Newest first: FTS5 walks its doclists in rowid order and stops at the limit, so a
        // common word costs what a rare one does (ranking by relevance would score every match).
        var rows = try Row.fetchAll(db, sql: """
            SELECT f.rowid AS id, m.rollout_id, m.idx, m.role,
                   snippet(message_search, 0, '\(open)', '\(close)', '…', 24) AS text_snippet,
                   snippet(message_search, 1, '\(open)', '\(close)', '…', 24) AS reasoning_snippet,
                   r.run_id, ru.name AS run, t.external_id
            FROM message_search f CROSS JOIN messages m ON m.id = f.rowid
            JOIN rollouts r ON r.id = m.rollout_id JOIN runs ru ON ru.id = r.run_id JOIN tasks t ON t.id = r.task_id
            WHERE \(conditions.joined(separator: " AND "))
            ORDER BY f.rowid DESC LIMIT ?
            """, arguments: StatementArguments(args))
        let more = rows.count > pageSize
        if more { rows.removeLast() }
        var table: [[Markup]] = []
        for row in rows {
            let rollout: Int64 = row["rollout_id"], idx: Int = row["idx"]
            table.append([
                "<a href=\"/rollouts/\(rollout)#m\(idx)\">#\(rollout) · \(idx)</a>",
                "<a href=\"/runs/\(row["run_id"] as Int64)\">\(row["run"] as String)</a>",
                "\(row["external_id"] as String)", "\(row["role"] as String)",
                highlighted(bestSnippet(row["text_snippet"], row["reasoning_snippet"])),
            ])
        }
        body += Layout.table(["message", "run", "task", "role", "match"], table)
        let base = Link("/search", [("q", q), ("run", runID.map(String.init)), ("role", role)])
        body += Layout.pager(first: before == nil ? base : base.with("before", String(before!)),
                             next: more ? base.with("before", String(rows.last!["id"] as Int64)) : nil, shown: rows.count)
        return Page(title: "Search: \(q)", crumbs: [("search", nil)], body: body, query: q)
    }

    /// Runs of at most this many rollouts have their messages' id range looked up for a search
    /// within the run (about 2 µs a rollout).
    static let smallRun = 10_000

    /// The lowest and highest message id of a run of at most `smallRun` rollouts ((1, 0) when
    /// it has no messages); nil for a larger run.
    static func smallRunMessages(_ db: Database, runID: Int64) throws -> (Int64, Int64)? {
        let n = try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM rollouts INDEXED BY rollouts_by_run WHERE run_id = ? LIMIT ?)",
                                 arguments: [runID, smallRun + 1]) ?? 0
        guard n <= smallRun else { return nil }
        let row = try Row.fetchOne(db, sql: """
            SELECT min(m.id) AS low, max(m.id) AS high
            FROM rollouts r INDEXED BY rollouts_by_run JOIN messages m ON m.rollout_id = r.id WHERE r.run_id = ?
            """, arguments: [runID])
        guard let low: Int64 = row?["low"], let high: Int64 = row?["high"] else { return (1, 0) }
        return (low, high)
    }

    /// The message text's snippet, or the reasoning's when only the reasoning matched.
    static func bestSnippet(_ text: String?, _ reasoning: String?) -> String {
        if let text, text.contains(open) { return text }
        if let reasoning, reasoning.contains(open) { return "(reasoning) " + reasoning }
        return text ?? reasoning ?? ""
    }

    /// A snippet escaped, with its match markers turned into <mark>.
    static func highlighted(_ snippet: String) -> Markup {
        let escaped = escapeHTML(snippet)
        return Markup(raw: "<div class=\"text\">" + escaped.replacingOccurrences(of: open, with: "<mark>")
            .replacingOccurrences(of: close, with: "</mark>") + "</div>")
    }
}

/// Brings `message_search` up to date: indexes the messages above the watermark in chunks of
/// one short write transaction each (an engine writing to the same file waits at most one
/// chunk), then keeps polling for new messages while the server runs.
final class SearchIndexer: Sendable {
    struct Progress: Sendable {
        var running = false
        var indexed: Int64 = 0
        var newest: Int64 = 0
    }

    let writer: any DatabaseWriter
    let chunk: Int64
    private let state = Mutex(Progress())

    init(writer: any DatabaseWriter, chunk: Int64 = 20_000) {
        self.writer = writer
        self.chunk = chunk
    }

    var progress: Progress { state.withLock { $0 } }

    /// Indexes one chunk; returns false when nothing was left to index.
    func step() throws -> Bool {
        let (done, upto, newest) = try writer.write { db -> (Bool, Int64, Int64) in
            let (upto, newest) = try Self.watermark(db)
            guard newest > upto else { return (true, upto, newest) }
            let end = min(newest, upto + chunk)
            try db.execute(sql: """
                INSERT INTO message_search(rowid, content, reasoning_content, role)
                SELECT id, content, reasoning_content, role FROM messages WHERE id > ? AND id <= ?
                """, arguments: [upto, end])
            try db.execute(sql: "UPDATE message_search_state SET indexed_upto = ?", arguments: [end])
            return (false, end, newest)
        }
        state.withLock {
            $0.indexed = upto
            $0.newest = newest
            $0.running = !done
        }
        return !done
    }

    /// Indexes everything there is; returns how many chunks it took.
    @discardableResult
    func catchUp() throws -> Int {
        var n = 0
        while try step() { n += 1 }
        return n
    }

    /// The highest message id the index covers, and the highest there is.
    static func watermark(_ db: Database) throws -> (indexed: Int64, newest: Int64) {
        (try Int64.fetchOne(db, sql: "SELECT indexed_upto FROM message_search_state") ?? 0,
         try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), 0) FROM messages") ?? 0)
    }

    /// How far the index is, read from the database.
    func measure() throws -> (indexed: Int64, newest: Int64) {
        try writer.read(Self.watermark)
    }

    /// Runs until cancelled: catches up, then looks for new messages every `poll` seconds.
    func run(poll: Double = 5, log: @escaping @Sendable (String) -> Void) async {
        var announced = false
        while !Task.isCancelled {
            do {
                let (before, newest) = try measure()
                state.withLock {
                    $0.indexed = before
                    $0.newest = newest
                    $0.running = newest > before
                }
                if newest - before > chunk {
                    log("indexing \(Fmt.int(Int(newest - before))) messages for search (pages work meanwhile; search covers what is indexed)")
                    announced = true
                }
                let start = ContinuousClock.now
                while !Task.isCancelled, try step() {
                    await Task.yield()
                }
                if announced {
                    log("search index up to date (\(Fmt.int(Int(progress.indexed - before))) messages in \(Fmt.fixed(start.secondsSince, 1)) s)")
                    announced = false
                }
            } catch {
                log("search index: \(error)")
                state.withLock { $0.running = false }
            }
            try? await Task.sleep(for: .seconds(poll))
        }
    }
}
