import ArgumentParser
import Foundation
import RolloutKit

struct Grade: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grade the rollouts of a run: only ungraded ones, concurrently, resumable; a changed grader is a new version.",
        discussion: """
            Kinds: \(GraderKind.allCases.map(\.rawValue).joined(separator: ", ")). --grader names a kind or a grader
            defined in the graders config (configs/graders.yml, else the bundled one); the options below override
            its settings. `rollout grade --list` shows every grader and its options.
            Examples:
              rollout grade --run gpt4o-airline --grader reward
              rollout grade --run dr --grader llm-judge --judge-model mock/judge --concurrency 32
              rollout grade --run dr --grader numeric --tolerance 0.01
              rollout grade --run tau --grader sql --name cancelled --expression "EXISTS (SELECT 1 FROM tool_calls c WHERE c.rollout_id = r.id AND c.name = 'cancel_reservation')"
            Exit status: 0 done; 3 some judge calls failed (run again to retry them); 1 an error stopped it; 130 interrupted.
            """)
    @OptionGroup var warehouse: WarehouseOptions
    @Option(name: .customLong("run"), help: "The run to grade.") var runName: String?
    @Option(name: .long, help: "A grader kind or a grader defined in the graders config.") var grader: String?
    @Option(name: .long, help: "Store the grades under this grader name (default: --grader).") var name: String?
    @Option(name: .long, help: "Grader definitions (default: configs/graders.yml, else the bundled ones).") var graders: String?
    @Option(name: .long, help: "The model registry for llm-judge (default: configs/models.yml, else the bundled one).") var models: String?
    @Option(name: .long, help: "llm-judge: the judge model (a registry name).") var judgeModel: String?
    @Option(name: .long, help: "llm-judge: the reply format (correct_incorrect, abc, yes_no, json).") var format: String?
    @Option(name: .long, help: "llm-judge: a file with the prompt template.") var promptFile: String?
    @Option(name: .long, help: "Judge calls in flight at once.") var concurrency = 8
    @Option(name: .long, help: "regex: the pattern ({answer} = the escaped reference).") var pattern: String?
    @Option(name: .long, help: "regex: flags (i, s, m, x).") var flags: String?
    @Option(name: .long, help: "numeric: absolute tolerance.") var tolerance: Double?
    @Option(name: .long, help: "numeric: relative tolerance.") var relative: Double?
    @Option(name: .long, help: "reward: passed when reward ≥ this.") var threshold: Double?
    @Option(name: .long, help: "sql: the SQL expression over r (rollout), t (task), ru (run).") var expression: String?
    @Option(name: .long, help: "stop-reason: passing stop reasons, comma-separated.") var passing: String?
    @Option(name: .long, help: "Where the reference comes from: answer, criteria:$.path, record:$.path.") var reference: String?
    @Option(name: .long, help: "What is graded: auto, prediction, last_message.") var response: String?
    @Option(name: .long, help: "Any other option, key=value (repeatable).") var set: [String] = []
    @Option(name: .long, help: "Grade at most N rollouts this time.") var limit: Int?
    @Flag(name: .long, help: "List the graders (kinds, configured ones, versions in this warehouse) and stop.") var list = false
    @Flag(name: .long, help: "Print the report as JSON.") var json = false
    @Flag(name: .long, help: "Show progress even when stderr is not a terminal.") var progress = false

    func validate() throws {
        if !list && (runName == nil || grader == nil) { throw ValidationError("give --run R and --grader G (or --list)") }
        if concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        for s in set where !s.contains("=") { throw ValidationError("--set expects key=value, got \(s)") }
    }

    func catalog() throws -> GraderCatalog {
        try reporting { try GraderCatalog.loadOrBundled(file: graders ?? "configs/graders.yml", isDefault: graders == nil) }
    }

    /// The command-line options as grader options.
    func overrides() throws -> JSONObject {
        var o = JSONObject()
        if let judgeModel { o["model"] = .string(judgeModel) }
        if let format { o["format"] = .string(format) }
        if let promptFile { o["prompt"] = .string(try reporting { try String(contentsOfFile: promptFile, encoding: .utf8) }) }
        if let pattern { o["pattern"] = .string(pattern) }
        if let flags { o["flags"] = .string(flags) }
        if let tolerance { o["tolerance"] = JSONValue(tolerance) }
        if let relative { o["relative"] = JSONValue(relative) }
        if let threshold { o["threshold"] = JSONValue(threshold) }
        if let expression { o["expression"] = .string(expression) }
        if let passing { o["passing"] = .string(passing) }
        if let reference { o["reference"] = .string(reference) }
        if let response { o["response"] = .string(response) }
        for s in set {
            let eq = s.firstIndex(of: "=")!
            let text = String(s[s.index(after: eq)...])
            o[String(s[..<eq])] = (try? JSONParser.parse(text)) ?? .string(text)
        }
        return o
    }

    func run() async throws {
        if list { return try printList() }
        let definition = try reporting { try catalog().resolve(grader!, overrides: try overrides(), storeAs: name) }
        let w = try warehouse.open(create: false)
        var client: ModelClient?
        var http: LLMClient?
        if definition.kind == .llmJudge {
            let registry = try reporting { try ModelRegistry.loadOrBundled(file: models ?? "configs/models.yml", isDefault: models == nil) }
            let h = LLMClient(maxConnectionsPerHost: max(64, concurrency))
            http = h
            client = ModelClient(registry: registry, http: h, warehouse: w)
        }
        let stop = GradeStop()
        let signals = SignalHandler { stop.stop() }
        defer { signals.cancel() }
        let tty = isatty(STDERR_FILENO) == 1
        let show = !json && (progress || tty)
        var options = GradeOptions(concurrency: concurrency, client: client, limit: limit, stop: stop)
        if show {
            options.progress = { @Sendable (done: Int, total: Int) in
                let line = "grading: \(done)/\(total)"
                FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line + (tty ? "" : "\n")).utf8))
            }
        }
        let outcome: Result<GradeReport, any Error>
        do { outcome = .success(try await w.grade(run: runName!, definition: definition, options: options)) } catch { outcome = .failure(error) }
        try? await http?.shutdown()
        if show && tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let report = try reporting { try outcome.get() }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.summary)
            for e in report.errorSamples { printError("  judge call failed: \(e)") }
        }
        if report.fatal != nil { throw ExitCode(1) }
        if report.stopped { throw ExitCode(130) }
        if report.errors > 0 { throw ExitCode(3) }
    }

    func printList() throws {
        let c = try catalog()
        print("Built-in kinds (rollout grade --grader KIND [options]):")
        for kind in GraderKind.allCases {
            print("  \(kind.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(kind.summary)")
            for o in kind.optionHelp { print("      \(o)") }
        }
        if !c.definitions.isEmpty {
            print("\nDefined in \(c.file):")
            let width = c.definitions.map(\.name.count).max() ?? 0
            for d in c.definitions { print("  \(d.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(d.kind.rawValue)") }
        }
        if let w = try? warehouse.open(create: false) {
            let versions = try reporting {
                try QueryRunner(w).run(sql: "SELECT name, version, kind, created_at, definition FROM graders ORDER BY name, version", source: "graders")
            }[0]
            if !versions.rows.isEmpty {
                print("\nVersions in \(warehouse.path):")
                print(ResultFormat.table.render(versions), terminator: "")
            }
        }
    }
}

/// Options for how pass@k treats failed and undecidable rollouts.
struct ConventionOptions: ParsableArguments {
    @Option(name: .long, help: "Failed rollouts (errors): incorrect (default) or exclude.") var failed: String = "incorrect"
    @Option(name: .long, help: "Undecidable grades (e.g. unparseable judge replies): incorrect (default) or exclude.") var undecided: String = "incorrect"

    func validate() throws {
        for (flag, v) in [("--failed", failed), ("--undecided", undecided)] where FailedConvention(rawValue: v) == nil {
            throw ValidationError("\(flag) is incorrect or exclude, got \(v)")
        }
    }

    var failedConvention: FailedConvention { FailedConvention(rawValue: failed)! }
    var undecidedConvention: FailedConvention { FailedConvention(rawValue: undecided)! }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "pass@k, pass^k, avg@n and any-correct of a run by domain, dataset or model; stored in `scores`.",
        discussion: """
            The table is queries/pass-at-k.sql (rollout query pass-at-k runs it too; its header states every
            convention). Example: rollout eval --run gpt4o-airline --grader reward --k 1,2,4 --by dataset
            """)
    @OptionGroup var warehouse: WarehouseOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var conventions: ConventionOptions
    @Option(name: .customLong("run"), help: "The run.") var runName: String
    @Option(name: .long, help: "The grader whose verdicts count.") var grader = "stop-reason"
    @Option(name: .long, help: "The grader version (default: the highest the run has).") var version: Int?
    @Option(name: .long, help: "Values of k, comma-separated.") var k = "1"
    @Option(name: .long, help: "Group by: domain, dataset, model (= agent-model), agent-model, user-model, run, task.") var by = "domain"
    @Option(name: .long, help: "Tasks with fewer samples than k: refuse (default), cap (k becomes the fewest), skip.") var short = "refuse"
    @Flag(name: .long, help: "Do not store the table in `scores`.") var noStore = false

    var grouping: EvalGrouping? {
        switch by {
        case "model", "agent-model", "agent_model": .agentModel
        case "user-model", "user_model": .userModel
        default: EvalGrouping(rawValue: by)
        }
    }

    var ks: [Int]? {
        let parts = k.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return parts.isEmpty || parts.contains(where: { $0 == nil || $0! < 1 }) ? nil : parts.map { $0! }
    }

    func validate() throws {
        if grouping == nil { throw ValidationError("--by is one of domain, dataset, model, agent-model, user-model, run, task; got \(by)") }
        if ks == nil { throw ValidationError("--k takes positive integers, comma-separated (e.g. 1,5,10); got \(k)") }
        if ShortConvention(rawValue: short) == nil { throw ValidationError("--short is refuse, cap or skip; got \(short)") }
    }

    func run() throws {
        let w = try warehouse.open(create: false)
        let request = EvalRequest(run: runName, grader: grader, version: version, ks: ks!, by: grouping!,
                                  failed: conventions.failedConvention, undecided: conventions.undecidedConvention,
                                  short: ShortConvention(rawValue: short)!)
        let result = try reporting { try w.evaluate(request, store: !noStore) }
        if output.format == .table {
            print("run \(runName), grader \(grader) v\(result.version): \(result.graded) of \(result.samples) samples graded; "
                  + "failed rollouts \(request.failed == .incorrect ? "count as incorrect" : "excluded"), undecidable grades \(request.undecided == .incorrect ? "as incorrect" : "excluded")")
            print(ResultFormat.table.render(EvalFormatting.rounded(result.table)), terminator: "")
            if let id = result.scoreID { print("stored as scores #\(id)") }
        } else {
            print(output.format.render(result.table), terminator: "")
        }
        for note in result.refused where noStore { printError("refused: \(note)") }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs task by task: pass@1 of each, which tasks got better or worse, which flipped.",
        discussion: "Example: rollout compare baseline candidate --grader reward (queries/compare.sql; stored in `scores`).")
    @OptionGroup var warehouse: WarehouseOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var conventions: ConventionOptions
    @Argument(help: "The first run (the baseline).") var runA: String
    @Argument(help: "The second run.") var runB: String
    @Option(name: .long, help: "The grader whose verdicts count.") var grader = "stop-reason"
    @Option(name: .long, help: "The grader version for the first run (default: its highest).") var versionA: Int?
    @Option(name: .long, help: "The grader version for the second run (default: its highest).") var versionB: Int?
    @Flag(name: .long, help: "List every task, not only those that changed.") var all = false
    @Flag(name: .long, help: "Do not store the comparison in `scores`.") var noStore = false

    func run() throws {
        let w = try warehouse.open(create: false)
        let r = try reporting {
            try w.compareRuns(runA, runB, grader: grader, versionA: versionA, versionB: versionB,
                              failed: conventions.failedConvention, undecided: conventions.undecidedConvention, store: !noStore)
        }
        let s = r.summary
        if output.format != .table {
            if output.format == .json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let summary = String(decoding: try encoder.encode(s), as: UTF8.self)
                print("{\"summary\":\(summary),\"tasks\":\(ResultFormat.json.render(r.tasks).trimmingCharacters(in: .newlines))}")
            } else {
                print(output.format.render(r.tasks), terminator: "")
            }
            return
        }
        func f(_ d: Double?) -> String { d.map { String(format: "%.4f", $0) } ?? "-" }
        print("\(s.runA) (\(grader) v\(s.versionA)) vs \(s.runB) (v\(s.versionB)): \(s.both) tasks in both"
              + (s.tasksA > s.both ? ", \(s.tasksA - s.both) only in \(s.runA)" : "") + (s.tasksB > s.both ? ", \(s.tasksB - s.both) only in \(s.runB)" : ""))
        print("pass@1: \(f(s.passAt1A)) → \(f(s.passAt1B))" + (s.passAt1A != nil ? String(format: " (%+.4f)", (s.passAt1B ?? 0) - (s.passAt1A ?? 0)) : ""))
        print("better \(s.better), worse \(s.worse), same \(s.same); flipped to pass \(s.flippedToPass), flipped to fail \(s.flippedToFail)"
              + (s.signTestP.map { String(format: " (sign test p = %.3g)", $0) } ?? ""))
        var shown = r.tasks
        if !all {
            let changes = shown.column("change")
            shown.rows = shown.rows.indices.filter { changes[$0].text != "same" }.map { shown.rows[$0] }
        }
        if !shown.rows.isEmpty {
            print("")
            print(ResultFormat.table.render(EvalFormatting.rounded(shown)), terminator: "")
        }
        if let id = r.scoreID { print("stored as scores #\(id)") }
    }
}

/// Display rounding for tables people read (JSON and CSV keep full precision).
enum EvalFormatting {
    static func rounded(_ table: QueryResult, digits: Int = 4) -> QueryResult {
        var t = table
        let scale = pow(10.0, Double(digits))
        t.rows = table.rows.map { row in
            row.map { v in
                if case .real(let d) = v { return .real((d * scale).rounded() / scale) }
                return v
            }
        }
        return t
    }
}
