import Foundation
import GRDB
import RolloutKit
import Testing

/// Every command that fails leaves the warehouse exactly as it was, and says why in a plain
/// message. Each case runs the built `rollout` binary against a copy of one quickstart
/// warehouse and compares a full dump (schema, every row of every table, sqlite_sequence,
/// user_version) before and after.
@Suite("Failing commands write nothing", .serialized)
struct FailureAtomicityTests {
    /// A failing command line; `DB` in an argument stands for the warehouse copy's path.
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let arguments: [String]
        var description: String { name }
        init(_ name: String, _ arguments: [String]) {
            self.name = name
            self.arguments = arguments
        }
    }

    /// The quickstart warehouse (51 rollouts of run `quickstart`, graded by stop-reason) and
    /// the files the cases name, made once.
    final class Setup {
        let dir: TempDir
        /// Made on first use; the suite is serialized and every case only reads it.
        nonisolated(unsafe) static let shared = Result { try Setup() }

        init() throws {
            dir = try TempDir()
            let (status, _, err) = try EvalFixtures.run(CLITests.binary, ["quickstart", "--db", dir.file("base.db"), "--examples", dir.file("ex")],
                                                        in: dir.url)
            #expect(status == 0, "quickstart failed: \(err)")
            // Every page in the main file, so a copy of it alone is the whole warehouse.
            let queue = try DatabaseQueue(path: dir.file("base.db"))
            try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            try queue.close()
            try dir.write("garbage.jsonl", "this is not JSON\n")
            try dir.write("notadb.db", "SQLite format 2, honest\n")
            try dir.write("badtools.json", #"[{"type":"function","function":{"name":"x","parameters":{}}}, 5]"#)
            try dir.mkdir("emptydir")
            try dir.mkdir("outdir")
            try dir.write("badwrite.sql", "DELETE FROM reviews; UPDATE runs SET name = 'renamed'; SELECT json_extract('not json', '$');\n")
            let models = Fixture.repoRoot.appending(path: "configs/models.yml").path
            // Two datasets: the first's files are fine, the second's queries are not JSON.
            try dir.write("halfbad.yml", """
                models_config_file: \(models)
                datasets:
                  CityTransit:
                    path: \(dir.file("ex/single_domain/queries/CityTransit.jsonl"))
                    tools: \(dir.file("ex/single_domain/tool_lists/CityTransit.json"))
                    agent: {model: mock/agent}
                    user: {model: mock/user}
                  Library:
                    path: \(dir.file("garbage.jsonl"))
                    tools: \(dir.file("ex/single_domain/tool_lists/Library.json"))
                    agent: {model: mock/agent}
                    user: {model: mock/user}
                """)
            try dir.write("bomb.yml", YAMLLimitsTests.aliasBomb(levels: 10, under: "models_config_file: \(models)").text)
        }
    }

    static let cases: [Case] = [
        Case("grade: sql expression failing at run time", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "sql", "--name", "bad",
                                                           "--expression", "json_extract(r.status, '$.x')"]),
        Case("grade: sql expression that does not compile", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "sql", "--expression", "nosuchcol = 1"]),
        Case("grade: unknown run", ["grade", "--db", "DB", "--run", "nosuch", "--grader", "reward"]),
        Case("grade: unknown grader", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "nosuchkind"]),
        Case("grade: llm-judge of an unknown run", ["grade", "--db", "DB", "--run", "nosuch", "--grader", "llm-judge", "--judge-model", "mock/judge"]),
        Case("grade: llm-judge with an unknown model", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "llm-judge", "--judge-model", "nosuch/judge"]),
        Case("grade: llm-judge whose key is not set", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "llm-judge", "--judge-model", "openai/gpt-4o"]),
        Case("chat: unknown model", ["chat", "--db", "DB", "nosuch/model", "hi"]),
        Case("chat: a model whose key is not set", ["chat", "--db", "DB", "openai/gpt-4o", "hi"]),
        Case("quickstart: --examples is a file", ["quickstart", "--db", "DB", "--examples", "garbage.jsonl"]),
        Case("quickstart: --examples under a file", ["quickstart", "--db", "DB", "--examples", "garbage.jsonl/ex"]),
        Case("ingest swebench: not JSON", ["ingest", "swebench", "--db", "DB", "garbage.jsonl", "--dataset", "s"]),
        Case("ingest repo-structures: wrong layout", ["ingest", "repo-structures", "--db", "DB", "emptydir"]),
        Case("batch submit: unknown batch", ["batch", "submit", "--db", "DB", "nosuch"]),
        Case("tools sync: unknown server", ["tools", "sync", "--db", "DB", "nosuch"]),
        Case("agentless localize: no SWE-bench data", ["agentless", "bugfix", "localize", "--db", "DB", "--name", "p", "--model", "m"]),
        Case("grade: bad option value", ["grade", "--db", "DB", "--run", "quickstart", "--grader", "reward", "--concurrency", "0"]),
        Case("export: --where that does not compile", ["export", "--db", "DB", "--run", "quickstart", "--format", "openai-ft",
                                                      "--where", "nosuchcol = 1", "--out", "x.jsonl"]),
        Case("export: --where failing at run time", ["export", "--db", "DB", "--run", "quickstart", "--format", "openai-ft",
                                                    "--where", "json_extract(r.status, '$.x')", "--out", "x.jsonl"]),
        Case("export: --out is a folder", ["export", "--db", "DB", "--run", "quickstart", "--format", "openai-ft", "--out", "outdir"]),
        Case("export: unknown run", ["export", "--db", "DB", "--run", "nosuch", "--format", "openai-ft", "--out", "x.jsonl"]),
        Case("export: bad --split", ["export", "--db", "DB", "--run", "quickstart", "--format", "openai-ft", "--out", "x.jsonl", "--split", "a=0.5,b=0.7"]),
        Case("export: dpo without a grader's grades", ["export", "--db", "DB", "--run", "quickstart", "--format", "dpo", "--grader", "nosuch", "--out", "x.jsonl"]),
        Case("label: unknown run", ["label", "--db", "DB", "--run", "nosuch"]),
        Case("label: unknown domain", ["label", "--db", "DB", "--run", "quickstart", "--domain", "nosuch"]),
        Case("eval: unknown run", ["eval", "--db", "DB", "--run", "nosuch"]),
        Case("eval: k larger than the samples", ["eval", "--db", "DB", "--run", "quickstart", "--k", "1,99"]),
        Case("eval: unknown grader", ["eval", "--db", "DB", "--run", "quickstart", "--grader", "nosuch"]),
        Case("compare: unknown run", ["compare", "--db", "DB", "quickstart", "nosuch"]),
        Case("ingest queries: not JSON", ["ingest", "queries", "--db", "DB", "garbage.jsonl", "--domain", "Library"]),
        Case("ingest trajectories: not JSON", ["ingest", "trajectories", "--db", "DB", "garbage.jsonl", "--run", "imported", "--format", "rollout"]),
        Case("ingest tools: a bad entry", ["ingest", "tools", "--db", "DB", "badtools.json", "--server", "s"]),
        Case("ingest tau2: wrong layout", ["ingest", "tau2", "--db", "DB", "emptydir", "--domain", "x"]),
        Case("ingest dir: wrong layout", ["ingest", "dir", "--db", "DB", "emptydir"]),
        Case("ingest qa: not JSON", ["ingest", "qa", "--db", "DB", "garbage.jsonl", "--dataset", "qa"]),
        Case("ingest policy: missing file", ["ingest", "policy", "--db", "DB", "nosuch.md", "--domain", "Library"]),
        Case("batch ingest: garbage", ["batch", "ingest", "--db", "DB", "garbage.jsonl"]),
        Case("batch create: --from-sql failing at run time", ["batch", "create", "--db", "DB", "--name", "b", "--model", "m", "--from-sql",
                                                             "SELECT external_id AS custom_id, CASE WHEN id > 3 THEN json_extract('x', '$') ELSE opening END AS prompt FROM tasks"]),
        Case("batch create: --from-sql that does not compile", ["batch", "create", "--db", "DB", "--name", "b", "--model", "m", "--from-sql", "SELECT nosuch"]),
        Case("merge: a file that is not a warehouse", ["merge", "DB", "notadb.db"]),
        Case("merge: a missing input", ["merge", "DB", "nosuch.db"]),
        Case("run: a config whose second dataset is broken", ["run", "--db", "DB", "--config", "halfbad.yml"]),
        Case("run: a config that is an alias bomb", ["run", "--db", "DB", "--config", "bomb.yml"]),
        Case("run: unknown dataset of a config", ["run", "--db", "DB", "--config", "halfbad.yml", "--dataset", "Nosuch"]),
        Case("run single: unknown domain", ["run", "single", "--db", "DB", "--domains", "Nosuch", "--agent-model", "mock/agent", "--user-model", "mock/user"]),
        Case("query --write: a script failing at its last statement", ["query", "--db", "DB", "badwrite.sql", "--write"]),
        Case("query: a write without --write", ["query", "--db", "DB", "badwrite.sql"]),
        Case("agentless repair: missing localize batch", ["agentless", "bugfix", "repair", "--db", "DB", "--name", "p"]),
    ]

    /// Runs the binary with no API keys in its environment (the cases that name a real
    /// provider must fail on the missing key, never reach the network) and no $ROLLOUT_DB.
    static func rollout(_ arguments: [String], in directory: URL) throws -> (Int32, String) {
        let keys = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY"]
        let r = try CLITests.rollout(arguments, in: directory,
                                     environment: Dictionary(uniqueKeysWithValues: keys.map { ($0, String?.none) }))
        return (r.status, r.stderr)
    }

    /// Schema, user_version and every row of every real table (sqlite_sequence and FTS5
    /// shadow tables included), as text.
    static func dump(_ path: String) throws -> [String] {
        var config = Configuration()
        config.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: config)
        defer { try? queue.close() }
        return try queue.read { db in
            var out = ["user_version \(try Int.fetchOne(db, sql: "PRAGMA user_version") ?? -1)"]
            let objects = try Row.fetchAll(db, sql: "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            for o in objects { out.append("\(o["type"] as String) \(o["name"] as String): \((o["sql"] as String?) ?? "")") }
            for o in objects where (o["type"] as String) == "table" && !((o["sql"] as String?) ?? "").hasPrefix("CREATE VIRTUAL TABLE") {
                let name = o["name"] as String
                let rows = try Row.fetchAll(db, sql: "SELECT * FROM \"\(name)\"").map(\.description).sorted()
                out.append("\(name): \(rows.count) rows")
                out += rows.map { "\(name) \($0)" }
            }
            return out
        }
    }

    @Test(arguments: cases)
    func failsPlainlyAndWritesNothing(_ c: Case) throws {
        let setup = try Setup.shared.get()
        let copy = "case-\(UUID().uuidString).db"
        try FileManager.default.copyItem(atPath: setup.dir.file("base.db"), toPath: setup.dir.file(copy))
        defer { try? FileManager.default.removeItem(atPath: setup.dir.file(copy)) }
        let before = try Self.dump(setup.dir.file(copy))
        let arguments = c.arguments.map { $0 == "DB" ? copy : $0 }
        let (status, err) = try Self.rollout(arguments, in: setup.dir.url)
        #expect(status != 0, "\(c.name): exited 0")
        let message = err.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(message.hasPrefix("Error: "), "\(c.name): \(err)")
        for hidden in ["SELECT ", "INSERT ", "while executing", "SQLite error", "/.build/", "Fatal error", "DatabaseError", "GRDB",
                       "NSCocoaErrorDomain", "UserInfo="] {
            #expect(!message.contains(hidden), "\(c.name): the message shows \(hidden): \(message)")
        }
        let after = try Self.dump(setup.dir.file(copy))
        #expect(after == before, "\(c.name): the warehouse changed: \(Set(after).symmetricDifference(before).sorted().prefix(5))")
    }
}
