import ArgumentParser
import Foundation
import RolloutKit

struct Tools: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "MCP tool servers: fetch their tool lists into the warehouse, list the stored tools.",
        subcommands: [Sync.self, List.self])

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start registered MCP servers, ask for their tools (tools/list) and store them.",
            discussion: """
                The server's tool rows are made to mirror the answer (added, changed, removed), as
                `rollout ingest tools` does for a file; one ingest per server, source mcp:NAME.
                Register a server first: rollout ingest server NAME --command CMD [--arg X…]
                """)
        @OptionGroup var warehouse: WarehouseOptions
        @Flag(name: .long, help: "Print the reports as JSON (one object a line).") var json = false
        @Argument(help: "Server names (as registered with `rollout ingest server`).") var servers: [String] = []

        func validate() throws {
            if servers.isEmpty { throw ValidationError("name at least one server") }
        }

        func run() async throws {
            let w = try warehouse.open(create: false)
            for server in servers {
                let report = try await reportingAsync { try await w.syncTools(server: server) }
                if json {
                    print(String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
                } else {
                    print(report.summary)
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the stored tools: server, name, API name, description.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "Only this server's tools.") var server: String?

        func run() throws {
            let w = try warehouse.open(create: false)
            if let server {
                let known = try reporting { try QueryRunner(w).run(sql: "SELECT name FROM servers ORDER BY name", source: "servers") }[0]
                let names = known.column("name").map(\.text)
                guard names.contains(server) else {
                    throw CLIError("no server named \(server)" + (names.isEmpty ? "; none is registered" : " (registered: \(names.joined(separator: ", ")))"))
                }
            }
            let sql = """
                SELECT s.name AS server, t.name, t.api_name, t.description
                FROM tools t JOIN servers s ON s.id = t.server_id
                WHERE (:server IS NULL OR s.name = :server)
                ORDER BY s.name, t.ordinal
                """
            let result = try reporting {
                try QueryRunner(w).run(sql: sql, source: "tools list", parameters: server.map { ["server": $0] } ?? [:])
            }
            print(output.format.render(result[0]), terminator: "")
        }
    }
}

struct MCPServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-server",
        abstract: "Run a bundled MCP tool server on stdin/stdout.",
        subcommands: [Example.self])

    struct Example: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The example domains' tools (Library, CityTransit) over a fixture world, state kept per session.",
            discussion: """
                Speaks MCP (newline-delimited JSON-RPC) on stdin/stdout and writes nothing else there.
                Each params._meta.sessionId gets its own copy of the world; calls without one share a
                default session. Example: rollout mcp-server example --domain Library
                """)
        @Option(name: .long, help: "A domain whose tools to serve (repeatable; default: all of \(ExampleToolServer.domains.joined(separator: ", "))).")
        var domain: [String] = []
        @Option(name: .long, help: ArgumentHelp("Tools per tools/list page (default: all in one).", visibility: .hidden))
        var pageSize: Int?

        func validate() throws {
            for d in domain where !ExampleToolServer.domains.contains(d) {
                throw ValidationError("unknown domain \(d); the example server has \(ExampleToolServer.domains.joined(separator: ", "))")
            }
            if let pageSize, pageSize < 1 { throw ValidationError("--page-size must be at least 1") }
        }

        func run() throws {
            try reporting {
                try ExampleToolServer.serve(domains: domain.isEmpty ? ExampleToolServer.domains : domain, pageSize: pageSize)
            }
        }
    }
}
