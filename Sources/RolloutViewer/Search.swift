import Foundation
import GRDB
import RolloutKit
import Synchronization

/// Full-text search over messages (the FTS5 table `message_search`, schema 0008).
enum SearchPage {
    /// Private-use characters that mark a snippet's matches before it is escaped.
    static let open = "\u{E000}", close = "\u{E001}"

    /// The tokenizer of `message_search` (schema 0008), which the word list and the prefixes a
    /// user types go through too, so that both are the index's words.
    static let tokenizer = ["unicode61", "remove_diacritics", "2"]

    /// One thing a user asked for: a word, a word's prefix (`word*`) or a "quoted phrase".
    enum Term: Equatable {
        case word(String)
        case prefix(String)
        case phrase(String)
    }

    /// What a user typed, as terms: each word (or "quoted phrase") must appear, in either order;
    /// `word*` is a prefix. Nothing the user types is FTS5 syntax beyond that, so no input is a
    /// syntax error.
    static func terms(_ text: String) -> [Term] {
        var terms: [Term] = []
        var rest = Substring(text)
        while let c = rest.first {
            if c.isWhitespace { rest = rest.dropFirst(); continue }
            if c == "\"" {
                let body = rest.dropFirst()
                let end = body.firstIndex(of: "\"") ?? body.endIndex
                let phrase = body[..<end].trimmingCharacters(in: .whitespaces)
                if !phrase.isEmpty { terms.append(.phrase(phrase)) }
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
            terms.append(prefix ? .prefix(word) : .word(word))
        }
        return terms
    }

    /// The FTS5 query for `terms`; a prefix found in `expansions` becomes an OR of the indexed
    /// words it stands for (its key is the prefix as typed).
    static func ftsQuery(_ terms: [Term], expansions: [String: [String]] = [:]) -> String? {
        let nodes = ftsNodes(terms, expansions: expansions)
        return nodes.isEmpty ? nil : all(nodes)
    }

    /// The FTS5 expression that matches every node.
    static func all(_ nodes: [String]) -> String { nodes.joined(separator: " AND ") }

    /// The FTS5 expression of each term (all of which must match).
    static func ftsNodes(_ terms: [Term], expansions: [String: [String]] = [:]) -> [String] {
        func quoted(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        return terms.map { term -> String in
            switch term {
            case .word(let w), .phrase(let w): return quoted(w)
            case .prefix(let p):
                guard let words = expansions[p] else { return quoted(p) + "*" }
                // No indexed word has the prefix: a term nothing matches (FTS5 has no "false").
                if words.isEmpty { return quoted("\u{E002}") }
                return words.count == 1 ? quoted(words[0]) : "(" + words.map(quoted).joined(separator: " OR ") + ")"
            }
        }
    }

    /// The FTS5 query for what a user typed, prefixes left to FTS5.
    static func ftsQuery(_ text: String) -> String? { ftsQuery(terms(text)) }

    /// A prefix is looked up among the indexed words (`search_terms`) and searched as the OR
    /// of its most frequent `maxExpansion` words: FTS5 answers `word*` itself by merging the
    /// doclists of every word with the prefix before it returns a first row (a third of a
    /// second for a stem in every rollout of a million), where an OR of words is walked
    /// newest first and stops at the page's end like one word.
    static let maxExpansion = 64
    /// How many of the words with a prefix (in word order) are weighed for the most frequent.
    static let expansionScan = 10_000

    /// The most words, prefixes and phrases one search takes: each is its own FTS5 query over
    /// a window, intersected by SQLite, and SQLite allows only so many parts in one statement
    /// (a thousand words was an error). A dozen rare words already find one message.
    static let maxTerms = 16
    /// The longest search text, in characters.
    static let maxQueryCharacters = 1_000

    /// The indexed words a prefix stands for, most frequent first, and whether there were more
    /// than `maxExpansion` of them. Nil when the prefix is not one word to the tokenizer (e.g.
    /// `e-mail*`), which FTS5 is left to match as a phrase prefix.
    static func expand(_ db: Database, prefix: String) throws -> (words: [String], more: Bool)? {
        let tokens = try db.makeTokenizer(FTS5TokenizerDescriptor(components: tokenizer))
            .tokenize(query: prefix).map(\.token)
        guard tokens.count == 1, let token = tokens.first else { return nil }
        let words = try String.fetchAll(db, sql: """
            SELECT term FROM (SELECT term, docs FROM search_terms WHERE term >= ?1 AND term < ?1 || char(1114111) ORDER BY term LIMIT ?2)
            ORDER BY docs DESC, term LIMIT ?3
            """, arguments: [token, expansionScan, maxExpansion + 1])
        return (Array(words.prefix(maxExpansion)), words.count > maxExpansion)
    }

    /// `budgetMs`: how long one page may spend looking for matches before it offers to go on
    /// from where it stopped; `firstWindow`: the first window of message ids it looks at (later
    /// ones are as large as the time left allows at the rate the previous one ran).
    static func render(_ req: PageRequest, index: SearchIndexer.Progress, budgetMs: Double, firstWindow: Int64) throws -> Page {
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
        let (indexed, newest) = try SearchIndexer.watermark(db)
        if indexed < newest {
            let state = index.running ? "the index is being built" : "the index is not up to date (start `rollout serve` without --no-index)"
            body += "<p class=\"notice\">Searching messages up to #\(Fmt.int(Int(indexed))) of \(Fmt.int(Int(newest))): \(state).</p>"
        }
        guard let q else {
            body += "<p class=\"muted\">Every word must appear (any order, accents ignored); \"quoted words\" must appear together; word* matches a prefix (its \(maxExpansion) most frequent words). Newest messages first.</p>"
            return Page(title: "Search", crumbs: [("search", nil)], body: body)
        }
        guard q.count <= maxQueryCharacters else {
            throw PageError(400, "the search text is \(q.count) characters long; at most \(maxQueryCharacters) are searched: shorten it")
        }
        let terms = terms(q)
        guard terms.count <= maxTerms else {
            throw PageError(400, "the search has \(terms.count) words and phrases; at most \(maxTerms) are searched together: keep the rarest few (every word must match, so a few narrow as much)")
        }
        var expansions: [String: [String]] = [:]
        for case .prefix(let p) in terms where expansions[p] == nil {
            guard let (words, more) = try expand(db, prefix: p) else { continue }
            expansions[p] = words
            if more {
                body += "<p class=\"notice\">\(p)* stands for more than \(maxExpansion) words; the \(maxExpansion) most frequent are searched (\(words.prefix(8).joined(separator: ", "))…). More letters narrow it.</p>"
            }
        }
        let nodes = ftsNodes(terms, expansions: expansions)
        guard !nodes.isEmpty else {
            body += "<p class=\"errorbox\">Nothing to search for in \"\(q)\": give at least one word.</p>"
            return Page(title: "Search", crumbs: [("search", nil)], body: body, query: q)
        }
        // The ids to look through: below the cursor, within the index, within a small run's range.
        var lowest: Int64 = 1, highest = min(indexed, before.map { $0 - 1 } ?? Int64.max)
        if let runID, let (low, high) = try smallRunMessages(db, runID: runID) {
            // FTS5 seeks its doclists to this range, instead of walking every newer match of a
            // common word to find the few of a small (or old) run.
            lowest = max(lowest, low)
            highest = min(highest, high)
        }
        let found = try matches(db, nodes: nodes, runID: runID, role: role, from: highest, downTo: lowest,
                                budgetMs: budgetMs, firstWindow: firstWindow)
        let rows = try details(db, nodes: nodes, ids: Array(found.ids.prefix(pageSize)))
        let stoppedAt = found.stoppedAt
        let more = found.ids.count > pageSize
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
        var next: Link?
        if more {
            next = base.with("before", String(rows.last!["id"] as Int64))
        } else if let stoppedAt {
            next = base.with("before", String(stoppedAt))
            body += "<p class=\"notice\">Looked through messages #\(Fmt.int(Int(stoppedAt)))–#\(Fmt.int(Int(highest))) in the time of one page; older messages are not searched yet: Next » goes on from #\(Fmt.int(Int(stoppedAt - 1))).</p>"
        }
        body += Layout.pager(first: before == nil ? base : base.with("before", String(before!)), next: next, shown: rows.count)
        return Page(title: "Search: \(q)", crumbs: [("search", nil)], body: body, query: q)
    }

    /// The words are looked for in the text columns only.
    static func scoped(_ expression: String) -> String { "{content reasoning_content} : (\(expression))" }

    /// The ids of the newest `pageSize + 1` messages in [lowest, highest] that match every node
    /// (and the role and run), looking window by window of ids from the newest: FTS5 walks its
    /// doclists in rowid order and stops at the limit, so a common word costs what a rare one
    /// does (ranking by relevance would score every match).
    ///
    /// Each query FTS5 gets is one node (a word, a prefix's OR of words, a phrase) over one
    /// window, and several nodes are intersected by SQLite: FTS5 checks a rowid range only
    /// between the rows it returns, so an AND of common words that never meet (or of a word
    /// and a role) would walk both doclists to their ends whatever the range. One node stops
    /// at the window's end; the role and run are checked on the rows. When the page is not
    /// full after `budgetMs`, the search stops and says where (`stoppedAt`): a page goes on
    /// from there instead of reading every match of its words in one request.
    static func matches(_ db: Database, nodes: [String], runID: Int64?, role: String?, from highest: Int64, downTo lowest: Int64,
                        budgetMs: Double, firstWindow: Int64) throws -> (ids: [Int64], stoppedAt: Int64?) {
        var filters: [String] = [], filterArgs: [(any DatabaseValueConvertible)?] = []
        if let role { filters.append("m.role = ?"); filterArgs.append(role) }
        if let runID { filters.append("r.run_id = ?"); filterArgs.append(runID) }
        let joins = "CROSS JOIN messages m ON m.id = c.id" + (runID == nil ? "" : " CROSS JOIN rollouts r ON r.id = m.rollout_id")
        let source = nodes.count == 1
            ? "SELECT rowid AS id FROM message_search WHERE message_search MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid DESC"
            : nodes.map { _ in "SELECT rowid AS id FROM message_search WHERE message_search MATCH ? AND rowid BETWEEN ? AND ?" }
                .joined(separator: " INTERSECT ")
        let statement = try db.cachedStatement(sql: """
            SELECT c.id FROM (\(source)) c \(joins)
            \(filters.isEmpty ? "" : "WHERE " + filters.joined(separator: " AND "))
            ORDER BY c.id DESC LIMIT ?
            """)
        var ids: [Int64] = []
        var high = highest, window = firstWindow
        let started = ContinuousClock.now
        while high >= lowest {
            let low = max(lowest, high - window + 1)
            let t0 = ContinuousClock.now
            var args: [(any DatabaseValueConvertible)?] = []
            for node in nodes { args += [scoped(node), low, high] }
            ids += try Int64.fetchAll(statement, arguments: StatementArguments(args + filterArgs + [pageSize + 1 - ids.count]))
            let perID = max(t0.millisecondsSince, 0.001) / Double(high - low + 1)
            high = low - 1
            if ids.count > pageSize || high < lowest { break }
            let left = budgetMs - started.millisecondsSince
            if left <= 0 { return (ids, low) }
            // The window was read to its end: the next one takes half the time left at its
            // rate, and is at most 16 times larger.
            window = min(max(window, Int64(min(left / 2 / perID, 1e15))), window * 16)
        }
        return (ids, nil)
    }

    /// The found messages with their snippets, newest first: one FTS5 query for the whole
    /// query over the ids' range, stopping at the oldest of them (LIMIT: every id matches, so
    /// FTS5 is never asked for a match past the range).
    static func details(_ db: Database, nodes: [String], ids: [Int64]) throws -> [Row] {
        guard let high = ids.max(), let low = ids.min() else { return [] }
        let rows = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT f.rowid AS id, m.rollout_id, m.idx, m.role,
                   snippet(message_search, 0, '\(open)', '\(close)', '…', 24) AS text_snippet,
                   snippet(message_search, 1, '\(open)', '\(close)', '…', 24) AS reasoning_snippet,
                   r.run_id, ru.name AS run, t.external_id
            FROM message_search f CROSS JOIN messages m ON m.id = f.rowid
            JOIN rollouts r ON r.id = m.rollout_id JOIN runs ru ON ru.id = r.run_id JOIN tasks t ON t.id = r.task_id
            WHERE message_search MATCH ? AND f.rowid BETWEEN ? AND ? AND +f.rowid IN (SELECT value FROM json_each(?))
            ORDER BY f.rowid DESC LIMIT ?
            """), arguments: [scoped(all(nodes)), low, high, "[" + ids.map(String.init).joined(separator: ",") + "]", ids.count])
        guard rows.count == ids.count else { throw PageError(500, "\(ids.count - rows.count) of the messages found did not match again") }
        return rows
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
            guard newest > upto else {
                if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM message_search_pending)") == true {
                    try Self.addWords(db, after: upto, upTo: upto)
                }
                return (true, upto, newest)
            }
            let end = min(newest, upto + chunk)
            try db.execute(sql: """
                INSERT INTO message_search(rowid, content, reasoning_content)
                SELECT id, content, reasoning_content FROM messages WHERE id > ? AND id <= ?
                """, arguments: [upto, end])
            try Self.addWords(db, after: upto, upTo: end)
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

    /// Adds the words of the messages with ids in (after, upTo] to `search_terms`, with the
    /// number of those messages each is in, and the words of edited messages
    /// (`message_search_pending`). The words are what FTS5's tokenizer makes of the
    /// text: the rows go through a contentless FTS5 table of the connection's temp schema with
    /// the tokenizer of `message_search`, whose vocabulary is read and which is then emptied.
    static func addWords(_ db: Database, after: Int64, upTo: Int64) throws {
        try db.execute(sql: """
            CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_words USING fts5(
                content, reasoning_content, content = '', detail = none, tokenize = '\(SearchPage.tokenizer.joined(separator: " "))');
            CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_words_vocab USING fts5vocab(temp, search_words, row);
            """)
        try db.execute(sql: """
            INSERT INTO temp.search_words(content, reasoning_content) SELECT content, reasoning_content FROM messages WHERE id > ? AND id <= ?
            """, arguments: [after, upTo])
        try db.execute(sql: """
            INSERT INTO temp.search_words(content, reasoning_content)
            SELECT m.content, m.reasoning_content FROM message_search_pending p JOIN messages m ON m.id = p.id;
            DELETE FROM message_search_pending;
            INSERT INTO search_terms(term, docs) SELECT term, doc FROM temp.search_words_vocab WHERE true
            ON CONFLICT (term) DO UPDATE SET docs = docs + excluded.docs;
            INSERT INTO temp.search_words(search_words) VALUES ('delete-all');
            """)
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
