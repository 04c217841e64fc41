import Foundation

/// Client-side cost of model calls against an OpenAI-compatible endpoint (normally
/// `rollout mock-server` in another process): wall time, calls per second, this process's CPU
/// time per call, and resident memory per request in flight.
public enum LLMBenchmark {
    public struct Result: Sendable, Codable {
        public var concurrency: Int
        public var calls: Int
        public var errors: Int
        public var wallSeconds: Double
        public var callsPerSecond: Double
        /// User + system CPU of this process per call, microseconds.
        public var cpuMicrosPerCall: Double
        /// Peak resident memory during the run minus before it, per request in flight, KiB.
        public var kibPerInFlight: Double
    }

    /// Runs `calls` requests, `concurrency` at a time, with one shared client.
    public static func run(endpoint: Endpoint, concurrency: Int, calls: Int) async throws -> Result {
        let client = LLMClient(maxConnectionsPerHost: concurrency)
        defer { Task { try? await client.shutdown() } }
        let request = ChatRequest(
            model: endpoint.model,
            messages: [ChatMessage(role: "system", content: "You are a helpful agent."),
                       ChatMessage(role: "user", content: "What is the balance of card C-7788? Please check.")],
            tools: [ToolSpecification(name: "get_card", description: "Get a card's balance.",
                                      parameters: .object(["type": "object",
                                                           "properties": .object(["card_id": .object(["type": "string"])]),
                                                           "required": .array(["card_id"])]))],
            options: ChatOptions(temperature: 0.7, maxTokens: 256))
        let policy = RetryPolicy(maxAttempts: 1)
        // Warm the pool so connection setup is not counted against the first calls.
        _ = try? await client.complete(request, endpoint: endpoint, policy: policy)
        let rssBefore = residentKiB()
        let sampler = Task {
            var peak = rssBefore
            while !Task.isCancelled {
                peak = max(peak, residentKiB())
                try? await Task.sleep(for: .milliseconds(20))
            }
            return peak
        }
        let cpuBefore = cpuSeconds()
        let started = ContinuousClock.now
        let errors = await withTaskGroup(of: Int.self) { group in
            let perWorker = calls / concurrency, extra = calls % concurrency
            for w in 0..<concurrency {
                let n = perWorker + (w < extra ? 1 : 0)
                group.addTask {
                    var failed = 0
                    for _ in 0..<n {
                        do { _ = try await client.complete(request, endpoint: endpoint, policy: policy) } catch { failed += 1 }
                    }
                    return failed
                }
            }
            return await group.reduce(0, +)
        }
        let wallSeconds = started.secondsSince
        let cpu = cpuSeconds() - cpuBefore
        sampler.cancel()
        let peak = await sampler.value
        return Result(concurrency: concurrency, calls: calls, errors: errors, wallSeconds: wallSeconds,
                      callsPerSecond: Double(calls) / wallSeconds, cpuMicrosPerCall: cpu / Double(calls) * 1e6,
                      kibPerInFlight: Double(max(0, peak - rssBefore)) / Double(concurrency))
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    /// VmRSS from /proc/self/status (Linux); 0 elsewhere.
    static func residentKiB() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}
