import Foundation
import GRDB
import Synchronization

/// How `Warehouse.grade` runs.
public struct GradeOptions: Sendable {
    /// Judge calls in flight at once.
    public var concurrency: Int
    /// Calls the judge model (llm-judge only); its attempts go to `llm_calls`.
    public var client: ModelClient?
    /// Grade at most this many rollouts this time.
    public var limit: Int?
    /// Asked after every batch of grades written (graded so far, to grade in all).
    public var progress: (@Sendable (Int, Int) -> Void)?
    /// Set it to stop starting judge calls; those in flight finish and are written.
    public var stop: GradeStop?

    public init(concurrency: Int = 8, client: ModelClient? = nil, limit: Int? = nil,
                progress: (@Sendable (Int, Int) -> Void)? = nil, stop: GradeStop? = nil) {
        self.concurrency = concurrency
        self.client = client
        self.limit = limit
        self.progress = progress
        self.stop = stop
    }
}

/// A stop request for a grading in progress (SIGINT).
public final class GradeStop: Sendable {
    private let flag = Mutex(false)
    public init() {}
    public func stop() { flag.withLock { $0 = true } }
    public var isStopped: Bool { flag.withLock { $0 } }
}

/// What one `rollout grade` wrote.
public struct GradeReport: Sendable, Codable, Equatable {
    public var run: String
    public var grader: String
    public var kind: String
    public var version: Int
    /// This definition was new: the version was added now.
    public var newVersion: Bool
    /// Rows written now, and their verdicts.
    public var graded = 0
    public var passed = 0
    public var notPassed = 0
    public var undecidable = 0
    /// Among `graded`: rollouts that had failed (graded as not passed).
    public var failedRollouts = 0
    /// Latest finished rollouts that already had a grade of this version (not graded again).
    public var alreadyGraded = 0
    /// Latest rollouts still pending, running or interrupted (graded once they finish).
    public var notFinished = 0
    /// Judge calls that failed after their retries: those rollouts stay ungraded (run again).
    public var errors = 0
    public var errorSamples: [String] = []
    /// A fatal error (credentials, unknown model) stopped the grading.
    public var fatal: String?
    /// Stopped by a signal before every rollout was graded.
    public var stopped = false
    /// τ components written beside the overall grade (`tau2.actions`, `tau2.communicate`).
    public var components: [GradeReport] = []

    mutating func count(_ v: Verdict, failed: Bool) {
        graded += 1
        if failed { failedRollouts += 1 }
        switch v.passed {
        case true?: passed += 1
        case false?: notPassed += 1
        case nil: undecidable += 1
        }
    }

    public var summary: String {
        var s = "graded \(graded) rollout\(graded == 1 ? "" : "s") of run \(run) with \(grader) v\(version)\(newVersion ? " (new version)" : "")"
        s += ": \(passed) passed, \(notPassed) not passed, \(undecidable) undecidable"
        if failedRollouts > 0 { s += " (\(failedRollouts) failed rollout\(failedRollouts == 1 ? "" : "s") graded as not passed)" }
        var notes: [String] = []
        if alreadyGraded > 0 { notes.append("\(alreadyGraded) already graded") }
        if notFinished > 0 { notes.append("\(notFinished) not finished yet") }
        if errors > 0 { notes.append("\(errors) judge call\(errors == 1 ? "" : "s") failed (ungraded; run again to retry)") }
        if stopped { notes.append("stopped before the end (run again to continue)") }
        if !notes.isEmpty { s += "; " + notes.joined(separator: ", ") }
        for c in components { s += "\n  \(c.grader) v\(c.version): \(c.passed) passed, \(c.notPassed) not passed, \(c.undecidable) undecidable" }
        if let fatal { s += "\nstopped: \(fatal)" }
        return s
    }
}

/// A grading problem (unknown run, a SQL expression that does not compile, a judge model that
/// is not registered).
public struct GradeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One rollout to grade, decoded off the database thread.
struct GradeCandidate: Sendable {
    var rolloutID: Int64
    var sample: Int
    var failed: Bool
    var error: String?
    var response: String?
    var reference: String?
    var question: String?
    var criteria: String?
    var taskID: String
}

/// A verdict ready to be written.
struct GradeRow: Sendable {
    var rolloutID: Int64
    var grader: String
    var verdict: Verdict
    var failed: Bool
}

extension Warehouse {
    /// Grades the latest finished attempt (completed or failed) of every sample of `run` that
    /// has no grade of this definition's version yet: incremental and resumable. A definition
    /// not seen before under its name becomes a new version (the old one and its grades stay).
    /// Failed rollouts are graded as not passed without further work (the `sql` grader
    /// evaluates its expression on them too).
    public func grade(run: String, definition: GraderDefinition, options: GradeOptions = .init()) async throws -> GradeReport {
        if definition.kind == .llmJudge {
            // The judge must be callable before a version is registered for it.
            guard let client = options.client else { throw GradeError("the llm-judge grader needs a model client") }
            let entry = try client.registry.resolve(definition.string("model") ?? "", keyPath: "model")
            // Its key and address too: an unset ${VAR} is refused before anything is written.
            _ = try Endpoint(entry: entry)
        }
        if definition.kind == .sql { try await dryRunExpression(run: run, definition: definition) }
        let (runID, version, isNew, componentVersions) = try await register(run: run, definition: definition, registry: options.client?.registry)
        var report = GradeReport(run: run, grader: definition.name, kind: definition.kind.rawValue, version: version, newVersion: isNew)
        do {
            (report.alreadyGraded, report.notFinished) = try await coverage(runID: runID, grader: definition.name, version: version)
            for (name, v) in componentVersions {
                report.components.append(GradeReport(run: run, grader: name, kind: definition.kind.rawValue, version: v, newVersion: isNew))
            }
            switch definition.kind {
            case .stopReason, .reward, .sql:
                try await gradeInSQL(runID: runID, definition: definition, version: version, options: options, report: &report)
            case .llmJudge:
                try await gradeWithJudge(runID: runID, definition: definition, version: version, options: options, report: &report)
            case .exact, .normalized, .contains, .regex, .numeric, .tau2:
                try await gradeInProcess(runID: runID, definition: definition, version: version, components: componentVersions,
                                         options: options, report: &report)
            }
        } catch {
            if isNew { await unregister(definition.name, components: componentVersions.map(\.0), version: version) }
            throw error
        }
        if report.fatal != nil && isNew { await unregister(definition.name, components: componentVersions.map(\.0), version: version) }
        return report
    }

    /// A grading that stops before it wrote a grade leaves no trace: the version it registered
    /// goes too. (Grades already written stay, and their version: a rerun resumes after them.)
    private func unregister(_ name: String, components: [String], version: Int) async {
        try? await writer.write { db in
            for n in [name] + components {
                let graded = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM grades WHERE grader = ? AND grader_version = ?)",
                                               arguments: [n, version]) ?? true
                if graded { return }
            }
            for n in [name] + components {
                try db.execute(sql: "DELETE FROM graders WHERE name = ? AND version = ?", arguments: [n, version])
            }
        }
    }

    /// Evaluates the sql grader's expression (and explanation) on every finished rollout of
    /// the run without writing, so an expression that fails on some row (malformed JSON, an
    /// overflow) is reported before a version or a grade is stored.
    private func dryRunExpression(run: String, definition d: GraderDefinition) async throws {
        let (v, x, _) = Self.verdictSQL(d)
        try await writer.read { db in
            guard let runID = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [run]) else { return }
            try Self.checkExpression(d, db)
            do {
                // sum() of both makes SQLite compute them for every row.
                _ = try Int.fetchOne(db, sql: """
                    SELECT sum((\(v)) IS NULL) + sum((\(x)) IS NULL)
                    FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id JOIN runs ru ON ru.id = r.run_id
                    WHERE r.run_id = ? AND r.status IN ('completed', 'failed')
                    """, arguments: [runID])
            } catch let error as DatabaseError {
                throw GradeError("the sql grader's expression (or explanation) fails on a rollout of \"\(run)\": \(error.message ?? "an SQL error") — nothing was written; fix the expression (it runs on every finished rollout, failed ones too)")
            }
        }
    }

    /// The run's id and the definition's version (added when new), with the τ components'.
    /// The judge's registry is recorded here too (in `models`), in the same transaction, so a
    /// grading refused for its run or expression writes nothing.
    private func register(run: String, definition: GraderDefinition, registry: ModelRegistry?) async throws -> (Int64, Int, Bool, [(String, Int)]) {
        let now = Timestamp.now()
        return try await writer.write { db in
            guard let runID = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [run]) else {
                let names = try String.fetchAll(db, sql: "SELECT name FROM runs ORDER BY id DESC LIMIT 20")
                throw GradeError("no run named \"\(run)\"; runs: \(names.isEmpty ? "none" : names.joined(separator: ", "))")
            }
            if definition.kind == .sql { try Self.checkExpression(definition, db) }
            if let registry { try Self.registerModels(registry, db) }
            let (version, isNew) = try Self.version(of: definition.name, kind: definition.kind.rawValue,
                                                    definition: definition.canonicalJSON, db: db, now: now)
            var components: [(String, Int)] = []
            if definition.kind == .tau2 {
                for part in ["actions", "communicate"] {
                    let name = "\(definition.name).\(part)"
                    let text = JSONWriter(style: .compact, sortKeys: true).string(.object([
                        "component": .string(part), "of": .string(definition.name), "definition": .string(definition.canonicalJSON)]))
                    if let v = try Int.fetchOne(db, sql: "SELECT version FROM graders WHERE name = ? AND definition = ?", arguments: [name, text]) {
                        components.append((name, v))
                    } else {
                        try db.execute(sql: "INSERT INTO graders(name, version, kind, definition, created_at) VALUES (?, ?, ?, ?, ?)",
                                       arguments: [name, version, "tau2", text, now])
                        components.append((name, version))
                    }
                }
            }
            return (runID, version, isNew, components)
        }
    }

    static func version(of name: String, kind: String, definition: String, db: Database, now: String) throws -> (Int, Bool) {
        if let v = try Int.fetchOne(db, sql: "SELECT version FROM graders WHERE name = ? AND definition = ?", arguments: [name, definition]) {
            return (v, false)
        }
        // Versions already used by grades (written before graders existed, or by hand) are skipped too.
        let next = 1 + max(try Int.fetchOne(db, sql: "SELECT coalesce(max(version), 0) FROM graders WHERE name = ?", arguments: [name]) ?? 0,
                           try Int.fetchOne(db, sql: "SELECT coalesce(max(grader_version), 0) FROM grades WHERE grader = ?", arguments: [name]) ?? 0)
        try db.execute(sql: "INSERT INTO graders(name, version, kind, definition, created_at) VALUES (?, ?, ?, ?, ?)",
                       arguments: [name, next, kind, definition, now])
        return (next, true)
    }

    /// (latest finished rollouts already graded by this version, latest rollouts not finished),
    /// from the counters the triggers keep (`grade_counts`, `run_outcomes`): one row per task
    /// and a handful per run, where a join of the run's rollouts with their grades would visit
    /// every rollout (or, SQLite's choice when the grader has graded other, larger runs, every
    /// grade of the grader).
    private func coverage(runID: Int64, grader: String, version: Int) async throws -> (Int, Int) {
        try await writer.read { db in
            let graded = try Int.fetchOne(db, sql: """
                SELECT coalesce(sum(n), 0) FROM grade_counts WHERE grader = ? AND grader_version = ? AND run_id = ?
                """, arguments: [grader, version, runID]) ?? 0
            let open = try Int.fetchOne(db, sql: """
                SELECT coalesce(sum(n), 0) FROM run_outcomes WHERE run_id = ? AND status NOT IN ('completed', 'failed')
                """, arguments: [runID]) ?? 0
            return (graded, open)
        }
    }

    // MARK: Set-based graders (stop-reason, reward, sql)

    /// For a set-based grader: the expressions computed per rollout over r (a latest_rollouts
    /// row), t (its task) and ru (its run) as `v` and `x`, and the (value, passed, explanation)
    /// made from them and the rollout's columns. Option values go in as SQL literals.
    private static func verdictSQL(_ d: GraderDefinition) -> (v: String, x: String, outer: String) {
        let failedText = "'rollout failed: ' || coalesce(error, 'no error recorded')"
        switch d.kind {
        case .stopReason:
            let list = sqlLiteral(d.options["passing"]!.jsonText)
            return ("CASE WHEN r.status = 'completed' AND r.stop_reason IN (SELECT value FROM json_each(\(list))) THEN 1 ELSE 0 END", "NULL", """
                v, v, CASE WHEN status = 'failed' THEN \(failedText)
                           ELSE 'stop reason ' || coalesce(stop_reason, 'none') || CASE WHEN v THEN ' (passing)' ELSE ' (not passing)' END END
                """)
        case .reward:
            let t = JSONWriter.formatDouble(d.double("threshold") ?? 1)
            return ("NULL", "NULL", """
                reward,
                CASE WHEN status = 'failed' THEN 0 WHEN reward IS NULL THEN NULL WHEN reward >= \(t) THEN 1 ELSE 0 END,
                CASE WHEN status = 'failed' THEN \(failedText) WHEN reward IS NULL THEN 'no stored reward'
                     ELSE 'reward ' || reward || CASE WHEN reward >= \(t) THEN ' ≥ ' ELSE ' < ' END || '\(t)' END
                """)
        case .sql:
            let e = d.string("expression")!
            let x = d.string("explanation").map { "(\($0))" } ?? "'expression: ' || coalesce(quote((\(e))), 'NULL')"
            return ("(\(e))", x, """
                CASE WHEN typeof(v) IN ('integer', 'real') THEN v END, CASE WHEN v IS NULL THEN NULL WHEN v THEN 1 ELSE 0 END, x
                """)
        default:
            fatalError("not a set-based grader")
        }
    }

    static func sqlLiteral(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    /// Compiles the sql grader's expression once, so a mistake is reported as the option's.
    static func checkExpression(_ d: GraderDefinition, _ db: Database) throws {
        for key in ["expression", "explanation"] {
            guard let e = d.string(key) else { continue }
            do {
                _ = try db.makeStatement(sql: "SELECT (\(e)) FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id JOIN runs ru ON ru.id = r.run_id LIMIT 0")
            } catch let error as DatabaseError {
                throw GradeError("the sql grader's \(key) does not compile: \(error.message ?? "\(error)") — it is a SQL expression over r (the rollout, a latest_rollouts row), t (its task) and ru (its run)")
            }
        }
    }

    private func gradeInSQL(runID: Int64, definition d: GraderDefinition, version: Int, options: GradeOptions,
                            report: inout GradeReport) async throws {
        let (v, x, outer) = Self.verdictSQL(d)
        let (low, high) = try await writer.read { db in
            (try Int64.fetchOne(db, sql: "SELECT coalesce(min(id), 0) FROM rollouts WHERE run_id = ?", arguments: [runID]) ?? 0,
             try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), -1) FROM rollouts WHERE run_id = ?", arguments: [runID]) ?? -1)
        }
        let total = min(try await pendingCount(runID: runID, grader: d.name, version: version), options.limit ?? .max)
        let sql = """
            SELECT id, \(outer), failed FROM (
                SELECT r.id AS id, r.status AS status, r.status = 'failed' AS failed, r.error AS error,
                       r.stop_reason AS stop_reason, r.reward AS reward, \(v) AS v, \(x) AS x
                FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id JOIN runs ru ON ru.id = r.run_id
                WHERE r.run_id = ?1 AND r.id BETWEEN ?2 AND ?3 AND r.status IN ('completed', 'failed')
                  AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.rollout_id = r.id AND g.grader = ?4 AND g.grader_version = ?5)
                ORDER BY r.id LIMIT ?6)
            """
        var done = 0
        let step: Int64 = 50_000
        var start = low
        let name = d.name
        while start <= high && done < total {
            let end = start + step - 1
            let room = total - done
            let now = Timestamp.now()
            let from = start
            let chunk = try await writer.write { db -> GradeReport in
                var part = GradeReport(run: "", grader: "", kind: "", version: 0, newVersion: false)
                let rows = try Row.fetchCursor(db, sql: sql, arguments: [runID, from, end, name, version, room])
                let insert = try db.cachedStatement(sql: """
                    INSERT INTO grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """)
                var batch: [(Int64, Double?, Int?, String?, Bool)] = []
                while let row = try rows.next() { batch.append((row[0], row[1], row[2], row[3], row[4])) }
                for (id, value, passed, explanation, failed) in batch {
                    try insert.execute(arguments: [id, name, version, value, passed, explanation, now])
                    part.count(Verdict(passed: passed.map { $0 != 0 }, value: value, explanation: ""), failed: failed)
                }
                return part
            }
            report.graded += chunk.graded
            report.passed += chunk.passed
            report.notPassed += chunk.notPassed
            report.undecidable += chunk.undecidable
            report.failedRollouts += chunk.failedRollouts
            done += chunk.graded
            options.progress?(done, total)
            start = end + 1
        }
    }

    private func pendingCount(runID: Int64, grader: String, version: Int) async throws -> Int {
        try await writer.read { db in
            try Int.fetchOne(db, sql: """
                SELECT count(*) FROM latest_rollouts r WHERE r.run_id = ? AND r.status IN ('completed', 'failed')
                  AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.rollout_id = r.id AND g.grader = ? AND g.grader_version = ?)
                """, arguments: [runID, grader, version]) ?? 0
        }
    }

    // MARK: Candidates for the graders that read text

    /// The next `limit` ungraded candidates after rollout id `after`.
    private func candidates(runID: Int64, definition d: GraderDefinition, version: Int, after: Int64, limit: Int) async throws -> [GradeCandidate] {
        let responseSQL: String
        let last = """
            (SELECT m.content FROM messages m WHERE m.rollout_id = r.id AND m.role = 'assistant'
               AND m.content IS NOT NULL AND m.content <> '' ORDER BY m.idx DESC LIMIT 1)
            """
        switch d.string("response") ?? "auto" {
        case "prediction": responseSQL = "r.prediction"
        case "last_message": responseSQL = last
        default: responseSQL = "coalesce(r.prediction, \(last))"
        }
        var referenceSQL = "t.answer"
        var arguments: StatementArguments = []
        if let ref = d.string("reference"), ref != "answer" {
            let (column, path) = ref.hasPrefix("criteria:") ? ("t.criteria", String(ref.dropFirst(9))) : ("t.record", String(ref.dropFirst(7)))
            referenceSQL = "CASE WHEN json_valid(\(column)) THEN json_extract(\(column), ?) END"
            arguments += [path]
        }
        arguments += [runID, after, d.name, version, limit]
        let bound = arguments
        let reference = referenceSQL
        return try await writer.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.id, r.sample, r.status = 'failed' AS failed, r.error, \(responseSQL) AS response,
                       CAST(\(reference) AS TEXT) AS reference, coalesce(t.opening, t.user_prompt) AS question, t.criteria, t.external_id
                FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id
                WHERE r.run_id = ? AND r.id > ? AND r.status IN ('completed', 'failed')
                  AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.rollout_id = r.id AND g.grader = ? AND g.grader_version = ?)
                ORDER BY r.id LIMIT ?
                """, arguments: bound).map { row in
                GradeCandidate(rolloutID: row[0], sample: row[1], failed: row[2], error: row[3], response: row[4], reference: row[5],
                               question: row[6], criteria: row[7], taskID: row[8])
            }
        }
    }

    /// Writes verdicts in one transaction; a grade that exists by now (another process) is left.
    private func write(_ rows: [GradeRow], version: Int) async throws -> Int {
        guard !rows.isEmpty else { return 0 }
        let now = Timestamp.now()
        return try await writer.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, grader, grader_version) DO NOTHING
                """)
            var written = 0
            for r in rows {
                try insert.execute(arguments: [r.rolloutID, r.grader, version, r.verdict.value, r.verdict.passed.map { $0 ? 1 : 0 },
                                               r.verdict.explanation, now])
                written += db.changesCount
            }
            return written
        }
    }

    private static func failedVerdict(_ c: GradeCandidate) -> Verdict {
        Verdict(passed: false, explanation: "rollout failed: \(c.error ?? "no error recorded")")
    }

    // MARK: In-process graders (exact, normalized, contains, regex, numeric, tau2)

    private func gradeInProcess(runID: Int64, definition d: GraderDefinition, version: Int, components: [(String, Int)],
                                options: GradeOptions, report: inout GradeReport) async throws {
        let total = min(try await pendingCount(runID: runID, grader: d.name, version: version), options.limit ?? .max)
        var after: Int64 = 0
        var done = 0
        while done < total {
            let batch = try await candidates(runID: runID, definition: d, version: version, after: after,
                                             limit: min(2_000, total - done))
            guard let lastID = batch.last?.rolloutID else { break }
            after = lastID
            var rows: [GradeRow] = []
            var tauInputs: [Int64: ([Tau2Grading.Call], [String])] = [:]
            if d.kind == .tau2 { tauInputs = try await trajectoryFacts(batch.map(\.rolloutID)) }
            for c in batch {
                if d.kind == .tau2 {
                    let (calls, texts) = tauInputs[c.rolloutID] ?? ([], [])
                    let criteria = c.criteria.flatMap { try? JSONParser.parse($0) }
                    let parts: [Verdict]
                    if c.failed {
                        let v = Self.failedVerdict(c)
                        parts = [v, v, v]
                    } else if let result = Tau2Grading.grade(criteria: criteria, calls: calls, assistantTexts: texts) {
                        parts = [result.overall, result.actions, result.communicate]
                    } else {
                        let v = Verdict.undecidable("the task has no τ-bench / τ²-bench criteria (actions, communicate_info, outputs)")
                        parts = [v, v, v]
                    }
                    rows.append(GradeRow(rolloutID: c.rolloutID, grader: d.name, verdict: parts[0], failed: c.failed))
                    for (i, (name, _)) in components.enumerated() {
                        rows.append(GradeRow(rolloutID: c.rolloutID, grader: name, verdict: parts[i + 1], failed: c.failed))
                    }
                } else {
                    rows.append(GradeRow(rolloutID: c.rolloutID, grader: d.name, verdict: c.failed ? Self.failedVerdict(c) : Self.textVerdict(d, c),
                                         failed: c.failed))
                }
            }
            _ = try await writeMixed(rows, version: version, components: components)
            for r in rows {
                if r.grader == d.name { report.count(r.verdict, failed: r.failed) }
                else if let i = report.components.firstIndex(where: { $0.grader == r.grader }) { report.components[i].count(r.verdict, failed: r.failed) }
            }
            done += batch.count
            options.progress?(done, total)
        }
    }

    private func writeMixed(_ rows: [GradeRow], version: Int, components: [(String, Int)]) async throws -> Int {
        if components.allSatisfy({ $0.1 == version }) { return try await write(rows, version: version) }
        var n = 0
        let main = rows.filter { r in !components.contains { $0.0 == r.grader } }
        n += try await write(main, version: version)
        for (name, v) in components { n += try await write(rows.filter { $0.grader == name }, version: v) }
        return n
    }

    static func textVerdict(_ d: GraderDefinition, _ c: GradeCandidate) -> Verdict {
        guard let reference = c.reference, !reference.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty || d.kind == .regex else {
            return .undecidable("the task has no reference answer")
        }
        let response = c.response ?? ""
        switch d.kind {
        case .exact:
            return TextGrading.exact(response: response, reference: reference, caseSensitive: d.bool("case_sensitive") ?? true)
        case .normalized:
            return TextGrading.normalized(response: response, reference: reference)
        case .contains:
            return TextGrading.contains(response: response, reference: reference, normalize: d.bool("normalize") ?? true)
        case .regex:
            return TextGrading.regex(response: response, reference: reference, pattern: d.string("pattern")!, flags: d.string("flags") ?? "")
        case .numeric:
            return TextGrading.numeric(response: response, reference: reference, tolerance: d.double("tolerance") ?? 1e-6,
                                       relative: d.double("relative") ?? 0, pick: d.string("pick") ?? "last")
        default:
            return .undecidable("not a text grader")
        }
    }

    /// Each rollout's tool calls (in order) and assistant texts.
    private func trajectoryFacts(_ ids: [Int64]) async throws -> [Int64: ([Tau2Grading.Call], [String])] {
        try await writer.read { db in
            var out: [Int64: ([Tau2Grading.Call], [String])] = [:]
            let calls = try db.cachedStatement(sql: """
                SELECT c.name, c.arguments FROM tool_calls c JOIN messages m ON m.id = c.message_id
                WHERE c.rollout_id = ? ORDER BY m.idx, c.idx
                """)
            let texts = try db.cachedStatement(sql: """
                SELECT content FROM messages WHERE rollout_id = ? AND role = 'assistant' AND content IS NOT NULL ORDER BY idx
                """)
            for id in ids {
                let c = try Row.fetchAll(calls, arguments: [id]).map { Tau2Grading.Call(name: $0[0], arguments: $0[1]) }
                let t = try String.fetchAll(texts, arguments: [id])
                out[id] = (c, t)
            }
            return out
        }
    }

    // MARK: LLM judge

    private func gradeWithJudge(runID: Int64, definition d: GraderDefinition, version: Int, options: GradeOptions,
                                report finalReport: inout GradeReport) async throws {
        var report = finalReport
        defer { finalReport = report }
        guard let client = options.client else { throw GradeError("the llm-judge grader needs a model client") }
        let model = d.string("model")!
        _ = try client.registry.resolve(model, keyPath: "model")
        let template = try JudgeTemplate(d.string("prompt")!)
        let parser = JudgeParser(d)
        let needsReference = template.fields.contains("answer")
        let needsTranscript = template.fields.contains("transcript")
        let system = d.string("system")
        let chatOptions = ChatOptions(temperature: d.double("temperature"), maxTokens: d.options["max_tokens"]?.intValue)
        let total = min(try await pendingCount(runID: runID, grader: d.name, version: version), options.limit ?? .max)
        let concurrency = max(1, options.concurrency)

        enum Outcome: Sendable {
            case graded(GradeRow)
            case failed(String, fatal: Bool)
        }

        var queue: [GradeCandidate] = []
        var after: Int64 = 0
        var fetched = 0
        var exhausted = false
        var buffer: [GradeRow] = []
        var lastFlush = ContinuousClock.now
        var done = 0
        var fatal: String?

        func nextCandidate() async throws -> GradeCandidate? {
            if queue.isEmpty && !exhausted {
                let want = min(500, total - fetched)
                let batch = want > 0 ? try await candidates(runID: runID, definition: d, version: version, after: after, limit: want) : []
                if batch.isEmpty { exhausted = true }
                after = batch.last?.rolloutID ?? after
                fetched += batch.count
                queue = batch.reversed()
            }
            return queue.popLast()
        }

        let transcripts: @Sendable (Int64) async throws -> String = { [self] id in
            try await self.writer.read { db in try Self.transcript(rollout: id, db) }
        }

        func flush() async throws {
            guard !buffer.isEmpty else { return }
            _ = try await write(buffer, version: version)
            for r in buffer { report.count(r.verdict, failed: r.failed) }
            done += buffer.count
            buffer.removeAll()
            lastFlush = .now
            options.progress?(done, total)
        }

        try await withThrowingTaskGroup(of: Outcome.self) { group in
            var inFlight = 0
            func launch() async throws -> Bool {
                if fatal != nil || options.stop?.isStopped == true { return false }
                guard let c = try await nextCandidate() else { return false }
                if c.failed {
                    group.addTask { .graded(GradeRow(rolloutID: c.rolloutID, grader: d.name, verdict: Self.failedVerdict(c), failed: true)) }
                    return true
                }
                if needsReference && (c.reference ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    group.addTask { .graded(GradeRow(rolloutID: c.rolloutID, grader: d.name,
                                                     verdict: .undecidable("the task has no reference answer"), failed: false)) }
                    return true
                }
                group.addTask {
                    var values = ["question": c.question ?? "", "answer": c.reference ?? "", "response": c.response ?? "",
                                  "criteria": c.criteria ?? "", "task_id": c.taskID]
                    do {
                        if needsTranscript { values["transcript"] = try await transcripts(c.rolloutID) }
                        var messages: [ChatMessage] = []
                        if let system { messages.append(ChatMessage(role: "system", content: system)) }
                        messages.append(ChatMessage(role: "user", content: template.render(values)))
                        let response = try await client.complete(model, ChatRequest(model: model, messages: messages, options: chatOptions),
                                                                 context: CallContext(role: .judge, runID: runID, rolloutID: c.rolloutID))
                        var verdict = parser.parse(response.message.content)
                        // Keep what the judge wrote beyond the verdict (its reasoning), within reason.
                        if let reply = response.message.content?.trimmingCharacters(in: .whitespacesAndNewlines), reply.count > 40 {
                            verdict.explanation += "\nreply: " + (reply.count > 4_000 ? String(reply.prefix(4_000)) + "…" : reply)
                        }
                        return .graded(GradeRow(rolloutID: c.rolloutID, grader: d.name, verdict: verdict, failed: false))
                    } catch {
                        let fatal = (error as? LLMError).flatMap { $0.status }.map { [401, 403, 404].contains($0) } ?? (error is ConfigError)
                        return .failed(Secrets.mask("rollout \(c.rolloutID): \(error)"), fatal: fatal)
                    }
                }
                return true
            }
            while inFlight < concurrency, try await launch() { inFlight += 1 }
            while let outcome = try await group.next() {
                inFlight -= 1
                switch outcome {
                case .graded(let row): buffer.append(row)
                case .failed(let message, let isFatal):
                    report.errors += 1
                    if report.errorSamples.count < 5 { report.errorSamples.append(message) }
                    if isFatal && fatal == nil { fatal = message }
                }
                if buffer.count >= 100 || ContinuousClock.now - lastFlush > .milliseconds(500) { try await flush() }
                while inFlight < concurrency, try await launch() { inFlight += 1 }
            }
        }
        try await flush()
        report.fatal = fatal
        report.stopped = options.stop?.isStopped == true && done < total
    }

    /// A rollout's dialogue as text for a judge: one line per message, tool calls shown as
    /// calls, system messages left out.
    static func transcript(rollout: Int64, _ db: Database) throws -> String {
        var lines: [String] = []
        let calls = try Row.fetchAll(db, sql: "SELECT message_id, name, arguments FROM tool_calls WHERE rollout_id = ? ORDER BY message_id, idx",
                                     arguments: [rollout])
        var byMessage: [Int64: [String]] = [:]
        for c in calls { byMessage[c[0], default: []].append("\(c[1] as String)(\((c[2] as String?) ?? ""))") }
        for m in try Row.fetchAll(db, sql: "SELECT id, role, content, name FROM messages WHERE rollout_id = ? AND role <> 'system' ORDER BY idx",
                                  arguments: [rollout]) {
            let role: String = m[1]
            var text = (m[2] as String?) ?? ""
            if let c = byMessage[m[0]] { text += (text.isEmpty ? "" : " ") + c.map { "→ \($0)" }.joined(separator: " ") }
            let label = role == "tool" ? "tool \((m[3] as String?) ?? "")".trimmingCharacters(in: .whitespaces) : role
            lines.append("\(label): \(text)")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: The quickstart's grader

    /// The `stop-reason` grader with the given passing stop reasons: grades the latest
    /// finished attempts without a grade of this definition's version; returns (graded now,
    /// passed among them).
    @discardableResult
    public func gradeStopReason(run: String, passing: [String] = [StopReason.userStop.rawValue, StopReason.answer.rawValue]) async throws -> (graded: Int, passed: Int) {
        let d = try GraderDefinition(kind: .stopReason, options: ["passing": .array(passing.map(JSONValue.string))])
        let r = try await grade(run: run, definition: d)
        return (r.graded, r.passed)
    }
}
