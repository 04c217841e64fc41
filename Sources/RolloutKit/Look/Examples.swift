import Foundation

extension Warehouse {
    /// Writes the bundled example data (`examples/rollout-layout`) into `directory` and
    /// ingests it. Re-running changes nothing.
    public func ingestBundledExample(into directory: String) throws -> IngestReport {
        let target = URL(fileURLWithPath: directory)
        try BundledFiles.extract("examples/rollout-layout", to: target)
        return try ingestDirectory(directory)
    }

    /// Rows per table and tasks per dataset / domain, for `rollout stats`.
    public func stats() throws -> (tables: QueryResult, tasks: QueryResult) {
        let runner = QueryRunner(self)
        return (try runner.run("stats")[0], try runner.run("tasks-by-dataset")[0])
    }
}
