import ArgumentParser
import Foundation
import RolloutKit

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the tool's hot paths (see BENCHMARKS.md for how each number is produced).",
        subcommands: [LLM.self, AgentlessSetup.self, AgentlessLocalize.self, AgentlessFinalize.self])

    struct LLM: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "llm",
            abstract: "Client CPU per call, calls/s and memory per request in flight against an OpenAI-compatible endpoint.",
            discussion: "Start the peer in another process first: rollout mock-server --port 8400. Example: rollout bench llm --endpoint http://127.0.0.1:8400/v1 --concurrency 1,64,512")
        @Option(name: .long, help: "Base URL of the OpenAI-compatible endpoint.") var endpoint = "http://127.0.0.1:8400/v1"
        @Option(name: .long, help: "Concurrency levels, comma-separated.") var concurrency = "1,64,512"
        @Option(name: .long, help: "Calls per level (default: max(2000, 8 × concurrency)).") var calls: Int?
        @Option(name: .long, help: "Model name to send.") var model = "agent"
        @Flag(name: .long, help: "Print JSON lines.") var json = false

        func run() async throws {
            let levels = concurrency.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !levels.isEmpty, levels.allSatisfy({ $0 > 0 }) else { throw ValidationError("--concurrency expects positive integers, e.g. 1,64,512") }
            let target = Endpoint(provider: .openai, apiBase: endpoint, apiKey: "EMPTY", model: model)
            if !json {
                print("| concurrency | calls | errors | wall s | calls/s | client CPU µs/call | KiB per in-flight request |")
                print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            }
            for c in levels {
                let r = try await LLMBenchmark.run(endpoint: target, concurrency: c, calls: calls ?? max(2000, 8 * c))
                if json {
                    let data = try JSONEncoder().encode(r)
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    print(String(format: "| %d | %d | %d | %.2f | %.0f | %.0f | %.1f |", r.concurrency, r.calls, r.errors,
                                 r.wallSeconds, r.callsPerSecond, r.cpuMicrosPerCall, r.kibPerInFlight))
                }
            }
        }
    }
}
