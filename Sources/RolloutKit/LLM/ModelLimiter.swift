import Foundation

/// Per-model limits from the registry entry: `max_concurrency` (requests in flight),
/// `rpm` (requests per minute) and `tpm` (tokens per minute, estimated as a quarter of the
/// request's bytes plus its max_tokens). Rates are token buckets that start full.
public actor ModelLimiter {
    public struct Limits: Sendable, Equatable {
        public var maxConcurrency: Int?
        public var requestsPerMinute: Double?
        public var tokensPerMinute: Double?

        public init(maxConcurrency: Int? = nil, requestsPerMinute: Double? = nil, tokensPerMinute: Double? = nil) {
            self.maxConcurrency = maxConcurrency
            self.requestsPerMinute = requestsPerMinute
            self.tokensPerMinute = tokensPerMinute
        }

        /// Reads `max_concurrency`, `rpm` and `tpm` from a registry entry's settings.
        public init(settings: JSONObject) {
            maxConcurrency = settings["max_concurrency"]?.doubleValue.map { max(1, Int($0)) }
            requestsPerMinute = settings["rpm"]?.doubleValue.flatMap { $0 > 0 ? $0 : nil }
            tokensPerMinute = settings["tpm"]?.doubleValue.flatMap { $0 > 0 ? $0 : nil }
        }

        public var isUnlimited: Bool { maxConcurrency == nil && requestsPerMinute == nil && tokensPerMinute == nil }
    }

    public let limits: Limits
    private var inFlight = 0
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextWaiter: UInt64 = 0
    private var requestTokens: Double
    private var tokenTokens: Double
    private var refilledAt = ContinuousClock.now

    public init(_ limits: Limits) {
        self.limits = limits
        requestTokens = limits.requestsPerMinute ?? 0
        tokenTokens = limits.tokensPerMinute ?? 0
    }

    /// Waits for a slot and for the rate buckets to hold this request; pair with `release()`.
    public func acquire(estimatedTokens: Int) async throws {
        if let max = limits.maxConcurrency, inFlight >= max {
            let id = nextWaiter
            nextWaiter += 1
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    waiters.append((id, c))
                }
            } onCancel: {
                Task { await self.cancelWaiter(id) }
            }
            // A releasing caller handed its slot over: inFlight already counts this one.
        } else {
            inFlight += 1
        }
        do {
            try await waitForRate(tokens: Double(estimatedTokens))
        } catch {
            release()
            throw error
        }
    }

    /// Frees the slot taken by `acquire`.
    public func release() {
        if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume()
        } else {
            inFlight = max(0, inFlight - 1)
        }
    }

    private func cancelWaiter(_ id: UInt64) {
        if let i = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: i).continuation.resume(throwing: CancellationError())
        }
    }

    private func refill() {
        let now = ContinuousClock.now
        let elapsed = now - refilledAt
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        refilledAt = now
        if let rpm = limits.requestsPerMinute { requestTokens = min(rpm, requestTokens + seconds * rpm / 60) }
        if let tpm = limits.tokensPerMinute { tokenTokens = min(tpm, tokenTokens + seconds * tpm / 60) }
    }

    private func waitForRate(tokens: Double) async throws {
        while true {
            refill()
            var wait = 0.0
            if let rpm = limits.requestsPerMinute, requestTokens < 1 { wait = max(wait, (1 - requestTokens) * 60 / rpm) }
            if let tpm = limits.tokensPerMinute {
                // A request larger than the whole bucket waits for a full bucket, then goes.
                let need = min(tokens, tpm)
                if tokenTokens < need { wait = max(wait, (need - tokenTokens) * 60 / tpm) }
            }
            if wait == 0 {
                if limits.requestsPerMinute != nil { requestTokens -= 1 }
                if let tpm = limits.tokensPerMinute { tokenTokens -= min(tokens, tpm) }
                return
            }
            try await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 1))
        }
    }

    /// Requests in flight now (for progress and tests).
    public var active: Int { inFlight }
}
