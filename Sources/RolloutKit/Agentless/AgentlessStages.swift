import Foundation
import GRDB

/// How an Agentless stage runs. The pipeline's batches are named `<name>.localize` and
/// `<name>.repair`.
public struct AgentlessOptions: Sendable {
    public var pipeline: AgentlessPipeline
    public var name: String
    /// The SWE-bench dataset (default: the only one in the warehouse).
    public var dataset: String?
    /// Only these instance ids (default: all).
    public var instances: [String] = []
    /// Positions in the sorted custom ids.
    public var range: IDRange?
    public var passk = 1
    /// Model and sampling; for `repair`, nil takes the localize batch's.
    public var request: BatchRequestOptions?
    /// Replace "\r\n" by "\n" in problem statements (SWE-bench rows carry CRLF).
    public var convertCRLF = false
    /// Where request files go.
    public var directory: String
    public var limits: BatchLimits?
    public var replace = false
    /// At most this many found files go into a repair prompt.
    public var topFiles = 5

    public init(pipeline: AgentlessPipeline, name: String, directory: String) {
        self.pipeline = pipeline
        self.name = name
        self.directory = directory
    }

    /// Batch names other than `<name>.localize` / `<name>.repair` (`rollout batch create --stage`).
    public var localizeBatchName: String?
    public var repairBatchName: String?

    public var localizeBatch: String { localizeBatchName ?? "\(name).localize" }
    public var repairBatch: String { repairBatchName ?? "\(name).repair" }

    /// Test writer: pass 0 greedy (0) and the others at `--temperature` (default 1.0) when
    /// k > 1; the bug fixer: `--temperature` for every pass (not sent when not given).
    func temperature(pass: Int, _ request: BatchRequestOptions) -> Double? {
        switch pipeline {
        case .bugfix: request.temperature
        case .testwrite: (passk <= 1 || pass == 0) ? 0 : (request.temperature ?? 1.0)
        }
    }
}

/// What a repair (or finalize) stage made of the previous stage's answers.
public struct AgentlessStageReport: Sendable, Codable {
    public var stage: String
    public var answersFrom: String
    public var answers = 0
    public var ok = 0
    public var failed = 0
    /// Requests of the previous batch with no result yet (ingest its output first).
    public var noResult = 0
    public var batch: BatchCreateReport?
    public var files: [String] = []
    public var failureExamples: [String] = []

    public var summary: String {
        var out = ["\(stage): read \(answers) answer(s) of batch \(answersFrom): \(ok) ok, \(failed) failed"
                   + (noResult > 0 ? ", \(noResult) request(s) without a result (ingest the batch output first)" : "")]
        for f in failureExamples.prefix(10) { out.append("  failed: \(f)") }
        if failed > 10 { out.append("  … (see failures.jsonl or agentless_outputs)") }
        if let batch { out.append(batch.summary) }
        for f in files { out.append("  wrote \(f)") }
        return out.joined(separator: "\n")
    }
}

extension Warehouse {
    // MARK: - Stage 1: localize

    /// `rollout agentless bugfix|testwrite localize`: one request per instance and pass asking
    /// for the files to edit, with the repository structure rendered as Agentless renders it.
    /// Instances without a structure are reported, skipped and counted.
    public func agentlessLocalize(_ o: AgentlessOptions) throws -> BatchCreateReport {
        guard let request = o.request else { throw BatchError("localize needs --model") }
        guard o.passk >= 1 else { throw BatchError("--passk must be at least 1") }
        var extra: JSONObject = ["pipeline": .string(o.pipeline.rawValue), "passk": JSONValue(o.passk), "convert_crlf": .bool(o.convertCRLF)]
        if let r = o.range { extra["range"] = .string(r.description) }
        return try createBatch(name: o.localizeBatch, options: request, stage: "\(o.pipeline.rawValue)-localize", extraOptions: extra,
                               directory: o.directory, limits: o.limits, replace: o.replace) { db, add in
            let tasks = try Self.swebenchTasks(db, dataset: o.dataset, instances: o.instances)
            var ids: [(id: String, task: Int, pass: Int)] = []
            for (i, t) in tasks.rows.enumerated() {
                for p in 0..<o.passk { ids.append((PassID.make(t.instanceID, pass: p, of: o.passk), i, p)) }
            }
            ids.sort { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
            var cached: (task: Int, prompt: String?)? = nil
            var skipped = Set<Int>()
            for entry in o.range.map({ $0.apply(ids) }) ?? ids[...] {
                let t = tasks.rows[entry.task]
                if cached?.task != entry.task {
                    var prompt: String?
                    if let bytes = try Self.structureBytes(db, instance: t.instanceID) {
                        do {
                            let view = o.pipeline.view(try RepoStructure(json: bytes), instanceID: t.instanceID)
                            prompt = AgentlessPrompts.localize(o.pipeline, problem: o.convertCRLF ? t.problem.replacingOccurrences(of: "\r\n", with: "\n") : t.problem,
                                                               structure: view.render())
                        } catch {
                            if skipped.insert(entry.task).inserted { add.skip("\(t.instanceID): its repo structure does not parse: \(error)") }
                        }
                    } else if skipped.insert(entry.task).inserted {
                        add.skip("\(t.instanceID): no repo structure (ingest it with rollout ingest repo-structures)")
                    }
                    cached = (entry.task, prompt)
                }
                guard let prompt = cached?.prompt else { continue }
                let body = request.body(messages: [ChatMessage(role: "user", content: prompt)], temperature: o.temperature(pass: entry.pass, request))
                try add(BatchRequestSpec(customID: entry.id, taskID: t.taskID, sample: entry.pass, body: body))
            }
        }
    }

    struct SWEBenchTask { var taskID: Int64; var instanceID: String; var problem: String; var goldPatch: String? }

    static func swebenchTasks(_ db: Database, dataset: String?, instances: [String]) throws -> (dataset: String, rows: [SWEBenchTask]) {
        let name: String
        if let dataset {
            guard try String.fetchOne(db, sql: "SELECT kind FROM datasets WHERE name = ?", arguments: [dataset]) != nil else {
                throw BatchError("no dataset named \(dataset) (ingest SWE-bench with rollout ingest swebench FILE --dataset \(dataset))")
            }
            name = dataset
        } else {
            let all = try String.fetchAll(db, sql: "SELECT name FROM datasets WHERE kind = 'swebench' ORDER BY name")
            guard all.count == 1 else {
                throw BatchError(all.isEmpty ? "no SWE-bench dataset in the warehouse (rollout ingest swebench FILE --dataset NAME)"
                                 : "several SWE-bench datasets (\(all.joined(separator: ", "))); pass --dataset")
            }
            name = all[0]
        }
        var rows = try Row.fetchAll(db, sql: """
            SELECT t.id, t.external_id, coalesce(t.opening, '') AS problem, t.answer FROM tasks t JOIN datasets d ON d.id = t.dataset_id
            WHERE d.name = ? ORDER BY t.external_id
            """, arguments: [name]).map { SWEBenchTask(taskID: $0["id"], instanceID: $0["external_id"], problem: $0["problem"], goldPatch: $0["answer"]) }
        if !instances.isEmpty {
            let wanted = Set(instances)
            let missing = wanted.subtracting(rows.map(\.instanceID))
            if !missing.isEmpty { throw BatchError("not in dataset \(name): \(missing.sorted().joined(separator: ", "))") }
            rows = rows.filter { wanted.contains($0.instanceID) }
        }
        guard !rows.isEmpty else { throw BatchError("dataset \(name) has no tasks") }
        return (name, rows)
    }

    static func structureBytes(_ db: Database, instance: String) throws -> [UInt8]? {
        try Data.fetchOne(db, sql: "SELECT CAST(structure AS BLOB) FROM repo_structures WHERE instance_id = ?", arguments: [instance]).map { [UInt8]($0) }
    }

    // MARK: - Reading a batch's answers

    struct Answer {
        var requestID: Int64
        var batchID: Int64
        var customID: String
        var taskID: Int64?
        var sample: Int
        var resultID: Int64?
    }

    /// The requests of a batch in custom-id order (the selected range), with their result ids.
    static func answers(_ db: Database, batch: String, range: IDRange?) throws -> (provider: BatchProvider, rows: [Answer]) {
        guard let providerText = try String.fetchOne(db, sql: "SELECT provider FROM batches WHERE name = ? LIMIT 1", arguments: [batch]) else {
            throw BatchError("no batch named \(batch); run the previous stage first (see: rollout batch list)")
        }
        let rows = try Row.fetchAll(db, sql: """
            SELECT q.id, q.batch_id, q.custom_id, q.task_id, q.sample, r.id AS result_id
            FROM batch_requests q JOIN batches b ON b.id = q.batch_id LEFT JOIN batch_results r ON r.request_id = q.id
            WHERE b.name = ? ORDER BY q.custom_id
            """, arguments: [batch]).map {
                Answer(requestID: $0["id"], batchID: $0["batch_id"], customID: $0["custom_id"], taskID: $0["task_id"],
                       sample: $0["sample"] ?? PassID.parse($0["custom_id"]).pass, resultID: $0["result_id"])
            }
        return (BatchProvider(rawValue: providerText) ?? .openai, Array(range.map { $0.apply(rows) } ?? rows[...]))
    }

    /// The answer text of a result, or why there is none.
    static func answerText(_ db: Database, resultID: Int64, provider: BatchProvider) throws -> Result<String, EditFailure> {
        guard let row = try Row.fetchOne(db, sql: "SELECT result_type, body, error_code, error_message FROM batch_results WHERE id = ?", arguments: [resultID]) else {
            return .failure(EditFailure(stage: "answer", reason: "no result"))
        }
        let type: String = row["result_type"]
        guard type == "succeeded", let body = row["body"] as String? else {
            let detail = [row["error_code"] as String?, row["error_message"] as String?].compactMap { $0 }.joined(separator: ": ")
            return .failure(EditFailure(stage: "answer", reason: "the request \(type)" + (detail.isEmpty ? "" : ": \(detail)")))
        }
        do {
            let bytes = Array(body.utf8)
            let response = provider == .anthropic ? try AnthropicCodec.decode(bytes, status: 200) : try OpenAICodec.decode(bytes, status: 200)
            guard let content = response.message.content, !content.isEmpty else {
                return .failure(EditFailure(stage: "answer", reason: "the answer has no text" + (response.finishReason.map { " (finish_reason \($0))" } ?? "")))
            }
            return .success(content)
        } catch {
            return .failure(EditFailure(stage: "answer", reason: "the response does not decode: \(error.description)"))
        }
    }

    static func recordOutput(_ db: Database, _ a: Answer, pipeline: AgentlessPipeline, stage: String, instanceID: String, ok: Bool,
                             foundFiles: [String]? = nil, editedFiles: [String]? = nil, modelPatch: String? = nil,
                             testPatch: String? = nil, testFuncName: String? = nil, failures: [EditFailure], now: String) throws {
        try db.execute(sql: """
            INSERT INTO agentless_outputs(batch_id, request_id, pipeline, stage, custom_id, task_id, instance_id, sample, status,
                found_files, edited_files, model_patch, test_patch, test_func_name, failures, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(request_id) DO UPDATE SET batch_id = excluded.batch_id, pipeline = excluded.pipeline, stage = excluded.stage,
                custom_id = excluded.custom_id, task_id = excluded.task_id, instance_id = excluded.instance_id, sample = excluded.sample,
                status = excluded.status, found_files = excluded.found_files, edited_files = excluded.edited_files,
                model_patch = excluded.model_patch, test_patch = excluded.test_patch, test_func_name = excluded.test_func_name,
                failures = excluded.failures, updated_at = excluded.updated_at
            """, arguments: [a.batchID, a.requestID, pipeline.rawValue, stage, a.customID, a.taskID, instanceID, a.sample, ok ? "ok" : "failed",
                             foundFiles.map { JSONValue.array($0.map(JSONValue.string)).jsonText },
                             editedFiles.map { JSONValue.array($0.map(JSONValue.string)).jsonText },
                             modelPatch, testPatch, testFuncName, JSONValue.array(failures.map(\.json)).jsonText, now, now])
    }

    /// The batch options recorded for `batch`, to make the next stage's requests the same way.
    static func recordedOptions(_ db: Database, batch: String) throws -> (BatchRequestOptions, JSONObject)? {
        guard let row = try Row.fetchOne(db, sql: "SELECT provider, model, options FROM batches WHERE name = ? ORDER BY part LIMIT 1", arguments: [batch]),
              let provider = BatchProvider(rawValue: row["provider"]) else { return nil }
        let o = (try? JSONParser.parse(row["options"] as String? ?? "{}"))?.objectValue ?? [:]
        var r = BatchRequestOptions(provider: provider, model: row["model"] ?? o["model"]?.stringValue ?? "")
        r.temperature = o["temperature"]?.doubleValue
        r.topP = o["top_p"]?.doubleValue
        r.maxTokens = o["max_tokens"]?.intValue
        r.enableThinking = o["enable_thinking"]?.boolValue ?? false
        r.thinkingBudget = o["thinking_budget"]?.intValue
        r.thinkingStyle = o["thinking_style"]?.stringValue.flatMap(BatchThinkingStyle.init(rawValue:)) ?? .chatTemplateKwargs
        return (r, o)
    }

    // MARK: - Stage 2: repair / write test

    /// `rollout agentless bugfix|testwrite repair`: reads the localize answers (thinking
    /// stripped, paths corrected against the structure), records what each found, and writes
    /// the next batch: the bug fixer gets the found files' full contents, the test writer the
    /// top test file, both asked for SEARCH/REPLACE edits.
    public func agentlessRepair(_ o: AgentlessOptions) throws -> AgentlessStageReport {
        var report = AgentlessStageReport(stage: "\(o.pipeline.rawValue) repair", answersFrom: o.localizeBatch)
        let recorded = try writer.read { db in try Self.recordedOptions(db, batch: o.localizeBatch) }
        guard let recorded else {
            throw BatchError("no batch named \(o.localizeBatch); run `rollout agentless \(o.pipeline.rawValue) localize --name \(o.name)` first")
        }
        let (localizeOptions, localizeExtra) = recorded
        var options = o
        options.passk = localizeExtra["passk"]?.intValue ?? o.passk
        if o.convertCRLF == false, localizeExtra["convert_crlf"]?.boolValue == true { options.convertCRLF = true }
        let request = o.request ?? localizeOptions
        let now = Timestamp.now()
        var extra: JSONObject = ["pipeline": .string(o.pipeline.rawValue), "passk": JSONValue(options.passk), "from": .string(o.localizeBatch)]
        if let r = o.range { extra["range"] = .string(r.description) }
        let created = try createBatch(name: o.repairBatch, options: request, stage: "\(o.pipeline.rawValue)-repair", extraOptions: extra,
                                      directory: o.directory, limits: o.limits, replace: o.replace, allowEmpty: true) { db, add in
            let (provider, answers) = try Self.answers(db, batch: o.localizeBatch, range: o.range)
            var tasks: [Int64: SWEBenchTask] = [:]
            var cache: (instance: String, structure: RepoStructure?, files: Set<String>)? = nil
            for a in answers {
                guard let resultID = a.resultID else { report.noResult += 1; continue }
                report.answers += 1
                guard let taskID = a.taskID, let task = try tasks[taskID] ?? Self.task(db, id: taskID) else {
                    add.skip("\(a.customID): its request names no SWE-bench task")
                    continue
                }
                tasks[taskID] = task
                var failures: [EditFailure] = []
                func fail(_ f: EditFailure) throws {
                    failures.append(f)
                    report.failed += 1
                    if report.failureExamples.count < 100 { report.failureExamples.append("\(a.customID): \(f.reason)") }
                    try Self.recordOutput(db, a, pipeline: o.pipeline, stage: "localize", instanceID: task.instanceID, ok: false,
                                          foundFiles: [], failures: failures, now: now)
                }
                let text: String
                switch try Self.answerText(db, resultID: resultID, provider: provider) {
                case .failure(var f): f.stage = "localize"; try fail(f); continue
                case .success(let t): text = t
                }
                if cache?.instance != task.instanceID {
                    let s = try Self.structureBytes(db, instance: task.instanceID).map { o.pipeline.view(try RepoStructure(json: $0), instanceID: task.instanceID) }
                    cache = (task.instanceID, s, Set(s?.files ?? []))
                }
                guard let structure = cache?.structure, let files = cache?.files else {
                    try fail(EditFailure(stage: "localize", reason: "no repo structure for \(task.instanceID)"))
                    continue
                }
                guard let answer = ModelAnswer.stripThinking(text) else {
                    try fail(EditFailure(stage: "localize", reason: "the answer opens a thinking block and never closes it (cut off by max tokens?)"))
                    continue
                }
                var found: [String] = []
                for named in ModelAnswer.fileList(answer) {
                    if let p = structure.correct(named, files: files) {
                        if !found.contains(p) { found.append(p) }
                    } else {
                        failures.append(EditFailure(stage: "localize", reason: "found file \(named) is not in the repository structure", file: named))
                    }
                }
                found = Array(found.prefix(5))
                guard !found.isEmpty else {
                    try fail(EditFailure(stage: "localize", reason: failures.isEmpty ? "the answer names no file" : "none of the files it names is in the repository structure"))
                    continue
                }
                let chosen: [String]
                if o.pipeline == .testwrite {
                    chosen = [found.first(where: Self.looksLikeTest) ?? found[0]]
                } else {
                    chosen = Array(found.prefix(max(1, o.topFiles)))
                }
                var contents: [(path: String, content: String)] = []
                for path in chosen { contents.append((path, try structure.content(of: path) ?? "")) }
                let problem = options.convertCRLF ? task.problem.replacingOccurrences(of: "\r\n", with: "\n") : task.problem
                let prompt = AgentlessPrompts.repair(o.pipeline, problem: problem, files: contents)
                let body = request.body(messages: [ChatMessage(role: "user", content: prompt)], temperature: options.temperature(pass: a.sample, request))
                try add(BatchRequestSpec(customID: a.customID, taskID: taskID, sample: a.sample, body: body))
                try Self.recordOutput(db, a, pipeline: o.pipeline, stage: "localize", instanceID: task.instanceID, ok: true,
                                      foundFiles: found, failures: failures, now: now)
                report.ok += 1
            }
        }
        report.batch = created
        return report
    }

    /// A test file by its path: a component starting with "test", or a name ending in _test.py.
    static func looksLikeTest(_ path: String) -> Bool {
        path.split(separator: "/").contains { $0.hasPrefix("test") } || path.hasSuffix("_test.py") || path.hasSuffix("/conftest.py")
    }

    static func task(_ db: Database, id: Int64) throws -> SWEBenchTask? {
        try Row.fetchOne(db, sql: "SELECT id, external_id, coalesce(opening, '') AS problem, answer FROM tasks WHERE id = ?", arguments: [id]).map {
            SWEBenchTask(taskID: $0["id"], instanceID: $0["external_id"], problem: $0["problem"], goldPatch: $0["answer"])
        }
    }

    // MARK: - Stage 3: finalize

    /// `rollout agentless bugfix|testwrite finalize`: applies each repair answer's
    /// SEARCH/REPLACE edits and writes, in `outputDir`, `samples/<custom_id>.jsonl`,
    /// `output_<pass>_processed.jsonl` (Agentless's schema; one line per request of the batch,
    /// with an empty patch where none came out), for the test writer also
    /// `output_<pass>_processed_reproduction_test.jsonl`, and `failures.jsonl`; every file
    /// written whole and renamed into place. The same facts go to `agentless_outputs`, the
    /// files to `exports`.
    public func agentlessFinalize(_ o: AgentlessOptions, outputDir: String, modelNameOrPath: String? = nil,
                                  allowPartial: Bool = false) throws -> AgentlessStageReport {
        var report = AgentlessStageReport(stage: "\(o.pipeline.rawValue) finalize", answersFrom: o.repairBatch)
        let now = Timestamp.now()
        let samplesDir = (outputDir as NSString).appendingPathComponent("samples")
        return try writer.write { db in
            guard let recorded = try Self.recordedOptions(db, batch: o.repairBatch)?.0 else {
                throw BatchError("no batch named \(o.repairBatch); run `rollout agentless \(o.pipeline.rawValue) repair --name \(o.name)` first")
            }
            let modelName = modelNameOrPath ?? recorded.model
            let (provider, answers) = try Self.answers(db, batch: o.repairBatch, range: o.range)
            var processed: [Int: OutputFile] = [:]
            var reproduction: [Int: OutputFile] = [:]
            var all: [OutputFile] = []
            // Sample files are finished as they come but put in place only with the rest, so a
            // finalize that fails leaves no new sample behind (and the old ones as they were).
            var sampleFiles: [OutputFile] = []
            defer { for f in sampleFiles { f.abandon() } }
            let failuresFile = try OutputFile(path: (outputDir as NSString).appendingPathComponent("failures.jsonl"))
            all.append(failuresFile)
            defer { for f in all { f.abandon() } }
            func file(_ map: inout [Int: OutputFile], _ pass: Int, _ suffix: String) throws -> OutputFile {
                if let f = map[pass] { return f }
                let f = try OutputFile(path: (outputDir as NSString).appendingPathComponent("output_\(pass)\(suffix).jsonl"))
                map[pass] = f
                all.append(f)
                return f
            }
            // Localize failures of the same pipeline first: an instance without a repair
            // request is explained too.
            let localizeFailures = try Row.fetchAll(db, sql: """
                SELECT o.custom_id, o.instance_id, o.sample, o.failures FROM agentless_outputs o JOIN batches b ON b.id = o.batch_id
                WHERE b.name = ? AND o.status = 'failed' ORDER BY o.custom_id
                """, arguments: [o.localizeBatch])
            for row in localizeFailures {
                let failures = (try? JSONParser.parse(row["failures"] as String)) ?? .array([])
                try failuresFile.write(line: JSONValue.object(["custom_id": .string(row["custom_id"]), "instance_id": .string(row["instance_id"]),
                                                               "pass": JSONValue(row["sample"] as Int), "stage": "localize",
                                                               "failures": failures]).jsonText)
            }
            var tasks: [Int64: SWEBenchTask] = [:]
            var cache: (instance: String, files: StructureFiles?)? = nil
            var samples = 0
            let strings = { (list: [String]) in JSONValue.array(list.map(JSONValue.string)) }
            // In chunks: the answers are read here, finalized and serialized on every core (one
            // instance's answers on one thread, as they share its decoded files), then written
            // here in order.
            for chunk in stride(from: 0, to: answers.count, by: 64).map({ answers[$0..<min($0 + 64, answers.count)] }) {
                var inputs: [FinalizeInput] = []
                for a in chunk {
                    let parsed = PassID.parse(a.customID)
                    let task = try a.taskID.flatMap { id in try tasks[id] ?? Self.task(db, id: id) }
                    if let task, let id = a.taskID { tasks[id] = task }
                    let instanceID = task?.instanceID ?? parsed.instance
                    var input = FinalizeInput(answer: a, task: task, instanceID: instanceID)
                    if let resultID = a.resultID {
                        switch try Self.answerText(db, resultID: resultID, provider: provider) {
                        case .failure(var f):
                            f.stage = "repair"
                            input.failure = f
                        case .success(let text):
                            input.text = text
                            if cache?.instance != instanceID {
                                cache = (instanceID, try Self.structureBytes(db, instance: instanceID).map {
                                    StructureFiles(o.pipeline.view(try RepoStructure(json: $0), instanceID: instanceID))
                                })
                            }
                            input.files = cache?.files
                            if input.files == nil { input.failure = EditFailure(stage: "finalize", reason: "no repo structure for \(instanceID)") }
                        }
                    } else {
                        input.failure = EditFailure(stage: "repair", reason: "no result for this request (ingest the batch output first)")
                    }
                    inputs.append(input)
                }
                let outputs = FinalizeInput.run(inputs, pipeline: o.pipeline, allowPartial: allowPartial, modelName: modelName)
                for (input, output) in zip(inputs, outputs) {
                let a = input.answer, task = input.task, instanceID = input.instanceID, sample = output.sample
                let rawOutput = input.text
                if a.resultID != nil { report.answers += 1 } else { report.noResult += 1 }
                if sample.ok { report.ok += 1 } else if a.resultID != nil {
                    report.failed += 1
                    if report.failureExamples.count < 100 { report.failureExamples.append("\(a.customID): \(sample.failures.first?.reason ?? "no patch")") }
                }
                try file(&processed, a.sample, "_processed").write(serializedLine: output.processedLine)
                if o.pipeline == .testwrite {
                    let test: JSONObject = [
                        "model_name_or_path": .string(modelName), "instance_id": .string(instanceID),
                        "test_patch": .string(sample.testPatch ?? ""), "raw_test_patch": .string(sample.searchReplaceText),
                        "test_func_name": sample.testFuncName.map(JSONValue.string) ?? .null,
                        "original_file_content": .string(sample.originalContents.first ?? ""),
                    ]
                    try file(&reproduction, a.sample, "_processed_reproduction_test").write(json: .object(test))
                }
                if !sample.failures.isEmpty {
                    try failuresFile.write(line: JSONValue.object(["custom_id": .string(a.customID), "instance_id": .string(instanceID),
                                                                   "pass": JSONValue(a.sample), "stage": "repair",
                                                                   "failures": .array(sample.failures.map(\.json))]).jsonText)
                }
                if a.resultID != nil {
                    var s: JSONObject = ["custom_id": .string(a.customID), "instance_id": .string(instanceID), "pass": JSONValue(a.sample),
                                         "model_patch": .string(sample.modelPatch), "search_replace_text": .string(sample.searchReplaceText),
                                         "raw_output": rawOutput.map(JSONValue.string) ?? .null, "edited_files": strings(sample.editedFiles),
                                         "failures": .array(sample.failures.map(\.json))]
                    if o.pipeline == .testwrite {
                        s["test_patch"] = .string(sample.testPatch ?? "")
                        s["test_func_name"] = sample.testFuncName.map(JSONValue.string) ?? .null
                    }
                    s["gt_results"] = .object(["instance_id": .string(instanceID),
                                               "found_files": strings(AgentlessFinalizer.patchFiles(task?.goldPatch)),
                                               "gt_patch": task?.goldPatch.map(JSONValue.string) ?? .null])
                    let path = try SafeFileName.path(in: samplesDir, id: a.customID, suffix: ".jsonl")
                    let f = try OutputFile(path: path, sync: false)
                    try f.write(json: .object(s))
                    try f.finish()
                    sampleFiles.append(f)
                    samples += 1
                    try Self.recordOutput(db, a, pipeline: o.pipeline, stage: "repair", instanceID: instanceID, ok: sample.ok,
                                          editedFiles: sample.editedFiles, modelPatch: sample.modelPatch, testPatch: sample.testPatch,
                                          testFuncName: sample.testFuncName, failures: sample.failures, now: now)
                }
                }
            }
            for f in all {
                let sha = try f.commit()
                report.files.append(f.path)
                let format = f.path.hasSuffix("failures.jsonl") ? "agentless-failures"
                    : f.path.hasSuffix("_reproduction_test.jsonl") ? "agentless-reproduction-test" : "agentless-processed"
                try db.execute(sql: "INSERT INTO exports(format, path, filters, count, bytes, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [format, URL(fileURLWithPath: f.path).standardizedFileURL.path,
                                           JSONValue.object(["batch": .string(o.repairBatch), "pipeline": .string(o.pipeline.rawValue)]).jsonText,
                                           f.lines, f.bytes, sha, now])
            }
            all = []
            for f in sampleFiles { try f.publish() }
            sampleFiles = []
            if samples > 0 { report.files.append("\(samplesDir)/ (\(samples) sample file(s))") }
            return report
        }
    }
}

/// One answer on its way through finalize: what was read from the warehouse on the writer's
/// thread, finalized on any thread.
struct FinalizeInput {
    var answer: Warehouse.Answer
    var task: Warehouse.SWEBenchTask?
    var instanceID: String
    var text: String?
    var failure: EditFailure?
    var files: StructureFiles?

    init(answer: Warehouse.Answer, task: Warehouse.SWEBenchTask?, instanceID: String) {
        self.answer = answer
        self.task = task
        self.instanceID = instanceID
    }

    struct Output {
        var sample = FinalizedSample()
        /// The `output_{pass}_processed.jsonl` line, serialized (the large part of the work).
        var processedLine: [UInt8] = []
    }

    /// Finalizes `inputs` on every core: the answers of one instance (which share one
    /// `StructureFiles` and its caches) go to one thread, in order.
    static func run(_ inputs: [FinalizeInput], pipeline: AgentlessPipeline, allowPartial: Bool, modelName: String) -> [Output] {
        var groups: [[Int]] = []
        var last: ObjectIdentifier?
        for (i, input) in inputs.enumerated() {
            let key = input.files.map(ObjectIdentifier.init)
            if let key, key == last, !groups.isEmpty { groups[groups.count - 1].append(i) } else { groups.append([i]) }
            last = key
        }
        let results = UnsafeOutputs(count: inputs.count)
        let box = UnsafeInputs(inputs)
        let plan = groups
        DispatchQueue.concurrentPerform(iterations: plan.count) { g in
            for i in plan[g] {
                let input = box.inputs[i]
                var out = Output()
                if let failure = input.failure {
                    out.sample.failures.append(failure)
                } else if let text = input.text, let files = input.files {
                    out.sample = AgentlessFinalizer.finalize(answer: text, files: files, pipeline: pipeline, allowPartial: allowPartial)
                }
                let strings = { (list: [String]) in JSONValue.array(list.map(JSONValue.string)) }
                let line: JSONObject = [
                    "model_name_or_path": .string(modelName), "instance_id": .string(input.instanceID),
                    "model_patch": .string(out.sample.modelPatch), "raw_model_patch": .string(out.sample.rawModelPatch),
                    "original_file_content": strings(out.sample.originalContents), "edited_files": strings(out.sample.editedFiles),
                    "new_file_content": strings(out.sample.newContents),
                ]
                JSONWriter.compact.write(.object(line), into: &out.processedLine)
                out.processedLine.append(0x0A)
                results.set(i, out)
            }
        }
        return results.values
    }
}

/// The inputs shared read-only by the finalize threads. @unchecked Sendable: the array is not
/// changed while they run, and each `StructureFiles` in it (a class with caches) is used by
/// the one thread its instance's group went to.
final class UnsafeInputs: @unchecked Sendable {
    let inputs: [FinalizeInput]
    init(_ inputs: [FinalizeInput]) { self.inputs = inputs }
}

/// One slot per input, each written by exactly one finalize thread and read after all of them
/// have finished (concurrentPerform returns only then). @unchecked Sendable for that reason.
final class UnsafeOutputs: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<FinalizeInput.Output>
    let count: Int
    init(count: Int) {
        self.count = count
        storage = .allocate(capacity: max(1, count))
        storage.initialize(repeating: FinalizeInput.Output(), count: count)
    }
    deinit {
        storage.deinitialize(count: count)
        storage.deallocate()
    }
    func set(_ i: Int, _ value: FinalizeInput.Output) { storage[i] = value }
    var values: [FinalizeInput.Output] { Array(UnsafeBufferPointer(start: storage, count: count)) }
}
