import ArgumentParser
import Foundation
import RolloutKit

struct Label: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record for each rollout of a run the system prompt and the tool list it ran with (as rows).",
        discussion: """
            Runs made by `rollout run` take exactly what the engine sent; imported runs take the trajectory's own system \
            message and tool list, else the domain's policy (a combination: its own, matched in any order, else its \
            domains' policies) and its servers' tools, named as the trajectory's tool calls name them. \
            Example: rollout label --run gpt4o-airline --domain airline
            """)
    @OptionGroup var warehouse: WarehouseOptions
    @Option(name: .customLong("run"), help: "The run to label.") var runName: String
    @Option(name: .long, help: "The domain (or A+B combination) an imported run's tasks ran in, when the tasks do not say.")
    var domain: String?
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    func run() throws {
        let w = try warehouse.open(create: false)
        let report = try reporting { try w.label(run: runName, domain: domain) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.summary)
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's rollouts as training data (training, rollout, openai-ft, sharegpt, dpo, deepresearch), validated and recorded.",
        discussion: """
            Streams from the warehouse, writes atomically (a temporary file renamed into place), records one row per file \
            in `exports` and every record left out in `export_drops`. Rollouts without labels are labeled first. \
            Examples:
              rollout export --run R --format training --out train.jsonl --passed-only --grader reward
              rollout export --run R --format openai-ft --out reviewed.jsonl --review accepted
              rollout export --run R --format sharegpt --out data.jsonl --dedupe --split train=0.9,val=0.1 --seed 7
              rollout export --run R --format dpo --grader reward --out pairs.jsonl
              rollout export --run R --format deepresearch --out results/
            """)
    @OptionGroup var warehouse: WarehouseOptions
    @Option(name: .customLong("run"), help: "The run to export.") var runName: String
    @Option(name: .long, help: "training | rollout | openai-ft | sharegpt | dpo | deepresearch") var format: String
    @Option(name: .long, help: "The output file (deepresearch: a folder for iter{k}.jsonl).") var out: String
    @Option(name: .customLong("where"), help: "An SQL condition over r (rollout), t (task), ds (dataset), d (domain), l (label).")
    var whereSQL: String?
    @Flag(name: .long, help: "Only rollouts the grader passed (its latest version).") var passedOnly = false
    @Option(name: .long, help: "The grader for --passed-only and dpo (default: the run's only grader).") var grader: String?
    @Option(name: .long, parsing: .upToNextOption, help: "Only these stop reasons (several, or comma-separated).")
    var stopReason: [String] = []
    @Option(name: .long, help: "Only rollouts with at least N tool calls.") var minToolCalls: Int?
    @Option(name: .long, help: "Only rollouts whose latest review (rollout serve) is accepted or rejected, or that nobody reviewed: unreviewed.")
    var review: String?
    @Flag(name: .long, help: "Leave out records with the same messages, system prompt and tools as an earlier one.") var dedupe = false
    @Option(name: .long, help: "Named shares adding up to 1, e.g. train=0.9,val=0.1 (one file each).") var split: String?
    @Option(name: .long, help: "Seed of the split's hash (default 0).") var seed: UInt64?
    @Option(name: .long, help: "What a split keeps together: task (default; all samples of a task in one share) or rollout.")
    var splitBy: String = "task"
    @Option(name: .long, help: "data_source of training records (default agent).") var dataSource: String = "agent"
    @Flag(name: .long, help: "Keep reasoning: use_cot true (training), <think> blocks (sharegpt), reasoning_content (dpo).") var useCot = false
    @Flag(name: .long, help: "Write each tool's function.parameters as a JSON string.") var stringifyParameters = false
    @Flag(name: .long, help: "Export failed rollouts too.") var includeFailed = false
    @Flag(name: .long, help: "Write records that fail validation anyway (still reported).") var keepInvalid = false
    @Flag(name: .long, help: "Refuse rollouts without labels instead of labeling them first.") var noLabel = false
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard ExportFormat(rawValue: format) != nil else {
            throw ValidationError("unknown --format \(format) (expected \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard SplitSpec.Unit(rawValue: splitBy) != nil else { throw ValidationError("--split-by expects task or rollout") }
        if seed != nil && split == nil { throw ValidationError("--seed only matters with --split") }
        if let split { _ = try SplitSpec(parsing: split) }
        if let minToolCalls, minToolCalls < 0 { throw ValidationError("--min-tool-calls must be 0 or more") }
        if let review, ReviewFilter(rawValue: review) == nil {
            throw ValidationError("--review expects accepted, rejected or unreviewed, not \(review)")
        }
    }

    func options() throws -> ExportOptions {
        var o = ExportOptions(run: runName, format: ExportFormat(rawValue: format)!, out: out)
        o.whereSQL = whereSQL
        o.passedOnly = passedOnly
        o.grader = grader
        o.stopReasons = stopReason.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
        o.minToolCalls = minToolCalls
        o.review = review.flatMap(ReviewFilter.init(rawValue:))
        o.dedupe = dedupe
        if let split { o.split = try SplitSpec(parsing: split, seed: seed ?? 0, unit: SplitSpec.Unit(rawValue: splitBy)!) }
        o.dataSource = dataSource
        o.useCoT = useCot
        o.stringifyParameters = stringifyParameters
        o.includeFailed = includeFailed
        o.keepInvalid = keepInvalid
        o.labelMissing = !noLabel
        return o
    }

    func run() throws {
        let w = try warehouse.open(create: false)
        let options = try reporting { try self.options() }
        let tty = isatty(STDERR_FILENO) != 0
        var progress: (@Sendable (Int) -> Void)?
        if tty {
            progress = { n in FileHandle.standardError.write(Data("\r  \(n) rollouts read…".utf8)) }
        }
        let report = try reporting { try w.export(options, progress: progress) }
        if tty && report.selected >= 65536 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        if json {
            print(report.jsonText)
        } else {
            print(report.summary)
        }
    }
}
