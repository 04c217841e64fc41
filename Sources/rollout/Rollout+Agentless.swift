import ArgumentParser
import Foundation
import RolloutKit

/// Options every Agentless stage takes.
struct AgentlessCommon: ParsableArguments {
    @Option(name: .long, help: "The pipeline run's name: its batches are NAME.localize and NAME.repair.") var name: String
    @Option(name: .long, help: "Positions FROM:TO of the sorted custom ids.") var range: String?
    @Option(name: .long, help: "Folder for the request files.") var batchDir = "batches"
    @Flag(name: .long, help: "Replace \\r\\n by \\n in problem statements.") var convertCrlf = false
    @Flag(name: .long, help: "Drop an existing batch of the stage's name even if it was submitted or has results.") var replace = false
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    func options(_ pipeline: AgentlessPipeline) throws -> AgentlessOptions {
        var o = AgentlessOptions(pipeline: pipeline, name: name, directory: batchDir)
        o.range = try parseRange(range)
        o.convertCRLF = convertCrlf
        o.replace = replace
        return o
    }
}

struct AgentlessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agentless",
        abstract: "The three-stage Agentless pipelines over ingested SWE-bench instances: bugfix (patches) and testwrite (reproduction tests).",
        discussion: """
            Each stage is a command; between stages, run the batch (rollout batch submit/status/fetch, or rollout batch run-local + rollout batch ingest).
              rollout agentless bugfix localize --name lite --model gpt-4o --passk 4
              rollout batch run-local batches/lite.localize.part0.jsonl --endpoint http://127.0.0.1:8000/v1 && rollout batch ingest batches/lite.localize.part0.output.jsonl
              rollout agentless bugfix repair --name lite
              …run and ingest lite.repair…
              rollout agentless bugfix finalize --name lite --output-dir results/lite
            """,
        subcommands: [Pipeline<Bugfix>.self, Pipeline<Testwrite>.self])

    protocol Kind { static var pipeline: AgentlessPipeline { get } }
    enum Bugfix: Kind { static let pipeline = AgentlessPipeline.bugfix }
    enum Testwrite: Kind { static let pipeline = AgentlessPipeline.testwrite }

    struct Pipeline<K: Kind>: ParsableCommand {
        static var configuration: CommandConfiguration {
            CommandConfiguration(commandName: K.pipeline.rawValue,
                                 abstract: K.pipeline == .bugfix ? "The bug fixer: localize files, repair with SEARCH/REPLACE edits, finalize patches."
                                     : "The test writer: localize test files, write a reproduction test, finalize test patches.",
                                 subcommands: [Localize.self, Repair.self, Finalize.self])
        }

        struct Localize: ParsableCommand {
            static var configuration: CommandConfiguration {
                CommandConfiguration(abstract: "Write NAME.localize: for each instance and pass, the repository structure (\(K.pipeline == .bugfix ? "tests hidden" : "tests shown")) and a request for at most 5 files.",
                                     discussion: "Example: rollout agentless \(K.pipeline.rawValue) localize --name lite --model gpt-4o --passk 4 --convert-crlf")
            }
            @OptionGroup var warehouse: WarehouseOptions
            @OptionGroup var common: AgentlessCommon
            @OptionGroup var sampling: SamplingOptions
            @Option(name: .long, help: "SWE-bench dataset (default: the only one).") var dataset: String?
            @Option(name: .long, help: "Only these instances (repeatable).") var instance: [String] = []
            @Option(name: .long, help: "Samples per instance: custom ids {instance_id}__pass{i} when > 1.") var passk = 1

            func validate() throws {
                if sampling.model == nil { throw ValidationError("--model is required") }
                if passk < 1 { throw ValidationError("--passk must be at least 1") }
            }

            func run() throws {
                let w = try warehouse.open()
                var o = try common.options(K.pipeline)
                o.dataset = dataset
                o.instances = instance
                o.passk = passk
                o.request = try sampling.options()
                let report = try reporting { try w.agentlessLocalize(o) }
                if common.json { try printJSON(report) } else { print(report.summary) }
            }
        }

        struct Repair: ParsableCommand {
            static var configuration: CommandConfiguration {
                CommandConfiguration(abstract: K.pipeline == .bugfix
                    ? "Read NAME.localize's answers (paths corrected against the structure) and write NAME.repair: the found files in full, asking for SEARCH/REPLACE edits."
                    : "Read NAME.localize's answers and write NAME.repair: the top test file, asking for a reproduction test as SEARCH/REPLACE edits.",
                                     discussion: "Sampling options default to the localize batch's. Example: rollout agentless \(K.pipeline.rawValue) repair --name lite")
            }
            @OptionGroup var warehouse: WarehouseOptions
            @OptionGroup var common: AgentlessCommon
            @OptionGroup var sampling: SamplingOptions
            @Option(name: .long, help: "At most this many found files go into a repair prompt (bugfix).") var topFiles = 5

            func run() throws {
                let w = try warehouse.open()
                var o = try common.options(K.pipeline)
                o.topFiles = topFiles
                if sampling.anyGiven {
                    guard sampling.model != nil else { throw ValidationError("give --model with the other sampling options") }
                    o.request = try sampling.options()
                }
                let report = try reporting { try w.agentlessRepair(o) }
                if common.json { try printJSON(report) } else { print(report.summary) }
            }
        }

        struct Finalize: ParsableCommand {
            static var configuration: CommandConfiguration {
                CommandConfiguration(abstract: "Apply NAME.repair's SEARCH/REPLACE edits and write patches in the Agentless schema (output_{pass}_processed.jsonl\(K.pipeline == .testwrite ? ", output_{pass}_processed_reproduction_test.jsonl" : ""), samples/, failures.jsonl).",
                                     discussion: "Files are written whole and replaced, never appended. Example: rollout agentless \(K.pipeline.rawValue) finalize --name lite --output-dir results/lite")
            }
            @OptionGroup var warehouse: WarehouseOptions
            @OptionGroup var common: AgentlessCommon
            @Option(name: .long, help: "Folder for the output files (default: agentless/NAME/\(K.pipeline.rawValue)).") var outputDir: String?
            @Option(name: .long, help: "model_name_or_path in the output lines (default: the repair batch's model).") var modelNameOrPath: String?
            @Flag(name: .long, help: "Keep the edits that applied when others of the same answer failed.") var allowPartial = false

            func run() throws {
                let w = try warehouse.open()
                let o = try common.options(K.pipeline)
                let dir = outputDir ?? "agentless/\(SafeFileName.make(common.name))/\(K.pipeline.rawValue)"
                let report = try reporting { try w.agentlessFinalize(o, outputDir: dir, modelNameOrPath: modelNameOrPath, allowPartial: allowPartial) }
                if common.json { try printJSON(report) } else { print(report.summary) }
            }
        }
    }
}
