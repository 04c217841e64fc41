import Foundation
import GRDB
import RolloutKit
@testable import RolloutViewer
import Testing

/// `rollout serve` over HTTP: every page against a warehouse the real engine filled, escaping of
/// hostile text, reviews, pagination, search, the read-only promise and the counters the
/// pages read.
@Suite(.serialized)
struct ViewerTests {
    @Test func everyPageRendersWhatTheWarehouseHolds() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in

            let runs = try await h.get("/")
            #expect(runs.status == 200)
            #expect(runs.body.contains("href=\"/runs/1\">quickstart</a>"))
            #expect(runs.headers.first(name: "Content-Security-Policy")?.contains("default-src 'none'") == true)
            #expect(runs.headers.first(name: "Content-Type") == "text/html; charset=utf-8")

            // The run page's pass@k table is the one `rollout eval` computes.
            let run = try await h.get("/runs/1")
            #expect(run.status == 200)
            let eval = try w.evaluate(EvalRequest(run: "quickstart", grader: "stop-reason", ks: [1, 2, 3], by: .domain), store: false)
            let all = EvalFixtures.rows(eval.table).filter { $0["key"] == .text("all") }
            for row in all {
                guard case .real(let p) = row["pass_at_k"]! else { Issue.record("no pass@k"); continue }
                #expect(run.body.contains(String(format: "%.1f%%", p * 100)), "pass@\(row["k"]!.text) = \(p) not on the page")
            }
            let total = try #require(try w.int("SELECT count(*) FROM latest_rollouts WHERE run_id = 1"))
            #expect(run.body.contains("Rollouts (\(total))"))
            let stops = try w.rows("SELECT stop_reason, count(*) AS n FROM latest_rollouts WHERE run_id = 1 GROUP BY 1")
            for s in stops {
                #expect(run.body.contains("stop=\(s["stop_reason"] as String)\">\(s["stop_reason"] as String)</a></td><td>\(s["n"] as Int)</td>"))
            }
            let calls = try #require(try w.int("SELECT count(*) FROM llm_calls WHERE run_id = 1 AND role = 'agent'"))
            #expect(run.body.contains("<td>agent</td><td>mock/agent</td><td>\(calls)</td>"))

            let tasks = try await h.get("/runs/1/tasks")
            #expect(tasks.status == 200)
            let taskCount = try #require(try w.int("SELECT count(DISTINCT task_id) FROM rollouts WHERE run_id = 1"))
            #expect(tasks.body.components(separatedBy: "<div class=\"samples\">").count - 1 == taskCount)
            let flips = try await h.get("/runs/1/tasks?outcome=flip")
            let mixed = try #require(try w.int("SELECT count(*) FROM grade_counts WHERE run_id = 1 AND c > 0 AND c < n"))
            #expect(flips.body.components(separatedBy: "badge flip").count - 1 == mixed)

            // The trajectory page shows every message and tool call of the rollout.
            let page = try await h.get("/rollouts/1")
            #expect(page.status == 200)
            let messages = try w.rows("SELECT idx, content FROM messages WHERE rollout_id = 1 ORDER BY idx")
            #expect(!messages.isEmpty)
            for m in messages {
                #expect(page.body.contains("id=\"m\(m["idx"] as Int)\""))
            }
            for name in try w.strings("SELECT name FROM tool_calls WHERE rollout_id = 1") {
                #expect(page.body.contains("<span class=\"name\">\(name)</span>"))
            }
            let ledger = try #require(try w.int("SELECT count(*) FROM llm_calls WHERE rollout_id = 1"))
            #expect(page.body.contains("LLM calls (\(ledger))"))
            #expect(page.body.contains("in / "), "per-step tokens are shown")

            for path in ["/runs/1/rollouts", "/runs/1/rollouts?status=completed", "/runs/1/rollouts?stop=user_stop",
                         "/runs/1/rollouts?verdict=pass", "/runs/1/rollouts?verdict=fail", "/runs/1/rollouts?verdict=ungraded",
                         "/runs/1/rollouts?domain=Library", "/runs/1/rollouts?review=unreviewed", "/runs/1/rollouts?attempts=all",
                         "/runs/1/tasks?domain=Library&outcome=pass", "/runs/1?by=dataset", "/search", "/search?q=loan",
                         "/static/viewer.css", "/healthz", "/?model=mock%2Fagent"] {
                let r = try await h.get(path)
                #expect(r.status == 200, "\(path): \(r.status)")
            }
            // A filter's rows are exactly the rows SQL selects.
            let userStops = try await h.get("/runs/1/rollouts?stop=user_stop")
            let expected = try #require(try w.int("SELECT count(*) FROM latest_rollouts WHERE run_id = 1 AND stop_reason = 'user_stop'"))
            #expect(userStops.body.contains("<span>\(expected) shown</span>"))
            let failing = try await h.get("/runs/1/rollouts?verdict=fail")
            let failed = try #require(try w.int("SELECT count(*) FROM grades WHERE grader = 'stop-reason' AND passed = 0"))
            #expect(failing.body.contains("<span>\(failed) shown</span>"))
            let library = try await h.get("/runs/1/rollouts?domain=Library")
            let inLibrary = try #require(try w.int("""
                SELECT count(*) FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id JOIN domains d ON d.id = t.domain_id
                WHERE r.run_id = 1 AND d.key = 'Library'
                """))
            #expect(library.body.contains("<span>\(inLibrary) shown</span>"))
        }
    }

    @Test func badAddressesAndParametersGetClearPages() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in
            let cases: [(String, Int, String)] = [
                ("/runs/999", 404, "no run with id 999"),
                ("/rollouts/999999", 404, "no rollout with id 999999"),
                ("/runs/abc", 404, "no page at /runs/abc"),
                ("/nothing/here", 404, "no page at /nothing/here"),
                ("/runs/1/rollouts?status=bogus", 400, "status must be"),
                ("/runs/1/rollouts?after=x", 400, "after must be an integer"),
                ("/runs/1/rollouts?verdict=maybe", 400, "verdict must be"),
                ("/runs/1/tasks?outcome=sometimes", 400, "outcome must be"),
                ("/runs/1/tasks?grader=nobody", 404, "no grades by"),
                ("/runs/1/rollouts?domain=Atlantis", 404, "no domain"),
                ("/search?q=%22%20%22&role=robot", 400, "role must be"),
            ]
            for (path, status, text) in cases {
                let r = try await h.get(path)
                #expect(r.status == status, "\(path)")
                #expect(r.body.contains(text), "\(path): \(r.body.prefix(300))")
                #expect(r.headers.first(name: "Content-Type") == "text/html; charset=utf-8", "\(path)")
            }
            // Nothing a user types is an FTS5 syntax error.
            for q in ["\"", "AND", "a OR", "(", "x:y", "NEAR(", "*", "-", "^foo", "'"] {
                let r = try await h.get("/search?q=\(formEncode(q))")
                #expect(r.status == 200, "q=\(q): \(r.status) \(r.body.prefix(200))")
            }
        }
    }

    @Test func hostileTextRendersAsText() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        let rollout = try ViewerFixtures.addHostileRun(w)
        let run = try #require(try w.int("SELECT run_id FROM rollouts WHERE id = ?", [rollout]))
        _ = try SearchIndexer(writer: w.writer).catchUp()
        try await ViewerHarness.with(w) { h in

            // A review note is untrusted too.
            let page = try await h.get("/rollouts/\(rollout)")
            let token = try #require(ViewerHarness.formToken(page.body))
            let posted = try await h.post("/rollouts/\(rollout)/review", form: [
                ("token", token), ("verdict", "rejected"), ("note", "<script>alert('note')</script>"), ("reviewer", "<b>mallory</b>"),
            ])
            #expect(posted.status == 303)

            let paths = ["/", "/runs/\(run)", "/runs/\(run)/tasks", "/runs/\(run)/rollouts", "/rollouts/\(rollout)",
                         "/runs/\(run)/rollouts?review=rejected", "/search?q=script", "/search?q=alert&run=\(run)",
                         "/search?q=\(formEncode("<script>alert(1)</script>"))", "/runs/\(run)/rollouts?domain=\(formEncode("<script>dom</script>"))",
                         "/runs/\(run)/rollouts?stop=\(formEncode("<script>stop</script>"))", "/nope<script>"]
            for path in paths {
                let r = try await h.get(path.replacingOccurrences(of: "<", with: "%3C").replacingOccurrences(of: ">", with: "%3E"))
                let lower = r.body.lowercased()
                #expect(!lower.contains("<script"), "\(path) carries a live <script>")
                #expect(!lower.contains("<iframe"), "\(path) carries a live <iframe>")
                #expect(!lower.contains("<img"), "\(path) carries a live <img>")
                #expect(!lower.contains("<b>"), "\(path) carries live markup from the data")
            }
            let trajectory = try await h.get("/rollouts/\(rollout)")
            for shown in ["&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;", "&lt;iframe src=javascript:alert(1)&gt;",
                          "&lt;script&gt;tool&lt;/script&gt;", "&lt;script&gt;alert(&quot;explanation&quot;)&lt;/script&gt;",
                          "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;", "&lt;b&gt;mallory&lt;/b&gt;"] {
                #expect(trajectory.body.contains(shown), "\(shown) not shown as text")
            }
            let search = try await h.get("/search?q=xss")
            #expect(search.body.contains("&lt;script&gt;alert(&#39;<mark>xss</mark>&#39;)&lt;/script&gt;"))
        }
    }

    @Test func reviewsAreRowsThatExportFiltersOn() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in
            let page = try await h.get("/rollouts/2")
            let token = try #require(ViewerHarness.formToken(page.body))
            #expect(page.body.contains("Not reviewed yet."))

            let ok = try await h.post("/rollouts/2/review", form: [("token", token), ("verdict", "accepted"), ("note", "clean\nrun"), ("reviewer", "ana")])
            #expect(ok.status == 303)
            #expect(ok.headers.first(name: "Location") == "/rollouts/2?reviewed=accepted#review")
            #expect(ok.headers.first(name: "Set-Cookie")?.hasPrefix("reviewer=ana;") == true)
            let row = try #require(try w.rows("SELECT rollout_id, verdict, note, reviewer FROM reviews").first)
            #expect(row["rollout_id"] as Int64 == 2 && row["verdict"] as String == "accepted")
            #expect(row["note"] as String == "clean\nrun" && row["reviewer"] as String == "ana")
            let after = try await h.get("/rollouts/2?reviewed=accepted", headers: [("Cookie", "reviewer=ana")])
            #expect(after.body.contains("Recorded: accepted."))
            #expect(after.body.contains("name=\"reviewer\" value=\"ana\""))

            // A later review is the verdict; the first one stays.
            _ = try await h.post("/rollouts/3/review", form: [("token", token), ("verdict", "accepted")])
            _ = try await h.post("/rollouts/3/review", form: [("token", token), ("verdict", "rejected"), ("note", "  ")])
            #expect(try w.int("SELECT count(*) FROM reviews") == 3)
            #expect(try w.string("SELECT verdict FROM latest_reviews WHERE rollout_id = 3") == "rejected")
            #expect(try w.int("SELECT count(*) FROM reviews WHERE note IS NULL") == 2, "an empty note is no note")

            // Refused: no token, a stale token, another site's form, a bad verdict, no such rollout.
            let before = try w.count("reviews")
            let refused: [([(String, String)], [(String, String)], String, Int)] = [
                ([("verdict", "accepted")], [("Origin", "")], "/rollouts/2/review", 403),
                ([("token", "0000"), ("verdict", "accepted")], [("Origin", "")], "/rollouts/2/review", 403),
                ([("token", token), ("verdict", "accepted")], [("Origin", "http://evil.example")], "/rollouts/2/review", 403),
                ([("token", token), ("verdict", "maybe")], [("Origin", "")], "/rollouts/2/review", 400),
                ([("token", token), ("verdict", "accepted")], [("Origin", "")], "/rollouts/99999/review", 404),
            ]
            for (form, headers, path, status) in refused {
                let r = try await h.post(path, form: form, headers: headers)
                #expect(r.status == status, "\(form) \(headers): \(r.status)")
            }
            #expect(try w.count("reviews") == before)

            // The run page counts them and the list filters on them.
            let run = try await h.get("/runs/1")
            #expect(run.body.contains("review=accepted&amp;attempts=all\">accepted</a></td><td>1</td>"))
            let rejected = try await h.get("/runs/1/rollouts?review=rejected")
            #expect(rejected.body.contains("href=\"/rollouts/3\"") && !rejected.body.contains("href=\"/rollouts/2\""))

            // export --review keeps exactly the accepted rollout.
            var options = ExportOptions(run: "quickstart", format: .training, out: dir.file("accepted.jsonl"))
            options.review = .accepted
            let report = try w.export(options)
            let exported: Int = report.files.map(\.count).reduce(0, +)
            #expect(exported == 1)
            let line = try String(contentsOfFile: dir.file("accepted.jsonl"), encoding: .utf8)
            let firstUser = try #require(try w.string("SELECT content FROM messages WHERE rollout_id = 2 AND role = 'user' ORDER BY idx LIMIT 1"))
            #expect(line.contains(JSONValue.string(firstUser).jsonText))
            #expect(try w.string("SELECT json_extract(filters, '$.review') FROM exports ORDER BY id DESC LIMIT 1") == "accepted")
            options.review = .unreviewed
            options.out = dir.file("unreviewed.jsonl")
            let rest = try w.export(options)
            let completed = try #require(try w.int("SELECT count(*) FROM latest_rollouts WHERE run_id = 1 AND status = 'completed'"))
            let written: Int = rest.files.map(\.count).reduce(0, +)
            let dropped: Int = rest.files.map(\.dropped).reduce(0, +)
            #expect(written + dropped == completed - 2)
        }
    }

    @Test func listsPageByKeysetAndEveryRowComesOnce() async throws {
        // 130 tasks × 3 samples: three pages of tasks, eight of rollouts.
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("w.db"))
        let tasks = (0..<130).map { i in SyntheticTask(String(format: "t%03d", i), domain: i % 2 == 0 ? "Even" : "Odd", n: 3, c: i % 4) }
        try EvalFixtures.addRun(w, run: "big", tasks: tasks)
        _ = try await w.grade(run: "big", definition: try GraderDefinition(kind: .reward, options: [:]))
        try await ViewerHarness.with(w) { h in

            func follow(_ start: String, marker: String) async throws -> [String] {
                var seen: [String] = []
                var next: String? = start
                var pages = 0
                while let path = next {
                    let r = try await h.get(path)
                    #expect(r.status == 200)
                    var rest = r.body[...]
                    while let m = rest.range(of: marker) {
                        seen.append(String(rest[m.upperBound...].prefix { $0 != "\"" }))
                        rest = rest[m.upperBound...]
                    }
                    next = ViewerHarness.links(r.body).first { $0.contains("after=") && r.body.contains("rel=\"next\" href=\"\($0.replacingOccurrences(of: "&", with: "&amp;"))\"") }
                    pages += 1
                    #expect(pages < 50)
                }
                return seen
            }
            let rollouts = try await follow("/runs/1/rollouts", marker: "<td><a href=\"/rollouts/")
            #expect(rollouts.count == 390 && Set(rollouts).count == 390)
            let flips = try await follow("/runs/1/tasks?outcome=flip&domain=Even", marker: "rollouts?task=")
            // c = i % 4 passes of 3: flips are c = 1, 2 → i % 4 in {1, 2}; even i → i % 4 = 2.
            #expect(flips.count == tasks.indices.filter { $0 % 2 == 0 && $0 % 4 == 2 }.count)
            let passing = try await follow("/runs/1/rollouts?verdict=pass", marker: "<td><a href=\"/rollouts/")
            #expect(passing.count == tasks.indices.map { min($0 % 4, 3) }.reduce(0, +))
        }
    }

    @Test func searchFindsMessagesNewestFirstAndFollowsTheWarehouse() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w, indexSearch: true) { h in
            // The background indexer catches up on its own.
            let newest = try #require(try w.int("SELECT max(id) FROM messages"))
            for _ in 0..<200 where try w.int("SELECT indexed_upto FROM message_search_state") != newest {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try w.int("SELECT indexed_upto FROM message_search_state") == newest)

            let word = "Riverside"
            let expected = try w.rows("SELECT id, rollout_id, idx FROM messages WHERE content LIKE '%' || ? || '%' ORDER BY id DESC", [word])
            #expect(expected.count > 1)
            let r = try await h.get("/search?q=riverside")
            #expect(r.status == 200)
            let first = try #require(expected.first)
            let firstLink = "/rollouts/\(first["rollout_id"] as Int64)#m\(first["idx"] as Int)"
            let order = ViewerHarness.links(r.body).filter { $0.contains("#m") }
            #expect(order.first == firstLink, "newest match first")
            #expect(order.count == min(expected.count, 50))
            #expect(r.body.contains("<mark>Riverside</mark>"))
            // Accents and case do not matter; a phrase must appear as a phrase.
            let library = try await h.get("/search?q=\(formEncode("\"riverside LIBRARY\""))")
            #expect(ViewerHarness.links(library.body).filter { $0.contains("#m") }.count
                    == min(try w.int("SELECT count(*) FROM messages WHERE content LIKE '%Riverside Library%'") ?? 0, 50))
            let role = try await h.get("/search?q=riverside&role=assistant")
            let assistantHits = try #require(try w.int("SELECT count(*) FROM messages WHERE content LIKE '%Riverside%' AND role = 'assistant'"))
            #expect(ViewerHarness.links(role.body).filter { $0.contains("#m") }.count == min(assistantHits, 50))

            // New messages are found once indexed; deleted ones are gone, and the index stays sound
            // when SQLite hands their ids out again.
            let last = try #require(try w.int("SELECT max(id) FROM rollouts"))
            try await w.writer.write { db in
                try db.execute(sql: "DELETE FROM rollouts WHERE id = ?", arguments: [last])
                try db.execute(sql: """
                    INSERT INTO rollouts(id, run_id, task_id, sample, attempt, status) SELECT ?, run_id, task_id, sample, 1, 'completed'
                    FROM rollouts WHERE id = 1
                    """, arguments: [last])
                try db.execute(sql: "INSERT INTO messages(rollout_id, idx, role, content) VALUES (?, 0, 'user', 'zanzibar quokka')", arguments: [last])
            }
            let indexer = SearchIndexer(writer: w.writer)
            _ = try indexer.catchUp()
            let found = try await h.get("/search?q=quokka")
            #expect(ViewerHarness.links(found.body).contains("/rollouts/\(last)#m0"))
            try await w.writer.write { db in
                try db.execute(sql: "INSERT INTO message_search(message_search, rank) VALUES ('integrity-check', 1)")
            }
            try await w.writer.write { db in try db.execute(sql: "DELETE FROM rollouts WHERE id = ?", arguments: [last]) }
            let gone = try await h.get("/search?q=quokka")
            #expect(!gone.body.contains("/rollouts/\(last)#m0"))
            try await w.writer.write { db in
                try db.execute(sql: "INSERT INTO message_search(message_search, rank) VALUES ('integrity-check', 1)")
            }
        }
    }

    @Test func servingWritesNothingButReviewsAndTheSearchIndex() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try ViewerFixtures.addHostileRun(w)
        _ = try SearchIndexer(writer: w.writer).catchUp()
        let derived: Set<String> = ["reviews"]
        func dataTables() throws -> [String: [String]] {
            try w.snapshot().filter { !$0.key.hasPrefix("message_search") && $0.key != "search_terms" && !derived.contains($0.key) }
        }
        let before = try dataTables()
        try await ViewerHarness.with(w, indexSearch: true) { h in
            let token = try #require(ViewerHarness.formToken(try await h.get("/rollouts/1").body))
            for path in ["/", "/runs/1", "/runs/1/tasks", "/runs/1/tasks?outcome=flip", "/runs/1/rollouts", "/runs/1/rollouts?verdict=pass",
                         "/rollouts/1", "/rollouts/2", "/search?q=card", "/runs/2", "/runs/2/rollouts"] {
                _ = try await h.get(path)
            }
            _ = try await h.post("/rollouts/1/review", form: [("token", token), ("verdict", "accepted")])
            #expect(try dataTables() == before)
            #expect(try w.count("reviews") == 1)
        }
    }

    @Test func aLoopbackViewerAnswersOnlyLoopbackNames() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in
            for host in ["127.0.0.1:\(h.port)", "localhost:\(h.port)", "[::1]:\(h.port)", "LOCALHOST"] {
                #expect(try await h.get("/", headers: [("Host", host)]).status == 200, "\(host)")
            }
            for host in ["evil.example", "evil.example:\(h.port)", "127.0.0.1.evil.example"] {
                let r = try await h.get("/", headers: [("Host", host)])
                #expect(r.status == 403, "\(host)")
                #expect(!r.body.contains("quickstart"))
            }
        }
    }

    @Test func theCountersThePagesReadStayExact() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        #expect(try ViewerFixtures.counterDrift(w) == [])
        // Retries, status changes, deletions, an llm call filled in later, a deleted run.
        try await w.writer.write { db in
            try db.execute(sql: "INSERT INTO rollouts(run_id, task_id, sample, attempt, status) SELECT run_id, task_id, sample, 1, 'running' FROM rollouts WHERE id IN (1, 2)")
            try db.execute(sql: "UPDATE rollouts SET status = 'failed', stop_reason = 'error' WHERE attempt = 1 AND sample = (SELECT sample FROM rollouts WHERE id = 1) AND task_id = (SELECT task_id FROM rollouts WHERE id = 1)")
            try db.execute(sql: "UPDATE rollouts SET stop_reason = NULL WHERE id = 5")
            try db.execute(sql: "DELETE FROM rollouts WHERE id = 6")
            try db.execute(sql: "DELETE FROM rollouts WHERE attempt = 1 AND task_id = (SELECT task_id FROM rollouts WHERE id = 2) AND sample = (SELECT sample FROM rollouts WHERE id = 2)")
            try db.execute(sql: "UPDATE llm_calls SET http_status = 500, error = 'boom', prompt_tokens = 7 WHERE id = 3")
            try db.execute(sql: "UPDATE llm_calls SET run_id = NULL WHERE id = 4")
            try db.execute(sql: "DELETE FROM llm_calls WHERE id = 5")
        }
        #expect(try ViewerFixtures.counterDrift(w) == [])
        try EvalFixtures.addRun(w, run: "other", tasks: [SyntheticTask("x", [.pass, .fail, .errored])])
        #expect(try ViewerFixtures.counterDrift(w) == [])
        try await w.writer.write { db in try db.execute(sql: "DELETE FROM runs WHERE name = 'quickstart'") }
        #expect(try ViewerFixtures.counterDrift(w) == [])
        #expect(try w.int("SELECT count(*) FROM run_outcomes WHERE run_id = 1") == 0)
        #expect(try w.int("SELECT count(*) FROM run_usage WHERE run_id = 1") == 0)
    }

    @Test func prefixesAndSearchesCutShortFindWhatFTS5Finds() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        _ = try SearchIndexer(writer: w.writer).catchUp()
        /// FTS5's own answer, newest first, as the viewer's links.
        func oracle(_ match: String) throws -> [String] {
            try w.rows("""
                SELECT m.rollout_id, m.idx FROM message_search f JOIN messages m ON m.id = f.rowid
                WHERE message_search MATCH '{content reasoning_content} : (' || ? || ')' ORDER BY f.rowid DESC
                """, [match]).map { "/rollouts/\($0["rollout_id"] as Int64)#m\($0["idx"] as Int)" }
        }
        // The words list counts the messages each word is in, as FTS5 does.
        for word in ["riverside", "library", "the"] {
            #expect(try w.int("SELECT docs FROM search_terms WHERE term = ?", [word])
                    == (try w.int("SELECT count(*) FROM message_search WHERE message_search MATCH ?", ["{content reasoning_content} : \(word)"])))
        }
        try await ViewerHarness.with(w, tune: { $0.searchBudgetMs = 0; $0.searchFirstWindow = 40 }) { h in
            /// Every match, following Next » to the end.
            func all(_ q: String) async throws -> (links: [String], pages: Int, cut: Int) {
                var links: [String] = [], pages = 0, cut = 0
                var next: String? = "/search?q=\(formEncode(q))"
                while let path = next, pages < 500 {
                    let r = try await h.get(path)
                    #expect(r.status == 200)
                    links += ViewerHarness.links(r.body).filter { $0.contains("#m") }
                    if r.body.contains("older messages are not searched yet") { cut += 1 }
                    next = ViewerHarness.nextLink(r.body)
                    pages += 1
                }
                return (links, pages, cut)
            }
            // With no time to spare every page stops after its first window and goes on from
            // there: nothing is skipped or shown twice.
            let expected = try oracle("riverside")
            #expect(expected.count > 20)
            let found = try await all("Riverside")
            #expect(found.links == expected)
            #expect(found.cut > 0 && found.pages > 2)
            // A prefix is the OR of its indexed words: the same messages as FTS5's own prefix
            // query, accents and case aside.
            #expect(try await all("RIVÉR*").links == (try oracle("\"river\"*")))
            #expect(try await all("Libr* riv*").links == (try oracle("\"libr\"* \"riv\"*")))
            #expect(try await all("zzqqxx*").links.isEmpty)
        }
        // An edited message's new words reach the words list on the indexer's next round.
        try await w.writer.write { db in
            try db.execute(sql: "UPDATE messages SET content = 'a quokkaberry pie' WHERE id = (SELECT min(id) FROM messages)")
        }
        #expect(try w.int("SELECT count(*) FROM message_search_pending") == 1)
        _ = try SearchIndexer(writer: w.writer).catchUp()
        #expect(try w.int("SELECT count(*) FROM message_search_pending") == 0)
        try await ViewerHarness.with(w) { h in
            let r = try await h.get("/search?q=quokkab*")
            #expect(ViewerHarness.links(r.body).filter { $0.contains("#m") }.count == 1)
        }
    }

    @Test func searchTextBecomesASafeFTSQuery() {
        #expect(SearchPage.ftsQuery("hello world") == "\"hello\" AND \"world\"")
        #expect(SearchPage.ftsQuery("\"lost card\" refund*") == "\"lost card\" AND \"refund\"*")
        #expect(SearchPage.ftsQuery("say \"hi") == "\"say\" AND \"hi\"")
        #expect(SearchPage.ftsQuery("a\"b") == "\"ab\"")
        #expect(SearchPage.ftsQuery("  * - ( ") == nil)
        #expect(SearchPage.ftsQuery("") == nil)
        let terms = SearchPage.terms("refund* \"lost card\" fee*  x*")
        #expect(terms == [.prefix("refund"), .phrase("lost card"), .prefix("fee"), .prefix("x")])
        #expect(SearchPage.ftsQuery(terms, expansions: ["refund": ["refund", "refunds"], "fee": ["fees"], "x": []])
                == "(\"refund\" OR \"refunds\") AND \"lost card\" AND \"fees\" AND \"\u{E002}\"")
    }
}
