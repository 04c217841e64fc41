import Foundation

extension Warehouse {
    /// Writes the bundled example data (`examples/rollout-layout`) into `directory` and
    /// ingests it, with a server row per domain that launches this binary's example tool server
    /// (`rollout mcp-server example --domain NAME`), so runs can call the tools. One ingest;
    /// re-running changes nothing.
    public func ingestBundledExample(into directory: String) throws -> IngestReport {
        let target = URL(fileURLWithPath: directory)
        try BundledFiles.extract("examples/rollout-layout", to: target)
        return try ingest(kind: "dir", source: directory, options: .init()) { session in
            for name in ExampleToolServer.domains {
                try Self.registerServer(session, name: name, command: "rollout", args: ["mcp-server", "example", "--domain", name],
                                        env: [], cwd: nil, domains: [name])
            }
            try Self.ingestDirectory(session, path: directory)
        }
    }

    /// Rows per table and tasks per dataset / domain, for `rollout stats`.
    public func stats() throws -> (tables: QueryResult, tasks: QueryResult) {
        let runner = QueryRunner(self)
        return (try runner.run("stats")[0], try runner.run("tasks-by-dataset")[0])
    }
}
