import Foundation
import GRDB

/// How `rollout eval` groups tasks.
public enum EvalGrouping: String, Sendable, CaseIterable {
    case run, dataset, domain, task
    case agentModel = "agent_model"
    case userModel = "user_model"
}

/// Whether failed rollouts (errors) count as incorrect or are left out.
public enum FailedConvention: String, Sendable, CaseIterable { case incorrect, exclude }

/// What to do with tasks that have fewer samples than k.
public enum ShortConvention: String, Sendable, CaseIterable {
    /// No estimate for the groups concerned (`rollout eval` stops with an error).
    case refuse
    /// k is lowered to the smallest n of the selection.
    case cap
    /// Those tasks are left out.
    case skip
}

/// One `rollout eval`: the pass-at-k query's parameters.
public struct EvalRequest: Sendable {
    public var run: String
    public var grader: String
    public var version: Int?
    public var ks: [Int]
    public var by: EvalGrouping
    public var failed: FailedConvention
    public var undecided: FailedConvention
    public var short: ShortConvention

    public init(run: String, grader: String = "stop-reason", version: Int? = nil, ks: [Int] = [1], by: EvalGrouping = .domain,
                failed: FailedConvention = .incorrect, undecided: FailedConvention = .incorrect, short: ShortConvention = .refuse) {
        self.run = run
        self.grader = grader
        self.version = version
        self.ks = ks
        self.by = by
        self.failed = failed
        self.undecided = undecided
        self.short = short
    }
}

/// The pass@k table of one evaluation, with what it covered and where it was stored.
public struct EvalResult: Sendable {
    public var table: QueryResult
    /// The parameters as stored in `scores.params` (the version resolved).
    public var parameters: JSONObject
    public var version: Int
    /// Samples of the run (latest attempt of each), and those graded by this version.
    public var samples: Int
    public var graded: Int
    /// `note`s of groups whose estimate was refused (k > n).
    public var refused: [String]
    /// The `scores` row written, if any.
    public var scoreID: Int64?
}

/// Two runs compared task by task.
public struct CompareResult: Sendable {
    public struct Summary: Sendable, Codable, Equatable {
        public var runA: String
        public var runB: String
        public var grader: String
        public var versionA: Int
        public var versionB: Int
        public var tasksA: Int
        public var tasksB: Int
        public var both: Int
        /// Mean pass@1 (c/n) over the tasks graded in both runs.
        public var passAt1A: Double?
        public var passAt1B: Double?
        public var better: Int
        public var worse: Int
        public var same: Int
        public var flippedToPass: Int
        public var flippedToFail: Int
        /// Exact two-sided sign test on the flips (is one direction more common than chance?).
        public var signTestP: Double?
    }

    public var summary: Summary
    public var tasks: QueryResult
    public var scoreID: Int64?
}

public struct EvalError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Warehouse {
    /// Runs `queries/pass-at-k.sql` for one run and grader and, unless `store` is false, keeps
    /// the table in `scores`. An estimate refused for k > n is an error when `store` is set
    /// (nothing is stored); the result carries the notes either way.
    public func evaluate(_ request: EvalRequest, store: Bool = true) throws -> EvalResult {
        guard !request.ks.isEmpty, request.ks.allSatisfy({ $0 >= 1 }) else { throw EvalError("k must be positive integers, e.g. --k 1,5,10") }
        let (runID, version, samples, graded) = try writer.read { db -> (Int64, Int, Int, Int) in
            guard let runID = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [request.run]) else {
                throw EvalError("no run named \"\(request.run)\"")
            }
            let versions = try Int.fetchAll(db, sql: """
                SELECT DISTINCT grader_version FROM grade_counts WHERE grader = ? AND run_id = ? ORDER BY 1
                """, arguments: [request.grader, runID])
            guard let latest = versions.last else {
                let others = try String.fetchAll(db, sql: "SELECT DISTINCT grader FROM grade_counts WHERE run_id = ? ORDER BY 1", arguments: [runID])
                throw EvalError("run \(request.run) has no grades by \(request.grader); grade it first: rollout grade --run \(request.run) --grader \(request.grader)"
                                + (others.isEmpty ? "" : " (graded by: \(others.joined(separator: ", ")))"))
            }
            let version = request.version ?? latest
            guard versions.contains(version) else {
                throw EvalError("run \(request.run) has no grades by \(request.grader) version \(version) (versions: \(versions.map(String.init).joined(separator: ", ")))")
            }
            let samples = try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM rollouts WHERE run_id = ? GROUP BY task_id, sample)",
                                           arguments: [runID]) ?? 0
            let graded = try Int.fetchOne(db, sql: "SELECT coalesce(sum(n), 0) FROM grade_counts WHERE grader = ? AND grader_version = ? AND run_id = ?",
                                          arguments: [request.grader, version, runID]) ?? 0
            return (runID, version, samples, graded)
        }
        let parameters: [String: String] = [
            "run": request.run, "grader": request.grader, "version": String(version),
            "k": request.ks.map(String.init).joined(separator: ","), "by": request.by.rawValue,
            "failed": request.failed.rawValue, "undecided": request.undecided.rawValue, "short": request.short.rawValue,
        ]
        let table = try QueryRunner(self).run("pass-at-k", parameters: parameters)[0]
        let keys = table.column("key")
        var refusedNotes: [String] = []
        for (i, note) in table.column("note").enumerated() {
            if case .text(let t) = note, t.hasPrefix("refused") { refusedNotes.append("\(keys[i].text): \(t)") }
        }
        var stored = JSONObject()
        for key in ["run", "grader", "version", "k", "by", "failed", "undecided", "short"] {
            stored[key] = key == "version" ? JSONValue(version) : .string(parameters[key]!)
        }
        var result = EvalResult(table: table, parameters: stored, version: version, samples: samples, graded: graded,
                                refused: refusedNotes, scoreID: nil)
        if store {
            if !result.refused.isEmpty {
                let first = result.refused.first!
                throw EvalError("k > n: \(first)\(result.refused.count > 1 ? " (and \(result.refused.count - 1) more group(s))" : ""); pass --short cap (k becomes the fewest samples) or --short skip (those tasks are left out)")
            }
            result.scoreID = try storeScore(runID: runID, query: "pass-at-k", parameters: stored, table: table)
        }
        return result
    }

    /// Writes a stored evaluation table.
    func storeScore(runID: Int64?, query: String, parameters: JSONObject, table: QueryResult, extra: JSONObject? = nil) throws -> Int64 {
        let rows = JSONValue.array(table.rows.map { row in
            .object(JSONObject(pairs: zip(table.columns, row.map(\.json)).map { ($0, $1) }))
        })
        let result: JSONValue = extra.map { e in
            var o = e
            o["rows"] = rows
            return .object(o)
        } ?? rows
        return try writer.write { db in
            try db.execute(sql: "INSERT INTO scores(run_id, query, params, result, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [runID, query, JSONValue.object(parameters).jsonText, result.jsonText, Timestamp.now()])
            return db.lastInsertedRowID
        }
    }

    /// Compares two runs task by task (`queries/compare.sql`) and, unless `store` is false,
    /// keeps the comparison in `scores` (query `compare`, on run A).
    public func compareRuns(_ a: String, _ b: String, grader: String = "stop-reason", versionA: Int? = nil, versionB: Int? = nil,
                            failed: FailedConvention = .incorrect, undecided: FailedConvention = .incorrect,
                            store: Bool = true) throws -> CompareResult {
        let (idA, va, vb) = try writer.read { db -> (Int64, Int, Int) in
            var ids: [Int64] = []
            var versions: [Int] = []
            for (name, wanted) in [(a, versionA), (b, versionB)] {
                guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [name]) else {
                    throw EvalError("no run named \"\(name)\"")
                }
                let have = try Int.fetchAll(db, sql: "SELECT DISTINCT grader_version FROM grade_counts WHERE grader = ? AND run_id = ? ORDER BY 1",
                                            arguments: [grader, id])
                guard let latest = have.last else {
                    throw EvalError("run \(name) has no grades by \(grader); grade it first: rollout grade --run \(name) --grader \(grader)")
                }
                let v = wanted ?? latest
                guard have.contains(v) else {
                    throw EvalError("run \(name) has no grades by \(grader) version \(v) (versions: \(have.map(String.init).joined(separator: ", ")))")
                }
                ids.append(id)
                versions.append(v)
            }
            return (ids[0], versions[0], versions[1])
        }
        let parameters: [String: String] = ["a": a, "b": b, "grader": grader, "version_a": String(va), "version_b": String(vb),
                                             "failed": failed.rawValue, "undecided": undecided.rawValue]
        let table = try QueryRunner(self).run("compare", parameters: parameters)[0]
        var s = CompareResult.Summary(runA: a, runB: b, grader: grader, versionA: va, versionB: vb, tasksA: 0, tasksB: 0, both: 0,
                                      passAt1A: nil, passAt1B: nil, better: 0, worse: 0, same: 0, flippedToPass: 0, flippedToFail: 0,
                                      signTestP: nil)
        var sumA = 0.0, sumB = 0.0
        let changes = table.column("change"), pa = table.column("p_a"), pb = table.column("p_b")
        for i in table.rows.indices {
            let change = changes[i].text
            if change != "only in b" { s.tasksA += 1 }
            if change != "only in a" { s.tasksB += 1 }
            guard change != "only in a" && change != "only in b" else { continue }
            s.both += 1
            if case .real(let x) = pa[i] { sumA += x } else if case .integer(let x) = pa[i] { sumA += Double(x) }
            if case .real(let x) = pb[i] { sumB += x } else if case .integer(let x) = pb[i] { sumB += Double(x) }
            switch change {
            case "flipped to pass": s.flippedToPass += 1; s.better += 1
            case "flipped to fail": s.flippedToFail += 1; s.worse += 1
            case "better": s.better += 1
            case "worse": s.worse += 1
            default: s.same += 1
            }
        }
        if s.both > 0 {
            s.passAt1A = sumA / Double(s.both)
            s.passAt1B = sumB / Double(s.both)
        }
        if s.flippedToPass + s.flippedToFail > 0 { s.signTestP = Self.signTest(s.flippedToPass, s.flippedToFail) }
        var result = CompareResult(summary: s, tasks: table, scoreID: nil)
        if store {
            var stored = JSONObject()
            for (k, v) in parameters.sorted(by: { $0.key < $1.key }) { stored[k] = k.hasPrefix("version") ? JSONValue(Int(v)!) : .string(v) }
            let data = try JSONEncoder().encode(s)
            let summaryJSON = try JSONParser.parse(String(decoding: data, as: UTF8.self))
            result.scoreID = try storeScore(runID: idA, query: "compare", parameters: stored, table: table,
                                            extra: ["summary": summaryJSON])
        }
        return result
    }

    /// Exact two-sided sign test: P(a split at least this uneven | each flip is a fair coin).
    static func signTest(_ x: Int, _ y: Int) -> Double {
        let n = x + y, k = min(x, y)
        guard n > 0 else { return 1 }
        // log C(n, i) − n log 2, summed in a stable way.
        func logChoose(_ n: Int, _ i: Int) -> Double { lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1)) }
        var tail = 0.0
        for i in 0...k { tail += exp(logChoose(n, i) - Double(n) * log(2.0)) }
        return min(1, 2 * tail)
    }
}
