import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The tools of the bundled example domains (Library, CityTransit) as a small deterministic
/// MCP server over stdio (`rollout mcp-server example`), backed by an in-memory fixture world
/// that matches the example queries.
///
/// Tool names, descriptions and argument schemas come from the bundled tool lists, so they
/// cannot drift from the dataset. State is kept per session: each distinct
/// `params._meta.sessionId` gets its own copy of the world (calls without one share a default
/// session), so a renewal in one dialogue is invisible to every other.
///
/// Errors follow the mcp 2.x servers: an unknown tool and any request before `initialize` are
/// JSON-RPC errors −32602; invalid or missing arguments and refused operations are results
/// with `isError: true` and a message saying what to do instead.
public enum ExampleToolServer {
    /// The domains it can serve, in tool-list order.
    public static let domains = ["Library", "CityTransit"]

    /// The bundled tool list of a domain.
    public static func toolListPath(_ domain: String) -> String {
        "examples/rollout-layout/single_domain/tool_lists/\(domain).json"
    }

    /// Serves requests from `input` until it closes, one JSON line per response on `output`.
    /// Requests are answered in order, each chunk read from the pipe answered with one write.
    public static func serve(domains: [String], pageSize: Int? = nil,
                             input: Int32 = STDIN_FILENO, output: Int32 = STDOUT_FILENO) throws {
        var handler = try Handler(domains: domains, pageSize: pageSize)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var carry: [UInt8] = []
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ServerError("cannot read stdin: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                var start = 0
                while let newline = chunk[start...].firstIndex(of: 0x0A) {
                    if carry.isEmpty {
                        handler.respond(line: UnsafeRawBufferPointer(rebasing: chunk[start..<newline]), into: &out)
                    } else {
                        carry.append(contentsOf: chunk[start..<newline])
                        carry.withUnsafeBytes { handler.respond(line: $0, into: &out) }
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = newline + 1
                }
                if start < n { carry.append(contentsOf: chunk[start..<n]) }
            }
            if !out.isEmpty {
                guard writeAll(output, out) else { return }  // the client went away
                out.removeAll(keepingCapacity: true)
            }
        }
        if !carry.isEmpty {
            carry.withUnsafeBytes { handler.respond(line: $0, into: &out) }
            _ = writeAll(output, out)
        }
    }

    struct ServerError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The protocol state machine: one JSON-RPC message in, at most one out. Usable in-process.
    public struct Handler: Sendable {
        struct Tool: Sendable {
            var domain: String
            var parameters: JSONValue
        }

        private let tools: [String: Tool]
        private let listed: [JSONValue]
        private let pageSize: Int?
        private var initialized = false
        private var sessions: [String: World] = [:]

        public init(domains: [String], pageSize: Int? = nil) throws {
            guard !domains.isEmpty else { throw ServerError("no domain to serve; choose from \(ExampleToolServer.domains.joined(separator: ", "))") }
            var tools: [String: Tool] = [:]
            var listed: [JSONValue] = []
            for domain in ExampleToolServer.domains where domains.contains(domain) {
                guard let text = BundledFiles.text(toolListPath(domain)), case .array(let items) = try JSONParser.parse(text) else {
                    throw ServerError("the bundled tool list of \(domain) is missing or not a JSON array")
                }
                for item in items {
                    guard let function = item["function"], let name = function["name"]?.stringValue else { continue }
                    let parameters = function["parameters"] ?? .object(["type": "object", "properties": .object([:])])
                    var tool: JSONObject = ["name": .string(name)]
                    if let d = function["description"] { tool["description"] = d }
                    tool["inputSchema"] = parameters
                    listed.append(.object(tool))
                    tools[name] = Tool(domain: domain, parameters: parameters)
                }
            }
            if let unknown = domains.first(where: { !ExampleToolServer.domains.contains($0) }) {
                throw ServerError("unknown domain \"\(unknown)\"; the example server has \(ExampleToolServer.domains.joined(separator: ", "))")
            }
            if let pageSize, pageSize < 1 { throw ServerError("page size must be at least 1") }
            self.tools = tools
            self.listed = listed
            self.pageSize = pageSize
        }

        /// Answers one line; blank lines are skipped, unparsable ones get a −32700 error.
        mutating func respond(line: UnsafeRawBufferPointer, into out: inout [UInt8]) {
            var i = 0
            while i < line.count, line[i] == 0x20 || line[i] == 0x09 || line[i] == 0x0D { i += 1 }
            guard i < line.count else { return }
            let reply: JSONValue?
            switch JSONParser.result(line) {
            case .success(let message): reply = respond(to: message)
            case .failure(let e): reply = Self.error(id: .null, -32700, "Parse error: \(e.reason)")
            }
            if let reply {
                JSONWriter.compact.write(reply, into: &out)
                out.append(0x0A)
            }
        }

        /// The reply to one message; nil for notifications and for responses.
        public mutating func respond(to message: JSONValue) -> JSONValue? {
            guard case .object(let m) = message else { return Self.error(id: .null, -32600, "Invalid Request: not an object") }
            guard let method = m["method"]?.stringValue else { return nil }  // a response; we never ask anything
            guard let id = m["id"] else { return nil }  // notifications need no answer
            let params = m["params"]?.objectValue ?? [:]
            switch method {
            case "initialize":
                initialized = true
                let asked = params["protocolVersion"]?.stringValue ?? ""
                let version = MCPClient.supportedProtocolVersions.contains(asked) ? asked : MCPClient.requestedProtocolVersion
                return Self.result(id: id, [
                    "protocolVersion": .string(version),
                    "capabilities": .object(["tools": .object(["listChanged": false])]),
                    "serverInfo": .object(["name": "rollout-example", "version": .string(MCPClient.clientVersion)]),
                ])
            case "ping":
                return Self.result(id: id, [:])
            case "tools/list", "tools/call":
                guard initialized else { return Self.error(id: id, -32602, "Invalid request: send initialize before \(method)") }
                return method == "tools/list" ? list(id: id, params: params) : call(id: id, params: params)
            default:
                return Self.error(id: id, -32601, "Method not found: \(method)")
            }
        }

        private func list(id: JSONValue, params: JSONObject) -> JSONValue {
            guard let pageSize else { return Self.result(id: id, ["tools": .array(listed)]) }
            var start = 0
            if let cursor = params["cursor"] {
                guard let c = cursor.stringValue, let n = Int(c), (0..<listed.count).contains(n) else {
                    return Self.error(id: id, -32602, "Invalid cursor: \(cursor.jsonText)")
                }
                start = n
            }
            let end = min(start + pageSize, listed.count)
            var result: JSONObject = ["tools": .array(Array(listed[start..<end]))]
            if end < listed.count { result["nextCursor"] = .string(String(end)) }
            return Self.result(id: id, result)
        }

        private mutating func call(id: JSONValue, params: JSONObject) -> JSONValue {
            guard let name = params["name"]?.stringValue else { return Self.error(id: id, -32602, "tools/call needs params.name") }
            guard let tool = tools[name] else { return Self.error(id: id, -32602, "Unknown tool: \(name)") }
            let arguments: JSONObject
            switch params["arguments"] {
            case nil, .null?: arguments = [:]
            case .object(let o)?: arguments = o
            case let other?: return Self.error(id: id, -32602, "tools/call: arguments must be an object, found \(other.typeName)")
            }
            let outcome: Outcome
            if let problem = Self.check(arguments, against: tool.parameters, tool: name) {
                outcome = .failure(problem)
            } else {
                let session = params["_meta"]?["sessionId"]?.scalarText ?? ""
                outcome = sessions[session, default: World.initial].run(name, Args(arguments))
            }
            switch outcome {
            case .success(let payload):
                let value = JSONValue.object(payload)
                return Self.result(id: id, [
                    "content": .array([.object(["type": "text", "text": .string(value.jsonText)])]),
                    "structuredContent": value,
                    "isError": false,
                ])
            case .failure(let message):
                return Self.result(id: id, [
                    "content": .array([.object(["type": "text", "text": .string(message)])]),
                    "isError": true,
                ])
            }
        }

        /// Checks arguments against the tool's schema (required keys, types, bounds, unknown
        /// keys); nil when they are fine, else a message for the model.
        static func check(_ arguments: JSONObject, against schema: JSONValue, tool: String) -> String? {
            let properties = schema["properties"]?.objectValue ?? [:]
            let takes = properties.keys.joined(separator: ", ")
            for key in arguments.keys where properties[key] == nil {
                return "\(tool): unknown argument \"\(key)\"; it takes: \(takes)"
            }
            for required in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where arguments[required]?.isNull ?? true {
                let hint = properties[required]?["description"]?.stringValue.map { " (\($0))" } ?? ""
                return "\(tool): missing required argument \"\(required)\"\(hint)"
            }
            for (key, value) in arguments {
                guard let property = properties[key], !value.isNull else { continue }
                switch property["type"]?.stringValue {
                case "string":
                    guard case .string(let s) = value else { return "\(tool): \(key) must be a string, not \(value.typeName)" }
                    if s.trimmingCharacters(in: .whitespaces).isEmpty { return "\(tool): \(key) is empty" }
                case "integer":
                    guard let d = value.doubleValue, d == d.rounded(), abs(d) < 1e15 else {
                        return "\(tool): \(key) must be a whole number, not \(value.jsonText)"
                    }
                    if let low = property["minimum"]?.doubleValue, d < low {
                        return "\(tool): \(key) must be at least \(Int(low)) (got \(Int(d)))"
                    }
                    if let high = property["maximum"]?.doubleValue, d > high {
                        return "\(tool): \(key) must be at most \(Int(high)) (got \(Int(d)))"
                    }
                default: break
                }
            }
            return nil
        }

        static func result(id: JSONValue, _ result: JSONObject) -> JSONValue {
            .object(["jsonrpc": "2.0", "id": id, "result": .object(result)])
        }

        static func error(id: JSONValue, _ code: Int, _ message: String) -> JSONValue {
            .object(["jsonrpc": "2.0", "id": id, "error": .object(["code": JSONValue(code), "message": .string(message)])])
        }
    }
}

// MARK: - The fixture world

extension ExampleToolServer {
    enum Outcome {
        case success(JSONObject)
        case failure(String)
    }

    /// Arguments already checked against the schema.
    struct Args {
        let values: JSONObject
        init(_ values: JSONObject) { self.values = values }
        func string(_ key: String) -> String { values[key]?.stringValue?.trimmingCharacters(in: .whitespaces) ?? "" }
        func optionalString(_ key: String) -> String? { values[key]?.stringValue?.trimmingCharacters(in: .whitespaces) }
        func int(_ key: String) -> Int? { values[key]?.doubleValue.map { Int($0) } }
    }

    /// Days since 1970-01-01, printed as ISO dates.
    struct Day: Comparable, Sendable {
        var n: Int
        init(_ n: Int) { self.n = n }
        init(_ y: Int, _ m: Int, _ d: Int) {
            // Days from civil (proleptic Gregorian), after H. Hinnant's algorithm.
            let y = m <= 2 ? y - 1 : y
            let era = (y >= 0 ? y : y - 399) / 400
            let yoe = y - era * 400
            let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
            n = era * 146_097 + doe - 719_468
        }
        var text: String {
            let z = n + 719_468
            let era = (z >= 0 ? z : z - 146_096) / 146_097
            let doe = z - era * 146_097
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
            let mp = (5 * doy + 2) / 153
            let d = doy - (153 * mp + 2) / 5 + 1
            let m = mp < 10 ? mp + 3 : mp - 9
            let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
            return String(format: "%04d-%02d-%02d", y, m, d)
        }
        static func + (a: Day, days: Int) -> Day { Day(a.n + days) }
        static func < (a: Day, b: Day) -> Bool { a.n < b.n }
    }

    static func euros(_ cents: Int) -> JSONValue {
        .string(String(format: "%d.%02d", cents / 100, cents % 100))
    }

    struct Member: Sendable {
        var name: String
        var since: Day
        var expires: Day
        var finesCents: Int
    }

    struct Book: Sendable {
        var title: String
        var author: String
        var year: Int
        var subjects: [String]
        /// Lowercased words of title, author and subjects, for search.
        var words: Set<String> = []
    }

    struct Loan: Sendable {
        var member: String
        var book: String
        var due: Day
        var renewals: Int
    }

    struct Hold: Sendable {
        var id: String
        var member: String
        var book: String
        var placed: Day
    }

    struct Card: Sendable {
        var balanceCents: Int
        var profile: String
        var blocked: Bool = false
        var replacedBy: String?
    }

    struct Line: Sendable {
        var name: String
        var stops: [String]
        /// Minutes from the first stop.
        var offsets: [Int]
        var first: Int
        var last: Int
        var headway: Int
    }

    /// One session's state. A value: a session that only reads shares storage with the base.
    struct World: Sendable {
        static let today = Day(2025, 3, 10)
        static let maxRenewals = 2
        static let loanDays = 14

        var members: [String: Member]
        var books: [String: Book]
        var bookOrder: [String]
        var loans: [String: Loan]
        var holds: [Hold]
        var nextHold: Int
        var cards: [String: Card]
        var nextCard: Int

        static let initial: World = {
            let members: [String: Member] = [
                "M-1001": Member(name: "Ada Okafor", since: Day(2019, 4, 2), expires: Day(2026, 4, 1), finesCents: 60),
                "M-1002": Member(name: "Ben Tanaka", since: Day(2021, 9, 15), expires: Day(2025, 9, 14), finesCents: 0),
                "M-1003": Member(name: "Chen Wei", since: Day(2016, 1, 20), expires: Day(2027, 1, 19), finesCents: 0),
                "M-1004": Member(name: "Dara Quinn", since: Day(2022, 2, 1), expires: Day(2025, 1, 31), finesCents: 240),
            ]
            let catalog: [(String, Book)] = [
                ("B-210", Book(title: "The Left Hand of Darkness", author: "Ursula K. Le Guin", year: 1969, subjects: ["science fiction", "gender"])),
                ("B-211", Book(title: "The Dispossessed", author: "Ursula K. Le Guin", year: 1974, subjects: ["science fiction", "utopia", "politics"])),
                ("B-212", Book(title: "A Wizard of Earthsea", author: "Ursula K. Le Guin", year: 1968, subjects: ["fantasy", "magic"])),
                ("B-213", Book(title: "The Lathe of Heaven", author: "Ursula K. Le Guin", year: 1971, subjects: ["science fiction", "dreams"])),
                ("B-214", Book(title: "Parable of the Sower", author: "Octavia E. Butler", year: 1993, subjects: ["science fiction", "climate"])),
                ("B-215", Book(title: "Kindred", author: "Octavia E. Butler", year: 1979, subjects: ["science fiction", "time travel", "history"])),
                ("B-216", Book(title: "Everyday Bicycle Repair", author: "Rosa Lindqvist", year: 2016, subjects: ["bicycle repair", "bike maintenance", "cycling"])),
                ("B-217", Book(title: "The Bicycle Wheel Explained", author: "Tomas Herrera", year: 2011, subjects: ["bicycle repair", "wheels", "cycling"])),
                ("B-218", Book(title: "The Overstory", author: "Richard Powers", year: 2018, subjects: ["fiction", "trees", "environment"])),
                ("B-219", Book(title: "Braiding Sweetgrass", author: "Robin Wall Kimmerer", year: 2013, subjects: ["nature", "botany", "plants"])),
            ]
            var books: [String: Book] = [:]
            for (id, var book) in catalog {
                book.words = Set(World.words(([book.title, book.author] + book.subjects).joined(separator: " ")))
                books[id] = book
            }
            let loans: [String: Loan] = [
                "L-501": Loan(member: "M-1001", book: "B-212", due: Day(2025, 3, 14), renewals: 0),
                "L-503": Loan(member: "M-1001", book: "B-215", due: Day(2025, 3, 12), renewals: 2),
                "L-506": Loan(member: "M-1001", book: "B-218", due: Day(2025, 3, 11), renewals: 1),
                "L-502": Loan(member: "M-1002", book: "B-219", due: Day(2025, 3, 13), renewals: 2),
                "L-504": Loan(member: "M-1003", book: "B-214", due: Day(2025, 3, 13), renewals: 0),
                "L-505": Loan(member: "M-1003", book: "B-210", due: Day(2025, 3, 21), renewals: 1),
                "L-507": Loan(member: "M-1003", book: "B-217", due: Day(2025, 3, 18), renewals: 0),
            ]
            let holds = [Hold(id: "H-301", member: "M-1003", book: "B-218", placed: Day(2025, 3, 3))]
            let cards: [String: Card] = [
                "C-7788": Card(balanceCents: 1250, profile: "adult"),
                "C-9001": Card(balanceCents: 2340, profile: "student"),
                "C-4410": Card(balanceCents: 0, profile: "adult", blocked: true, replacedBy: "C-4411"),
                "C-4411": Card(balanceCents: 880, profile: "adult"),
            ]
            return World(members: members, books: books, bookOrder: catalog.map(\.0), loans: loans, holds: holds,
                         nextHold: 302, cards: cards, nextCard: 9101)
        }()

        static let lines: [Line] = [
            Line(name: "Tram 2", stops: ["Central Station", "City Hall", "Riverside Library", "University"],
                 offsets: [0, 4, 9, 15], first: 5 * 60 + 30, last: 23 * 60 + 30, headway: 10),
            Line(name: "Bus 4", stops: ["Oak Street", "Central Station", "Market Square", "Harbour Market"],
                 offsets: [0, 7, 12, 18], first: 6 * 60, last: 22 * 60, headway: 15),
            Line(name: "Ferry F1", stops: ["Harbour Market", "Riverside Library"],
                 offsets: [0, 12], first: 7 * 60, last: 20 * 60, headway: 20),
        ]

        static let stopWords: Set<String> = ["the", "a", "an", "of", "by", "and", "or", "in", "on", "about", "for", "to",
                                             "book", "books", "anything", "any", "is", "there", "with", "some", "title", "author"]

        static func words(_ text: String) -> [String] {
            text.lowercased().split { !($0.isLetter || $0.isNumber) }.map(String.init).filter { $0.count > 1 }
        }

        mutating func run(_ tool: String, _ a: Args) -> Outcome {
            switch tool {
            case "search_catalog": return searchCatalog(query: a.string("query"), limit: a.int("limit") ?? 10)
            case "get_member": return getMember(a.string("member_id"))
            case "list_loans": return listLoans(a.string("member_id"))
            case "renew_loan": return renewLoan(member: a.string("member_id"), loan: a.string("loan_id"))
            case "place_hold": return placeHold(member: a.string("member_id"), book: a.string("book_id"))
            case "get_card": return getCard(a.string("card_id"))
            case "top_up_card": return topUp(a.string("card_id"), amount: a.int("amount") ?? 0)
            case "report_lost_card": return reportLost(a.string("card_id"))
            case "plan_trip": return planTrip(from: a.string("origin"), to: a.string("destination"), after: a.optionalString("depart_after"))
            default: return .failure("\(tool) is not implemented by the example server")
            }
        }

        // MARK: Library

        private func loan(ofBook book: String) -> (id: String, loan: Loan)? {
            loans.first { $0.value.book == book }.map { ($0.key, $0.value) }
        }

        private func bookJSON(_ id: String) -> JSONValue {
            let b = books[id]!
            var o: JSONObject = ["book_id": .string(id), "title": .string(b.title), "author": .string(b.author),
                                 "year": JSONValue(b.year), "subjects": .array(b.subjects.map(JSONValue.string))]
            if let l = loan(ofBook: id) {
                o["status"] = "checked_out"
                o["due_back"] = .string(l.loan.due.text)
            } else {
                o["status"] = "available"
            }
            o["holds"] = JSONValue(holds.filter { $0.book == id }.count)
            return .object(o)
        }

        private func member(_ id: String) -> Result<Member, MemberProblem> {
            guard let m = members[id] else { return .failure(MemberProblem(text: "no member with id \"\(id)\"; member ids look like M-1001 — ask the member for theirs")) }
            return .success(m)
        }

        struct MemberProblem: Error { let text: String }

        private func requireActive(_ id: String, _ m: Member, doing: String) -> String? {
            m.expires < Self.today ? "the membership of \(id) expired on \(m.expires.text); it must be renewed at the desk before \(doing)" : nil
        }

        func searchCatalog(query: String, limit: Int) -> Outcome {
            let terms = Self.words(query).filter { !Self.stopWords.contains($0) }
            guard !terms.isEmpty else {
                return .failure("search_catalog: the query \"\(query)\" has no words to search for; give words from a title, an author or a subject")
            }
            let scored = bookOrder.map { id in (id, terms.filter { books[id]!.words.contains($0) }.count) }
            let all = scored.filter { $0.1 == terms.count }
            let hits = all.isEmpty ? scored.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 } : all
            let shown = hits.prefix(limit).map { bookJSON($0.0) }
            var o: JSONObject = ["query": .string(query), "count": JSONValue(hits.count), "results": .array(Array(shown))]
            if hits.isEmpty {
                o["note"] = "nothing in the catalog matches; try fewer or other words"
            } else if all.isEmpty {
                o["note"] = "no book matches every word; these match some of them"
            }
            return .success(o)
        }

        func getMember(_ id: String) -> Outcome {
            switch member(id) {
            case .failure(let p): return .failure(p.text)
            case .success(let m):
                return .success([
                    "member_id": .string(id), "name": .string(m.name),
                    "status": m.expires < Self.today ? "expired" : "active",
                    "member_since": .string(m.since.text), "membership_expires": .string(m.expires.text),
                    "loans": JSONValue(loans.values.filter { $0.member == id }.count),
                    "holds": JSONValue(holds.filter { $0.member == id }.count),
                    "fines_eur": euros(m.finesCents),
                ])
            }
        }

        func listLoans(_ id: String) -> Outcome {
            if case .failure(let p) = member(id) { return .failure(p.text) }
            let mine = loans.filter { $0.value.member == id }.sorted { $0.key < $1.key }
            let items: [JSONValue] = mine.map { (loanID, l) in
                .object(["loan_id": .string(loanID), "book_id": .string(l.book), "title": .string(books[l.book]!.title),
                         "due_date": .string(l.due.text), "renewals": JSONValue(l.renewals),
                         "renewals_left": JSONValue(max(0, Self.maxRenewals - l.renewals)), "overdue": .bool(l.due < Self.today)])
            }
            return .success(["member_id": .string(id), "today": .string(Self.today.text), "loans": .array(items)])
        }

        mutating func renewLoan(member memberID: String, loan loanID: String) -> Outcome {
            let m: Member
            switch member(memberID) {
            case .failure(let p): return .failure(p.text)
            case .success(let found): m = found
            }
            if let problem = requireActive(memberID, m, doing: "renewing loans") { return .failure(problem) }
            guard var l = loans[loanID] else {
                return .failure("no loan with id \"\(loanID)\"; list_loans shows the member's loan ids")
            }
            guard l.member == memberID else {
                return .failure("loan \(loanID) is not on the account of \(memberID); list_loans shows the member's loan ids")
            }
            let title = books[l.book]!.title
            if l.renewals >= Self.maxRenewals {
                return .failure("renewal refused: loan \(loanID) ('\(title)') has already been renewed \(l.renewals) times, the most allowed; it is due \(l.due.text). Offer a hold or a return.")
            }
            if holds.contains(where: { $0.book == l.book && $0.member != memberID }) {
                return .failure("renewal refused: another member has a hold on '\(title)', so loan \(loanID) cannot be renewed; it is due \(l.due.text).")
            }
            let previous = l.due
            l.due = l.due + Self.loanDays
            l.renewals += 1
            loans[loanID] = l
            return .success(["loan_id": .string(loanID), "book_id": .string(l.book), "title": .string(title),
                             "previous_due_date": .string(previous.text), "due_date": .string(l.due.text),
                             "renewals": JSONValue(l.renewals), "renewals_left": JSONValue(Self.maxRenewals - l.renewals)])
        }

        mutating func placeHold(member memberID: String, book bookID: String) -> Outcome {
            let m: Member
            switch member(memberID) {
            case .failure(let p): return .failure(p.text)
            case .success(let found): m = found
            }
            if let problem = requireActive(memberID, m, doing: "placing holds") { return .failure(problem) }
            guard let book = books[bookID] else {
                return .failure("no book with id \"\(bookID)\"; search_catalog gives book ids (e.g. B-210)")
            }
            guard let onLoan = loan(ofBook: bookID) else {
                return .failure("hold refused: '\(book.title)' (\(bookID)) is on the shelf; holds are only for checked-out books, and this one can be borrowed at the desk now.")
            }
            if holds.contains(where: { $0.book == bookID && $0.member == memberID }) {
                return .failure("\(memberID) already has a hold on '\(book.title)' (\(bookID)).")
            }
            let hold = Hold(id: "H-\(nextHold)", member: memberID, book: bookID, placed: Self.today)
            nextHold += 1
            holds.append(hold)
            return .success(["hold_id": .string(hold.id), "member_id": .string(memberID), "book_id": .string(bookID),
                             "title": .string(book.title), "position": JSONValue(holds.filter { $0.book == bookID }.count),
                             "expected_back": .string(onLoan.loan.due.text),
                             "note": "the member is notified when the book is back"])
        }

        // MARK: City Transit

        private func cardJSON(_ id: String, _ c: Card) -> JSONObject {
            var o: JSONObject = ["card_id": .string(id), "status": c.blocked ? "blocked" : "active",
                                 "balance_eur": euros(c.balanceCents), "fare_profile": .string(c.profile)]
            if let r = c.replacedBy { o["replaced_by"] = .string(r) }
            return o
        }

        private func card(_ id: String) -> Card? { cards[id.uppercased()] }

        private static func noCard(_ id: String) -> Outcome {
            .failure("no transit card \"\(id)\"; card numbers look like C-7788 — ask the customer to read it from the card")
        }

        func getCard(_ id: String) -> Outcome {
            guard let c = card(id) else { return Self.noCard(id) }
            return .success(cardJSON(id.uppercased(), c))
        }

        mutating func topUp(_ rawID: String, amount: Int) -> Outcome {
            let id = rawID.uppercased()
            guard var c = cards[id] else { return Self.noCard(rawID) }
            if c.blocked {
                return .failure("top-up refused: card \(id) is blocked\(c.replacedBy.map { "; top up its replacement \($0) instead" } ?? "")")
            }
            c.balanceCents += amount * 100
            cards[id] = c
            return .success(["card_id": .string(id), "amount_eur": euros(amount * 100), "balance_eur": euros(c.balanceCents)])
        }

        mutating func reportLost(_ rawID: String) -> Outcome {
            let id = rawID.uppercased()
            guard var c = cards[id] else { return Self.noCard(rawID) }
            if c.blocked {
                return .failure("card \(id) is already blocked\(c.replacedBy.map { "; its replacement is \($0)" } ?? "")")
            }
            let replacement = "C-\(nextCard)"
            nextCard += 1
            let moved = c.balanceCents
            c.blocked = true
            c.balanceCents = 0
            c.replacedBy = replacement
            cards[id] = c
            cards[replacement] = Card(balanceCents: moved, profile: c.profile)
            return .success(["card_id": .string(id), "status": "blocked", "replacement_card_id": .string(replacement),
                             "balance_moved_eur": euros(moved), "replacement_arrives": "within five working days",
                             "posted_by": .string((Self.today + 7).text)])
        }

        static func minutes(_ text: String) -> Int? {
            let parts = text.split(separator: ":")
            guard parts.count == 2, parts[0].count <= 2, parts[1].count == 2,
                  let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return h * 60 + m
        }

        static func clock(_ minutes: Int) -> JSONValue {
            .string(String(format: "%02d:%02d", (minutes / 60) % 24, minutes % 60))
        }

        static func stop(named name: String) -> String? {
            let key = words(name).joined(separator: " ")
            return lines.flatMap(\.stops).first { words($0).joined(separator: " ") == key }
        }

        struct Ride {
            var line: String
            var from: String
            var to: String
            var departure: Int
            var arrival: Int
            var stops: Int
        }

        /// The first ride on `line` from `from` to `to` leaving at or after `after`.
        static func ride(_ line: Line, _ from: String, _ to: String, after: Int) -> Ride? {
            guard let i = line.stops.firstIndex(of: from), let j = line.stops.firstIndex(of: to), i != j else { return nil }
            // Both directions run the same timetable from their own first stop.
            let total = line.offsets.last!
            let (fromOffset, toOffset) = i < j ? (line.offsets[i], line.offsets[j]) : (total - line.offsets[i], total - line.offsets[j])
            let wait = after - line.first - fromOffset
            let k = wait <= 0 ? 0 : (wait + line.headway - 1) / line.headway
            let start = line.first + k * line.headway
            guard start <= line.last else { return nil }
            return Ride(line: line.name, from: from, to: to, departure: start + fromOffset, arrival: start + toOffset, stops: abs(j - i))
        }

        func planTrip(from rawFrom: String, to rawTo: String, after rawAfter: String?) -> Outcome {
            let known = Array(Set(Self.lines.flatMap(\.stops))).sorted().joined(separator: ", ")
            guard let from = Self.stop(named: rawFrom) else { return .failure("plan_trip: unknown stop \"\(rawFrom)\"; stops: \(known)") }
            guard let to = Self.stop(named: rawTo) else { return .failure("plan_trip: unknown stop \"\(rawTo)\"; stops: \(known)") }
            guard from != to else { return .failure("plan_trip: origin and destination are the same stop (\(from))") }
            var after = 8 * 60 + 30  // the fixture's "now"
            if let rawAfter, !rawAfter.isEmpty {
                guard let m = Self.minutes(rawAfter) else { return .failure("plan_trip: depart_after must be HH:MM (24-hour), got \"\(rawAfter)\"") }
                after = m
            }
            var trips: [[Ride]] = []
            for a in Self.lines where a.stops.contains(from) {
                if let r = Self.ride(a, from, to, after: after) { trips.append([r]) }
                for b in Self.lines where b.name != a.name && b.stops.contains(to) {
                    for x in a.stops where x != from && x != to && b.stops.contains(x) {
                        if let first = Self.ride(a, from, x, after: after),
                           let second = Self.ride(b, x, to, after: first.arrival + 3) {
                            trips.append([first, second])
                        }
                    }
                }
            }
            trips.sort { ($0.last!.arrival, $0.count, $0.first!.departure) < ($1.last!.arrival, $1.count, $1.first!.departure) }
            let itineraries: [JSONValue] = trips.prefix(3).map { legs in
                .object([
                    "departure": Self.clock(legs.first!.departure), "arrival": Self.clock(legs.last!.arrival),
                    "duration_min": JSONValue(legs.last!.arrival - legs.first!.departure),
                    "transfers": JSONValue(legs.count - 1),
                    "legs": .array(legs.map { r in
                        .object(["line": .string(r.line), "from": .string(r.from), "to": .string(r.to),
                                 "departure": Self.clock(r.departure), "arrival": Self.clock(r.arrival), "stops": JSONValue(r.stops)])
                    }),
                ])
            }
            var o: JSONObject = ["origin": .string(from), "destination": .string(to), "depart_after": Self.clock(after),
                                 "itineraries": .array(itineraries)]
            if itineraries.isEmpty { o["note"] = "no more service today after that time" }
            return .success(o)
        }
    }
}
