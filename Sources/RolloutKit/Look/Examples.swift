import Foundation

extension Warehouse {
    /// Writes the bundled example data (`examples/rollout-layout`) into `directory` and
    /// ingests it, with a server row per domain that launches this binary's example tool server
    /// (`rollout mcp-server example --domain NAME`), so runs can call the tools. One ingest;
    /// re-running changes nothing.
    public func ingestBundledExample(into directory: String) throws -> IngestReport {
        let target = URL(fileURLWithPath: directory)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw IngestError(file: directory, field: "--examples", "is a file; give a folder for the example files (it is created if missing)")
        }
        do {
            try BundledFiles.extract("examples/rollout-layout", to: target)
        } catch let e as CocoaError {
            // Foundation's own description is a dump of its error object; say what failed.
            let reason = (e.userInfo[NSUnderlyingErrorKey] as? NSError).flatMap { $0.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32($0.code))) : nil }
            throw IngestError(file: e.filePath ?? directory, field: "--examples",
                              "the example files cannot be written there" + (reason.map { ": \($0)" } ?? " (a file in the way, or no permission)"))
        }
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
