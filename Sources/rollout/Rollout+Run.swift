import ArgumentParser
import Dispatch
import Foundation
import RolloutKit

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run rollouts: N samples per task, written to the warehouse as they happen, resumable.",
        discussion: """
            `rollout run --config configs/example.yml` runs a Rollout-framework config;
            `rollout run single|cross|qa` pick tasks by domain or dataset from the warehouse.
            Re-running the same command resumes: only samples without a completed rollout run.
            Starting it again while it runs joins the run: the processes share its rollouts.
            Exit status: 0 all rollouts completed; 3 some failed after every attempt; 1 the run
            was stopped by an error; 130 interrupted (SIGINT / SIGTERM).
            """,
        subcommands: [FromConfig.self, Single.self, Cross.self, QA.self],
        defaultSubcommand: FromConfig.self
    )

    struct FromConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "config", abstract: "Run the datasets of a run config (the default: `rollout run --config FILE`).")
        @OptionGroup var warehouse: WarehouseOptions
        @Option(name: .long, help: "The run config (Rollout-framework YAML).") var config = "configs/example.yml"
        @Option(name: .long, help: "Only these datasets of the config (repeatable).") var dataset: [String] = []
        @OptionGroup var options: RunOptions

        func run() async throws {
            let cfg = try reporting { try RunConfig.load(file: config, modelsFile: options.models) }
            // Everything that can be checked without the warehouse is, before anything is written.
            let stem = URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
            var request = try reporting { try RunRequest(config: cfg, runName: options.run ?? stem, only: dataset) }
            try options.apply(to: &request, configured: true)
            let w = try warehouse.open()
            for report in try reporting({ try w.ingestConfigDatasets(cfg, only: dataset) })
            where report.counts.contains(where: { $0.inserted + $0.updated + $0.removed > 0 }) {
                options.say(report.summary)
            }
            try await options.execute(request, warehouse: w)
        }
    }

    struct Single: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run single-domain tasks: every domain (--all) or the named ones (--domains A B).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var selection: DomainSelection
        @OptionGroup var options: RunOptions

        func run() async throws {
            try await selection.run(cross: false, warehouse: warehouse, options: options)
        }
    }

    struct Cross: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run cross-domain tasks: every combination (--all) or those of the named domains.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var selection: DomainSelection
        @Option(name: .long, help: "Only combinations of at least N domains.") var minDomains: Int?
        @Flag(name: .long, help: "Only combinations with their own policy file.") var requirePolicy = false
        @Option(name: .long, help: "Write one run config per combination into DIR (for review) and stop.")
        var generateConfigs: String?
        @OptionGroup var options: RunOptions

        func run() async throws {
            if let dir = generateConfigs {
                let w = try warehouse.open(create: false)
                let listings = try reporting {
                    try w.runnableDomains(cross: true, all: selection.all, named: selection.domains, minDomains: minDomains,
                                          requirePolicy: requirePolicy)
                }
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for l in listings {
                    let file = URL(fileURLWithPath: dir).appending(path: l.key.replacingOccurrences(of: "+", with: "_") + ".yml")
                    try reporting { try OutputTarget.write(Array(options.configYAML(for: l).utf8), to: file.path) }
                    print(file.path)
                }
                options.say("\(listings.count) config\(listings.count == 1 ? "" : "s") written to \(dir)")
                return
            }
            try await selection.run(cross: true, warehouse: warehouse, options: options, minDomains: minDomains,
                                    requirePolicy: requirePolicy)
        }
    }

    struct QA: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "qa", abstract: "Run a QA dataset in task mode: the question is the user message.")
        @OptionGroup var warehouse: WarehouseOptions
        @Option(name: .long, help: "The dataset (ingested with `rollout ingest qa`).") var dataset: String
        @Option(name: .long, help: "Offer this domain's tools to the agent.") var domain: String?
        @Option(name: .long, help: "The agent's system prompt (a file).") var systemPrompt: String?
        @Option(name: .long, help: "Most LLM calls per rollout.") var maxCalls = 100
        @Option(name: .long, help: "Most tokens (prompt + completion, summed over calls) per rollout.") var tokenBudget: Int?
        @OptionGroup var options: RunOptions

        func run() async throws {
            let w = try warehouse.open(create: false)
            var settings = RunConfig.Dataset(name: dataset, mode: .task, agent: .init(model: options.agentModel ?? "mock/agent"),
                                             user: nil, mcpDomain: domain)
            settings.extra["max_calls"] = JSONValue(maxCalls)
            if let tokenBudget { settings.extra["token_budget"] = JSONValue(tokenBudget) }
            if let systemPrompt {
                settings.extra["system_prompt"] = .string(try reporting { try String(contentsOfFile: systemPrompt, encoding: .utf8) })
            }
            var request = RunRequest(runName: options.run ?? "qa-\(dataset)",
                                     jobs: [.init(name: dataset, settings: settings, selection: .dataset(dataset))],
                                     registry: try options.registry())
            try options.apply(to: &request, configured: false)
            try await options.execute(request, warehouse: w)
        }
    }
}

/// `--all | --domains A B…` and `--list` for `run single` and `run cross`.
struct DomainSelection: ParsableArguments {
    @Flag(name: .long, help: "Every domain (single) or combination (cross) that has tasks.") var all = false
    @Option(name: .long, parsing: .upToNextOption, help: "These domains (cross: the combinations made of them, or keys like A+B).")
    var domains: [String] = []
    @Flag(name: .long, help: "List what would run (domains, tasks, tools, policy) and stop.") var list = false

    func validate() throws {
        if all == !domains.isEmpty { throw ValidationError("give --all or --domains A B…") }
    }

    func run(cross: Bool, warehouse: WarehouseOptions, options: RunOptions, minDomains: Int? = nil,
             requirePolicy: Bool = false) async throws {
        let w = try warehouse.open(create: false)
        let listings = try reporting {
            try w.runnableDomains(cross: cross, all: all, named: domains, minDomains: minDomains, requirePolicy: requirePolicy)
        }
        if list {
            for l in listings {
                print("\(l.key)\t\(l.tasks) task\(l.tasks == 1 ? "" : "s")\t\(l.toolNames.count) tools\tpolicy: \(l.policy)")
                if options.verbose { print("    tools: \(l.toolNames.joined(separator: ", "))") }
            }
            let tasks = listings.reduce(0) { $0 + $1.tasks }
            print("\(listings.count) \(cross ? "combination" : "domain")\(listings.count == 1 ? "" : "s"), \(tasks) tasks")
            return
        }
        guard !listings.isEmpty else { throw CLIError("nothing to run: no \(cross ? "combination" : "domain") with tasks matches") }
        let settings = RunConfig.Dataset(name: cross ? "cross" : "single", mode: .dialogue,
                                         agent: .init(model: options.agentModel ?? "mock/agent"),
                                         user: .init(model: options.userModel ?? "mock/user"))
        var request = RunRequest(runName: options.run ?? (cross ? "cross" : "single"),
                                 jobs: [.init(name: cross ? "cross" : "single", settings: settings,
                                              selection: .domains(listings.map(\.key)))],
                                 registry: try options.registry())
        try options.apply(to: &request, configured: false)
        try await options.execute(request, warehouse: w)
    }
}

/// Options every `rollout run` form shares.
struct RunOptions: ParsableArguments {
    @Option(name: .long, help: "The run's name (default: the config's file name, or single / cross / qa-DATASET).") var run: String?
    @Option(name: .long, help: "The agent model (a registry name, e.g. openai/gpt-4o).") var agentModel: String?
    @Option(name: .long, help: "The user-simulator model.") var userModel: String?
    @Option(name: .long, help: "The model registry (default: configs/models.yml, else the bundled one).") var models: String?
    @Option(name: .long, help: "Rollouts per task (raising it on a finished run runs only the new samples).") var samples: Int?
    @Option(name: .long, help: "Most user turns per dialogue.") var maxTurns: Int?
    @Option(name: .long, help: "Most agent steps (model calls) per user turn.") var maxStepsPerTurn: Int?
    @Option(name: .long, help: "Rollouts in flight at once (default: the config's max_workers, else 8).") var concurrency: Int?
    @Option(name: .long, help: "Only the first N tasks of each dataset or selection.") var limit: Int?
    @Option(name: .long, parsing: .upToNextOption, help: "Only these tasks (their ids).") var task: [String] = []
    @Option(name: .long, help: "Run share I of N (I/N, 1-based) into this warehouse; combine with `rollout merge`.") var shard: String?
    @Option(name: .long, help: "Attempts per sample before a failing one is given up.") var maxAttempts = 3
    @Flag(name: .long, inversion: .prefixedNo, help: "Continue the run of this name (default) or start a new one.") var resume = true
    @Flag(name: .long, help: "Continue a run although its configuration changed.") var force = false
    @Flag(name: .long, help: "Stop a dialogue after this many turns in a row without a tool call (monitor).") var monitor = false
    @Option(name: .long, help: "With --monitor: turns in a row without a tool call that stop a dialogue.") var monitorMaxNoToolTurns: Int?
    @Option(name: .long, help: "Also write each dataset's results as Rollout-framework output JSONL into DIR.") var outputDir: String?
    @Flag(name: .long, help: "Print nothing but errors.") var quiet = false
    @Flag(name: .long, help: "Show progress even when stderr is not a terminal.") var progress = false
    @Flag(name: .long, help: "Print the live transcript of every rollout (or of --watch ones).") var verbose = false
    @Option(name: .long, help: "With --verbose: only this task's rollouts.") var watch: String?

    func say(_ text: String) {
        if !quiet { printError(text) }
    }

    func registry() throws -> ModelRegistry {
        try reporting { try ModelRegistry.loadOrBundled(file: models ?? "configs/models.yml", isDefault: models == nil) }
    }

    func parsedShard() throws -> (index: Int, count: Int)? {
        guard let shard else { return nil }
        let parts = shard.split(separator: "/")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, (1...n).contains(i) else {
            throw ValidationError("--shard takes I/N with 1 ≤ I ≤ N, e.g. --shard 2/4")
        }
        return (i - 1, n)
    }

    func apply(to request: inout RunRequest, configured: Bool) throws {
        for i in request.jobs.indices {
            if let m = agentModel { request.jobs[i].settings.agent.model = m }
            if let m = userModel, request.jobs[i].settings.user != nil { request.jobs[i].settings.user?.model = m }
            if let t = maxTurns { request.jobs[i].settings.maxTurns = t }
            if let s = maxStepsPerTurn { request.jobs[i].settings.maxStepsPerTurn = s }
        }
        for job in request.jobs {
            for model in [job.settings.agent.model] + (job.settings.user.map { [$0.model] } ?? []) {
                _ = try reporting { try request.registry.resolve(model, keyPath: "--agent-model / --user-model") }
            }
        }
        if let samples { request.samples = samples }
        if let concurrency { request.concurrency = concurrency } else if !configured { request.concurrency = 8 }
        request.limit = limit
        request.taskIDs = task
        request.shard = try parsedShard()
        request.resume = resume
        request.force = force
        request.maxAttempts = maxAttempts
        if monitor { request.enableMonitor = true }
        if let n = monitorMaxNoToolTurns { request.monitorMaxNoToolTurns = n; request.enableMonitor = true }
        if let s = request.samples, s < 1 { throw ValidationError("--samples must be at least 1") }
        if request.concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
    }

    /// A run config for one combination (`run cross --generate-configs`).
    func configYAML(for listing: DomainListing) -> String {
        """
        # Cross-domain combination \(listing.key): \(listing.tasks) tasks, \(listing.toolNames.count) tools, policy: \(listing.policy).
        # Run with: rollout run --config THIS_FILE
        max_workers: \(concurrency ?? 8)
        resume: true
        enable_monitor: \(monitor)
        monitor_max_no_tool_turns: \(monitorMaxNoToolTurns ?? 3)
        models_config_file: \(models ?? "configs/models.yml")
        samples: \(samples ?? 1)
        datasets:
          \(listing.key.replacingOccurrences(of: "+", with: "_")):
            mcp_domain: "\(listing.key)"
            agent: {model: \(agentModel ?? "mock/agent")}
            user: {model: \(userModel ?? "mock/user")}
            max_turns: \(maxTurns ?? 10)
            max_steps_per_turn: \(maxStepsPerTurn ?? 10)
            mode: dialogue

        """
    }

    /// Plans, runs with progress and signal handling, prints the summary, exits with the
    /// run's status.
    func execute(_ request: RunRequest, warehouse: Warehouse) async throws {
        let plan = try await reportingAsync { try await warehouse.planRun(request) }
        var intro = "run \(plan.runName) (id \(plan.runID))\(plan.resumed ? ", resuming" : ""): "
        intro += "\(plan.rolloutCount) rollout\(plan.rolloutCount == 1 ? "" : "s") to run"
        if plan.alreadyCompleted > 0 { intro += ", \(plan.alreadyCompleted) already completed" }
        if plan.givenUp > 0 { intro += ", \(plan.givenUp) given up after \(request.maxAttempts) failed attempts" }
        intro += ", concurrency \(request.concurrency)"
        if !plan.otherWorkers.isEmpty {
            intro += "\njoining \(plan.otherWorkers.count) other process\(plan.otherWorkers.count == 1 ? "" : "es") on this run ("
                + plan.otherWorkers.joined(separator: "; ") + ")"
                + (plan.runningElsewhere > 0 ? ", which \(plan.runningElsewhere == 1 ? "runs" : "run") \(plan.runningElsewhere) now" : "")
                + "; each process claims pending rollouts, and progress counts this one's only"
        }
        say(intro)
        let colors = isatty(STDOUT_FILENO) == 1
        let watch = self.watch
        var transcript: (@Sendable (TranscriptLine) -> Void)?
        if verbose {
            transcript = { line in
                if let watch, line.task != watch { return }
                TranscriptPrinter.print(line, colors: colors)
            }
        }
        let engine = RolloutEngine(plan: plan, warehouse: warehouse, onTranscript: transcript)
        let signals = SignalHandler { engine.stop(reason: "interrupted by signal") }
        defer { signals.cancel() }
        let showProgress = !quiet && !verbose && (progress || isatty(STDERR_FILENO) == 1)
        let ticker = showProgress ? Task {
            let tty = isatty(STDERR_FILENO) == 1
            var last = ""
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(tty ? 500 : 5000))
                let line = ProgressLine.render(engine.counters, elapsed: engine.elapsed)
                if line != last {
                    FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line + (tty ? "" : "\n")).utf8))
                    last = line
                }
            }
        } : nil
        let summary = try await reportingAsync { try await engine.run() }
        ticker?.cancel()
        if showProgress && isatty(STDERR_FILENO) == 1 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        // --output-dir writes every job there; otherwise a config dataset's own output_path.
        var paths: [String: String] = [:]
        if outputDir == nil {
            for job in request.jobs { if let p = job.settings.outputPath { paths[job.name] = p } }
        }
        if outputDir != nil || !paths.isEmpty {
            let files = try reporting { try warehouse.writeRolloutOutputs(run: plan.runID, directory: outputDir, paths: paths) }
            for f in files { say("wrote \(f.path) (\(f.count) records)") }
        }
        if !quiet || summary.ending != .completed { printError(ProgressLine.summary(summary)) }
        switch summary.ending {
        case .completed: if summary.counters.failed > 0 { throw ExitCode(3) }
        case .interrupted: throw ExitCode(130)
        case .failed: throw ExitCode(1)
        }
    }
}

/// SIGINT / SIGTERM: the first asks the run to stop cleanly, a second exits at once (SQLite
/// keeps the file consistent; the batch being written is rolled back).
final class SignalHandler: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let lock = NSLock()
    private var count = 0

    init(_ onFirst: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in
                lock.lock()
                count += 1
                let n = count
                lock.unlock()
                if n == 1 {
                    printError("\nstopping: finishing writes and marking in-flight rollouts interrupted (signal again to exit at once)")
                    onFirst()
                } else {
                    _exit(130)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    func cancel() {
        for s in sources { s.cancel() }
        for sig in [SIGINT, SIGTERM] { signal(sig, SIG_DFL) }
    }
}

enum ProgressLine {
    static func render(_ c: RunCounters, elapsed: Double) -> String {
        let rate = elapsed > 0 ? Double(c.done) / elapsed : 0
        let left = c.total - c.done
        let eta = rate > 0 ? formatDuration(Double(left) / rate) : "?"
        var parts = ["\(c.done)/\(c.total)", String(format: "%.1f/s", rate), "ETA \(eta)", "running \(c.running)"]
        if c.failed > 0 { parts.append("failed \(c.failed)") }
        parts.append("tokens \(compact(c.promptTokens + c.completionTokens))")
        if c.costUSD > 0 { parts.append(String(format: "$%.4f", c.costUSD)) }
        return parts.joined(separator: "  ")
    }

    static func summary(_ s: RunSummary) -> String {
        let c = s.counters
        var lines = ["run \(s.runName): \(s.ending.rawValue) in \(formatDuration(s.seconds)) — \(c.completed) completed, \(c.failed) failed, \(c.interrupted) interrupted"
            + "; \(c.llmCalls) LLM calls, \(compact(c.promptTokens)) prompt + \(compact(c.completionTokens)) completion tokens"
            + (c.costUSD > 0 ? String(format: ", $%.4f", c.costUSD) : "")
            + "; \(c.toolCalls) tool calls (\(c.toolErrors) errors)"]
        if !c.stopReasons.isEmpty {
            lines.append("stop reasons: " + c.stopReasons.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if s.toolServerRestarts > 0 { lines.append("tool servers restarted \(s.toolServerRestarts) time(s)") }
        if let r = s.reason, s.ending != .completed { lines.append("reason: \(r)") }
        if !s.otherWorkers.isEmpty {
            lines.append("counts are this process's; run \(s.runName) stays \(s.runStatus): \(s.unfinishedElsewhere) rollout(s) left to "
                         + "\(s.otherWorkers.count == 1 ? "another process" : "other processes") still on it ("
                         + s.otherWorkers.joined(separator: "; ") + "); the last to finish marks it completed")
        } else if s.ending == .completed && s.runStatus != "completed" {
            lines.append("run \(s.runName) is left \(s.runStatus): \(s.unfinishedElsewhere) rollout(s) of tasks outside this selection (--limit, --task, --shard) are unfinished; run without those options to finish them")
        }
        if s.ending != .completed { lines.append("resume with the same command; completed rollouts are kept") }
        return lines.joined(separator: "\n")
    }

    static func compact(_ n: Int) -> String {
        n >= 1_000_000 ? String(format: "%.1fM", Double(n) / 1e6) : n >= 10_000 ? String(format: "%.0fk", Double(n) / 1e3) : String(n)
    }

    static func formatDuration(_ s: Double) -> String {
        if s < 60 { return String(format: "%.1fs", s) }
        let t = Int(s)
        return t < 3600 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m"
    }
}

enum TranscriptPrinter {
    private static let lock = NSLock()

    static func print(_ line: TranscriptLine, colors: Bool) {
        let m = line.message
        var text = m.content ?? ""
        if !m.toolCalls.isEmpty {
            text += (text.isEmpty ? "" : " ") + m.toolCalls.map { "→ \($0.name)(\($0.arguments))" }.joined(separator: " ")
        }
        let color: String
        switch m.role {
        case "user": color = "\u{1B}[36m"
        case "assistant": color = "\u{1B}[32m"
        case "tool": color = "\u{1B}[33m"
        default: color = ""
        }
        let label = "[\(line.task)#\(line.sample)] \(m.role)\(m.name.map { " \($0)" } ?? ""):"
        let out = colors ? "\(color)\(label)\u{1B}[0m \(text)\n" : "\(label) \(text)\n"
        lock.lock()
        FileHandle.standardOutput.write(Data(out.utf8))
        lock.unlock()
    }
}
