import Foundation
import GRDB
import RolloutKit
import Testing

/// `Warehouse.merge(from:)` and `rollout merge`: shard warehouses built on disk, with runs
/// written row by row the way the engine leaves them, combined into one.
@Suite("Merge")
struct MergeTests {
    static let dataset = "tau2-mock"
    /// The τ² mock fixture's tasks, split between two shards.
    static let shardA = ["create_task_1", "create_task_1_with_env_assertions", "create_task_1_nl_eval", "update_task_1",
                         "update_task_with_message_history"]
    static let shardB = ["update_task_with_initialization_data", "update_task_with_initialization_actions",
                         "update_task_with_history_and_env_assertions", "update_task_with_user_tools", "impossible_task_1"]

    /// A shard's warehouse file: the τ² mock domain ingested (after a QA set, with `offset`, so
    /// ids differ between shards) and run `run` over `tasks`.
    static func shard(_ tmp: TempDir, _ name: String, offset: Bool = false, run: String = "r", hash: String = "h1",
                      tasks: [String], samples: Int = 2, status: String = "completed") throws -> (Warehouse, String) {
        let path = tmp.file(name)
        let w = try Warehouse.open(path: path)
        if offset { _ = try w.ingestQA(file: Fixture.path("deepresearch/browsecomp_20.jsonl"), dataset: "bc") }
        _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"), domain: "mock")
        if offset {
            // Rollouts of another run first, so this run's rows get other ids than in shard A.
            let two = try w.strings("""
                SELECT external_id FROM tasks WHERE dataset_id = (SELECT id FROM datasets WHERE name = 'bc') ORDER BY id LIMIT 2
                """)
            try addRun(w, run: "other-\(name)", hash: "x", dataset: "bc", tasks: two, samples: 1)
        }
        try addRun(w, run: run, hash: hash, tasks: tasks, samples: samples, status: status)
        return (w, path)
    }

    /// A run as the engine writes it: plan, what the domain offered, and per sample a rollout
    /// of four messages (user, assistant calling a tool, the tool's result, assistant), its
    /// tool call, two LLM calls and a grade. Every text is `run|task|sample|idx`, so where a
    /// row ends up after the merge can be checked against where it came from.
    static func addRun(_ w: Warehouse, run: String, hash: String, dataset: String = MergeTests.dataset, tasks: [String],
                       samples: Int, status: String = "completed", messages: Int = 4, stamp: String = "2026-01-02T03:04:05.000Z") throws {
        try w.writer.write { db in
            var runID = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [run])
            if runID == nil {
                try db.execute(sql: """
                    INSERT INTO runs(name, mode, config, config_hash, agent_model, status, created_at, started_at, finished_at)
                    VALUES (?, 'dialogue', '{}', ?, 'mock/agent', ?, ?, ?, ?)
                    """, arguments: [run, hash, status, stamp, stamp, status == "running" ? nil : stamp])
                runID = db.lastInsertedRowID
                try db.execute(sql: """
                    INSERT INTO run_domains(run_id, domain_id, policy, tools, hash, created_at)
                    SELECT ?, id, policy, '[]', 'dh', ? FROM domains WHERE key = 'mock'
                    """, arguments: [runID, stamp])
            }
            for external in tasks {
                let taskID = try #require(try Int64.fetchOne(db, sql: """
                    SELECT t.id FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = ? AND t.external_id = ?
                    """, arguments: [dataset, external]))
                try db.execute(sql: "INSERT INTO run_tasks(run_id, task_id, job, samples) VALUES (?, ?, ?, ?)",
                               arguments: [runID, taskID, dataset, samples])
                for sample in 0..<samples {
                    let done = status == "completed"
                    try db.execute(sql: """
                        INSERT INTO rollouts(run_id, task_id, sample, attempt, status, stop_reason, turns, started_at, finished_at)
                        VALUES (?, ?, ?, 0, ?, ?, 1, ?, ?)
                        """, arguments: [runID, taskID, sample, done ? "completed" : "pending", done ? "user_stop" : nil,
                                         done ? stamp : nil, done ? stamp : nil])
                    let rolloutID = db.lastInsertedRowID
                    guard done else { continue }
                    let roles = ["user", "assistant", "tool", "assistant"]
                    var ids: [Int64] = []
                    for idx in 0..<messages {
                        try db.execute(sql: """
                            INSERT INTO messages(rollout_id, idx, role, content, tool_call_id) VALUES (?, ?, ?, ?, ?)
                            """, arguments: [rolloutID, idx, roles[idx % 4], "\(run)|\(external)|\(sample)|\(idx)",
                                             idx % 4 == 2 ? "call-\(sample)" : nil])
                        ids.append(db.lastInsertedRowID)
                    }
                    if messages >= 3 {
                        try db.execute(sql: """
                            INSERT INTO tool_calls(rollout_id, message_id, idx, call_id, name, arguments, result_message_id, result,
                                                   server_id)
                            VALUES (?, ?, 0, ?, 'get_task', ?, ?, 'ok', (SELECT id FROM servers WHERE name = 'mock'))
                            """, arguments: [rolloutID, ids[1], "call-\(sample)", "\(run)|\(external)|\(sample)|1", ids[2]])
                    }
                    for call in 0..<2 {
                        try db.execute(sql: """
                            INSERT INTO llm_calls(run_id, rollout_id, role, model, provider, prompt_tokens, request_hash, created_at)
                            VALUES (?, ?, 'agent', 'mock/agent', 'mock', 10, ?, ?)
                            """, arguments: [runID, rolloutID, "\(run)|\(external)|\(sample)|\(call)", stamp])
                    }
                    try db.execute(sql: """
                        INSERT INTO grades(rollout_id, grader, value, passed, created_at) VALUES (?, 'stop-reason', 1, 1, ?)
                        """, arguments: [rolloutID, stamp])
                }
            }
        }
    }

    /// Row counts of every table the merge writes.
    static func counts(_ w: Warehouse) throws -> [String: Int] {
        var out: [String: Int] = [:]
        for t in ["ingests", "ingest_errors", "datasets", "domains", "servers", "domain_servers", "tools", "models", "tasks",
                  "runs", "run_domains", "run_tasks", "rollouts", "messages", "tool_calls", "llm_calls", "grades"] {
            out[t] = try w.count(t)
        }
        return out
    }

    /// Every row of every table, sorted, as text (run_tasks has no rowid, so no shared snapshot
    /// helper): equal dumps mean an unchanged warehouse.
    static func dump(_ w: Warehouse) throws -> [String: [String]] {
        try w.writer.read { db in
            var out: [String: [String]] = [:]
            for t in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") {
                out[t] = try Row.fetchAll(db, sql: "SELECT * FROM \"\(t)\"").map(\.description).sorted()
            }
            return out
        }
    }

    /// Every message, tool call, LLM call and grade hangs off the rollout it was written for.
    static func expectConsistent(_ w: Warehouse, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let misplacedMessages = try w.int("""
            SELECT count(*) FROM messages m JOIN rollouts r ON r.id = m.rollout_id JOIN runs u ON u.id = r.run_id
            JOIN tasks t ON t.id = r.task_id
            WHERE m.content <> u.name || '|' || t.external_id || '|' || r.sample || '|' || m.idx
            """)
        #expect(misplacedMessages == 0, sourceLocation: sourceLocation)
        let badToolCalls = try w.int("""
            SELECT count(*) FROM tool_calls c JOIN messages m ON m.id = c.message_id
            LEFT JOIN messages res ON res.id = c.result_message_id
            WHERE m.rollout_id <> c.rollout_id OR res.rollout_id IS NOT c.rollout_id OR m.role <> 'assistant'
               OR res.role <> 'tool' OR c.arguments <> m.content OR res.tool_call_id <> c.call_id
            """)
        #expect(badToolCalls == 0, sourceLocation: sourceLocation)
        let badLLMCalls = try w.int("""
            SELECT count(*) FROM llm_calls c JOIN rollouts r ON r.id = c.rollout_id JOIN runs u ON u.id = r.run_id
            JOIN tasks t ON t.id = r.task_id
            WHERE c.run_id <> r.run_id OR c.request_hash NOT LIKE u.name || '|' || t.external_id || '|' || r.sample || '|%'
            """)
        #expect(badLLMCalls == 0, sourceLocation: sourceLocation)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE rollout_id NOT IN (SELECT id FROM rollouts)") == 0,
                sourceLocation: sourceLocation)
        #expect(try w.int("SELECT count(*) FROM grades WHERE rollout_id NOT IN (SELECT id FROM rollouts)") == 0,
                sourceLocation: sourceLocation)
        let foreignKeys = try w.writer.read { db in try Row.fetchAll(db, sql: "PRAGMA foreign_key_check") }
        #expect(foreignKeys.isEmpty, "\(foreignKeys)", sourceLocation: sourceLocation)
    }

    @Test func disjointShardsMergeIntoAFreshWarehouse() throws {
        let tmp = try TempDir()
        let (a, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        let (b, pathB) = try Self.shard(tmp, "b.db", offset: true, tasks: Self.shardB)
        // The shards really number things differently.
        #expect(try a.int("SELECT min(id) FROM tasks") != b.int("SELECT min(id) FROM tasks WHERE dataset_id = (SELECT id FROM datasets WHERE name = ?)", [Self.dataset]))
        let out = try Warehouse.open(path: tmp.file("out.db"))

        let first = try out.merge(from: pathA)
        #expect(first.conflictCount == 0)
        #expect(!first.nothingNew)
        #expect(first["rollouts"].inserted == 10)
        #expect(first["messages"].inserted == 40)
        #expect(first["tasks"].inserted == 10)
        #expect(first["runs"].inserted == 1)
        let second = try out.merge(from: pathB)
        #expect(second.conflictCount == 0, "\(second.conflicts)")
        #expect(second["tasks"].alreadyPresent == 10)
        #expect(second["tasks"].inserted == 20) // the QA set only shard B has
        #expect(second["runs"].inserted == 1) // other-b.db
        #expect(second["runs"].alreadyPresent == 1)
        #expect(second["run_tasks"].inserted == 5 + 2)
        #expect(second["rollouts"].inserted == 10 + 2)
        #expect(second["datasets"].inserted == 1)
        #expect(second["domains"].alreadyPresent == 1)
        #expect(second["tools"].alreadyPresent == 4)

        let c = try Self.counts(out)
        #expect(c["tasks"] == 30)
        #expect(c["runs"] == 2)
        #expect(c["rollouts"] == 22)
        #expect(c["messages"] == 88)
        #expect(c["tool_calls"] == 22)
        #expect(c["llm_calls"] == 44)
        #expect(c["grades"] == 22)
        #expect(c["run_tasks"] == 12)
        #expect(c["ingests"] == 3) // tau2 on each shard, the QA ingest of shard B
        #expect(try c["domains"] == a.count("domains"))
        #expect(try c["tools"] == a.count("tools"))
        #expect(try out.int("SELECT count(*) FROM run_tasks WHERE run_id = (SELECT id FROM runs WHERE name = 'r')") == 10)
        #expect(try out.string("SELECT status FROM runs WHERE name = 'r'") == "completed")
        // Every task points at ingests that exist and say it came from tau2 or qa.
        #expect(try out.int("""
            SELECT count(*) FROM tasks t JOIN ingests i ON i.id = t.created_ingest JOIN datasets d ON d.id = t.dataset_id
            WHERE (d.name = 'bc') = (i.kind = 'qa')
            """) == 30)
        try Self.expectConsistent(out)
        // Each (run, task, sample) exactly once, with its shard's content.
        #expect(try out.int("SELECT count(DISTINCT run_id || '/' || task_id || '/' || sample) FROM rollouts") == 22)
    }

    @Test func mergingTheSameInputAgainAddsNothingAndSaysSo() throws {
        let tmp = try TempDir()
        let (_, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        let (_, pathB) = try Self.shard(tmp, "b.db", offset: true, tasks: Self.shardB)
        // OUT starts as a copy of shard A, as when one shard's file is the central warehouse.
        try FileManager.default.copyItem(atPath: pathA, toPath: tmp.file("out.db"))
        let out = try Warehouse.open(path: tmp.file("out.db"))
        let again = try out.merge(from: pathA)
        #expect(again.nothingNew)
        #expect(again.conflictCount == 0, "\(again.conflicts)")
        #expect(again.tables.allSatisfy { $0.inserted == 0 && $0.updated == 0 })
        #expect(again["rollouts"].alreadyPresent == 10)
        #expect(again["messages"].alreadyPresent == 40)
        #expect(again["grades"].alreadyPresent == 10)
        #expect(again.summary.contains("nothing new"))

        _ = try out.merge(from: pathB)
        let before = try Self.dump(out)
        for path in [pathB, pathA] {
            let report = try out.merge(from: path)
            #expect(report.nothingNew, "\(report.summary)")
            #expect(report.conflictCount == 0)
        }
        #expect(try Self.dump(out) == before)
        try Self.expectConsistent(out)
    }

    @Test func anOverlappingRolloutIsAConflictAndKeepsTheTarget() throws {
        let tmp = try TempDir()
        let (_, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        // Shard C ran one of A's tasks too, with a longer transcript, and one task of its own.
        let (c, pathC) = try Self.shard(tmp, "c.db", offset: true, tasks: [])
        try Self.addRun(c, run: "r", hash: "h1", tasks: ["create_task_1"], samples: 1, messages: 6,
                        stamp: "2026-02-02T00:00:00.000Z")
        try Self.addRun(c, run: "r", hash: "h1", tasks: ["impossible_task_1"], samples: 1)
        let out = try Warehouse.open(path: tmp.file("out.db"))
        _ = try out.merge(from: pathA)
        let report = try out.merge(from: pathC)
        #expect(report["rollouts"].conflicts == 1)
        #expect(report["rollouts"].inserted == 1 + 2) // impossible_task_1 and the other run's two
        #expect(report["messages"].conflicts == 6)
        #expect(report["grades"].conflicts == 1)
        #expect(report["run_tasks"].alreadyPresent == 1)
        let line = try #require(report.conflicts.first { $0.hasPrefix("rollout of run r, task tau2-mock/create_task_1, sample 0") })
        #expect(line.contains("completed with 4 messages here, completed with 6 in the input"))
        #expect(report.summary.contains("conflicts (this warehouse's rows kept)"))
        // OUT's transcript stays; none of the input's six messages came in.
        #expect(try out.int("""
            SELECT count(*) FROM messages m JOIN rollouts r ON r.id = m.rollout_id JOIN tasks t ON t.id = r.task_id
            WHERE t.external_id = 'create_task_1' AND r.sample = 0
            """) == 4)
        try Self.expectConsistent(out)
        // Reported again on a second merge, and still nothing is copied.
        let again = try out.merge(from: pathC)
        #expect(again.nothingNew)
        #expect(again["rollouts"].conflicts == 1)
    }

    @Test func aRunWithAnotherConfigurationRefusesTheMergeAndChangesNothing() throws {
        let tmp = try TempDir()
        let (_, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        let (_, pathD) = try Self.shard(tmp, "d.db", hash: "h2", tasks: Self.shardB)
        let out = try Warehouse.open(path: tmp.file("out.db"))
        _ = try out.merge(from: pathA)
        let before = try Self.dump(out)
        #expect(try out.mergeRefusals(from: pathD) == ["r"])
        #expect(try out.mergeRefusals(from: pathA) == [])
        let error = try #require(throws: MergeError.self) { _ = try out.merge(from: pathD) }
        #expect(error.runs == ["r"])
        #expect(error.description.contains("run r: configuration h1 here, h2 in the input"))
        #expect(error.description.contains("--force"))
        #expect(try Self.dump(out) == before)

        // The connection is usable again (src detached, no temporary tables left).
        #expect(try out.merge(from: pathA).nothingNew)

        let forced = try out.merge(from: pathD, force: true)
        #expect(forced["runs"].conflicts == 1)
        #expect(forced.conflicts.contains { $0.hasPrefix("run r: another configuration") })
        #expect(forced["rollouts"].inserted == 10)
        #expect(try out.string("SELECT config_hash FROM runs WHERE name = 'r'") == "h1")
        try Self.expectConsistent(out)
    }

    @Test func aTaskWithOtherContentIsReportedAndItsRolloutsLeftOut() throws {
        let tmp = try TempDir()
        let (_, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        let (e, pathE) = try Self.shard(tmp, "e.db", tasks: Self.shardB)
        try e.writer.write { db in
            try db.execute(sql: """
                UPDATE tasks SET content_hash = content_hash + 1, answer = 'changed'
                WHERE external_id IN ('impossible_task_1', 'create_task_1')
                """)
        }
        let out = try Warehouse.open(path: tmp.file("out.db"))
        _ = try out.merge(from: pathA)
        let report = try out.merge(from: pathE)
        #expect(report["tasks"].conflicts == 2)
        #expect(report.conflicts.contains { $0.hasPrefix("task tau2-mock/impossible_task_1: content differs") })
        #expect(report.conflicts.contains { $0.hasPrefix("task tau2-mock/create_task_1: content differs") })
        #expect(report["rollouts"].conflicts == 2) // impossible_task_1's two samples
        #expect(report["rollouts"].inserted == 8)
        #expect(try out.int("SELECT count(*) FROM tasks WHERE answer = 'changed'") == 0)
        #expect(try out.int("""
            SELECT count(*) FROM rollouts r JOIN tasks t ON t.id = r.task_id WHERE t.external_id = 'impossible_task_1'
            """) == 0)
        try Self.expectConsistent(out)
    }

    @Test func aPendingPlaceholderIsFilledInAndTheRunStatusRecomputed() throws {
        let tmp = try TempDir()
        // OUT holds a copy of shard B taken while it was still running: its rollouts pending.
        let (_, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        let (early, _) = try Self.shard(tmp, "out.db", tasks: Self.shardB, status: "interrupted")
        #expect(try early.int("SELECT count(*) FROM rollouts WHERE status = 'pending'") == 10)
        let (_, pathB) = try Self.shard(tmp, "b.db", tasks: Self.shardB)
        let out = early
        let fromB = try out.merge(from: pathB)
        #expect(fromB["rollouts"].updated == 10)
        #expect(fromB["rollouts"].inserted == 0)
        #expect(fromB["messages"].inserted == 40)
        #expect(fromB["runs"].updated == 1)
        #expect(try out.string("SELECT status FROM runs WHERE name = 'r'") == "completed")
        _ = try out.merge(from: pathA)
        #expect(try out.string("SELECT status FROM runs WHERE name = 'r'") == "completed")
        try Self.expectConsistent(out)

        // A shard that did not finish keeps the merged run from looking finished.
        let (f, pathF) = try Self.shard(tmp, "f.db", tasks: [], status: "interrupted")
        try f.writer.write { db in
            try db.execute(sql: """
                INSERT INTO tasks(dataset_id, external_id, record, content_hash, created_ingest, changed_ingest, seen_ingest)
                SELECT dataset_id, 'extra', '{}', 1, created_ingest, changed_ingest, seen_ingest FROM tasks LIMIT 1
                """)
        }
        try Self.addRun(f, run: "r", hash: "h1", tasks: ["extra"], samples: 1, status: "interrupted")
        let fromF = try out.merge(from: pathF)
        #expect(fromF["rollouts"].inserted == 1)
        #expect(try out.string("SELECT status FROM runs WHERE name = 'r'") == "interrupted")
    }

    @Test func aMissingInputOrTheTargetItselfIsRefused() throws {
        let tmp = try TempDir()
        let (a, pathA) = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        #expect(throws: MergeError.self) { _ = try a.merge(from: pathA) }
        #expect(throws: MergeError.self) { _ = try a.merge(from: tmp.file("missing.db")) }
        try tmp.write("not.db", "hello, not SQLite")
        #expect(throws: WarehouseError.self) { _ = try a.merge(from: tmp.file("not.db")) }
    }

    // MARK: CLI

    /// The `rollout` executable built with the tests (`swift build --build-tests`).
    static let binary: String? = {
        let dirs = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                    Bundle.main.bundleURL.deletingLastPathComponent()]
        return dirs.map { $0.appending(path: "rollout").path }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static func rollout(_ arguments: [String], in directory: URL) throws -> CLITests.Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(binary))
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLITests.Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                               stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test(.enabled(if: MergeTests.binary != nil, "build the rollout executable first (swift build)"))
    func cliMergesReportsAndRefuses() throws {
        let tmp = try TempDir()
        _ = try Self.shard(tmp, "a.db", tasks: Self.shardA)
        _ = try Self.shard(tmp, "b.db", offset: true, tasks: Self.shardB)
        _ = try Self.shard(tmp, "d.db", hash: "h2", tasks: Self.shardB)

        let first = try Self.rollout(["merge", "out.db", "a.db", "b.db"], in: tmp.url)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("merged a.db into out.db:"))
        #expect(first.stdout.contains("merged b.db into out.db:"))
        #expect(first.stdout.contains("  rollouts: 12 inserted, 0 already present"))

        let again = try Self.rollout(["merge", "out.db", "b.db", "--json"], in: tmp.url)
        #expect(again.status == 0, "\(again.stderr)")
        let report = try JSONDecoder().decode(MergeReport.self, from: Data(again.stdout.utf8))
        #expect(report.nothingNew)
        #expect(report["rollouts"].alreadyPresent == 12)

        let out = try Warehouse.open(path: tmp.file("out.db"), create: false)
        let before = try Self.dump(out)
        // d.db's run r has another configuration: refused before a.db (listed first) is merged.
        let refused = try Self.rollout(["merge", "out.db", "a.db", "d.db"], in: tmp.url)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("d.db: run r"), "\(refused.stderr)")
        #expect(refused.stdout.isEmpty)
        #expect(try Self.dump(out) == before)

        let missing = try Self.rollout(["merge", "out.db", "nope.db"], in: tmp.url)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("nope.db: no such warehouse"))
    }
}
