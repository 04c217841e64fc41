import AsyncHTTPClient
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import RolloutKit
import RolloutViewer
import Testing

/// A viewer serving a warehouse on a free loopback port, and an HTTP client for it (real
/// HTTP over a socket: the tests see exactly what a browser would).
final class ViewerHarness: Sendable {
    let port: Int
    let task: Task<Void, any Error>
    let client: HTTPClient

    struct Reply: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: String
    }

    static func start(_ w: Warehouse, indexSearch: Bool = false, tune: (inout ViewerOptions) -> Void = { _ in }) async throws -> ViewerHarness {
        var options = ViewerOptions()
        options.port = 0
        options.indexSearch = indexSearch
        tune(&options)
        let viewer = Viewer(warehouse: w, options: options, log: { _ in })
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let task = Task {
            try await viewer.run { _, port in continuation.yield(port) }
        }
        var port: Int?
        for await p in ports {
            port = p
            break
        }
        var config = HTTPClient.Configuration()
        config.redirectConfiguration = .disallow
        return ViewerHarness(port: try #require(port), task: task, client: HTTPClient(eventLoopGroupProvider: .singleton, configuration: config))
    }

    /// Runs `body` against a viewer of `w` and stops the viewer however `body` ends.
    static func with<T: Sendable>(_ w: Warehouse, indexSearch: Bool = false, tune: (inout ViewerOptions) -> Void = { _ in },
                                  _ body: (ViewerHarness) async throws -> T) async throws -> T {
        let h = try await start(w, indexSearch: indexSearch, tune: tune)
        do {
            let result = try await body(h)
            await h.stop()
            return result
        } catch {
            await h.stop()
            throw error
        }
    }

    private init(port: Int, task: Task<Void, any Error>, client: HTTPClient) {
        self.port = port
        self.task = task
        self.client = client
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        for (k, v) in headers { request.headers.replaceOrAdd(name: k, value: v) }
        return try await send(request)
    }

    /// Posts a form the way a browser does (same-origin Origin header unless `headers` say otherwise).
    func post(_ path: String, form: [(String, String)], headers: [(String, String)] = [("Origin", "")]) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        for (k, v) in headers {
            request.headers.replaceOrAdd(name: k, value: v.isEmpty && k == "Origin" ? "http://127.0.0.1:\(port)" : v)
        }
        let body = form.map { k, v in "\(formEncode(k))=\(formEncode(v))" }.joined(separator: "&")
        request.body = .bytes(ByteBuffer(string: body))
        return try await send(request)
    }

    private func send(_ request: HTTPClientRequest) async throws -> Reply {
        let response = try await client.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
    }

    func stop() async {
        task.cancel()
        _ = await task.result
        try? await client.shutdown()
    }

    /// The review form token in a trajectory page.
    static func formToken(_ page: String) -> String? {
        guard let r = page.range(of: "name=\"token\" value=\"") else { return nil }
        return String(page[r.upperBound...].prefix { $0 != "\"" })
    }

    /// The pager's "Next »" link of a page, unescaped.
    static func nextLink(_ page: String) -> String? {
        guard let r = page.range(of: "rel=\"next\" href=\"") else { return nil }
        return page[r.upperBound...].prefix { $0 != "\"" }.replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Every href of a page, unescaped (&amp; → &).
    static func links(_ page: String) -> [String] {
        var out: [String] = []
        var rest = page[...]
        while let r = rest.range(of: "href=\"") {
            let value = rest[r.upperBound...].prefix { $0 != "\"" }
            out.append(value.replacingOccurrences(of: "&amp;", with: "&"))
            rest = rest[r.upperBound...]
        }
        return out
    }
}

func formEncode(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
}

enum ViewerFixtures {
    /// A warehouse file made by the real `rollout quickstart` (the engine against the bundled
    /// MCP server and mock models, then graded): 51 rollouts with messages, tool calls, LLM calls.
    static func quickstart(in dir: TempDir) throws -> Warehouse {
        let (status, _, err) = try EvalFixtures.run(CLITests.binary, ["quickstart", "--db", dir.file("rollout.db"), "--examples", dir.file("example")],
                                                    in: dir.url)
        #expect(status == 0, "quickstart failed: \(err)")
        return try Warehouse.open(path: dir.file("rollout.db"), create: false)
    }

    /// Adds a run whose every text field is hostile markup, with one rollout of four messages.
    /// Returns the rollout's id.
    @discardableResult
    static func addHostileRun(_ w: Warehouse) throws -> Int64 {
        let now = Timestamp.now()
        return try w.writer.write { db in
            try db.execute(sql: "INSERT INTO ingests(kind, source, started_at) VALUES ('trajectories', '<script>src</script>', ?)", arguments: [now])
            let ingest = db.lastInsertedRowID
            try db.execute(sql: "INSERT INTO datasets(name, kind, created_at, updated_at) VALUES ('<script>ds</script>', 'dialogue', ?, ?)",
                           arguments: [now, now])
            let ds = db.lastInsertedRowID
            try db.execute(sql: "INSERT INTO domains(key, size, created_at, updated_at) VALUES ('<script>dom</script>', 1, ?, ?)", arguments: [now, now])
            let domain = db.lastInsertedRowID
            try db.execute(sql: """
                INSERT INTO tasks(dataset_id, external_id, domain_id, opening_text, record, content_hash, created_ingest, changed_ingest, seen_ingest)
                VALUES (?, '"><script>alert("task")</script>', ?, '<script>alert("opening")</script>', '{}', 0, ?, ?, ?)
                """, arguments: [ds, domain, ingest, ingest, ingest])
            let task = db.lastInsertedRowID
            try db.execute(sql: """
                INSERT INTO runs(name, mode, agent_model, config, status, created_at) VALUES ('<img src=x onerror=alert(1)>', 'imported',
                  '<script>model</script>', '{"note":"</pre><script>alert(1)</script>"}', 'completed', ?)
                """, arguments: [now])
            let run = db.lastInsertedRowID
            try db.execute(sql: """
                INSERT INTO rollouts(run_id, task_id, sample, status, stop_reason, prediction, error, finished_at)
                VALUES (?, ?, 0, 'completed', '<script>stop</script>', '<script>alert("prediction")</script>', '<b>error</b>', ?)
                """, arguments: [run, task, now])
            let rollout = db.lastInsertedRowID
            let messages: [(String, String?, String?)] = [
                ("system", "<script>alert('policy')</script>", nil),
                ("user", "Please <script>alert('xss')</script> help", nil),
                ("assistant", "<iframe src=javascript:alert(1)>", "thinking <script>alert('reasoning')</script>"),
                ("tool", "{\"html\": \"<script>alert('result')</script>\"}", nil),
            ]
            for (i, (role, content, reasoning)) in messages.enumerated() {
                try db.execute(sql: """
                    INSERT INTO messages(rollout_id, idx, role, content, reasoning_content, tool_call_id) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [rollout, i, role, content, reasoning, role == "tool" ? "call\"><script>1</script>" : nil])
            }
            let assistant = try Int64.fetchOne(db, sql: "SELECT id FROM messages WHERE rollout_id = ? AND idx = 2", arguments: [rollout])!
            try db.execute(sql: """
                INSERT INTO tool_calls(rollout_id, message_id, idx, call_id, name, arguments, result_message_id, result)
                VALUES (?, ?, 0, 'call"><script>1</script>', '<script>tool</script>', '{"q": "</pre><script>alert(2)</script>"}', ?, 'x')
                """, arguments: [rollout, assistant, assistant + 1])
            try db.execute(sql: """
                INSERT INTO graders(name, version, kind, definition, created_at) VALUES ('<script>g</script>', 1, 'legacy', '{}', ?)
                """, arguments: [now])
            try db.execute(sql: """
                INSERT INTO grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
                VALUES (?, '<script>g</script>', 1, 0, 0, '<script>alert("explanation")</script>', ?)
                """, arguments: [rollout, now])
            try db.execute(sql: """
                INSERT INTO llm_calls(run_id, rollout_id, role, model, http_status, error, created_at)
                VALUES (?, ?, 'agent', '<script>m</script>', 500, '<script>alert("error")</script>', ?)
                """, arguments: [run, rollout, now])
            return rollout
        }
    }

    /// run_outcomes and run_usage recomputed from the rows they count; empty when they agree.
    static func counterDrift(_ w: Warehouse) throws -> [String] {
        try w.writer.read { db in
            var drift: [String] = []
            let outcomes = try Row.fetchAll(db, sql: """
                SELECT coalesce(a.run_id, b.run_id) AS run_id, coalesce(a.status, b.status) AS status, coalesce(a.stop_reason, b.s) AS stop, a.n AS kept, b.n AS actual
                FROM run_outcomes a FULL JOIN
                     (SELECT run_id, status, coalesce(stop_reason, '') AS s, count(*) AS n FROM latest_rollouts GROUP BY 1, 2, 3) b
                  ON a.run_id = b.run_id AND a.status = b.status AND a.stop_reason = b.s
                WHERE a.n IS NOT b.n
                """)
            drift += outcomes.map { "run_outcomes \($0)" }
            let usage = try Row.fetchAll(db, sql: """
                WITH actual AS (
                    SELECT run_id, role, model, count(*) AS calls,
                           sum(error IS NOT NULL OR coalesce(http_status, 200) NOT BETWEEN 200 AND 299) AS failed,
                           sum(coalesce(prompt_tokens, 0)) AS p, sum(coalesce(completion_tokens, 0)) AS c, sum(coalesce(cost_usd, 0)) AS cost
                    FROM llm_calls WHERE run_id IS NOT NULL GROUP BY 1, 2, 3)
                SELECT * FROM run_usage u FULL JOIN actual a ON a.run_id = u.run_id AND a.role = u.role AND a.model = u.model
                WHERE u.calls IS NOT a.calls OR u.failed IS NOT a.failed OR u.prompt_tokens IS NOT a.p OR u.completion_tokens IS NOT a.c
                   OR abs(coalesce(u.cost_usd, -1) - coalesce(a.cost, -1)) > 1e-9
                """)
            drift += usage.map { "run_usage \($0)" }
            return drift
        }
    }
}
