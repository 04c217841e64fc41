import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RolloutKit

/// How `rollout serve` listens.
public struct ViewerOptions: Sendable {
    /// The address to bind; loopback unless the user says otherwise.
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port = 8765
    /// Bring the message search index up to date in the background.
    public var indexSearch = true
    /// Log each request on stderr.
    public var verbose = false
    /// How long a search page looks for matches before it offers to go on from where it
    /// stopped, in milliseconds, and the first window of message ids it looks at.
    public var searchBudgetMs = 100.0
    public var searchFirstWindow: Int64 = 65_536

    public init() {}
}

/// The web viewer: server-side rendered pages over the warehouse. It reads the warehouse in one
/// read transaction per page and writes only `reviews` rows and the derived search index.
public final class Viewer: Sendable {
    let warehouse: Warehouse
    let options: ViewerOptions
    /// Carried by every review form and checked on submit, so another site cannot post reviews
    /// through a reviewer's browser. New at each start.
    let formToken: String
    let indexer: SearchIndexer
    let databaseLabel: String
    let log: @Sendable (String) -> Void

    public init(warehouse: Warehouse, options: ViewerOptions = ViewerOptions(),
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.warehouse = warehouse
        self.options = options
        var random = SystemRandomNumberGenerator()
        self.formToken = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &random)) }.joined()
        self.indexer = SearchIndexer(writer: warehouse.writer)
        self.databaseLabel = warehouse.path.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? ":memory:"
        self.log = log
    }

    /// Serves until the task is cancelled or, with `handleSignals`, until SIGINT / SIGTERM.
    /// `onStart` is called with the bound host and port once the server accepts connections.
    public func run(handleSignals: Bool = false, onStart: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) async throws {
        // Hummingbird's own log: quiet unless --verbose (its "error" on a cancelled shutdown is
        // not one; our handlers turn every failure into a page and bind errors are thrown).
        var logger = Logger(label: "rollout.serve")
        logger.logLevel = options.verbose ? .info : .critical
        let router = Router(context: BasicRequestContext.self)
        router.middlewares.add(Guard(viewer: self))
        router.get("/static/viewer.css") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/css; charset=utf-8"
            headers[.cacheControl] = "max-age=3600"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: Layout.css)))
        }
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/") { request, _ in await self.page(request) { try RunPages.list($0) } }
        router.get("/runs/:run") { request, context in
            let id = try Self.id(context, "run")
            return await self.page(request) { try RunPages.overview($0, runID: id) }
        }
        router.get("/runs/:run/tasks") { request, context in
            let id = try Self.id(context, "run")
            return await self.page(request) { try ListPages.tasks($0, runID: id) }
        }
        router.get("/runs/:run/rollouts") { request, context in
            let id = try Self.id(context, "run")
            return await self.page(request) { try ListPages.rollouts($0, runID: id) }
        }
        router.get("/rollouts/:id") { request, context in
            let id = try Self.id(context, "id")
            return await self.page(request) { try TrajectoryPage.render($0, rolloutID: id) }
        }
        router.post("/rollouts/:id/review") { request, context in
            let id = try Self.id(context, "id")
            return await self.review(request, rolloutID: id)
        }
        router.get("/search") { request, _ in
            let progress = self.indexer.progress
            return await self.page(request) { try SearchPage.render($0, index: progress, budgetMs: self.options.searchBudgetMs, firstWindow: self.options.searchFirstWindow) }
        }

        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: nil),
            onServerRunning: { channel in await onStart(self.options.host, channel.localAddress?.port ?? self.options.port) },
            logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            if options.indexSearch {
                group.addTask { await self.indexer.run(log: self.log) }
            }
            group.addTask {
                if handleSignals { try await app.runService() } else { try await app.run() }
            }
            // The server ends (a signal, a bind error, cancellation); the indexer goes with it.
            do {
                try await group.next()
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    /// An integer path parameter, or a 404 (ids are integers; anything else names nothing).
    static func id(_ context: BasicRequestContext, _ name: String) throws -> Int64 {
        guard let v = context.parameters.get(name, as: Int64.self) else {
            throw HTTPError(.notFound)
        }
        return v
    }

    /// Renders a page in one read transaction; errors become error pages.
    func page(_ request: Request, _ render: @escaping @Sendable (PageRequest) throws -> Page) async -> Response {
        let start = ContinuousClock.now
        let query = FormValues(request.uri.query)
        let reviewer = request.cookies["reviewer"].map { FormValues.decode(Substring($0.value)) }
        let token = formToken
        let page: Page
        do {
            page = try await warehouse.writer.read { db in
                try render(PageRequest(db: db, query: query, formToken: token, reviewer: reviewer))
            }
        } catch let e as PageError {
            page = Self.errorPage(e)
        } catch {
            page = internalError(error, request: request)
        }
        return html(page, start: start)
    }

    /// The page for a failure that is not the request's fault. Its text can hold SQL, paths
    /// and data (a database error quotes its statement), so it goes to the server's log, and
    /// the page says only that the page failed.
    func internalError(_ error: any Error, request: Request) -> Page {
        log(VisibleText.terminal("serve: \(request.method) \(request.uri.path) failed: \(error)"))
        return Self.errorPage(PageError(500, "this page could not be shown because of an error inside the viewer; the terminal running `rollout serve` has the details"))
    }

    static func errorPage(_ e: PageError) -> Page {
        let title = e.status == 404 ? "Not found" : e.status == 400 ? "Bad request" : e.status == 403 ? "Forbidden" : "Error"
        return Page(status: e.status, title: title, body: "<h1>\(title)</h1><p class=\"errorbox\">\(e.message)</p><p><a href=\"/\">Runs</a></p>")
    }

    func html(_ page: Page, start: ContinuousClock.Instant) -> Response {
        let ms = start.millisecondsSince
        let text = Layout.document(page, database: databaseLabel, footer: "rendered in \(Fmt.fixed(ms, 1)) ms")
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("Server-Timing")!] = "render;dur=\(Fmt.fixed(ms, 2))"
        return Response(status: HTTPResponse.Status(code: page.status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// `POST /rollouts/{id}/review`: a verdict (accepted / rejected), an optional note and
    /// reviewer name, and the form token. Answers 303 back to the trajectory.
    func review(_ request: Request, rolloutID: Int64) async -> Response {
        let start = ContinuousClock.now
        var request = request
        let form: FormValues
        do {
            let body = try await request.collectBody(upTo: 256 * 1024)
            form = FormValues(String(buffer: body))
        } catch {
            return html(Self.errorPage(PageError(413, "the review form is too large (256 KiB at most)")), start: start)
        }
        guard let token = form.raw("token"), Self.sameBytes(token, formToken) else {
            return html(Self.errorPage(PageError(403, "the form is from an earlier start of the viewer (or from another site); reload the page and submit again")), start: start)
        }
        guard let verdict = form["verdict"], verdict == "accepted" || verdict == "rejected" else {
            return html(Self.errorPage(PageError(400, "verdict must be accepted or rejected")), start: start)
        }
        let note = form.raw("note").flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        let reviewer = form["reviewer"]
        do {
            try await warehouse.writer.write { db in
                guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM rollouts WHERE id = ?)", arguments: [rolloutID]) == true else {
                    throw PageError(404, "no rollout with id \(rolloutID)")
                }
                try db.execute(sql: "INSERT INTO reviews(rollout_id, verdict, note, reviewer, created_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [rolloutID, verdict, note, reviewer, Timestamp.now()])
            }
        } catch let e as PageError {
            return html(Self.errorPage(e), start: start)
        } catch {
            return html(internalError(error, request: request), start: start)
        }
        var headers = HTTPFields()
        headers[.location] = Link("/rollouts/\(rolloutID)", [("reviewed", verdict)]).href + "#review"
        if let reviewer {
            headers[.setCookie] = "reviewer=\(percentEncode(reviewer)); Path=/; Max-Age=31536000; SameSite=Strict; HttpOnly"
        }
        return Response(status: .seeOther, headers: headers)
    }

    /// Compares two strings in time that does not depend on where they differ.
    static func sameBytes(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// The name of a Host header that is exactly `name` or `name:port` (`[v6]` or `[v6]:port`
    /// for IPv6), port all digits; nil for anything else (`127.0.0.1:1@evil.com`, spaces,
    /// userinfo, paths), which no browser sends for a real address.
    static func hostName(_ host: String) -> String? {
        var name: Substring, rest: Substring
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            name = host[host.index(after: host.startIndex)..<close]
            rest = host[host.index(after: close)...]
        } else if let colon = host.firstIndex(of: ":") {
            name = host[..<colon]
            rest = host[colon...]
        } else {
            name = Substring(host)
            rest = ""
        }
        if !rest.isEmpty {
            let port = rest.dropFirst()
            guard rest.first == ":", !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        }
        let allowed: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":") }
        guard !name.isEmpty, name.allSatisfy(allowed) else { return nil }
        // A colon belongs only inside brackets.
        if !host.hasPrefix("["), name.contains(":") { return nil }
        return name.lowercased()
    }

    /// Whether `host` (a Host header) names this machine's loopback interface.
    static func isLoopbackName(_ host: String) -> Bool {
        guard let name = hostName(host) else { return false }
        return ["127.0.0.1", "localhost", "::1"].contains(name)
    }

    var boundToLoopback: Bool { Self.isLoopbackName(options.host.contains(":") ? "[\(options.host)]" : options.host) }
}

/// Every request passes here: a server on loopback answers only requests addressed to
/// loopback (a page of another site that resolves its own name to 127.0.0.1 cannot read it),
/// form posts from other origins are refused, and every answer carries headers that keep the
/// pages from running scripts or being framed. Unknown paths get an HTML 404.
struct Guard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let viewer: Viewer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        if request.head.authority.flatMap(Viewer.hostName) == nil {
            // HTTP/1.1 requires a Host; without one (or with one that is not a plain name and
            // port) the check below could not be made, so nothing is answered.
            response = viewer.html(Viewer.errorPage(PageError(400, "the request has no valid Host header (expected a name and an optional port, such as 127.0.0.1:8765)")), start: start)
        } else if viewer.boundToLoopback, let host = request.head.authority, !Viewer.isLoopbackName(host) {
            response = viewer.html(Viewer.errorPage(PageError(403, "this viewer answers requests for 127.0.0.1 or localhost only (start it with --host to serve other names)")), start: start)
        } else if request.method == .post, let origin = request.headers[.origin],
                  origin != "http://\(request.head.authority ?? "")" {
            response = viewer.html(Viewer.errorPage(PageError(403, "a form from another origin (\(origin)) cannot post here")), start: start)
        } else {
            do {
                response = try await next(request, context)
            } catch let error as HTTPError where error.status == .notFound {
                response = viewer.html(Viewer.errorPage(PageError(404, "no page at \(request.uri.path)")), start: start)
            }
        }
        response.headers[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        if viewer.options.verbose {
            viewer.log(VisibleText.terminal("\(request.method) \(request.uri) \(response.status.code) \(Fmt.fixed(start.millisecondsSince, 1)) ms"))
        }
        return response
    }
}
