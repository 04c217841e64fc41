import Foundation
import RolloutKit
import Testing

@Suite("Run config and model registry")
struct ConfigTests {
    static let configs = Fixture.repoRoot.appending(path: "configs")
    static var exampleFile: String { configs.appending(path: "example.yml").path }
    static var modelsFile: String { configs.appending(path: "models.yml").path }

    @Test func repositoryExampleConfigLoads() throws {
        let config = try RunConfig.load(file: Self.exampleFile, modelsFile: Self.modelsFile)
        #expect(config.maxWorkers == 16)
        #expect(config.resume == true)
        #expect(config.enableMonitor == true)
        #expect(config.monitorMaxNoToolTurns == 3)
        #expect(config.unknownKeys == [])
        #expect(config.datasets.map(\.name) == ["Library", "CityTransit"])
        let library = config.datasets[0]
        #expect(library.path == "examples/rollout-layout/single_domain/queries/Library.jsonl")
        #expect(library.outputPath == "out/Library.jsonl")
        #expect(library.mcpDomain == "Library")
        #expect(library.tools == "examples/rollout-layout/single_domain/tool_lists/Library.json")
        #expect(library.agent.model == "mock/agent")
        #expect(library.agent.temperature == 0.7)
        #expect(library.agent.enableThinking == false)
        #expect(library.user?.model == "mock/user")
        #expect(library.user?.temperature == 1.0)
        #expect(library.maxTurns == 8)
        #expect(library.maxStepsPerTurn == 6)
        #expect(library.mode == .dialogue)
        #expect(library.samples == 1)
        let transit = config.datasets[1]
        #expect(transit.mode == .dialogue)
        #expect(transit.agent.enableThinking == nil)
        #expect(config.unsetEnvironment([:]) == [], "the example uses only mock models")
        // The resolved config never carries key values.
        let resolved = config.resolvedJSON.jsonText
        #expect(resolved.contains(#""max_workers":16"#))
        #expect(!resolved.contains("sk-"))
    }

    @Test func repositoryModelRegistryLoads() throws {
        let registry = try ModelRegistry.load(file: Self.modelsFile)
        #expect(registry.entries.map(\.name) == ["mock/agent", "mock/user", "mock/judge", "mock/judge-abc", "mock/judge-yes-no",
                                                 "mock/judge-json", "openai/gpt-4o",
                                                 "anthropic/claude-sonnet-4-5", "deepseek/deepseek-reasoner", "vllm/qwen3-8b"])
        let gpt = try #require(registry.entry(named: "openai/gpt-4o"))
        #expect(gpt.provider == .openai)
        #expect(gpt.apiBase == "https://api.openai.com/v1")
        #expect(gpt.apiKey == "${OPENAI_API_KEY}")
        #expect(gpt.priceInput == 2.5)
        #expect(gpt.priceOutput == 10.0)
        #expect(gpt.priceCached == 1.25)
        let claude = try #require(registry.entry(named: "anthropic/claude-sonnet-4-5"))
        #expect(claude.provider == .anthropic)
        #expect(claude.apiKey == "${ANTHROPIC_API_KEY}")
        let deepseek = try #require(registry.entry(named: "deepseek/deepseek-reasoner"))
        #expect(deepseek.provider == .openai)
        #expect(deepseek.settings["reasoning_history"] == .string("keep_after_tool_calls"))
        let vllm = try #require(registry.entry(named: "vllm/qwen3-8b"))
        #expect(vllm.apiKey == "EMPTY", "a placeholder key local servers want is allowed")
        #expect(vllm.apiBase == "http://localhost:8000/v1")
        #expect(vllm.mode == "chat_template_kwargs")
        let mock = try #require(registry.entry(named: "mock/agent"))
        #expect(mock.provider == .mock)
        #expect(mock.apiBase == nil)
        #expect(mock.mode == "agent")
        #expect(gpt.publicJSON["api_key"] == .string("${OPENAI_API_KEY}"))
        #expect(vllm.publicJSON["api_key"] == .string("<literal>"))
    }

    @Test func modelsFileBesideTheConfigIsFound() throws {
        let tmp = try TempDir()
        try tmp.write("conf/models.yml", try String(contentsOfFile: Self.modelsFile, encoding: .utf8))
        let file = try tmp.write("conf/run.yml", """
            models_config_file: models.yml
            samples: 3
            datasets:
              QA:
                mode: task
                agent: {model: openai/gpt-4o, temperature: 0}
                max_turns: 2
                extra_key: kept
            """)
        let config = try RunConfig.load(file: file)
        #expect(config.modelsConfigFile == tmp.file("conf/models.yml"))
        #expect(config.datasets.count == 1)
        #expect(config.datasets[0].mode == .task)
        #expect(config.datasets[0].user == nil)
        #expect(config.datasets[0].samples == 3)
        #expect(config.datasets[0].maxTurns == 2)
        #expect(config.unknownKeys == ["datasets.QA.extra_key"])
        #expect(config.unsetEnvironment([:]) == ["OPENAI_API_KEY"])
        #expect(config.unsetEnvironment(["OPENAI_API_KEY": "x"]) == [])
    }

    @Test func unknownModelNamesItsKeyPathAndListsRegisteredModels() throws {
        let tmp = try TempDir()
        try tmp.write("models.yml", try String(contentsOfFile: Self.modelsFile, encoding: .utf8))
        let file = try tmp.write("run.yml", """
            models_config_file: models.yml
            datasets:
              Bogus:
                agent: {model: openai/gpt-5-unknown}
                user: {model: mock/user}
            """)
        let error = try #require(throws: ConfigError.self) { try RunConfig.load(file: file) }
        #expect(error.keyPath == "datasets.Bogus.agent.model")
        #expect(error.file == file)
        #expect(error.line == 4)
        #expect(error.description.contains("datasets.Bogus.agent.model"))
        #expect(error.description.contains("unknown model \"openai/gpt-5-unknown\""))
        for name in ["mock/agent", "mock/user", "openai/gpt-4o", "anthropic/claude-sonnet-4-5", "vllm/qwen3-8b"] {
            #expect(error.description.contains(name), "lists \(name)")
        }
    }

    @Test func literalAPIKeyIsRefusedWithoutEchoingIt() throws {
        let tmp = try TempDir()
        let file = try tmp.write("models.yml", """
            models:
              openai/gpt-x:
                provider: openai
                api_key: sk-abc123456789
            """)
        let error = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(error.keyPath == "models.openai/gpt-x.api_key")
        #expect(error.description.contains("literal API key"))
        #expect(error.description.contains("${OPENAI_API_KEY}"))
        #expect(!error.description.contains("sk-abc123456789"))

        let anthropic = try tmp.write("models2.yml", """
            anthropic/claude:
              api_key: "sk-ant-abc123456789"
            """)
        let second = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: anthropic) }
        #expect(second.keyPath == "anthropic/claude.api_key")
        #expect(second.description.contains("${ANTHROPIC_API_KEY}"))
        #expect(!second.description.contains("sk-ant-abc123456789"))
    }

    @Test func badRegistryEntriesNameTheirKeyPath() throws {
        let tmp = try TempDir()
        let noSlash = try tmp.write("a.yml", "models:\n  gpt4:\n    provider: openai\n")
        let noSlashError = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: noSlash) }
        #expect(noSlashError.keyPath == "models.gpt4")
        let provider = try tmp.write("b.yml", "models:\n  x/y:\n    provider: cohere\n")
        let providerError = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: provider) }
        #expect(providerError.keyPath == "models.x/y.provider")
        #expect(providerError.description.contains("unknown provider \"cohere\""))
        let base = try tmp.write("c.yml", "models:\n  openai/x:\n    api_base: api.openai.com\n")
        let baseError = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: base) }
        #expect(baseError.keyPath == "models.openai/x.api_base")
        let price = try tmp.write("d.yml", "models:\n  openai/x:\n    price: {input: 1, outptu: 2}\n")
        let priceError = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: price) }
        #expect(priceError.keyPath == "models.openai/x.price.outptu")
    }

    @Test func dialogueDatasetWithoutUserModelIsRefused() throws {
        let tmp = try TempDir()
        try tmp.write("models.yml", try String(contentsOfFile: Self.modelsFile, encoding: .utf8))
        let file = try tmp.write("run.yml", """
            models_config_file: models.yml
            max_workers: 0
            datasets:
              D:
                agent: {model: mock/agent}
                user: {model: mock/user}
            """)
        let workers = try #require(throws: ConfigError.self) { try RunConfig.load(file: file) }
        #expect(workers.keyPath == "max_workers")
        #expect(workers.description.contains("must be at least 1, found 0"))
        try tmp.write("run.yml", """
            models_config_file: models.yml
            datasets:
              D:
                agent: {model: mock/agent}
            """)
        let error = try #require(throws: ConfigError.self) { try RunConfig.load(file: file) }
        #expect(error.keyPath == "datasets.D")
        #expect(error.description.contains("needs a user simulator"))
    }

    @Test func envReferencesExpandFromTheGivenEnvironment() throws {
        let env = ["TOKEN": "xyz", "HOST": "example.com"]
        #expect(try EnvReference.expand("Bearer ${TOKEN}", environment: env, keyPath: "k") == "Bearer xyz")
        #expect(try EnvReference.expand("https://${HOST}/v1?t=${TOKEN}", environment: env, keyPath: "k") == "https://example.com/v1?t=xyz")
        #expect(try EnvReference.expand("${MISSING:-fallback}", environment: env, keyPath: "k") == "fallback")
        #expect(try EnvReference.expand("${TOKEN:-fallback}", environment: env, keyPath: "k") == "xyz")
        #expect(try EnvReference.expand("no references", environment: [:], keyPath: "k") == "no references")
        #expect(EnvReference.names(in: "${A} and ${B:-x}") == ["A", "B"])
        #expect(EnvReference.isReference("${OPENAI_API_KEY}"))
        #expect(!EnvReference.isReference("sk-abc123456789"))
    }

    @Test func missingEnvironmentVariableIsNamed() throws {
        let error = try #require(throws: ConfigError.self) {
            try EnvReference.expand("${ROLLOUT_TEST_UNSET_VAR}", environment: ["OTHER": "1"], keyPath: "models.openai/gpt-4o.api_key")
        }
        #expect(error.keyPath == "models.openai/gpt-4o.api_key")
        #expect(error.description.contains("ROLLOUT_TEST_UNSET_VAR"))
        #expect(error.description.contains("models.openai/gpt-4o.api_key"))
    }
}
