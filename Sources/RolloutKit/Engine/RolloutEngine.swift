import Foundation
import GRDB
import Synchronization

/// One line of the live transcript (`rollout run --verbose`).
public struct TranscriptLine: Sendable {
    public var rolloutID: Int64
    public var task: String
    public var sample: Int
    public var message: ChatMessage
}

/// How a run ended.
public struct RunSummary: Sendable {
    public enum Ending: String, Sendable {
        /// Every planned rollout finished (some may have failed for good; see `counters`).
        case completed
        /// Stopped by a signal; in-flight rollouts are marked interrupted.
        case interrupted
        /// Stopped because the run cannot go on (an endpoint refusing every call, the writer failing).
        case failed
    }

    public var runID: Int64
    public var runName: String
    public var ending: Ending
    public var reason: String?
    public var counters: RunCounters
    public var seconds: Double
    public var toolServerRestarts: Int
}

/// Runs the rollouts of a plan: at most `concurrency` at once, each against the shared model
/// client and tool servers, every step written through one batching writer.
public final class RolloutEngine: Sendable {
    public let plan: RunPlan
    let warehouse: Warehouse
    let writer: RowWriter
    let client: ModelClient
    let http: LLMClient
    let tools: ToolRouter
    let userGuidelines: String
    private let reasoning: [String: ReasoningHistory]
    private let box: StateBox
    private let onTranscript: (@Sendable (TranscriptLine) -> Void)?

    private final class StateBox: Sendable {
        let state = Mutex(EngineState())
    }

    private struct EngineState {
        var counters = RunCounters()
        var stopReason: String?
        var ending: RunSummary.Ending?
        var consecutiveFailures = 0
        var lastError: String?
        var task: Task<Void, Never>?
        var retries: [WorkItem] = []
        var started: ContinuousClock.Instant?
    }

    /// - Parameters:
    ///   - retryBudget: retries of failed model calls allowed over the whole run (default
    ///     20 × concurrency + one per rollout); once spent, calls fail at their first error.
    public init(plan: RunPlan, warehouse: Warehouse, retryPolicy: RetryPolicy = .init(), retryBudget: Int? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                onTranscript: (@Sendable (TranscriptLine) -> Void)? = nil) {
        self.plan = plan
        self.warehouse = warehouse
        let box = StateBox()
        self.box = box
        writer = RowWriter(warehouse: warehouse, onCalls: { attempts, entry in
            box.state.withLock { s in
                for a in attempts {
                    s.counters.llmCalls += 1
                    s.counters.promptTokens += a.usage?.promptTokens ?? 0
                    s.counters.completionTokens += a.usage?.completionTokens ?? 0
                    s.counters.costUSD += Ledger.cost(a.usage, entry: entry) ?? 0
                }
            }
        })
        let request = plan.request
        http = LLMClient(maxConnectionsPerHost: max(64, request.concurrency * 2))
        let budget = RetryBudget(retries: retryBudget ?? (20 * request.concurrency + plan.rolloutCount))
        client = ModelClient(registry: request.registry, http: http, recorder: writer, policy: retryPolicy, budget: budget,
                             environment: environment)
        var specs: [MCPServerSpec] = []
        if let all = try? warehouse.writer.read({ db in try warehouse.serverSpecs(db) }) { specs = all }
        tools = ToolRouter(servers: specs, environment: environment)
        userGuidelines = request.userGuidelines ?? UserSimulator.defaultGuidelines
        var reasoning: [String: ReasoningHistory] = [:]
        for e in request.registry.entries {
            reasoning[e.name] = e.settings["reasoning_history"]?.stringValue.flatMap(ReasoningHistory.init(rawValue:)) ?? .dropPreviousTurns
        }
        self.reasoning = reasoning
        self.onTranscript = onTranscript
        box.state.withLock { $0.counters.total = plan.rolloutCount }
    }

    func reasoningHistory(_ model: String) -> ReasoningHistory { reasoning[model] ?? .dropPreviousTurns }

    public var counters: RunCounters { box.state.withLock { $0.counters } }

    /// Seconds since `run()` started (0 before).
    public var elapsed: Double { box.state.withLock { $0.started?.secondsSince ?? 0 } }

    /// Stops the run: no new rollouts start, in-flight ones are cancelled and marked
    /// interrupted, and `run()` returns once their rows are written.
    public func stop(reason: String = "stopped by signal") {
        let task = box.state.withLock { s -> Task<Void, Never>? in
            if s.stopReason == nil { s.stopReason = reason; s.ending = .interrupted }
            return s.task
        }
        task?.cancel()
    }

    private func abort(_ reason: String) {
        let task = box.state.withLock { s -> Task<Void, Never>? in
            if s.stopReason == nil { s.stopReason = reason; s.ending = .failed }
            return s.task
        }
        task?.cancel()
    }

    private var stopping: Bool { box.state.withLock { $0.stopReason != nil } }

    func transcript(_ run: RolloutRun, _ m: ChatMessage) {
        onTranscript?(TranscriptLine(rolloutID: run.item.rolloutID, task: run.task.externalID, sample: run.item.sample, message: m))
    }

    func countTool(error: Bool) {
        box.state.withLock { s in
            s.counters.toolCalls += 1
            if error { s.counters.toolErrors += 1 }
        }
    }

    /// Runs every rollout of the plan and returns how the run ended. The tool servers and the
    /// HTTP client are shut down before it returns.
    public func run() async throws -> RunSummary {
        let started = ContinuousClock.now
        box.state.withLock { $0.started = started }
        let work = plan.work
        let concurrency = max(1, plan.request.concurrency)
        let loops = LoopExecutors()
        let main = Task {
            await withTaskGroup(of: Void.self) { group in
                var next = 0
                var running = 0
                var started = 0
                func schedule() -> Bool {
                    guard !self.stopping else { return false }
                    let item: WorkItem
                    if next < work.count {
                        item = work[next]
                        next += 1
                    } else if let retry = self.box.state.withLock({ $0.retries.isEmpty ? nil : $0.retries.removeFirst() }) {
                        item = retry
                    } else {
                        return false
                    }
                    group.addTask(executorPreference: loops.executor(started)) { await self.runOne(item) }
                    started += 1
                    running += 1
                    return true
                }
                while running < concurrency && schedule() {}
                while running > 0 {
                    await group.next()
                    running -= 1
                    while running < concurrency && schedule() {}
                }
            }
        }
        box.state.withLock { $0.task = main }
        if stopping { main.cancel() }
        await main.value
        await tools.shutdown()
        try? await http.shutdown()
        var writeError: (any Error)?
        do { try await writer.close() } catch { writeError = error }
        let (counters, reason, endingState) = box.state.withLock { ($0.counters, $0.stopReason, $0.ending) }
        var ending = endingState ?? .completed
        var why = reason
        if let writeError {
            ending = .failed
            why = "writing to the warehouse failed: \(writeError)"
        }
        let status = ending == .completed ? "completed" : ending == .interrupted ? "interrupted" : "failed"
        try await warehouse.writer.write { db in
            try db.execute(sql: "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                           arguments: [status, Timestamp.now(), self.plan.runID])
        }
        return RunSummary(runID: plan.runID, runName: plan.runName, ending: ending, reason: why, counters: counters,
                          seconds: started.secondsSince, toolServerRestarts: tools.restarts)
    }

    private func loadTask(_ id: Int64) throws -> RolloutRun.TaskContent {
        try warehouse.writer.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT external_id, opening, user_prompt FROM tasks WHERE id = ?", arguments: [id]) else {
                throw EngineError("task \(id) disappeared from the warehouse")
            }
            return RolloutRun.TaskContent(externalID: row[0], opening: row[1], userPrompt: row[2])
        }
    }

    private func runOne(_ item: WorkItem) async {
        box.state.withLock { $0.counters.running += 1 }
        writer.enqueue(.started(rollout: item.rolloutID, at: Timestamp.now()))
        let job = plan.request.jobs[item.job]
        let setup = item.domainKey.flatMap { plan.domains[$0] } ?? DomainSetup(policy: nil, toolset: Toolset(), hash: "")
        var outcome: RolloutOutcome
        var fatal = false
        do {
            let task = try loadTask(item.taskID)
            let run = RolloutRun(item: item, job: job, task: task, setup: setup, engine: self)
            do {
                outcome = try await job.settings.mode == .dialogue ? run.dialogue() : run.taskMode()
            } catch {
                outcome = Self.outcome(for: error, turns: run.turn, cancelled: Task.isCancelled)
                fatal = Self.isFatal(error)
            }
        } catch {
            outcome = Self.outcome(for: error, turns: 0, cancelled: Task.isCancelled)
        }
        writer.enqueue(.finished(rollout: item.rolloutID, outcome: outcome, at: Timestamp.now()))
        var retry: WorkItem?
        if outcome.status == .failed, !stopping, item.attempt + 1 < plan.request.maxAttempts {
            retry = try? await newAttempt(after: item)
        }
        let abortReason: String? = box.state.withLock { s in
            s.counters.running -= 1
            s.counters.stopReasons[outcome.stopReason?.rawValue ?? "none", default: 0] += 1
            switch outcome.status {
            case .completed:
                s.counters.completed += 1
                s.counters.done += 1
                s.consecutiveFailures = 0
            case .failed:
                s.consecutiveFailures += 1
                s.lastError = outcome.error
                if let retry { s.retries.append(retry); s.counters.total += 1 } else { s.counters.failed += 1 }
                s.counters.done += 1
            default:
                s.counters.interrupted += 1
            }
            if fatal { return outcome.error ?? "a model call failed" }
            let limit = max(10, min(plan.request.concurrency, 50))
            if s.consecutiveFailures >= limit && s.counters.completed == 0 {
                return "\(s.consecutiveFailures) rollouts in a row failed and none completed; the last error: \(s.lastError ?? "unknown")"
            }
            return nil
        }
        if let abortReason { abort(abortReason) }
        if let failure = writer.failure { abort("writing to the warehouse failed: \(failure)") }
    }

    /// A new attempt row for a failed sample, to run after the current work.
    private func newAttempt(after item: WorkItem) async throws -> WorkItem {
        try await writer.flush()
        let id = try await warehouse.writer.write { db in
            try db.execute(sql: "INSERT INTO rollouts(run_id, task_id, sample, attempt, status) VALUES (?, ?, ?, ?, 'pending')",
                           arguments: [self.plan.runID, item.taskID, item.sample, item.attempt + 1])
            return db.lastInsertedRowID
        }
        var next = item
        next.rolloutID = id
        next.attempt += 1
        return next
    }

    static func outcome(for error: any Error, turns: Int, cancelled: Bool) -> RolloutOutcome {
        if cancelled || error is CancellationError {
            return RolloutOutcome(status: .interrupted, stopReason: .interrupted, error: nil, turns: turns)
        }
        return RolloutOutcome(status: .failed, stopReason: .error, error: Secrets.mask("\(error)"), turns: turns)
    }

    /// Errors no other rollout will get past: the endpoint refusing our credentials or not
    /// knowing the model. The run stops at the first one instead of failing every rollout.
    static func isFatal(_ error: any Error) -> Bool {
        if let e = error as? LLMError, let status = e.status { return [401, 403, 404].contains(status) }
        return error is ConfigError
    }
}
