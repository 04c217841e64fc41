import Foundation
import GRDB
import RolloutKit
import Testing

/// What one sample of a synthetic task did.
enum SampleOutcome: Sendable, Equatable {
    /// Completed with reward 1 / 0.
    case pass, fail
    /// Status failed (an error after its retries), reward 1 all the same: it must never count.
    case errored
    /// Completed with no reward: the reward grader cannot decide it.
    case unknown
}

/// A synthetic task: its id, domain key and samples in order.
struct SyntheticTask: Sendable {
    var id: String
    var domain: String?
    var samples: [SampleOutcome]
    init(_ id: String, domain: String? = nil, _ samples: [SampleOutcome]) {
        self.id = id
        self.domain = domain
        self.samples = samples
    }

    /// n passes and the rest fails.
    init(_ id: String, domain: String? = nil, n: Int, c: Int) {
        self.init(id, domain: domain, Array(repeating: .pass, count: c) + Array(repeating: .fail, count: n - c))
    }
}

enum EvalFixtures {
    /// Writes an imported run of `tasks` (dataset `dataset`) straight into the warehouse, each
    /// sample a rollout whose reward says what it did.
    static func addRun(_ w: Warehouse, run: String, dataset: String = "synthetic", tasks: [SyntheticTask],
                       agentModel: String? = nil) throws {
        let now = Timestamp.now()
        try w.writer.write { db in
            try db.execute(sql: "INSERT INTO ingests(kind, source, started_at) VALUES ('trajectories', 'synthetic', ?)", arguments: [now])
            let ingest = db.lastInsertedRowID
            try db.execute(sql: """
                INSERT INTO datasets(name, kind, created_at, updated_at) VALUES (?, 'qa', ?, ?) ON CONFLICT(name) DO NOTHING
                """, arguments: [dataset, now, now])
            let datasetID = try Int64.fetchOne(db, sql: "SELECT id FROM datasets WHERE name = ?", arguments: [dataset])!
            try db.execute(sql: "INSERT INTO runs(name, mode, agent_model, status, created_at) VALUES (?, 'imported', ?, 'completed', ?)",
                           arguments: [run, agentModel, now])
            let runID = db.lastInsertedRowID
            let insertRollout = try db.makeStatement(sql: """
                INSERT INTO rollouts(run_id, task_id, sample, status, reward, error, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            for t in tasks {
                var domainID: Int64?
                if let key = t.domain {
                    try db.execute(sql: """
                        INSERT INTO domains(key, size, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING
                        """, arguments: [key, key.split(separator: "+").count, now, now])
                    domainID = try Int64.fetchOne(db, sql: "SELECT id FROM domains WHERE key = ?", arguments: [key])
                }
                try db.execute(sql: """
                    INSERT INTO tasks(dataset_id, external_id, domain_id, record, content_hash, created_ingest, changed_ingest, seen_ingest)
                    VALUES (?, ?, ?, '{}', 0, ?, ?, ?) ON CONFLICT(dataset_id, external_id) DO NOTHING
                    """, arguments: [datasetID, t.id, domainID, ingest, ingest, ingest])
                let taskID = try Int64.fetchOne(db, sql: "SELECT id FROM tasks WHERE dataset_id = ? AND external_id = ?",
                                                arguments: [datasetID, t.id])!
                for (i, s) in t.samples.enumerated() {
                    let (status, reward, error): (String, Double?, String?) = switch s {
                    case .pass: ("completed", 1, nil)
                    case .fail: ("completed", 0, nil)
                    case .errored: ("failed", 1, "HTTP 500 after 5 attempts")
                    case .unknown: ("completed", nil, nil)
                    }
                    try insertRollout.execute(arguments: [runID, taskID, i, status, reward, error, now])
                }
            }
        }
    }

    /// A warehouse holding `tasks` as run `run`, graded by the reward grader.
    static func graded(_ tasks: [SyntheticTask], run: String = "r") async throws -> Warehouse {
        let w = try Warehouse.inMemory()
        try addRun(w, run: run, tasks: tasks)
        _ = try await w.grade(run: run, definition: try GraderDefinition(kind: .reward, options: [:]))
        return w
    }

    /// pass-at-k rows as dictionaries keyed by column.
    static func rows(_ result: QueryResult) -> [[String: QueryValue]] {
        result.rows.map { Dictionary(uniqueKeysWithValues: zip(result.columns, $0)) }
    }

    /// True when python3 can import `module`.
    static func python(has module: String) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import \(module)"]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Runs a program and returns (status, stdout, stderr).
    static func run(_ executable: String, _ arguments: [String], stdin: String? = nil, in directory: URL? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

extension QueryValue {
    var double: Double? {
        switch self {
        case .integer(let i): Double(i)
        case .real(let d): d
        default: nil
        }
    }

    var int: Int? { if case .integer(let i) = self { return Int(i) }; return nil }
}
