import Foundation
import GRDB

extension Warehouse {
    /// How to launch the server registered as `name` (`rollout ingest server`).
    public func serverSpec(named name: String) throws -> MCPServerSpec {
        struct ServerRow: Sendable { var command: String?; var args: String; var env: String; var cwd: String? }
        let (row, known) = try writer.read { db -> (ServerRow?, [String]) in
            let row = try Row.fetchOne(db, sql: "SELECT command, args, env, cwd FROM servers WHERE name = ?", arguments: [name])
                .map { ServerRow(command: $0["command"], args: $0["args"], env: $0["env"], cwd: $0["cwd"]) }
            let known = row == nil ? try String.fetchAll(db, sql: "SELECT name FROM servers ORDER BY name") : []
            return (row, known)
        }
        guard let row else {
            let list = known.isEmpty ? "none is registered" : "registered: " + known.joined(separator: ", ")
            throw MCPError(.notConfigured, server: name,
                           "no such server (\(list)); register one with `rollout ingest server \(name) --command CMD [--arg X…]`")
        }
        guard let command = row.command, !command.isEmpty else {
            throw MCPError(.notConfigured, server: name,
                           "known only by its tool list, with no command to launch it; register one with `rollout ingest server \(name) --command CMD [--arg X…]`")
        }
        let args = try JSONParser.parse(row.args).arrayValue?.compactMap(\.stringValue) ?? []
        var env: [String: String] = [:]
        for (k, v) in try JSONParser.parse(row.env).objectValue ?? [:] { env[k] = v.stringValue ?? v.jsonText }
        return MCPServerSpec(name: name, command: command, args: args, env: env, cwd: row.cwd)
    }

    /// `rollout tools sync`: starts the server, asks it for its tools (`tools/list`) and makes
    /// the server's tool rows mirror the answer, exactly as `rollout ingest tools` does for a
    /// file. One ingest (kind "tools", source "mcp:NAME").
    public func syncTools(server: String, callTimeout: Duration = .seconds(120)) async throws -> IngestReport {
        let spec = try serverSpec(named: server)
        let state = ServerStateDirectory()
        defer { state.remove() }
        let client = MCPClient(spec: spec, callTimeout: callTimeout,
                               environment: state.environment(for: server, base: ProcessInfo.processInfo.environment))
        let listed: [JSONValue]
        do {
            try await client.start()
            listed = try await client.listTools()
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        let source = "mcp:\(server)"
        var objects: [JSONValue] = []
        for tool in listed {
            do {
                objects.append(OpenAICodec.tool(try ToolSpecification(mcpTool: tool)))
            } catch let e as MCPError {
                throw MCPError(.protocolError, server: server, "tools/list: \(e.message)")
            }
        }
        let list = JSONValue.array(objects)
        return try ingest(kind: "tools", source: source, options: .init()) { session in
            let serverID = try Catalog(session: session).server(named: server)
            let tools = try Self.parseToolList(list, file: source)
            try Self.storeTools(session, tools, serverID: serverID, server: server, file: source)
        }
    }
}
