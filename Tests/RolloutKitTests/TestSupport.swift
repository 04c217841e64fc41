import Foundation
import GRDB
import RolloutKit
import Testing

/// Committed sample files (see Fixtures/README.md). Tests never read /work/shared.
enum Fixture {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures")
    /// The package root (Tests/RolloutKitTests/ → ../..), for configs/ and queries/.
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appending(path: relative).path }

    static func text(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }

    /// The non-empty lines of a JSON Lines fixture without "\n" or "\r\n", split on bytes (a JSON
    /// string may hold U+2028 and friends, and Swift treats "\r\n" as one Character).
    static func lines(_ relative: String) throws -> [String] {
        let data = try Data(contentsOf: root.appending(path: relative))
        return data.split(separator: 0x0A, omittingEmptySubsequences: true).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
    }
}

/// A scratch folder removed when the value goes away.
final class TempDir {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appending(path: "rollout-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `text` to `name` (creating parent folders) and returns the file's path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, bytes: Array(text.utf8))
    }

    @discardableResult
    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let target = url.appending(path: name)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: target)
        return target.path
    }

    @discardableResult
    func mkdir(_ name: String) throws -> String {
        let target = url.appending(path: name)
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        return target.path
    }

    func file(_ name: String) -> String { url.appending(path: name).path }
}

extension Warehouse {
    /// `SELECT count(*)`-style single integer.
    func int(_ sql: String, _ arguments: StatementArguments = []) throws -> Int? {
        try writer.read { db in try Int.fetchOne(db, sql: sql, arguments: arguments) }
    }

    func string(_ sql: String, _ arguments: StatementArguments = []) throws -> String? {
        try writer.read { db in try String.fetchOne(db, sql: sql, arguments: arguments) }
    }

    func strings(_ sql: String, _ arguments: StatementArguments = []) throws -> [String] {
        try writer.read { db in try String.fetchAll(db, sql: sql, arguments: arguments) }
    }

    func rows(_ sql: String, _ arguments: StatementArguments = []) throws -> [Row] {
        try writer.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments) }
    }

    func count(_ table: String) throws -> Int {
        try int("SELECT count(*) FROM \(table)") ?? -1
    }

    /// Every row of every table, as text: equal snapshots mean an unchanged database.
    func snapshot() throws -> [String: [String]] {
        try writer.read { db in
            // Virtual tables (FTS5) are left out: their shadow tables hold what they store.
            let tables = try String.fetchAll(db, sql: """
                SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                  AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name
                """)
            var out: [String: [String]] = [:]
            for t in tables {
                // Sorted as text: some tables (FTS5 shadows) have no rowid to order by.
                out[t] = try Row.fetchAll(db, sql: "SELECT * FROM \"\(t)\"").map(\.description).sorted()
            }
            return out
        }
    }

    /// Row counts of the tables ingest commands write.
    func counts() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for t in ["ingests", "ingest_errors", "datasets", "tasks", "domains", "servers", "domain_servers", "tools",
                  "runs", "rollouts", "messages", "tool_calls", "repo_structures"] {
            out[t] = try count(t)
        }
        return out
    }
}

/// A warehouse that already holds data (the τ² mock domain), so "unchanged" means something.
func seededWarehouse() throws -> Warehouse {
    let w = try Warehouse.inMemory()
    _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"), domain: "mock")
    return w
}

/// Runs an ingest that must fail with an `IngestError` and checks that it left the database
/// exactly as it was (one transaction). Returns the error for further checks.
@discardableResult
func expectIngestError(_ w: Warehouse, sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () throws -> IngestReport) throws -> IngestError {
    let before = try w.snapshot()
    let error = try #require(throws: IngestError.self, sourceLocation: sourceLocation) { _ = try body() }
    let after = try w.snapshot()
    #expect(after == before, "a failed ingest changed the database", sourceLocation: sourceLocation)
    return error
}

/// The OpenAI tool-name rule, `^[a-zA-Z0-9_-]{1,64}$`.
func isAPISafeName(_ name: String) -> Bool {
    let rule = try! Regex("^[a-zA-Z0-9_-]{1,64}$")
    return (try? rule.wholeMatch(in: name)) != nil
}

/// A minimal valid queries line.
func queryLine(id: String?, opening: String = "Hello", prompt: String = "You are a user who needs help with: x") -> String {
    var o = JSONObject()
    if let id { o["id"] = .string(id) }
    o["messages"] = .array([.object(["role": "user", "content": .string(opening)])])
    o["user_system_prompt"] = .string(prompt)
    return JSONValue.object(o).jsonText
}
