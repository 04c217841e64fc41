import Foundation
import GRDB
import RolloutKit
import Testing

/// grade_counts, kept by triggers, always equals a recount from grades over the latest
/// attempts (queries/grade-counts-check.sql prints the differences).
@Suite("grade_counts")
struct GradeCountsTests {
    static func problems(_ w: Warehouse) throws -> [[String]] {
        try QueryRunner(w).run("grade-counts-check")[0].rows.map { $0.map(\.text) }
    }

    /// A seeded random mix of everything that changes which grades count: new rollouts and
    /// retries (newer attempts), grades inserted / changed / deleted, rollouts deleted, status
    /// changes, a run deleted. The check runs after every step.
    @Test(arguments: [1, 2, 3])
    func countsMatchARecountAfterEveryChange(seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        let w = try Warehouse.inMemory()
        try EvalFixtures.addRun(w, run: "r1", tasks: [SyntheticTask("t1", []), SyntheticTask("t2", []), SyntheticTask("t3", [])])
        try EvalFixtures.addRun(w, run: "r2", tasks: [SyntheticTask("t1", []), SyntheticTask("t2", [])])
        let now = Timestamp.now()
        for step in 0..<300 {
            try w.writer.write { db in
                let rollouts = try Row.fetchAll(db, sql: "SELECT id FROM rollouts").map { $0[0] as Int64 }
                let op = rng.next() % 100
                func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
                if op < 30 || rollouts.isEmpty {
                    let runs = try Int64.fetchAll(db, sql: "SELECT id FROM runs")
                    let tasks = try Int64.fetchAll(db, sql: "SELECT id FROM tasks")
                    guard !runs.isEmpty else { return }
                    let (run, task, sample) = (pick(runs), pick(tasks), Int(rng.next() % 3))
                    let next = try Int.fetchOne(db, sql: "SELECT coalesce(max(attempt) + 1, 0) FROM rollouts WHERE run_id = ? AND task_id = ? AND sample = ?",
                                                arguments: [run, task, sample])!
                    try db.execute(sql: "INSERT OR IGNORE INTO rollouts(run_id, task_id, sample, attempt, status) VALUES (?, ?, ?, ?, ?)",
                                   arguments: [run, task, sample, rng.next() % 5 == 0 ? max(0, next - 1) : next,
                                               pick(["completed", "failed", "running"])])
                } else if op < 60 {
                    let passed: Int? = pick([0, 1, nil])
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO grades(rollout_id, grader, grader_version, passed, created_at) VALUES (?, ?, ?, ?, ?)
                        """, arguments: [pick(rollouts), pick(["a", "b"]), Int(rng.next() % 2) + 1, passed, now])
                } else if op < 70 {
                    try db.execute(sql: "DELETE FROM grades WHERE id = (SELECT id FROM grades ORDER BY id LIMIT 1 OFFSET ?)",
                                   arguments: [Int(rng.next() % 8)])
                } else if op < 78 {
                    let passed: Int? = pick([0, 1, nil])
                    try db.execute(sql: "UPDATE OR IGNORE grades SET passed = ?, grader_version = ? WHERE id = (SELECT id FROM grades ORDER BY id LIMIT 1 OFFSET ?)",
                                   arguments: [passed, Int(rng.next() % 2) + 1, Int(rng.next() % 8)])
                } else if op < 88 {
                    try db.execute(sql: "DELETE FROM rollouts WHERE id = ?", arguments: [pick(rollouts)])
                } else if op < 98 {
                    try db.execute(sql: "UPDATE rollouts SET status = ? WHERE id = ?", arguments: [pick(["completed", "failed", "running"]), pick(rollouts)])
                } else {
                    try db.execute(sql: "DELETE FROM runs WHERE id = (SELECT max(id) FROM runs)")
                    if try Int.fetchOne(db, sql: "SELECT count(*) FROM runs") == 0 {
                        try db.execute(sql: "INSERT INTO runs(name, mode, created_at) VALUES ('r3', 'imported', ?)", arguments: [now])
                    }
                }
            }
            let p = try Self.problems(w)
            try #require(p.isEmpty, "step \(step): \(p)")
        }
        #expect(try w.count("grades") > 0)
    }

    /// Grades written before migration 0004 (by a rollout that knew only 0001 and 0002) get
    /// their counts and a graders row when the warehouse is opened by this one.
    @Test func migrationCountsEarlierGrades() throws {
        let tmp = try TempDir()
        let path = tmp.file("old.db")
        do {
            let queue = try DatabaseQueue(path: path)
            var migrator = DatabaseMigrator()
            for name in ["0001_warehouse", "0002_engine"] {
                let sql = try #require(BundledFiles.text("schema/\(name).sql"))
                migrator.registerMigration(name) { db in try db.execute(sql: sql) }
            }
            try migrator.migrate(queue)
            try queue.write { db in
                try db.execute(sql: "PRAGMA application_id = \(Warehouse.applicationID)")
                try db.execute(sql: "PRAGMA user_version = 2")
                let now = Timestamp.now()
                try db.execute(sql: "INSERT INTO ingests(kind, source, started_at) VALUES ('qa', 'x', ?)", arguments: [now])
                try db.execute(sql: "INSERT INTO datasets(name, kind, created_at, updated_at) VALUES ('d', 'qa', ?, ?)", arguments: [now, now])
                try db.execute(sql: "INSERT INTO tasks(dataset_id, external_id, record, content_hash, created_ingest, changed_ingest, seen_ingest) VALUES (1, 't', '{}', 0, 1, 1, 1)")
                try db.execute(sql: "INSERT INTO runs(name, mode, created_at) VALUES ('quickstart', 'dialogue', ?)", arguments: [now])
                for (sample, attempt, status, passed) in [(0, 0, "failed", 0), (0, 1, "completed", 1), (1, 0, "completed", 0), (2, 0, "completed", 1)] {
                    try db.execute(sql: "INSERT INTO rollouts(run_id, task_id, sample, attempt, status) VALUES (1, 1, ?, ?, ?)",
                                   arguments: [sample, attempt, status])
                    try db.execute(sql: "INSERT INTO grades(rollout_id, grader, grader_version, value, passed, created_at) VALUES (?, 'stop-reason', 1, ?, ?, ?)",
                                   arguments: [db.lastInsertedRowID, passed, passed, now])
                }
            }
            try queue.close()
        }
        let w = try Warehouse.open(path: path)
        #expect(try w.status().applied == Warehouse.knownMigrations)
        #expect(try Self.problems(w).isEmpty)
        #expect(try w.rows("SELECT n, c FROM grade_counts").map { [$0[0] as Int, $0[1] as Int] } == [[3, 2]])
        // The quickstart's grader written by 0004 is this binary's stop-reason definition, so
        // grading again finds its version 1 instead of adding one.
        #expect(try w.string("SELECT definition FROM graders WHERE name = 'stop-reason' AND version = 1")
                == (try GraderDefinition(kind: .stopReason, options: [:])).canonicalJSON)
    }

    /// Two shards graded on their own merge into one warehouse whose counts are right, with a
    /// grader definition both have mapped to one version.
    @Test func mergedShardsKeepCountsAndMapGraderVersions() async throws {
        let tmp = try TempDir()
        var paths: [String] = []
        for (i, tasks) in [[SyntheticTask("a", n: 3, c: 1), SyntheticTask("b", n: 3, c: 3)],
                           [SyntheticTask("c", n: 3, c: 0)]].enumerated() {
            let path = tmp.file("shard\(i).db")
            let w = try Warehouse.open(path: path)
            try EvalFixtures.addRun(w, run: "big", tasks: tasks)
            if i == 1 {
                // This shard saw another reward definition first, so the common one is its v2.
                try EvalFixtures.addRun(w, run: "other", tasks: [SyntheticTask("z", n: 1, c: 1)])
                _ = try await w.grade(run: "other", definition: try GraderDefinition(kind: .reward, options: ["threshold": JSONValue(0.5)]))
            }
            _ = try await w.grade(run: "big", definition: try GraderDefinition(kind: .reward, options: [:]))
            try (w.writer as? DatabasePool)?.close()
            paths.append(path)
        }
        let out = tmp.file("out.db")
        let w = try Warehouse.open(path: out)
        for p in paths { _ = try w.merge(from: p) }
        #expect(try Self.problems(w).isEmpty)
        let versions = try w.rows("SELECT version, definition FROM graders WHERE name = 'reward' ORDER BY version")
        #expect(versions.count == 2)
        let common = try #require(versions.first { ($0[1] as String) == (try! GraderDefinition(kind: .reward, options: [:])).canonicalJSON })
        let v: Int = common[0]
        #expect(try w.int("SELECT count(DISTINCT grader_version) FROM grades g JOIN rollouts r ON r.id = g.rollout_id JOIN runs ru ON ru.id = r.run_id WHERE ru.name = 'big'") == 1)
        #expect(try w.int("SELECT max(grader_version) FROM grades g JOIN rollouts r ON r.id = g.rollout_id JOIN runs ru ON ru.id = r.run_id WHERE ru.name = 'big'") == v)
        let result = try w.evaluate(EvalRequest(run: "big", grader: "reward", version: v, ks: [1], by: .run), store: false)
        let all = try #require(EvalFixtures.rows(result.table).last)
        #expect(all["tasks"]!.int == 3 && all["samples"]!.int == 9)
        #expect(abs(all["pass_at_k"]!.double! - (1.0 / 3 + 1 + 0) / 3) < 1e-12)
    }
}

/// A small seeded generator for property tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
