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
        /// Nothing was left for this process to claim (some rollouts may have failed for good;
        /// see `counters`, which count this process's rollouts only).
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
    /// The run's status as this process left it: `running` while other processes still work
    /// on it (the last to leave completes it).
    public var runStatus: String
    /// The other processes still on the run when this one left.
    public var otherWorkers: [String]
    /// Samples left pending or running when this one left (for the others, or outside its
    /// selection).
    public var unfinishedElsewhere: Int
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
        /// Cancels the running rollouts (set while `run()` runs).
        var cancel: (@Sendable () -> Void)?
        var started: ContinuousClock.Instant?
        /// Rollouts started so far (spread over the event loops in turn).
        var launched = 0
        /// Claims only rollouts of this process's tasks (`temp.claimable`).
        var claimsFiltered = false
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
        box.state.withLock {
            $0.counters.total = plan.rolloutCount
            $0.claimsFiltered = plan.claimsFiltered
        }
    }

    func reasoningHistory(_ model: String) -> ReasoningHistory { reasoning[model] ?? .dropPreviousTurns }

    public var counters: RunCounters { box.state.withLock { $0.counters } }

    /// Seconds since `run()` started (0 before).
    public var elapsed: Double { box.state.withLock { $0.started?.secondsSince ?? 0 } }

    /// Stops the run: no new rollouts start, in-flight ones are cancelled and marked
    /// interrupted, and `run()` returns once their rows are written.
    public func stop(reason: String = "stopped by signal") {
        let cancel = box.state.withLock { s -> (@Sendable () -> Void)? in
            if s.stopReason == nil { s.stopReason = reason; s.ending = .interrupted }
            return s.cancel
        }
        cancel?()
    }

    private func abort(_ reason: String) {
        let cancel = box.state.withLock { s -> (@Sendable () -> Void)? in
            if s.stopReason == nil { s.stopReason = reason; s.ending = .failed }
            return s.cancel
        }
        cancel?()
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

    /// Runs rollouts of the plan's run until none is left to claim, and returns how it ended.
    /// Other processes may work on the same run at the same time: each claims pending rollouts
    /// in small batches, so no rollout runs twice. The run is marked completed by the last
    /// process to leave it with nothing pending or running; one that leaves while others still
    /// work leaves it running. The tool servers and the HTTP client are shut down before it
    /// returns.
    public func run() async throws -> RunSummary {
        let started = ContinuousClock.now
        box.state.withLock { $0.started = started }
        let plan = self.plan
        let live = try await warehouse.writer.read { db in RunWorkers.liveKey(db, worker: plan.workerID) }
        RunWorkers.liveHere.withLock { _ = $0.insert(live) }
        defer { RunWorkers.liveHere.withLock { _ = $0.remove(live) } }
        let heartbeat = Heartbeat(warehouse: warehouse, worker: plan.workerID) { [weak self] in
            self?.abort("another process took this one's rollouts over: its heartbeat lapsed for more than \(Int(RunWorkers.leaseSeconds)) s (was it suspended?)")
        }
        let concurrency = max(1, plan.request.concurrency)
        // Claimed but not started rollouts are few: a batch at most.
        let batch = max(1, min(concurrency, 32))
        let loops = LoopExecutors()
        var leaving: Leaving?
        var loopError: (any Error)?
        while leaving == nil {
            let round = Task { () -> [WorkItem] in
                await withTaskGroup(of: Void.self) { group -> [WorkItem] in
                    var buffer: [WorkItem] = []
                    var running = 0
                    var exhausted = false
                    while true {
                        while running < concurrency && !self.stopping {
                            if buffer.isEmpty {
                                if exhausted { break }
                                do { buffer = try await self.claim(batch) } catch {
                                    self.abort("claiming rollouts failed: \(error)")
                                    break
                                }
                                if buffer.isEmpty {
                                    exhausted = true
                                    self.box.state.withLock { $0.counters.total = $0.counters.done + running }
                                    break
                                }
                            }
                            let item = buffer.removeFirst()
                            let n = self.box.state.withLock { s -> Int in s.launched += 1; return s.launched - 1 }
                            group.addTask(executorPreference: loops.executor(n)) { await self.runOne(item) }
                            running += 1
                        }
                        if running == 0 { return buffer }
                        await group.next()
                        running -= 1
                        // A finished rollout may have queued a retry: look again.
                        exhausted = false
                    }
                }
            }
            box.state.withLock { $0.cancel = { round.cancel() } }
            if stopping { round.cancel() }
            let unclaimed = await round.value
            box.state.withLock { $0.cancel = nil }
            // Nothing more to claim and nothing running (or stopping): leave the run, unless a
            // gone worker's rollouts or another process's retries became claimable meanwhile.
            do {
                try await writer.flush()
                leaving = try await leave(unclaimed: unclaimed)
            } catch {
                abort("writing to the warehouse failed: \(error)")
                loopError = error
                leaving = (try? await leave(unclaimed: unclaimed)) ?? Leaving(status: "failed", others: [], unfinished: 0)
            }
        }
        let outcome = leaving!
        heartbeat.stop()
        await tools.shutdown()
        try? await http.shutdown()
        var writeError = loopError
        do { try await writer.close() } catch { writeError = writeError ?? error }
        let (counters, reason, endingState) = box.state.withLock { ($0.counters, $0.stopReason, $0.ending) }
        var ending = endingState ?? .completed
        var why = reason
        if let writeError {
            ending = .failed
            why = "writing to the warehouse failed: \(writeError)"
        }
        return RunSummary(runID: plan.runID, runName: plan.runName, ending: ending, reason: why, counters: counters,
                          seconds: started.secondsSince, toolServerRestarts: tools.restarts, runStatus: outcome.status,
                          otherWorkers: outcome.others, unfinishedElsewhere: outcome.unfinished)
    }

    /// Claims up to `limit` pending rollouts of the run (of this process's tasks) in one short
    /// write transaction; none when nothing is pending.
    private func claim(_ limit: Int) async throws -> [WorkItem] {
        let plan = self.plan
        // A read first: at the end of a run, most looks find nothing and need no write lock.
        let any = try await warehouse.writer.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM rollouts WHERE run_id = ? AND status = 'pending' LIMIT 1",
                              arguments: [plan.runID]) ?? false
        }
        guard any else { return [] }
        let filtered = box.state.withLock { $0.claimsFiltered }
        typealias Claimed = (id: Int64, task: Int64, sample: Int, attempt: Int)
        let (claimed, refiltered) = try await warehouse.writer.write { db -> ([Claimed], Bool) in
            let filter = filtered ? "AND EXISTS (SELECT 1 FROM temp.claimable c WHERE c.worker = ?1 AND c.task_id = r.task_id)" : ""
            let claimed = try Row.fetchAll(db, sql: """
                UPDATE rollouts SET status = 'running', worker = ?1
                WHERE id IN (SELECT r.id FROM rollouts r WHERE r.run_id = ?2 AND r.status = 'pending' \(filter) ORDER BY r.id LIMIT ?3)
                RETURNING id, task_id, sample, attempt
                """, arguments: [plan.workerID, plan.runID, limit]).map { row -> Claimed in
                    (row["id"], row["task_id"], row["sample"], row["attempt"])
                }
            // Tasks another process added to the run after this one planned it: not ours to run.
            // Given back, and from now on only this process's tasks are claimed.
            let foreign = claimed.filter { plan.routes[$0.task] == nil }
            guard !foreign.isEmpty else { return (claimed, false) }
            for c in foreign {
                try db.execute(sql: "UPDATE rollouts SET status = 'pending', worker = NULL WHERE id = ?", arguments: [c.id])
            }
            try Warehouse.makeClaimable(db, worker: plan.workerID, tasks: plan.routes.keys)
            return (claimed, true)
        }
        if refiltered { box.state.withLock { $0.claimsFiltered = true } }
        return claimed.compactMap { c -> WorkItem? in
            guard let route = plan.routes[c.task] else { return nil }
            return WorkItem(rolloutID: c.id, taskID: c.task, sample: c.sample, attempt: c.attempt, job: route.job,
                            domainKey: route.domainKey)
        }.sorted { $0.rolloutID < $1.rolloutID }
    }

    /// How this process left the run.
    struct Leaving {
        /// The run's status as left.
        var status: String
        /// Other processes still on the run.
        var others: [String]
        /// Pending or running samples left for them (or outside this process's selection).
        var unfinished: Int
    }

    /// In one write transaction: takes over the rollouts of gone workers; if rollouts this
    /// process may claim are pending and it is not stopping, returns nil (go on). Otherwise
    /// hands back `unclaimed`, leaves the run (worker finished) and sets the run's status:
    /// completed when nothing is pending or running and no other process is on it; running
    /// while others are (then this process's interrupted rollouts are re-queued for them);
    /// else interrupted or failed as this process ended.
    private func leave(unclaimed: [WorkItem]) async throws -> Leaving? {
        let plan = self.plan
        let stopping = self.stopping
        let (ending, filtered) = box.state.withLock { ($0.ending, $0.claimsFiltered) }
        return try await warehouse.writer.write { db -> Leaving? in
            let now = Timestamp.now()
            let others = try RunWorkers.reap(db, runID: plan.runID, exclude: plan.workerID, now: now)
            if !stopping {
                let filter = filtered ? "AND EXISTS (SELECT 1 FROM temp.claimable c WHERE c.worker = ?2 AND c.task_id = r.task_id)" : ""
                let arguments: StatementArguments = filtered ? [plan.runID, plan.workerID] : [plan.runID]
                if try Bool.fetchOne(db, sql: "SELECT 1 FROM rollouts r WHERE r.run_id = ?1 AND r.status = 'pending' \(filter) LIMIT 1",
                                     arguments: arguments) == true {
                    return nil
                }
            }
            // Claimed, never started: back to pending, the same rows (nothing was written to them).
            for item in unclaimed {
                try db.execute(sql: "UPDATE rollouts SET status = 'pending', worker = NULL WHERE id = ? AND worker = ? AND status = 'running'",
                               arguments: [item.rolloutID, plan.workerID])
            }
            try db.execute(sql: "UPDATE run_workers SET finished_at = ?, heartbeat_at = ? WHERE id = ?",
                           arguments: [now, now, plan.workerID])
            if filtered { try db.execute(sql: "DELETE FROM temp.claimable WHERE worker = ?", arguments: [plan.workerID]) }
            if !others.isEmpty {
                // What this process was running when it stopped goes to the others.
                for row in try Row.fetchAll(db, sql: """
                    SELECT task_id, sample, attempt FROM rollouts WHERE run_id = ? AND status = 'interrupted' AND worker = ?
                    """, arguments: [plan.runID, plan.workerID]) {
                    try RunWorkers.requeue(db, runID: plan.runID, taskID: row["task_id"], sample: row["sample"], after: row["attempt"])
                }
            }
            let unfinished = try Int.fetchOne(db, sql: """
                SELECT count(*) FROM rollouts r WHERE r.run_id = ?1 AND r.status IN ('pending', 'running')
                """, arguments: [plan.runID]) ?? 0
            let status: String
            if !others.isEmpty {
                status = "running"
            } else if ending == .failed {
                status = "failed"
            } else if stopping || unfinished > 0 {
                status = "interrupted"
            } else {
                status = "completed"
            }
            try db.execute(sql: "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                           arguments: [status, status == "running" ? nil : now, plan.runID])
            return Leaving(status: status, others: others.map(\.description), unfinished: unfinished)
        }
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
        var retried = false
        if outcome.status == .failed, !stopping, item.attempt + 1 < plan.request.maxAttempts {
            retried = (try? await newAttempt(after: item)) != nil
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
                if retried { s.counters.total += 1 } else { s.counters.failed += 1 }
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

    /// A new attempt for a failed sample: a pending row, claimed after the current work by
    /// whichever process of the run gets to it first.
    private func newAttempt(after item: WorkItem) async throws {
        try await writer.flush()
        try await warehouse.writer.write { db in
            try RunWorkers.requeue(db, runID: self.plan.runID, taskID: item.taskID, sample: item.sample, after: item.attempt)
        }
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
