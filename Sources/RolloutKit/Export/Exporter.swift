import Foundation
import GRDB
import GRDBSQLite

/// What an export wrote and left out.
public struct ExportReport: Sendable, Equatable {
    public struct File: Sendable, Equatable {
        /// The `exports` row of this file.
        public var exportID: Int64
        public var path: String
        /// The `--split` share it holds, or nil.
        public var split: String?
        /// DeepResearch: the sample index (the file is `iter{sample+1}.jsonl`).
        public var sample: Int?
        public var count: Int
        public var bytes: Int
        public var sha256: String
        public var dropped: Int
    }

    public struct Drop: Sendable, Equatable {
        public var rolloutID: Int64
        public var reason: DropReason
        public var detail: String
    }

    public var run: String
    public var format: ExportFormat
    public var files: [File] = []
    /// Rollouts the filters selected.
    public var selected = 0
    /// Records written (DPO: pairs).
    public var written = 0
    public var dropped: [DropReason: Int] = [:]
    /// Invalid records written anyway (`--keep-invalid`).
    public var keptInvalid = 0
    /// The first drop of each reason, to show.
    public var examples: [Drop] = []
    /// Messages after the last assistant message, left out (openai-ft, sharegpt).
    public var trimmedMessages = 0
    /// The grader whose verdicts filtered or paired the rollouts.
    public var grader: String?
    /// The selection SQL, as recorded in `exports.sql`.
    public var sql = ""
    /// The labels written first, for rollouts that had none.
    public var labeled: LabelReport?

    public var droppedTotal: Int { dropped.values.reduce(0, +) }

    public var summary: String {
        var lines: [String] = []
        if let labeled { lines.append(labeled.summary) }
        let unit = format == .dpo ? "pair" : "record"
        let bytes = files.reduce(0) { $0 + $1.bytes }
        let where_: String
        if files.count == 1 {
            where_ = "\(files[0].path) (export #\(files[0].exportID), sha256 \(files[0].sha256.prefix(12))…)"
        } else {
            where_ = "\(files.count) files"
        }
        lines.append("exported \(written) \(format.rawValue) \(unit)\(written == 1 ? "" : "s") of run \(run) to \(where_), \(Self.size(bytes))")
        if files.count > 1 {
            for f in files {
                var what = [String]()
                if let s = f.split { what.append(s) }
                if let k = f.sample { what.append("sample \(k)") }
                lines.append("  \(f.path): \(f.count) \(unit)s\(what.isEmpty ? "" : " (\(what.joined(separator: ", ")))"), \(Self.size(f.bytes)) (export #\(f.exportID))")
            }
        }
        var selection = "selected \(selected) rollout\(selected == 1 ? "" : "s")"
        if let grader { selection += " (grader \(grader))" }
        if droppedTotal == 0 {
            lines.append(selection + "; none dropped")
        } else {
            lines.append(selection + "; dropped \(droppedTotal):")
            for (reason, n) in dropped.sorted(by: { $0.key < $1.key }) {
                let e = examples.first { $0.reason == reason }
                lines.append("  \(reason.rawValue.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(n).leftPad(6))" + (e.map { "  e.g. rollout \($0.rolloutID): \($0.detail)" } ?? ""))
            }
            if let first = files.first {
                lines.append("  see: rollout query export-drops --param export=\(first.exportID)")
            }
        }
        if keptInvalid > 0 { lines.append("kept \(keptInvalid) invalid record\(keptInvalid == 1 ? "" : "s") (--keep-invalid)") }
        if trimmedMessages > 0 {
            lines.append("left out \(trimmedMessages) message\(trimmedMessages == 1 ? "" : "s") after the last assistant message (\(format.rawValue) records end with the assistant)")
        }
        return lines.joined(separator: "\n")
    }

    /// The report as JSON (`--json`).
    public var json: JSONValue {
        var o = JSONObject()
        o["run"] = .string(run)
        o["format"] = .string(format.rawValue)
        o["selected"] = JSONValue(selected)
        o["written"] = JSONValue(written)
        o["dropped"] = .object(JSONObject(pairs: dropped.sorted { $0.key < $1.key }.map { ($0.key.rawValue, JSONValue($0.value)) }))
        o["examples"] = .array(examples.sorted { $0.reason < $1.reason }.map {
            .object(["reason": .string($0.reason.rawValue), "rollout": .number(String($0.rolloutID)), "detail": .string($0.detail)])
        })
        if keptInvalid > 0 { o["kept_invalid"] = JSONValue(keptInvalid) }
        if trimmedMessages > 0 { o["trimmed_messages"] = JSONValue(trimmedMessages) }
        if let grader { o["grader"] = .string(grader) }
        o["files"] = .array(files.map { f in
            var x = JSONObject()
            x["export"] = .number(String(f.exportID))
            x["path"] = .string(f.path)
            if let s = f.split { x["split"] = .string(s) }
            if let k = f.sample { x["sample"] = JSONValue(k) }
            x["count"] = JSONValue(f.count)
            x["bytes"] = JSONValue(f.bytes)
            x["sha256"] = .string(f.sha256)
            x["dropped"] = JSONValue(f.dropped)
            return .object(x)
        })
        if let labeled { o["labeled"] = JSONValue(labeled.rollouts) }
        return .object(o)
    }

    public var jsonText: String { json.jsonText }

    static func size(_ bytes: Int) -> String {
        if bytes < 10_000 { return "\(bytes) bytes" }
        if bytes < 10_000_000 { return String(format: "%.1f kB", Double(bytes) / 1e3) }
        return String(format: "%.1f MB", Double(bytes) / 1e6)
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

extension Warehouse {
    /// `rollout export`: streams the selected rollouts of a run from the database (one
    /// rollout's messages in memory at a time), validates each record, writes the files
    /// atomically (temporary files renamed into place only when all are complete) and records
    /// one `exports` row per file, with what was dropped in `export_drops`.
    public func export(_ options: ExportOptions, progress: (@Sendable (Int) -> Void)? = nil) throws -> ExportReport {
        try options.check()
        let exporter = Exporter(warehouse: self, options: options, progress: progress)
        return try exporter.run()
    }

    /// `--output-dir` and the config's `output_path`: one Rollout-framework output JSONL per
    /// job of the run — `paths[job]` when given, else `DIR/<job>.jsonl` when `directory` is
    /// given, else none — one record per task and sample (its latest attempt, completed or
    /// failed), through the same export path as `rollout export --format rollout`: streamed,
    /// written atomically and recorded in `exports`. Invalid records are kept (and reported).
    public func writeRolloutOutputs(run: Int64, directory: String?, paths: [String: String] = [:]) throws -> [ExportedFile] {
        let (jobs, name) = try writer.read { db in
            (try String.fetchAll(db, sql: "SELECT DISTINCT job FROM run_tasks WHERE run_id = ? ORDER BY job", arguments: [run]),
             try String.fetchOne(db, sql: "SELECT name FROM runs WHERE id = ?", arguments: [run]) ?? "")
        }
        var files: [ExportedFile] = []
        for job in jobs {
            let safe = job.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "_")
            guard let path = paths[job] ?? directory.map({ URL(fileURLWithPath: $0).appending(path: safe + ".jsonl").path }) else { continue }
            var options = ExportOptions(run: name, format: .rollout, out: path)
            options.runID = run
            options.job = job
            options.includeFailed = true
            options.keepInvalid = true
            let report = try export(options)
            files += report.files.map { ExportedFile(path: $0.path, count: $0.count, bytes: $0.bytes, sha256: $0.sha256) }
        }
        return files
    }
}

/// One output file being written.
private final class Sink {
    let path: String
    let split: String?
    let sample: Int?
    let writer: AtomicFileWriter
    var count = 0
    var selected = 0
    var trimmed = 0
    var keptInvalid = 0
    var dropCounts: [DropReason: Int] = [:]
    var drops: [ExportReport.Drop] = []

    init(path: String, split: String?, sample: Int?) throws {
        self.path = path
        self.split = split
        self.sample = sample
        writer = try AtomicFileWriter(path: path)
    }

    var dropped: Int { dropCounts.values.reduce(0, +) }
}

private final class Exporter {
    let warehouse: Warehouse
    var options: ExportOptions
    let progress: (@Sendable (Int) -> Void)?
    var report: ExportReport
    var runID: Int64 = 0

    var sinks: [String: Sink] = [:]
    var sinkOrder: [String] = []
    var prompts: [Int64: (text: String, json: [UInt8])?] = [:]
    var toolsets: [Int64: ToolsetAssets] = [:]
    var seen: [Int64: Int64] = [:]
    var scratch = JSONBytes(capacity: 1 << 12)
    var hashScratch: [UInt8] = []

    init(warehouse: Warehouse, options: ExportOptions, progress: (@Sendable (Int) -> Void)?) {
        self.warehouse = warehouse
        self.options = options
        self.progress = progress
        report = ExportReport(run: options.run, format: options.format)
    }

    func run() throws -> ExportReport {
        try resolveRun()
        // The targets first: a refused --out must leave the warehouse as it was.
        try checkOutput()
        var needsLabels = false
        if options.format.needsLabels {
            needsLabels = try warehouse.writer.read { db in try self.warehouse.hasUnlabeledRollouts(runID: self.runID, db) }
            if needsLabels && !options.labelMissing {
                throw ExportError("run \(options.run) has rollouts without labels; run `rollout label --run \(options.run)` first")
            }
        }
        try resolveGrader()
        if needsLabels {
            // Labels are the one thing an export writes before its file; an export that then
            // fails on its selection (a --where that does not compile or fails on a row) must
            // not have written them, so the selection runs once to the end first.
            try warehouse.writer.read { db in try self.checkSelection(db) }
            report.labeled = try warehouse.label(run: report.run)
        }
        do {
            try warehouse.writer.read { db in try self.stream(db) }
            for key in sinkOrder { _ = try sinks[key]!.writer.finish() }
            try record()
        } catch {
            for sink in sinks.values { sink.writer.abandon() }
            throw error
        }
        return report
    }

    // MARK: Setup

    func resolveRun() throws {
        let row = try warehouse.writer.read { db -> Row? in
            if let id = self.options.runID {
                return try Row.fetchOne(db, sql: "SELECT id, name FROM runs WHERE id = ?", arguments: [id])
            }
            return try Row.fetchOne(db, sql: "SELECT id, name FROM runs WHERE name = ?", arguments: [self.options.run])
        }
        guard let row else {
            let names = try warehouse.writer.read { db in try String.fetchAll(db, sql: "SELECT name FROM runs ORDER BY id") }
            throw ExportError("no run \"\(options.run)\" in the warehouse (runs: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
        }
        runID = row["id"]
        report.run = row["name"]
        options.run = report.run
    }

    /// --passed-only and dpo need a grader: the one named, else the run's only one.
    func resolveGrader() throws {
        guard options.passedOnly || options.format == .dpo || options.grader != nil else { return }
        let graders = try warehouse.writer.read { db in
            try String.fetchAll(db, sql: """
                SELECT DISTINCT g.grader FROM grades g JOIN rollouts r ON r.id = g.rollout_id WHERE r.run_id = ? ORDER BY g.grader
                """, arguments: [self.runID])
        }
        let flag = options.format == .dpo ? "--format dpo" : "--passed-only"
        if let g = options.grader {
            guard graders.contains(g) else {
                throw ExportError("grader \(g) has graded no rollout of run \(options.run) (graders of this run: \(graders.isEmpty ? "none; grade it first" : graders.joined(separator: ", ")))")
            }
            report.grader = g
        } else if graders.count == 1 {
            report.grader = graders[0]
        } else if graders.isEmpty {
            throw ExportError("\(flag) needs grades, and no rollout of run \(options.run) has been graded; grade it first")
        } else {
            throw ExportError("\(flag): run \(options.run) has grades from \(graders.joined(separator: ", ")); choose one with --grader")
        }
    }

    /// Refuses an `--out` that cannot be replaced, before anything is written: a folder where a
    /// file goes (or the reverse), and, through `OutputTarget`, a link, a pipe or a device —
    /// for every file the options can name (one per split share).
    func checkOutput() throws {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: options.out, isDirectory: &isDir)
        if options.format == .deepresearch {
            if exists && !isDir.boolValue {
                throw ExportError("--out \(options.out): deepresearch writes iter{k}.jsonl files into a folder, and this is a file")
            }
            // The iter{k}.jsonl files inside are checked as they are opened, before any `exports`
            // row is written (labels made by --label-missing come before that).
            return
        } else if exists && isDir.boolValue {
            throw ExportError("--out \(options.out) is a folder; give a file name (e.g. \(options.out)/\(options.format.rawValue).jsonl)")
        }
        if let split = options.split {
            for share in split.shares { try OutputTarget.check(path(split: share.name, sample: nil), option: "--out") }
        } else {
            try OutputTarget.check(options.out, option: "--out")
        }
    }

    // MARK: The selection

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    /// The one query that selects (and orders) the rollouts; recorded in `exports.sql`.
    func selectionSQL() -> String {
        let graderSQL = report.grader.map {
            "(SELECT g.passed FROM grades g WHERE g.rollout_id = r.id AND g.grader = \(Self.quote($0)) ORDER BY g.grader_version DESC LIMIT 1)"
        }
        var conditions = ["r.run_id = \(runID)",
                          "r.status IN (\(options.includeFailed ? "'completed', 'failed'" : "'completed'"))"]
        if let job = options.job {
            conditions.append("EXISTS (SELECT 1 FROM run_tasks rt WHERE rt.run_id = r.run_id AND rt.task_id = r.task_id AND rt.job = \(Self.quote(job)))")
        }
        if !options.stopReasons.isEmpty {
            conditions.append("r.stop_reason IN (\(options.stopReasons.map(Self.quote).joined(separator: ", ")))")
        }
        if let n = options.minToolCalls, n > 0 {
            conditions.append("(SELECT count(*) FROM tool_calls c WHERE c.rollout_id = r.id) >= \(n)")
        }
        if options.passedOnly, let graderSQL { conditions.append("\(graderSQL) = 1") }
        switch options.review {
        case .accepted?, .rejected?:
            conditions.append("(SELECT v.verdict FROM reviews v WHERE v.rollout_id = r.id ORDER BY v.id DESC LIMIT 1) = \(Self.quote(options.review!.rawValue))")
        case .unreviewed?:
            conditions.append("NOT EXISTS (SELECT 1 FROM reviews v WHERE v.rollout_id = r.id)")
        case nil: break
        }
        if let w = options.whereSQL, !w.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            conditions.append("(\(w))")
        }
        return """
            SELECT r.id, r.task_id, r.sample, r.status, r.stop_reason, r.prediction, r.error, r.turns,
                   t.external_id, ds.name, t.opening, t.answer, l.prompt_id, l.toolset_id, \(graderSQL ?? "NULL") AS passed
            FROM latest_rollouts r
            JOIN tasks t ON t.id = r.task_id
            JOIN datasets ds ON ds.id = t.dataset_id
            LEFT JOIN domains d ON d.id = t.domain_id
            LEFT JOIN labels l ON l.rollout_id = r.id
            WHERE \(conditions.joined(separator: "\n  AND "))
            ORDER BY r.task_id, r.sample
            """
    }

    // MARK: Streaming

    /// The selection compiled, with --where's mistakes as the option's.
    func selectionStatement(_ db: Database, sql: String) throws -> Statement {
        let statement: Statement
        do {
            statement = try db.makeStatement(sql: sql)
        } catch let e as DatabaseError {
            if let w = options.whereSQL {
                throw ExportError("--where \(w): \(e.message ?? "\(e)") (the condition can use r.* (rollout), t.* (task), ds.* (dataset), d.* (domain), l.* (label))")
            }
            throw e
        }
        guard sqlite3_bind_parameter_count(statement.sqliteStatement) == 0 else {
            throw ExportError("--where must not contain parameters (?, :name); write the values into the condition")
        }
        return statement
    }

    /// Runs the selection to its end without reading a trajectory: a --where that fails on
    /// some row (malformed JSON, an overflow) fails here, before anything is written.
    func checkSelection(_ db: Database) throws {
        _ = try selectionStatement(db, sql: selectionSQL())
        do {
            _ = try Int.fetchOne(db, sql: "SELECT count(*) FROM (\(selectionSQL()))")
        } catch let e as DatabaseError {
            throw ExportError("--where \(options.whereSQL ?? ""): \(e.message ?? "an SQL error") on a rollout of run \(options.run); nothing was written")
        }
    }

    func stream(_ db: Database) throws {
        let sql = selectionSQL()
        report.sql = sql
        let statement = try selectionStatement(db, sql: sql)
        if options.split == nil && options.format != .deepresearch {
            _ = try sink(split: nil, sample: nil)
        } else if let split = options.split, options.format != .deepresearch {
            for s in split.shares { _ = try sink(split: s.name, sample: nil) }
        }
        let reader = try TrajectoryReader(db)
        var t = Trajectory()
        var group: [(RolloutHead, Trajectory)] = []
        let stmt = statement.sqliteStatement
        sqlite3_reset(stmt)
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW {
            let head = Self.head(stmt)
            report.selected += 1
            if report.selected % 65536 == 0 { progress?(report.selected) }
            try reader.read(head.id, into: &t, db: db)
            if options.format == .dpo {
                if let last = group.last, last.0.taskID != head.taskID {
                    try pairs(group, db)
                    group.removeAll(keepingCapacity: true)
                }
                group.append((head, t))
            } else {
                try single(head, t, db)
            }
            rc = sqlite3_step(stmt)
        }
        let done = rc
        sqlite3_reset(stmt)
        if done != SQLITE_DONE {
            // The statement is ours but --where is the user's: say what failed, not the SQL.
            let message = String(cString: sqlite3_errmsg(db.sqliteConnection))
            if let w = options.whereSQL { throw ExportError("--where \(w): \(message) on a rollout of run \(options.run); nothing was written") }
            throw ExportError("reading the rollouts of run \(options.run) failed: \(message); nothing was written")
        }
        if !group.isEmpty { try pairs(group, db) }
    }

    static func text(_ stmt: OpaquePointer, _ i: Int32) -> String? {
        guard sqlite3_column_type(stmt, i) != SQLITE_NULL, let p = sqlite3_column_text(stmt, i) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, i))), as: UTF8.self)
    }

    static func int(_ stmt: OpaquePointer, _ i: Int32) -> Int64? {
        sqlite3_column_type(stmt, i) == SQLITE_NULL ? nil : sqlite3_column_int64(stmt, i)
    }

    static func head(_ s: OpaquePointer) -> RolloutHead {
        RolloutHead(id: sqlite3_column_int64(s, 0), taskID: sqlite3_column_int64(s, 1), sample: Int(sqlite3_column_int64(s, 2)),
                    status: text(s, 3) ?? "", stopReason: text(s, 4), prediction: text(s, 5), error: text(s, 6),
                    turns: int(s, 7).map(Int.init), externalID: text(s, 8) ?? "", dataset: text(s, 9) ?? "",
                    opening: text(s, 10), answer: text(s, 11), promptID: int(s, 12), toolsetID: int(s, 13),
                    passed: int(s, 14).map(Int.init))
    }

    /// The file of one split share and sample.
    func path(split: String?, sample: Int?) -> String {
        let out = URL(fileURLWithPath: options.out).standardizedFileURL
        if options.format == .deepresearch {
            var dir = out
            if let split { dir = dir.appending(path: split) }
            return dir.appending(path: "iter\((sample ?? 0) + 1).jsonl").path
        } else if let split {
            let ext = out.pathExtension
            let stem = out.deletingPathExtension()
            return ext.isEmpty ? stem.path + "." + split : stem.path + "." + split + "." + ext
        }
        return out.path
    }

    func sink(split: String?, sample: Int?) throws -> Sink {
        let key = (split ?? "") + "\u{1F}" + (sample.map(String.init) ?? "")
        if let s = sinks[key] { return s }
        let s = try Sink(path: path(split: split, sample: sample), split: split, sample: sample)
        sinks[key] = s
        sinkOrder.append(key)
        return s
    }

    func sink(for head: RolloutHead) throws -> Sink {
        let split = options.split.map { $0.share(of: head.splitKey($0.unit)) }
        return try sink(split: split, sample: options.format == .deepresearch ? head.sample : nil)
    }

    func context(_ head: RolloutHead, _ t: Trajectory, _ db: Database) throws -> RecordContext {
        var prompt: (text: String, json: [UInt8])?
        if !t.hasSystemMessage, let id = head.promptID {
            if let p = prompts[id] {
                prompt = p
            } else {
                let p = try String.fetchOne(db, sql: "SELECT text FROM label_prompts WHERE id = ?", arguments: [id]).map { text in
                    var w = JSONBytes()
                    w.string(text)
                    return (text, w.out)
                }
                prompts[id] = .some(p)
                prompt = p
            }
        }
        var tools: ToolsetAssets?
        if let id = head.toolsetID {
            if let a = toolsets[id] {
                tools = a
            } else if let text = try String.fetchOne(db, sql: "SELECT tools FROM label_toolsets WHERE id = ?", arguments: [id]) {
                let a = ToolsetAssets(tools: (try JSONParser.parse(text)).arrayValue ?? [])
                toolsets[id] = a
                tools = a
            }
        }
        return RecordContext(head: head, prompt: prompt?.text, promptJSON: prompt?.json, tools: tools, options: options)
    }

    /// Validates; returns whether the record is to be written.
    func admit(_ c: RecordContext, _ t: Trajectory, into sink: Sink) -> Bool {
        let declared: Set<String>? = options.format.carriesTools ? (c.tools?.names ?? []) : nil
        // A failed rollout in the result formats is a result (`success: false`, "[Failed]"),
        // not training data: its transcript may stop anywhere, and it is written as it is.
        let resultOnly = c.head.status != "completed" && (options.format == .rollout || options.format == .deepresearch)
        if !resultOnly, let issue = RecordValidator.firstIssue(t, tools: declared) {
            if options.keepInvalid {
                sink.keptInvalid += 1
                report.keptInvalid += 1
                sink.drops.append(.init(rolloutID: c.head.id, reason: issue.reason, detail: "kept (--keep-invalid): " + issue.detail))
                return true
            }
            drop(c.head.id, issue.reason, issue.detail, sink)
            return false
        }
        if options.dedupe {
            let h = dedupeHash(c, t)
            if let first = seen[h] {
                drop(c.head.id, .duplicate, "same messages, system prompt and tools as rollout \(first)", sink)
                return false
            }
            seen[h] = c.head.id
        }
        return true
    }

    func drop(_ rollout: Int64, _ reason: DropReason, _ detail: String, _ sink: Sink) {
        sink.dropCounts[reason, default: 0] += 1
        sink.drops.append(.init(rolloutID: rollout, reason: reason, detail: detail))
        report.dropped[reason, default: 0] += 1
        if !report.examples.contains(where: { $0.reason == reason }) {
            report.examples.append(.init(rolloutID: rollout, reason: reason, detail: detail))
        }
    }

    /// A hash of what a record says (ids left out: two runs of the same dialogue differ in
    /// their random tool-call ids but teach the same thing).
    func dedupeHash(_ c: RecordContext, _ t: Trajectory) -> Int64 {
        hashScratch.removeAll(keepingCapacity: true)
        func add(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { hashScratch.append(contentsOf: $0) } }
        func add(_ s: Span) {
            add(Int64(s.count))
            if s.count > 0 { t.withBytes(s) { hashScratch.append(contentsOf: $0) } }
        }
        if let p = c.prompt { var p = p; add(Int64(p.utf8.count)); p.withUTF8 { hashScratch.append(contentsOf: $0) } } else { add(-1) }
        add(c.head.toolsetID ?? -1)
        for m in t.messages {
            add(Int64(m.role.rawValue))
            add(m.content)
            add(m.reasoning)
            for j in m.callRange {
                add(t.calls[j].name)
                add(t.calls[j].arguments)
            }
        }
        return hashScratch.withUnsafeBytes { Hashing.contentHash($0) }
    }

    func single(_ head: RolloutHead, _ t: Trajectory, _ db: Database) throws {
        let sink = try sink(for: head)
        sink.selected += 1
        let c = try context(head, t, db)
        guard admit(c, t, into: sink) else { return }
        let format = options.format
        let trimmed = try sink.writer.appendLine { w -> Int in
            switch format {
            case .training: RecordRenderers.training(&w, t, c); return 0
            case .rollout: RecordRenderers.rollout(&w, t, c); return 0
            case .openAIFT: return RecordRenderers.openAIFT(&w, t, c)
            case .sharegpt: return RecordRenderers.sharegpt(&w, t, c, scratch: &scratch)
            case .deepresearch: RecordRenderers.deepresearch(&w, t, c, scratch: &scratch); return 0
            case .dpo: preconditionFailure("pairs are written by pairs(_:)")
            }
        }
        sink.trimmed += trimmed
        report.trimmedMessages += trimmed
        sink.count += 1
        report.written += 1
    }

    /// DPO: the samples of one task, paired passed with failed in sample order.
    func pairs(_ group: [(RolloutHead, Trajectory)], _ db: Database) throws {
        var passed: [(RecordContext, Trajectory, Sink)] = []
        var failed: [(RecordContext, Trajectory, Sink)] = []
        for (head, t) in group {
            let sink = try sink(for: head)
            sink.selected += 1
            let c = try context(head, t, db)
            guard admit(c, t, into: sink) else { continue }
            switch head.passed {
            case 1?: passed.append((c, t, sink))
            case 0?: failed.append((c, t, sink))
            default:
                drop(head.id, .ungraded, head.passed == nil ? "no verdict from grader \(report.grader ?? "?")" : "undecided verdict", sink)
            }
        }
        let n = min(passed.count, failed.count)
        for (c, _, sink) in passed.dropFirst(n) {
            drop(c.head.id, .unpaired, "passed; task \(c.head.externalID) has no failed sample left to pair with", sink)
        }
        for (c, _, sink) in failed.dropFirst(n) {
            drop(c.head.id, .unpaired, "failed; task \(c.head.externalID) has no passed sample left to pair with", sink)
        }
        for i in 0..<n {
            let (cc, ct, sink) = passed[i]
            let (rc, rt, _) = failed[i]
            guard cc.prompt == rc.prompt, cc.head.toolsetID == rc.head.toolsetID, let p = RecordRenderers.sharedPrompt(ct, rt, minimum: cc.prompt == nil ? 1 : 0) else {
                let why = cc.prompt != rc.prompt ? "different system prompts" : cc.head.toolsetID != rc.head.toolsetID ? "different tool lists"
                    : "they share no opening that ends before an assistant or a user message"
                drop(cc.head.id, .noSharedPrompt, "with rollout \(rc.head.id): \(why)", sink)
                drop(rc.head.id, .noSharedPrompt, "with rollout \(cc.head.id): \(why)", sink)
                continue
            }
            try sink.writer.appendLine { RecordRenderers.dpo(&$0, chosen: ct, cc, rejected: rt, rc, prompt: p) }
            sink.count += 1
            report.written += 1
        }
    }

    // MARK: Recording

    /// One transaction: an `exports` row per file, its drops, then the files renamed into place
    /// (a failed rename rolls the rows back).
    func record() throws {
        let filters = options.filtersJSON(grader: report.grader)
        let now = Timestamp.now()
        let sql = report.sql
        let ordered = sinkOrder.map { sinks[$0]! }
        let files = try warehouse.writer.write { db -> [ExportReport.File] in
            var files: [ExportReport.File] = []
            let insertDrop = try db.makeStatement(sql: "INSERT INTO export_drops(export_id, rollout_id, reason, detail) VALUES (?, ?, ?, ?)")
            for sink in ordered {
                var fileFilters = filters
                if case .object(var o) = fileFilters {
                    if let s = sink.split { o["split_share"] = .string(s) }
                    if let k = sink.sample { o["sample"] = JSONValue(k) }
                    fileFilters = .object(o)
                }
                var r = JSONObject()
                r["selected"] = JSONValue(sink.selected)
                r["written"] = JSONValue(sink.count)
                r["dropped"] = .object(JSONObject(pairs: sink.dropCounts.sorted { $0.key < $1.key }.map { ($0.key.rawValue, JSONValue($0.value)) }))
                if sink.keptInvalid > 0 { r["kept_invalid"] = JSONValue(sink.keptInvalid) }
                if sink.trimmed > 0 { r["trimmed_messages"] = JSONValue(sink.trimmed) }
                let sha = try sink.writer.finish()
                try db.execute(sql: """
                    INSERT INTO exports(run_id, format, path, filters, sql, count, bytes, sha256, created_at, split, dropped, report)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [self.runID, self.options.format.rawValue, sink.path, fileFilters.jsonText, sql, sink.count,
                                     sink.writer.bytes, sha, now, sink.split, sink.dropped, JSONValue.object(r).jsonText])
                let exportID = db.lastInsertedRowID
                for d in sink.drops {
                    try insertDrop.execute(arguments: [exportID, d.rolloutID, d.reason.rawValue, d.detail])
                }
                files.append(.init(exportID: exportID, path: sink.path, split: sink.split, sample: sink.sample, count: sink.count,
                                   bytes: sink.writer.bytes, sha256: sha, dropped: sink.dropped))
            }
            for sink in ordered { try sink.writer.publish() }
            return files
        }
        report.files = files
    }
}
