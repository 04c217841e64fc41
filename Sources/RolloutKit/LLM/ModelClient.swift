import Foundation
import GRDB
import Synchronization

/// Who a call was made for, as the ledger records it.
public struct CallContext: Sendable {
    public enum Role: String, Sendable { case agent, user, judge, batch, chat }
    public var role: Role
    public var runID: Int64?
    public var rolloutID: Int64?

    public init(role: Role, runID: Int64? = nil, rolloutID: Int64? = nil) {
        self.role = role
        self.runID = runID
        self.rolloutID = rolloutID
    }
}

/// Calls registered models by name (`openai/gpt-4o`, `mock/agent`) and writes every attempt
/// to `llm_calls`: the one entry point the engine, graders and `rollout chat` use.
public final class ModelClient: Sendable {
    public let registry: ModelRegistry
    public let http: LLMClient
    public let policy: RetryPolicy
    public let budget: RetryBudget?
    let ledger: (any CallRecorder)?
    let environment: [String: String]
    /// One limiter per model that has limits in the registry.
    let limiters: [String: ModelLimiter]

    public convenience init(registry: ModelRegistry, http: LLMClient, warehouse: Warehouse?, policy: RetryPolicy = .init(),
                            budget: RetryBudget? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(registry: registry, http: http, recorder: warehouse.map(Ledger.init), policy: policy, budget: budget,
                  environment: environment)
    }

    /// A client whose call attempts go to `recorder` (the engine batches them with its other rows).
    public init(registry: ModelRegistry, http: LLMClient, recorder: (any CallRecorder)?, policy: RetryPolicy = .init(),
                budget: RetryBudget? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.registry = registry
        self.http = http
        self.policy = policy
        self.budget = budget
        self.ledger = recorder
        self.environment = environment
        var limiters: [String: ModelLimiter] = [:]
        for e in registry.entries {
            let limits = ModelLimiter.Limits(settings: e.settings)
            if !limits.isUnlimited { limiters[e.name] = ModelLimiter(limits) }
        }
        self.limiters = limiters
    }

    /// Sends `request` to the model registered as `name`. The request's `model` field is
    /// replaced by the provider-side name.
    public func complete(_ name: String, _ request: ChatRequest, context: CallContext) async throws -> ChatResponse {
        let entry = try registry.resolve(name, keyPath: "model")
        if entry.provider == .mock {
            let started = ContinuousClock.now
            var r = request
            r.model = name
            let mock: MockModel
            do { mock = try MockModel(entry: entry) } catch {
                throw ConfigError(file: registry.file, line: nil, keyPath: "models.\(name)", reason: error.description)
            }
            let response = mock.respond(to: r)
            let hash = Hashing.sha256Hex(MockServerWire.openAIRequestText(r))
            try await ledger?.record([CallAttempt(attempt: 1, httpStatus: nil, latencyMs: started.millisecondsSince,
                                                  usage: response.usage, finishReason: response.finishReason, error: nil,
                                                  requestHash: hash)], entry: entry, context: context)
            return response
        }
        let endpoint = try Endpoint(entry: entry, environment: environment)
        let encoded = LLMClient.encode(request, for: endpoint)
        let limiter = limiters[name]
        if let limiter {
            let estimate = encoded.body.count / 4 + (request.options.maxTokens ?? request.options.maxCompletionTokens ?? 0)
            try await limiter.acquire(estimatedTokens: estimate)
        }
        let attempts = Mutex<[CallAttempt]>([])
        let result: Result<ChatResponse, any Error>
        do {
            result = .success(try await http.complete(encoded, endpoint: endpoint, policy: policy, budget: budget) { a in
                attempts.withLock { $0.append(a) }
            })
        } catch {
            result = .failure(error)
        }
        await limiter?.release()
        switch result {
        case .success:
            try await ledger?.record(attempts.withLock { $0 }, entry: entry, context: context)
        case .failure:
            try? await ledger?.record(attempts.withLock { $0 }, entry: entry, context: context)
        }
        return try result.get()
    }
}

extension Warehouse {
    /// Upserts the registry's entries into `models` (no secrets: key references only).
    public func registerModels(_ registry: ModelRegistry) throws {
        try writer.write { db in try Self.registerModels(registry, db) }
    }

    /// `registerModels` inside a transaction the caller holds.
    static func registerModels(_ registry: ModelRegistry, _ db: Database) throws {
        let now = Timestamp.now()
        for e in registry.entries {
            var settings = e.publicJSON.objectValue ?? [:]
            for k in ["provider", "api_base", "mode", "price"] { settings[k] = nil }
            try db.execute(sql: """
                INSERT INTO models(name, provider, api_base, mode, price_input, price_output, price_cached, settings, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET provider = excluded.provider, api_base = excluded.api_base, mode = excluded.mode,
                    price_input = excluded.price_input, price_output = excluded.price_output, price_cached = excluded.price_cached,
                    settings = excluded.settings, updated_at = excluded.updated_at
                WHERE models.provider IS NOT excluded.provider OR models.api_base IS NOT excluded.api_base
                   OR models.mode IS NOT excluded.mode OR models.price_input IS NOT excluded.price_input
                   OR models.price_output IS NOT excluded.price_output OR models.price_cached IS NOT excluded.price_cached
                   OR models.settings IS NOT excluded.settings
                """, arguments: [e.name, e.provider.rawValue, e.apiBase, e.mode, e.priceInput, e.priceOutput, e.priceCached,
                                 JSONValue.object(settings).jsonText, now, now])
        }
    }
}

/// Where a client's call attempts go: `llm_calls` rows, one transaction per call
/// (`Ledger`), or the engine's batching writer.
public protocol CallRecorder: Sendable {
    func record(_ attempts: [CallAttempt], entry: ModelEntry, context: CallContext) async throws
}

/// Writes `llm_calls` rows, with the cost from the registry's prices.
struct Ledger: CallRecorder {
    let warehouse: Warehouse

    init(_ warehouse: Warehouse) { self.warehouse = warehouse }

    /// USD for one response: uncached prompt, cached prompt and completion tokens at their prices.
    static func cost(_ usage: TokenUsage?, entry: ModelEntry) -> Double? {
        guard let usage, let input = entry.priceInput, let output = entry.priceOutput else { return nil }
        let prompt = Double(usage.promptTokens ?? 0), cached = Double(usage.cachedTokens ?? 0)
        let completion = Double(usage.completionTokens ?? 0)
        let cachedPrice = entry.priceCached ?? input
        return ((prompt - cached) * input + cached * cachedPrice + completion * output) / 1_000_000
    }

    func record(_ attempts: [CallAttempt], entry: ModelEntry, context: CallContext) async throws {
        guard !attempts.isEmpty else { return }
        let now = Timestamp.now()
        try await warehouse.writer.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO llm_calls(run_id, rollout_id, role, model, provider, attempt, http_status, latency_ms,
                    prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_usd, finish_reason, error,
                    request_hash, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for a in attempts {
                try insert.execute(arguments: [context.runID, context.rolloutID, context.role.rawValue, entry.name,
                                               entry.provider.rawValue, a.attempt, a.httpStatus, a.latencyMs,
                                               a.usage?.promptTokens, a.usage?.completionTokens, a.usage?.reasoningTokens,
                                               a.usage?.cachedTokens, Self.cost(a.usage, entry: entry), a.finishReason, Secrets.mask(a.error),
                                               a.requestHash, now])
            }
        }
    }
}
