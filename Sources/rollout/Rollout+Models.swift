import ArgumentParser
import Foundation
import RolloutKit

struct MockServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-server",
        abstract: "Serve the built-in mock model over HTTP (OpenAI and Anthropic JSON) with fault injection.",
        discussion: """
            Routes: POST /v1/chat/completions, POST /v1/messages, GET /v1/models; the Batch APIs: /v1/files, /v1/batches
            (OpenAI) and /v1/messages/batches (Anthropic), a batch moving one state per status request. The model's role
            comes from the request's model name: "user" in it → user simulator, "judge" → judge,
            otherwise agent. Faults: --fail RATE:KIND with KIND one of \(MockFault.allCases.map(\.rawValue).joined(separator: ", ")).
            Example: rollout mock-server --port 8400 --latency-ms 100 --fail 0.05:429 --fail 0.01:reset
            """)

    @Option(name: .long, help: "Port to listen on (0 picks a free one).") var port = 8400
    @Option(name: .long, help: "Address to bind (loopback unless you say otherwise).") var host = "127.0.0.1"
    @Option(name: .long, help: "Delay before every answer, in milliseconds.") var latencyMs = 0
    @Option(name: .long, help: "Extra random delay up to this many milliseconds.") var jitterMs = 0
    @Option(name: .long, help: "Inject a fault into a share of requests: RATE:KIND (repeatable).") var fail: [String] = []
    @Option(name: .long, help: "Seed for fault draws and jitter.") var seed: UInt64 = 0
    @Option(name: .long, help: "User-simulator turns before ###STOP###.") var userTurns: Int?
    @Option(name: .long, help: "Event-loop threads (default: one per core).") var threads: Int?
    @Option(name: .long, help: "Batch APIs: status requests a batch waits in each state.") var batchPolls = 1
    @Option(name: .long, help: "Batch APIs: share of requests answered with an error line.") var batchErrorRate = 0.0
    @Option(name: .long, help: "Batch APIs: share of OpenAI requests answered with response: null.") var batchNullRate = 0.0
    @Option(name: .long, help: "Batch APIs: how batches end: completed, expired, failed.") var batchOutcome = "completed"

    func validate() throws {
        for f in fail { _ = try MockFault.parseRule(f) }
        if MockBatchConfiguration.Outcome(rawValue: batchOutcome) == nil { throw ValidationError("--batch-outcome is completed, expired or failed") }
        if batchPolls < 1 { throw ValidationError("--batch-polls must be at least 1") }
        if latencyMs < 0 || jitterMs < 0 { throw ValidationError("latency and jitter must be ≥ 0") }
    }

    func run() async throws {
        var settings: [(String, JSONValue)] = []
        if let userTurns { settings.append(("user_turns", JSONValue(userTurns))) }
        var config = MockServerConfiguration(latencyMs: latencyMs, jitterMs: jitterMs,
                                             faults: try fail.map(MockFault.parseRule), seed: seed,
                                             modelSettings: JSONObject(pairs: settings))
        config.batches = MockBatchConfiguration(pollsPerStage: batchPolls, errorRate: batchErrorRate, nullRate: batchNullRate,
                                                outcome: MockBatchConfiguration.Outcome(rawValue: batchOutcome) ?? .completed)
        let configuration = config
        let server = try await reportingAsync { try await MockServer.start(host: host, port: port, configuration: configuration, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount) }
        printError("mock-server listening on http://\(host):\(server.port)/v1 (OpenAI) and http://\(host):\(server.port) (Anthropic); Ctrl-C stops it")
        try await server.wait()
    }
}

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one prompt to a registered model and print the reply (checks a registry entry by hand).",
        discussion: "Example: rollout chat mock/agent \"What's my balance?\" --tools rollout-example/single_domain/tool_lists/CityTransit.json")

    @OptionGroup var warehouse: WarehouseOptions
    @Argument(help: "A registered model name, provider/name.") var model: String
    @Argument(help: "The user message.") var prompt: String
    @Option(name: .long, help: "A system prompt.") var system: String?
    @Option(name: .long, help: "An OpenAI tool list (JSON) to offer.") var tools: String?
    @Option(name: .long, help: "The model registry (default: configs/models.yml, else the bundled one).") var models: String?
    @Option(name: .long, help: "Sampling temperature.") var temperature: Double?
    @Option(name: .long, help: "Most tokens to generate.") var maxTokens: Int?
    @Flag(name: .long, help: "Do not record the call in the warehouse's llm_calls.") var noLedger = false
    @Flag(name: .long, help: "Print the reply as JSON.") var json = false

    func run() async throws {
        let registry = try reporting { try ModelRegistry.loadOrBundled(file: models ?? "configs/models.yml", isDefault: models == nil) }
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: prompt))
        let toolSpecs = try reporting { try tools.map(ToolSpecification.load(file:)) ?? [] }
        let request = ChatRequest(model: model, messages: messages, tools: toolSpecs,
                                  options: ChatOptions(temperature: temperature, maxTokens: maxTokens))
        // The model and its environment are checked before the warehouse is touched, so a
        // call that cannot be made writes nothing (a call that is made is recorded, failed or not).
        let entry = try reporting { try registry.resolve(model, keyPath: "model") }
        _ = try reporting { try Endpoint(entry: entry) }
        let http = LLMClient()
        let w = noLedger ? nil : try warehouse.open()
        if let w { try reporting { try w.registerModels(registry) } }
        let client = ModelClient(registry: registry, http: http, warehouse: w)
        let result: Result<ChatResponse, any Error>
        do {
            result = .success(try await client.complete(model, request, context: CallContext(role: .chat)))
        } catch {
            result = .failure(error)
        }
        try await http.shutdown()
        let response = try reporting { try result.get() }
        if json {
            print(ChatResponseJSON.render(response))
            return
        }
        if let r = response.message.reasoningContent { print("[reasoning] \(r)") }
        if let c = response.message.content { print(c) }
        for call in response.message.toolCalls { print("[tool call] \(call.name)(\(call.arguments))") }
        let u = response.usage
        printError("finish: \(response.finishReason ?? "?"); tokens: \(u.promptTokens ?? 0) in, \(u.completionTokens ?? 0) out")
    }
}
