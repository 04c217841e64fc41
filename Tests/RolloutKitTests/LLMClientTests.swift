import Foundation
import GRDB
import RolloutKit
import Testing

/// The HTTP client against `rollout mock-server` on loopback: real sockets, real JSON.
@Suite("LLM client over HTTP")
struct LLMClientTests {
    static let tools = [ToolSpecification(
        name: "get_card", description: "Get a transit card's balance.",
        parameters: .object(["type": "object", "properties": .object(["card_id": .object(["type": "string"])]),
                             "required": .array(["card_id"])]))]

    static func request(_ text: String = "What's left on card C-7788?") -> ChatRequest {
        ChatRequest(model: "ignored", messages: [ChatMessage(role: "system", content: "You are a transit agent."),
                                                 ChatMessage(role: "user", content: text)],
                    tools: tools, options: ChatOptions(temperature: 0.2, maxTokens: 256))
    }

    /// Fast retries for tests: the delays are bounded, not measured.
    static let quick = RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05, maxRetryAfter: 0.2,
                                   connectTimeout: 2, requestTimeout: 5)

    static func withServer<T>(_ config: MockServerConfiguration = .init(),
                              _ body: (MockServer, LLMClient) async throws -> T) async throws -> T {
        let server = try await MockServer.start(configuration: config, threads: 1)
        let client = LLMClient(maxConnectionsPerHost: 64)
        do {
            let result = try await body(server, client)
            try await client.shutdown()
            await server.stop()
            return result
        } catch {
            try? await client.shutdown()
            await server.stop()
            throw error
        }
    }

    static func openAI(_ server: MockServer, model: String = "agent") -> Endpoint {
        Endpoint(provider: .openai, apiBase: "http://127.0.0.1:\(server.port)/v1", apiKey: "sk-test-not-secret", model: model)
    }

    /// Attempts reported by the client. `@unchecked Sendable`: `list` is only touched under `lock`.
    final class Attempts: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [CallAttempt] = []
        var all: [CallAttempt] { lock.withLock { list } }
        @Sendable func add(_ a: CallAttempt) { lock.withLock { list.append(a) } }
    }

    @Test func openAIRoundTripCallsAnOfferedTool() async throws {
        try await Self.withServer { server, client in
            let attempts = Attempts()
            let response = try await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick, onAttempt: attempts.add)
            #expect(response.message.role == "assistant")
            #expect(response.message.toolCalls.count == 1)
            #expect(response.message.toolCalls.first?.name == "get_card")
            let args = try JSONParser.parse(try #require(response.message.toolCalls.first?.arguments))
            #expect(args["card_id"]?.stringValue?.isEmpty == false)
            #expect(response.finishReason == "tool_calls")
            #expect((response.usage.promptTokens ?? 0) > 0)
            #expect(attempts.all.count == 1)
            #expect(attempts.all.first?.httpStatus == 200)
            #expect(attempts.all.first?.error == nil)
            #expect(server.requestCount == 1)
        }
    }

    @Test func anthropicRoundTripAnswersAfterAToolResult() async throws {
        try await Self.withServer { server, client in
            var r = Self.request()
            r.messages.append(ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "toolu_1", name: "get_card", arguments: #"{"card_id":"C-7788"}"#)]))
            r.messages.append(ChatMessage(role: "tool", content: #"{"balance": 12.5}"#, toolCallID: "toolu_1"))
            let endpoint = Endpoint(provider: .anthropic, apiBase: "http://127.0.0.1:\(server.port)", apiKey: "test", model: "agent")
            let response = try await client.complete(r, endpoint: endpoint, policy: Self.quick)
            #expect(response.message.toolCalls.isEmpty)
            #expect(response.message.content?.contains("12.5") == true)
            #expect(response.finishReason == "end_turn")
        }
    }

    @Test(arguments: [MockFault.rateLimited, .serverError, .badGateway, .unavailable])
    func retryableStatusesAreRetriedUpToTheLimit(fault: MockFault) async throws {
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, fault)])) { server, client in
            let attempts = Attempts()
            await #expect(throws: LLMError.self) {
                try await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick, onAttempt: attempts.add)
            }
            #expect(attempts.all.count == 3)
            #expect(attempts.all.map(\.attempt) == [1, 2, 3])
            #expect(attempts.all.allSatisfy { $0.httpStatus == Int(fault.rawValue) })
            #expect(attempts.all.allSatisfy { $0.error != nil })
            #expect(server.requestCount == 3)
        }
    }

    @Test func retryAfterIsHonouredUpToItsCap() async throws {
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, .rateLimited)])) { server, client in
            let started = ContinuousClock.now
            _ = try? await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick)
            // Two waits, each the server's Retry-After (1 s) capped at maxRetryAfter (0.2 s).
            #expect(ContinuousClock.now - started >= .milliseconds(400))
        }
    }

    @Test(arguments: [MockFault.malformed, .truncated, .reset])
    func brokenResponsesAreRetriedThenReported(fault: MockFault) async throws {
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, fault)])) { server, client in
            let attempts = Attempts()
            let error = await #expect(throws: LLMError.self) {
                try await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick, onAttempt: attempts.add)
            }
            #expect(attempts.all.count == 3)
            #expect(!(error?.description.contains("sk-test-not-secret") ?? true))
        }
    }

    @Test func hungResponseTimesOut() async throws {
        var policy = Self.quick
        policy.requestTimeout = 0.3
        policy.maxAttempts = 2
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, .timeout)])) { server, client in
            let attempts = Attempts()
            await #expect(throws: LLMError.self) {
                try await client.complete(Self.request(), endpoint: Self.openAI(server), policy: policy, onAttempt: attempts.add)
            }
            #expect(attempts.all.count == 2)
            #expect(attempts.all.allSatisfy { $0.latencyMs >= 250 })
        }
    }

    @Test func cancellationStopsTheRequestInFlight() async throws {
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, .timeout)])) { server, client in
            let attempts = Attempts()
            let call = Task {
                try await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick, onAttempt: attempts.add)
            }
            try await Task.sleep(for: .milliseconds(150))
            call.cancel()
            let result = await call.result
            #expect(throws: CancellationError.self) { try result.get() }
            // It ended on the cancel, not on the 5 s request timeout (that would be recorded as
            // a timeout error, not "cancelled").
            #expect(attempts.all.last?.error == "cancelled")
        }
    }

    @Test func clientErrorsFailAtOnceWithTheServersMessage() async throws {
        try await Self.withServer { server, client in
            var r = Self.request()
            r.messages = []
            let attempts = Attempts()
            let error = await #expect(throws: LLMError.self) {
                try await client.complete(r, endpoint: Self.openAI(server), policy: Self.quick, onAttempt: attempts.add)
            }
            #expect(attempts.all.count == 1)
            #expect(error?.status == 400)
        }
    }

    @Test func retryBudgetIsSharedAcrossCalls() async throws {
        try await Self.withServer(MockServerConfiguration(faults: [(1.0, .serverError)])) { server, client in
            let budget = RetryBudget(retries: 2)
            let attempts = Attempts()
            for _ in 0..<3 {
                _ = try? await client.complete(Self.request(), endpoint: Self.openAI(server), policy: Self.quick, budget: budget,
                                               onAttempt: attempts.add)
            }
            // 3 first attempts + the 2 retries the budget allowed.
            #expect(attempts.all.count == 5)
            #expect(budget.left == 0)
        }
    }

    @Test func intermittentFaultsAreRiddenOut() async throws {
        let config = MockServerConfiguration(faults: [(0.3, .serverError), (0.2, .reset)], seed: 7)
        try await Self.withServer(config) { server, client in
            var patient = Self.quick
            // Half the requests fail; 20 attempts make a call that never gets through a
            // one-in-a-million event.
            patient.maxAttempts = 20
            let policy = patient
            let answered = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        let response = try await client.complete(Self.request("card C-\(i)"), endpoint: Self.openAI(server), policy: policy)
                        return response.message.role == "assistant" ? 1 : 0
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(answered == 40)
            #expect(server.requestCount > 40)
        }
    }

    @Test func manyConcurrentRequestsAllSucceed() async throws {
        try await Self.withServer(MockServerConfiguration(latencyMs: 20)) { server, client in
            let ok = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<256 {
                    group.addTask {
                        let r = try await client.complete(Self.request("q\(i)"), endpoint: Self.openAI(server), policy: Self.quick)
                        return r.message.role == "assistant" ? 1 : 0
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(ok == 256)
        }
    }

    @Test func backoffStaysWithinItsBounds() {
        let p = RetryPolicy(baseDelay: 0.5, maxDelay: 4, maxRetryAfter: 10)
        #expect(p.delay(afterAttempt: 1, retryAfter: nil, random: 0) == 0.25)
        #expect(p.delay(afterAttempt: 1, retryAfter: nil, random: 1) == 0.5)
        #expect(p.delay(afterAttempt: 3, retryAfter: nil, random: 1) == 2)
        #expect(p.delay(afterAttempt: 10, retryAfter: nil, random: 1) == 4)
        #expect(p.delay(afterAttempt: 1, retryAfter: 3, random: 0) == 3)
        #expect(p.delay(afterAttempt: 1, retryAfter: 60, random: 0) == 10)
    }

    @Test func ledgerRecordsEveryAttemptWithCostAndNoKey() async throws {
        let tmp = FileManager.default.temporaryDirectory.appending(path: "ledger-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let registryFile = tmp.appending(path: "models.yml").path
        try """
        models:
          local/agent:
            provider: openai
            api_base: ${MOCK_BASE}
            api_key: ${TEST_LLM_KEY}
            price: {input: 2.0, output: 8.0, cached: 1.0}
          mock/agent:
            provider: mock
            mode: agent
        """.write(toFile: registryFile, atomically: true, encoding: .utf8)
        let registry = try ModelRegistry.load(file: registryFile)
        let warehouse = try Warehouse.inMemory()
        try await Self.withServer(MockServerConfiguration(faults: [(0.5, .serverError)], seed: 3)) { server, http in
            let env = ["MOCK_BASE": "http://127.0.0.1:\(server.port)/v1", "TEST_LLM_KEY": "sk-live-SECRET-123"]
            var policy = Self.quick
            policy.maxAttempts = 8
            let client = ModelClient(registry: registry, http: http, warehouse: warehouse, policy: policy, environment: env)
            for i in 0..<6 {
                _ = try await client.complete("local/agent", Self.request("card \(i)"), context: CallContext(role: .agent))
            }
            _ = try await client.complete("mock/agent", Self.request(), context: CallContext(role: .user))
            let requests = server.requestCount
            try await warehouse.writer.read { db in
                let rows = try Row.fetchAll(db, sql: "SELECT * FROM llm_calls WHERE model = 'local/agent' ORDER BY id")
                #expect(rows.count == requests)
                let ok = rows.filter { ($0["http_status"] as Int?) == 200 }
                #expect(ok.count == 6)
                let failed = rows.filter { ($0["http_status"] as Int?) == 500 }
                #expect(failed.count == requests - 6)
                #expect(failed.allSatisfy { ($0["error"] as String?)?.isEmpty == false })
                for row in ok {
                    let prompt = row["prompt_tokens"] as Int, completion = row["completion_tokens"] as Int
                    let cached = (row["cached_tokens"] as Int?) ?? 0
                    let expected = (Double(prompt - cached) * 2 + Double(cached) * 1 + Double(completion) * 8) / 1_000_000
                    #expect(abs((row["cost_usd"] as Double) - expected) < 1e-12)
                    #expect(row["role"] as String == "agent")
                    #expect((row["request_hash"] as String).count == 64)
                }
                #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM llm_calls WHERE model = 'mock/agent' AND role = 'user'") == 1)
                // The key reaches no column of any row.
                let dump = try String.fetchAll(db, sql: """
                    SELECT coalesce(error,'') || coalesce(request_hash,'') || model || coalesce(provider,'')
                        || coalesce(finish_reason,'') FROM llm_calls
                    """).joined()
                #expect(!dump.contains("SECRET"))
            }
        }
    }
}

/// Per-model limits: concurrency slots and token buckets.
@Suite("Model limits")
struct ModelLimiterTests {
    /// Largest number of holders seen at once. `@unchecked Sendable`: guarded by `lock`.
    final class Peak: @unchecked Sendable {
        private let lock = NSLock()
        private var now = 0
        private(set) var peak = 0
        func enter() { lock.withLock { now += 1; peak = max(peak, now) } }
        func leave() { lock.withLock { now -= 1 } }
    }

    @Test func concurrencyNeverExceedsTheLimit() async throws {
        let limiter = ModelLimiter(.init(maxConcurrency: 3))
        let peak = Peak()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<30 {
                group.addTask {
                    try await limiter.acquire(estimatedTokens: 1)
                    peak.enter()
                    try await Task.sleep(for: .milliseconds(5))
                    peak.leave()
                    await limiter.release()
                }
            }
            try await group.waitForAll()
        }
        #expect(peak.peak == 3)
        #expect(await limiter.active == 0)
    }

    @Test func requestsPerMinuteSpacesRequestsOutAfterTheBurst() async throws {
        // 120 rpm: the bucket starts with a minute's worth (120), then refills 2 per second.
        let limiter = ModelLimiter(.init(requestsPerMinute: 120))
        let started = ContinuousClock.now
        for _ in 0..<120 {
            try await limiter.acquire(estimatedTokens: 1)
            await limiter.release()
        }
        let burst = ContinuousClock.now - started
        for _ in 0..<2 {
            try await limiter.acquire(estimatedTokens: 1)
            await limiter.release()
        }
        // No waiting in the burst: spaced out at 2 per second it would take a minute (the bound
        // is that far off so a loaded machine cannot trip it).
        #expect(burst < .seconds(30))
        // Two more at 2 per second: about a second (each wait is at least 0.5 s minus drift).
        #expect(ContinuousClock.now - started >= .milliseconds(900))
    }

    @Test func cancelledWaiterLeavesTheQueue() async throws {
        let limiter = ModelLimiter(.init(maxConcurrency: 1))
        try await limiter.acquire(estimatedTokens: 1)
        let waiter = Task { try await limiter.acquire(estimatedTokens: 1) }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        await limiter.release()
        #expect(await limiter.active == 0)
        try await limiter.acquire(estimatedTokens: 1)
        #expect(await limiter.active == 1)
    }

    @Test func limitsAreReadFromRegistrySettings() {
        let l = ModelLimiter.Limits(settings: ["max_concurrency": JSONValue(8), "rpm": JSONValue(500), "tpm": JSONValue(30000)])
        #expect(l == .init(maxConcurrency: 8, requestsPerMinute: 500, tokensPerMinute: 30000))
        #expect(ModelLimiter.Limits(settings: [:]).isUnlimited)
    }
}
