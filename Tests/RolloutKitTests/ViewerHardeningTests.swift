import Foundation
import GRDB
import RolloutKit
@testable import RolloutViewer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The viewer against hostile requests and hostile data: oversized searches, forged Host
/// headers, failures inside a page, and text that would reorder or hide itself.
@Suite("Viewer hardening")
struct ViewerHardeningTests {
    /// Words that must never reach a page: SQL and the viewer's internals.
    static let internals = ["SELECT ", "FROM ", "message_search", "MATCH", "SQLite", "DatabaseError", "GRDB", "/.build/", "Sources/"]

    /// Sends `request` as is over a socket to 127.0.0.1:`port` and returns the whole answer
    /// (for requests a real HTTP client will not make, such as one without a Host).
    /// Sends `request` over a plain socket on a thread of its own: the blocking reads must not
    /// hold one of the few cooperative threads the viewer under test needs to answer.
    static func raw(_ request: String, port: Int) async throws -> String {
        try await withCheckedThrowingContinuation { (k: CheckedContinuation<String, any Error>) in
            Thread { k.resume(with: Result { try rawBlocking(request, port: port) }) }.start()
        }
    }

    static func rawBlocking(_ request: String, port: Int) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIFailure("socket() failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CLIFailure("connect() failed") }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    struct CLIFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    @Test func aThousandWordSearchIsABadRequestWithAPlainMessage() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        _ = try SearchIndexer(writer: w.writer).catchUp()
        try await ViewerHarness.with(w) { h in
            let words = (1...1000).map { "word\($0)" }.joined(separator: " ")
            let r = try await h.get("/search?q=\(formEncode(words))")
            #expect(r.status == 400)
            #expect(r.body.contains("the search text is 7892 characters long; at most 1000 are searched"))
            for word in Self.internals { #expect(!r.body.contains(word), "\(word)") }
            // Many short words within the length: the number of terms is what is refused.
            for q in [(1...100).map { "w\($0)" }.joined(separator: " "), (1...40).map { "w\($0)*" }.joined(separator: " ")] {
                let reply = try await h.get("/search?q=\(formEncode(q))")
                #expect(reply.status == 400)
                #expect(reply.body.contains("at most 16 are searched together"), "\(reply.body.prefix(300))")
                for word in Self.internals { #expect(!reply.body.contains(word), "\(word)") }
            }
            let long = String(repeating: "x", count: 5000)
            let longReply = try await h.get("/search?q=\(long)")
            #expect(longReply.status == 400)
            #expect(longReply.body.contains("at most 1000"))
            // Sixteen words are still searched.
            let sixteen = (1...16).map { "word\($0)" }.joined(separator: " ")
            #expect(try await h.get("/search?q=\(formEncode(sixteen))").status == 200)
        }
    }

    @Test func anErrorInsideAPageShowsNoSQL() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in
            #expect(try await h.get("/rollouts/1").status == 200)
            // A table a page reads goes away under it (as a damaged or foreign file would).
            try await w.writer.write { db in try db.execute(sql: "ALTER TABLE reviews RENAME TO reviews_gone") }
            let r = try await h.get("/rollouts/1")
            #expect(r.status == 500)
            #expect(r.body.contains("could not be shown because of an error inside the viewer"))
            for word in Self.internals + ["reviews", "no such table"] { #expect(!r.body.contains(word), "\(word)") }
        }
    }

    @Test func hostHeadersThatAreNotANameAndPortAreRefused() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await ViewerHarness.with(w) { h in
            for host in ["127.0.0.1:1@evil.com", "127.0.0.1:\(h.port)@evil.com", "localhost:80/x", "127.0.0.1 evil.com", "127.0.0.1:", ":\(h.port)"] {
                let r = try await h.get("/", headers: [("Host", host)])
                #expect(r.status == 400 || r.status == 403, "\(host): \(r.status)")
                #expect(!r.body.contains("quickstart"), "\(host)")
            }
            let noHost = try await Self.raw("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", port: h.port)
            #expect(noHost.hasPrefix("HTTP/1.1 400"), "\(noHost.prefix(80))")
            #expect(noHost.contains("no valid Host header"))
            #expect(!noHost.contains("quickstart"))
            let withHost = try await Self.raw("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(h.port)\r\nConnection: close\r\n\r\n", port: h.port)
            #expect(withHost.hasPrefix("HTTP/1.1 200"), "\(withHost.prefix(80))")
        }
        #expect(Viewer.hostName("127.0.0.1:1@evil.com") == nil)
        #expect(Viewer.hostName("[::1]:8765") == "::1")
        #expect(Viewer.hostName("Example.COM:80") == "example.com")
        #expect(Viewer.hostName("::1") == nil, "IPv6 only in brackets")
    }

    /// Bidi overrides and isolates, C0 controls, DEL and C1 controls.
    static let hostileText = "abc\u{202E}gpj.exe\u{202C} \u{202D}x\u{2066}y\u{2067}\u{2068}\u{2069} \u{1B}[31mred\u{1B}[0m \u{07}bell \u{7F}del \u{85}nel \u{9B}csi"

    @Test func controlAndBidiCharactersFromDataAreShownAsMarkers() async throws {
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        try await w.writer.write { db in
            try db.execute(sql: "UPDATE messages SET content = ? WHERE rollout_id = 1 AND idx = 1", arguments: [Self.hostileText])
            try db.execute(sql: "UPDATE runs SET name = ? WHERE id = 1", arguments: ["quick\u{202E}trats"])
        }
        try await ViewerHarness.with(w) { h in
            for path in ["/", "/runs/1", "/rollouts/1"] {
                let r = try await h.get(path)
                #expect(r.status == 200)
                for c in ["\u{202E}", "\u{202D}", "\u{202C}", "\u{2066}", "\u{2067}", "\u{2068}", "\u{2069}", "\u{1B}", "\u{07}", "\u{7F}", "\u{85}", "\u{9B}"] {
                    #expect(!r.body.unicodeScalars.contains(c.unicodeScalars.first!), "\(path) holds U+\(String(c.unicodeScalars.first!.value, radix: 16))")
                }
                #expect(r.body.contains("quick&lt;U+202E&gt;trats"), "\(path)")
            }
            let page = try await h.get("/rollouts/1").body
            for marker in ["&lt;U+202E&gt;gpj.exe&lt;U+202C&gt;", "&lt;U+001B&gt;[31mred", "&lt;U+0007&gt;bell",
                           "&lt;U+007F&gt;del", "&lt;U+0085&gt;nel", "&lt;U+009B&gt;csi", "&lt;U+2066&gt;y"] {
                #expect(page.contains(marker), "\(marker)")
            }
        }
        // Line breaks and tabs are kept; ordinary non-ASCII text is untouched.
        #expect(escapeHTML("a\nb\tc\r\nd — é ’ “x”") == "a\nb\tc\r\nd — é ’ “x”")
        #expect(escapeHTML("<\u{202E}>") == "&lt;&lt;U+202E&gt;&gt;")
    }
}

/// What the CLI prints to a terminal: data and error messages with escapes shown, not obeyed.
@Suite("Terminal output of hostile text")
struct TerminalTextTests {
    @Test func visibleTextEscapesControlsAndBidi() {
        #expect(VisibleText.terminal("\u{1B}[2J\u{1B}]0;title\u{07}") == "\\e[2J\\e]0;title\\a")
        #expect(VisibleText.terminal("a\u{202E}b\u{2066}c") == "a<U+202E>b<U+2066>c")
        #expect(VisibleText.terminal("x\u{0}y\u{7F}z\u{9B}") == "x\\u{0}y\\u{7F}z\\u{9B}")
        #expect(VisibleText.terminal("line\nnext\ttab — é") == "line\nnext\ttab — é")
        #expect(VisibleText.terminal("over\rwrite") == "over\\rwrite")
        // The byte scan answers exactly: ordinary punctuation near the bidi controls is plain.
        #expect(!VisibleText.mayNeedMarker("— … ’ “ ” é ü ‐ \u{2065} \u{202F} \u{A0}"))
        for c in ["\u{202A}", "\u{202E}", "\u{2066}", "\u{2069}", "\u{80}", "\u{9F}", "\u{1F}", "\u{7F}", "\r"] {
            #expect(VisibleText.mayNeedMarker("a" + c + "b"), "\(c.unicodeScalars.first!.value)")
        }
    }

    @Test func queryTablesAndErrorsShowEscapesAsText() throws {
        let dir = try TempDir()
        _ = try Warehouse.open(path: dir.file("w.db"), create: true)
        try dir.write("hostile.sql", "SELECT char(27) || '[31mred' AS a, char(8238) || 'evil' AS b, 'bell' || char(7) AS c;\n")
        let table = try EvalFixtures.run(CLITests.binary, ["query", "--db", "w.db", "hostile.sql"], in: dir.url)
        #expect(table.0 == 0, "\(table.2)")
        #expect(table.1.contains("\\e[31mred"))
        #expect(table.1.contains("<U+202E>evil"))
        #expect(table.1.contains("bell\\a"))
        #expect(!table.1.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x202E })

        let error = try EvalFixtures.run(CLITests.binary, ["grade", "--db", "w.db", "--run", "\u{1B}]0;pwned\u{07}\u{202E}x", "--grader", "reward"], in: dir.url)
        #expect(error.0 == 1)
        #expect(error.2.contains("\\e]0;pwned\\a<U+202E>x"), "\(error.2)")
        #expect(!error.2.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x202E })
    }
}
