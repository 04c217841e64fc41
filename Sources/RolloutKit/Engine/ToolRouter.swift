import Foundation
import GRDB
import Synchronization

/// The tools one domain (or cross-domain combination) offers the agent, under API-safe names,
/// with the server and original name each one routes to.
struct Toolset: Sendable {
    struct Route: Sendable, Equatable {
        var server: String
        var serverID: Int64
        var name: String
        /// The argument the server isolates sessions by, hidden from the agent and set per call.
        var session: SessionArgument?
    }

    var specifications: [ToolSpecification] = []
    var routes: [String: Route] = [:]

    /// The OpenAI tool array as offered (API names).
    var json: JSONValue {
        .array(specifications.map { spec in
            var f = JSONObject()
            f["name"] = .string(spec.name)
            if let d = spec.description { f["description"] = .string(d) }
            f["parameters"] = spec.parameters
            return .object(["type": "function", "function": .object(f)])
        })
    }

    var routesJSON: JSONValue {
        .object(JSONObject(pairs: specifications.compactMap { spec in
            routes[spec.name].map { route in
                var o: JSONObject = ["server": .string(route.server), "name": .string(route.name)]
                if let a = route.session {
                    o["session_argument"] = .string(a.name)
                    o["session_template"] = .string(a.template)
                }
                return (spec.name, JSONValue.object(o))
            }
        }))
    }
}

/// Starts each tool server once, on first use, and shares its client between all rollouts;
/// answers every tool call, turning failures into tool errors the agent can read.
final class ToolRouter: Sendable {
    private let specs: [String: MCPServerSpec]
    private let clients = Mutex<[String: MCPClient]>([:])
    private let environment: [String: String]
    /// Private to this router's server processes; removed at shutdown (see `ServerStateDirectory`).
    let stateDirectory: ServerStateDirectory

    init(servers: [MCPServerSpec], environment: [String: String] = ProcessInfo.processInfo.environment) {
        var s: [String: MCPServerSpec] = [:]
        for spec in servers { s[spec.name] = spec }
        specs = s
        self.environment = environment
        stateDirectory = ServerStateDirectory()
    }

    private func client(_ server: String) -> MCPClient? {
        guard let spec = specs[server] else { return nil }
        return clients.withLock { c in
            if let existing = c[server] { return existing }
            let made = MCPClient(spec: spec, environment: stateDirectory.environment(for: server, base: environment))
            c[server] = made
            return made
        }
    }

    struct Answer: Sendable {
        var text: String
        var isError: Bool
        var latencyMs: Double
        var serverID: Int64?
    }

    /// Calls the tool the agent named. Never throws: an unknown tool, arguments that are not a
    /// JSON object, a server error or a server that died are answered as tool errors.
    func call(_ call: ToolCall, toolset: Toolset, session: ToolSession) async -> Answer {
        let started = ContinuousClock.now
        guard let route = toolset.routes[call.name] else {
            let offered = toolset.specifications.map(\.name).joined(separator: ", ")
            return Answer(text: "Error: tool \"\(call.name)\" is not available. Available tools: \(offered.isEmpty ? "none" : offered).",
                          isError: true, latencyMs: 0, serverID: nil)
        }
        let arguments: JSONObject
        let text = call.arguments.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty {
            arguments = [:]
        } else {
            do {
                guard case .object(let o) = try JSONParser.parse(text) else {
                    return Answer(text: "Error: the arguments of \(call.name) must be a JSON object.",
                                  isError: true, latencyMs: 0, serverID: route.serverID)
                }
                arguments = o
            } catch {
                return Answer(text: "Error: the arguments of \(call.name) are not valid JSON (\(error)).",
                              isError: true, latencyMs: 0, serverID: route.serverID)
            }
        }
        guard let client = client(route.server) else {
            return Answer(text: "Error: no tool server is configured for \(route.server) (register one with `rollout ingest server`).",
                          isError: true, latencyMs: 0, serverID: route.serverID)
        }
        var sent = arguments
        if let a = route.session { sent[a.name] = .string(a.render(session.values)) }
        do {
            let result = try await client.callTool(name: route.name, arguments: sent, sessionID: session.id)
            // A result becomes a stored message and training data: secrets in use (a server
            // echoing its own token) are masked always, credential shapes only in tool errors,
            // so code or docs a tool returns are not altered.
            let text = result.isError ? Secrets.mask(result.text) : Secrets.maskRegistered(result.text)
            return Answer(text: text, isError: result.isError, latencyMs: started.millisecondsSince, serverID: route.serverID)
        } catch {
            return Answer(text: Secrets.mask("Error: \(error)"), isError: true, latencyMs: started.millisecondsSince,
                          serverID: route.serverID)
        }
    }

    /// Lists a server's tools (for servers whose tools were never stored).
    func listTools(server: String) async throws -> [JSONValue] {
        guard let client = client(server) else { throw EngineError("server \(server) has no command to start it") }
        return try await client.listTools()
    }

    func shutdown() async {
        let all = clients.withLock { Array($0.values) }
        for c in all { await c.shutdown() }
        stateDirectory.remove()
    }

    var restarts: Int { clients.withLock { $0.values.reduce(0) { $0 + $1.restartCount } } }
}

/// Who a tool call is made for: `id` goes in `_meta.sessionId`; `values` fill a server's
/// session-argument template.
struct ToolSession: Sendable {
    var id: String
    var values: [String: String]
}

/// A directory private to one engine process's tool servers: each server gets
/// `ROLLOUT_STATE_DIR` = `<dir>/<server name>` in its environment, so a server that persists
/// per-session state to files (referenced in its env as `${ROLLOUT_STATE_DIR}`) starts empty in
/// every run and keeps its state across restarts within the run. Created lazily, removed at
/// shutdown.
final class ServerStateDirectory: Sendable {
    let root: URL

    init() {
        root = FileManager.default.temporaryDirectory
            .appending(path: "rollout-servers-\(getpid())-\(UUID().uuidString.prefix(8))", directoryHint: .isDirectory)
    }

    func environment(for server: String, base: [String: String]) -> [String: String] {
        let safe = String(server.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        let dir = root.appending(path: safe, directoryHint: .isDirectory)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var env = base
        env["ROLLOUT_STATE_DIR"] = dir.path
        return env
    }

    func remove() {
        try? FileManager.default.removeItem(at: root)
    }
}

/// A problem that stops a run before or while it runs, said for the user.
public struct EngineError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Warehouse {
    /// The tools of a domain: its servers' stored tools, for a combination the union over its
    /// domains, each under an API-safe name that is unique within the set.
    func toolset(domainKey: String, _ db: Database) throws -> Toolset {
        let keys = [domainKey] + (domainKey.contains("+") ? domainKey.split(separator: "+").map(String.init) : [])
        let rows = try Row.fetchAll(db, sql: """
            SELECT DISTINCT s.id AS server_id, s.name AS server, s.session_argument, s.session_template,
                   t.name, t.api_name, t.description, t.schema, t.ordinal
            FROM domains d
            JOIN domain_servers ds ON ds.domain_id = d.id
            JOIN servers s ON s.id = ds.server_id
            JOIN tools t ON t.server_id = s.id
            WHERE d.key IN (\(keys.map { _ in "?" }.joined(separator: ",")))
            ORDER BY s.name, t.ordinal
            """, arguments: StatementArguments(keys))
        var set = Toolset()
        for row in rows {
            let server: String = row["server"]
            var apiName: String = row["api_name"]
            if set.routes[apiName] != nil {
                if set.routes[apiName]?.server == server { continue }
                apiName = ToolNames.apiSafe("\(server)_\(apiName)", taken: Set(set.routes.keys))
            }
            let schema = try JSONParser.parse(row["schema"] as String)
            let function = schema["function"] ?? .object([:])
            var parameters = function["parameters"] ?? .object(["type": "object", "properties": .object([:])])
            var session: SessionArgument?
            if let name = row["session_argument"] as String? {
                session = try SessionArgument(name: name, template: row["session_template"] ?? SessionArgument.defaultTemplate)
                parameters = session!.hidden(from: parameters)
            }
            set.specifications.append(ToolSpecification(name: apiName, description: row["description"], parameters: parameters))
            set.routes[apiName] = .init(server: server, serverID: row["server_id"], name: row["name"], session: session)
        }
        return set
    }

    /// Servers linked to a domain (or its component domains) that have a command but no stored tools.
    func serversWithoutTools(domainKey: String, _ db: Database) throws -> [String] {
        let keys = [domainKey] + (domainKey.contains("+") ? domainKey.split(separator: "+").map(String.init) : [])
        return try String.fetchAll(db, sql: """
            SELECT DISTINCT s.name FROM domains d
            JOIN domain_servers ds ON ds.domain_id = d.id
            JOIN servers s ON s.id = ds.server_id
            WHERE d.key IN (\(keys.map { _ in "?" }.joined(separator: ","))) AND s.command IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM tools t WHERE t.server_id = s.id)
            ORDER BY s.name
            """, arguments: StatementArguments(keys))
    }

    /// Every registered server that has a command, as spawn specifications.
    func serverSpecs(_ db: Database) throws -> [MCPServerSpec] {
        try Row.fetchAll(db, sql: "SELECT name, command, args, env, cwd FROM servers WHERE command IS NOT NULL ORDER BY name").map { row in
            let args = (try JSONParser.parse(row["args"] as String)).arrayValue?.compactMap(\.stringValue) ?? []
            var env: [String: String] = [:]
            for (k, v) in (try JSONParser.parse(row["env"] as String)).objectValue ?? [:] { env[k] = v.stringValue ?? v.jsonText }
            return MCPServerSpec(name: row["name"], command: row["command"], args: args, env: env, cwd: row["cwd"])
        }
    }

    /// The system prompt of a domain: its own policy, else (for a combination) its domains'
    /// policies one after another.
    func policy(domainKey: String, _ db: Database) throws -> String? {
        if let p = try String.fetchOne(db, sql: "SELECT policy FROM domains WHERE key = ?", arguments: [domainKey]), !p.isEmpty {
            return p
        }
        guard domainKey.contains("+") else { return nil }
        let parts = try domainKey.split(separator: "+").compactMap { part in
            try String.fetchOne(db, sql: "SELECT policy FROM domains WHERE key = ?", arguments: [String(part)])
        }.filter { !$0.isEmpty }
        return parts.isEmpty ? nil : parts.joined(separator: "\n\n")
    }
}
