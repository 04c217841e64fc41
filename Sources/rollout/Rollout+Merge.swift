import ArgumentParser
import Foundation
import RolloutKit

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine warehouses (shards of `rollout run --shard I/N`) into one.",
        discussion: """
            Copies into OUT.db (created if missing) what each input has and OUT lacks, matching rows by \
            name or natural key, never by id. Each input is one transaction: on an error OUT is unchanged. \
            A row on both sides with other content is a conflict: reported, OUT's row kept. A run with the \
            same name and another configuration refuses the merge (checked for every input before any is \
            merged) unless --force. Merging an input again adds nothing.
            """)

    @Argument(help: "The warehouse to merge into (created if missing).") var out: String
    @Argument(help: "The warehouses to merge from, in order.") var inputs: [String] = []
    @Flag(name: .long, help: "Merge runs whose configuration differs too (OUT's configuration is kept).") var force = false
    @Flag(name: .long, help: "Print each input's report as JSON (one object a line).") var json = false

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one input warehouse: rollout merge OUT.db IN.db…") }
        for input in inputs where !FileManager.default.fileExists(atPath: input) {
            throw ValidationError("\(input): no such warehouse to merge from")
        }
    }

    func run() throws {
        let warehouse = try reporting { try Warehouse.open(path: out, create: true) }
        if !force {
            // Refuse before anything is merged, not after the first inputs went in.
            var refused: [String] = []
            for input in inputs {
                let runs = try reporting { try warehouse.mergeRefusals(from: input) }
                refused += runs.map { "\(input): run \($0)" }
            }
            if !refused.isEmpty {
                throw CLIError("""
                    refusing to merge (nothing changed): these runs have the same name but another configuration (models, prompts, tools or limits) than in \(out):
                      \(refused.joined(separator: "\n  "))
                    Shards of one run must use the same config. Pass --force to merge their rollouts into \(out)'s run anyway (its configuration is kept), or merge into another warehouse.
                    """)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for input in inputs {
            let report = try reporting { try warehouse.merge(from: input, force: force) }
            if json {
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.summary)
            }
        }
    }
}
