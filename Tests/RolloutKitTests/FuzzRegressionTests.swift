import Foundation
@testable import RolloutKit
import Testing

/// The fuzzers' findings kept as tests (issue 14). Every input of the committed corpora
/// (Benchmarks/Fuzz/corpus/TARGET, minimized by `Benchmarks/fuzz.sh`) goes through the same calls
/// as its fuzz target (Benchmarks/Fuzz/Sources/TARGET), in the normal build: a decoder that
/// traps on one of them fails here without libFuzzer. Crash reproducers live in Fixtures/fuzz
/// and have their own tests with the outcome they must have now.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    static let targets = ["FuzzJSON", "FuzzOpenAI", "FuzzAnthropic", "FuzzSSE", "FuzzEditBlocks", "FuzzYAML",
                          "FuzzTrajectories", "FuzzBatchLine", "FuzzIngestFiles"]

    static func corpus(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let folder = Fixture.repoRoot.appending(path: "Benchmarks/Fuzz/corpus/\(target)")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted().map { name in
            (name, Array(try Data(contentsOf: folder.appending(path: name))))
        }
    }

    /// What the fuzz target of that name does with one input (its fatalError invariants as
    /// expectations).
    static func replay(_ target: String, _ bytes: [UInt8], scratch: TempDir, warehouse: Warehouse) throws {
        switch target {
        case "FuzzJSON":
            if let value = try? JSONParser.parse(bytes) { _ = try? JSONParser.parse(value.jsonText) }
        case "FuzzOpenAI":
            _ = try? OpenAICodec.decode(bytes, status: 200)
            _ = try? OpenAICodec.decode(bytes, status: 400)
        case "FuzzAnthropic":
            _ = try? AnthropicCodec.decode(bytes, status: 200)
            _ = try? AnthropicCodec.decode(bytes, status: 529)
        case "FuzzSSE":
            let whole = SSEParser.events(bytes)
            var parser = SSEParser()
            var pieces: [SSEEvent] = []
            var start = 0, step = 1
            while start < bytes.count {
                let end = min(bytes.count, start + step)
                pieces += parser.feed(bytes[start..<end])
                start = end
                step += 1
            }
            pieces += parser.finish()
            #expect(pieces == whole)
            _ = try? OpenAICodec.decodeStream(bytes)
        case "FuzzEditBlocks":
            let text = String(decoding: bytes, as: UTF8.self)
            _ = ModelAnswer.stripThinking(text)
            let fenced = ModelAnswer.fencedLines(text)
            _ = ModelAnswer.fileList(text)
            for edit in SearchReplace.parse(text).edits {
                var lines = fenced
                _ = try? SearchReplace.apply(edit, to: &lines, fileExists: true)
                var empty: [String] = []
                _ = try? SearchReplace.apply(edit, to: &empty, fileExists: false)
            }
        case "FuzzYAML":
            let file = try scratch.write("config.yml", bytes: bytes)
            _ = try? ModelRegistry.load(file: file)
            _ = try? GraderCatalog.load(file: file)
            _ = try? RunConfig.load(file: file, modelsFile: file)
            _ = try? RunConfig.load(file: file)
        case "FuzzTrajectories":
            guard let value = try? JSONParser.parse(bytes) else { return }
            _ = try? Warehouse.parseRolloutRecord(value)
            _ = try? Warehouse.parseTrainingRecord(value)
            _ = try? Warehouse.parseDeepResearchRecord(value)
            _ = try? Warehouse.parseTauBenchRecord(value)
        case "FuzzBatchLine":
            guard let value = try? JSONParser.parse(bytes) else { return }
            if let line = try? BatchResultLine(value) { _ = line.contentHash }
        case "FuzzIngestFiles":
            let file = try scratch.write("input.jsonl", bytes: bytes)
            _ = try? warehouse.ingestQueries(file: file, domains: ["airline"], dataset: "queries")
            _ = try? warehouse.ingestQA(file: file, dataset: "qa")
            _ = try? warehouse.ingestSWEBench(file: file, dataset: "swebench")
            for format in TrajectoryFormat.allCases {
                _ = try? warehouse.ingestTrajectories(file: file, run: "fuzz-\(format.rawValue)", format: format)
            }
        default:
            Issue.record("unknown fuzz target \(target)")
        }
    }

    /// Fixtures/fuzz/yaml-alias-bomb.yml: 600 bytes of anchors whose aliases expand to 10^6
    /// values (ten levels would be 10^10). Every YAML loader refuses it at once, before anything
    /// walks the expansion; it used to be loaded and walked in full (json() on the settings).
    @Test func yamlWhoseAliasesExpandPastTheLimitIsRefused() throws {
        let file = Fixture.path("fuzz/yaml-alias-bomb.yml")
        // The limit and its message are ConfigNode's (YAMLLimitsTests checks the line it names).
        let expected = "expands to more than 100000 values once its aliases (*name) are followed"
        let models = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(models.description.hasPrefix(file) && models.description.contains(expected), "\(models)")
        let graders = try #require(throws: ConfigError.self) { try GraderCatalog.load(file: file) }
        #expect(graders.description.hasPrefix(file) && graders.description.contains(expected), "\(graders)")
        let run = try #require(throws: ConfigError.self) { try RunConfig.load(file: file, modelsFile: file) }
        #expect(run.description.hasPrefix(file) && run.description.contains(expected), "\(run)")
    }

    /// Aliases themselves stay fine: a config that reuses an anchor a few times loads.
    @Test func yamlWithAFewAliasesStillLoads() throws {
        let tmp = try TempDir()
        let file = try tmp.write("models.yml", """
            models:
              mock/a:
                provider: mock
                mode: agent
                stop: &stops [END, STOP]
              mock/b:
                provider: mock
                mode: agent
                stop: *stops
            """)
        let registry = try ModelRegistry.load(file: file)
        #expect(registry.entry(named: "mock/b")?.settings["stop"] == .array(["END", "STOP"]))
    }

    /// Fixtures/fuzz/yaml-price-key-without-value.yml: `price:` with an unknown key that has no
    /// value trapped (a force unwrap of child(k), which is nil for a null value); now it is the
    /// unknown-key error, naming the key.
    @Test func unknownPriceKeyWithoutAValueIsAnError() throws {
        let file = Fixture.path("fuzz/yaml-price-key-without-value.yml")
        let error = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(error.keyPath == "models.mock/p.price.bogus")
        #expect(error.reason == "unknown price key (expected input, output, cached: USD per 1M tokens)")
        #expect(error.description.hasPrefix("\(file):"))
    }

    @Test(arguments: targets)
    func corpusReplaysWithoutTrapping(_ target: String) throws {
        let inputs = try Self.corpus(target)
        #expect(!inputs.isEmpty, "Benchmarks/Fuzz/corpus/\(target) is empty")
        let scratch = try TempDir()
        let warehouse = try Warehouse.open(path: scratch.url.appending(path: "fuzz.db").path)
        for input in inputs {
            try Self.replay(target, input.bytes, scratch: scratch, warehouse: warehouse)
        }
    }
}
