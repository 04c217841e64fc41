import ArgumentParser
import Foundation
import RolloutKit

extension Bench {
    struct AgentlessSetup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agentless-setup",
            abstract: "Fill a benchmark warehouse: N SWE-bench-like instances sharing a real Agentless structure, and a repair batch of R answers (ingested).",
            discussion: "Example: rollout bench agentless-setup --db bench.db --structure psf__requests-2317.json --instances 2294 --responses 10000")
        @OptionGroup var warehouse: WarehouseOptions
        @Option(name: .long, help: "An Agentless <instance_id>.json structure file.") var structure: String
        @Option(name: .long, help: "A SWE-bench JSONL whose first problem statement every instance gets (default: a short one).") var problems: String?
        @Option(name: .long, help: "Instances.") var instances = 2294
        @Option(name: .long, help: "Repair answers.") var responses = 10_000
        @Option(name: .long, help: "Folder for the generated files.") var dir = "bench-agentless"

        func run() throws {
            let w = try warehouse.open()
            var problem = "method = builtin_str(method) problem: a bytes method becomes the literal string \"b'GET'\"."
            if let problems, let data = FileManager.default.contents(atPath: problems), let first = data.split(separator: 0x0A).first,
               let text = try JSONParser.parse([UInt8](first.last == 0x0D ? first.dropLast() : first))["problem_statement"]?.stringValue {
                problem = text
            }
            let r = try reporting { try AgentlessBenchmark.setup(w, structureFile: structure, problem: problem, instances: instances,
                                                                 responses: responses, directory: dir) }
            try printJSON(r)
        }
    }

    struct AgentlessLocalize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agentless-localize",
            abstract: "Time `agentless bugfix localize` over the benchmark's first N instances; prints requests/s and this process's peak RSS.")
        @OptionGroup var warehouse: WarehouseOptions
        @Option(name: .long, help: "Instances (default: all).") var instances: Int?
        @Option(name: .long, help: "Folder for the request files.") var dir = "bench-agentless"

        func run() throws {
            let w = try warehouse.open(create: false)
            try printJSON(try reporting { try AgentlessBenchmark.localize(w, instances: instances, directory: dir) })
        }
    }

    struct AgentlessFinalize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agentless-finalize",
            abstract: "Time `agentless bugfix finalize` over the benchmark's repair answers; prints patches/s and this process's peak RSS.")
        @OptionGroup var warehouse: WarehouseOptions
        @Option(name: .long, help: "Folder for the output files.") var dir = "bench-agentless/results"

        func run() throws {
            let w = try warehouse.open(create: false)
            try printJSON(try reporting { try AgentlessBenchmark.finalize(w, outputDir: dir) })
        }
    }
}
