import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// The engine's one writer. Rollouts hand it rows (messages, tool calls and their results, LLM
/// call attempts, rollout status changes) without waiting; a dedicated thread applies them in
/// arrival order and commits in batches (every `interval` or `batchSize` operations), so a
/// run with thousands of dialogues in flight costs a few transactions a second, not one per
/// message. Because the order is kept, a rollout marked completed in a committed transaction
/// has all its messages committed too; a crash loses at most the operations of the last
/// uncommitted batch, which resume runs again.
public final class RowWriter: CallRecorder, @unchecked Sendable {
    enum Operation {
        case started(rollout: Int64, at: String)
        case message(rollout: Int64, idx: Int, turn: Int?, message: ChatMessage, at: String)
        case toolResult(rollout: Int64, idx: Int, turn: Int?, message: ChatMessage, call: ToolCallKey, result: ToolOutcome, at: String)
        case calls([CallAttempt], entry: ModelEntry, context: CallContext, at: String)
        case finished(rollout: Int64, outcome: RolloutOutcome, at: String)
        case barrier(CheckedContinuation<Void, any Error>)
        case custom(@Sendable (Database) throws -> Void)
    }

    /// Which assistant message and which of its calls a tool result answers.
    struct ToolCallKey: Sendable {
        var messageIdx: Int
        var callIdx: Int
    }

    struct ToolOutcome: Sendable {
        var text: String
        var isError: Bool
        var latencyMs: Double
        var serverID: Int64?
    }

    private let warehouse: Warehouse
    private let state = Mutex(State())
    private let wake = NSCondition()
    private let interval: Double
    private let batchSize: Int
    private var thread: Thread?
    /// Observes every committed batch of call attempts (the engine's token and cost counters).
    let onCalls: (@Sendable ([CallAttempt], ModelEntry) -> Void)?

    private struct State {
        var queue: [Operation] = []
        var closed = false
        var failure: (any Error)?
        var committed = 0
    }

    public init(warehouse: Warehouse, interval: Double = 0.1, batchSize: Int = 20_000,
                onCalls: (@Sendable ([CallAttempt], ModelEntry) -> Void)? = nil) {
        self.warehouse = warehouse
        self.interval = interval
        self.batchSize = batchSize
        self.onCalls = onCalls
        let t = Thread { [unowned self] in self.loop() }
        t.name = "rollout-writer"
        thread = t
        t.start()
    }

    func enqueue(_ op: Operation) {
        let size = state.withLock { s -> Int in
            s.queue.append(op)
            return s.queue.count
        }
        if size >= batchSize { nudge() }
    }

    private func nudge() {
        wake.lock()
        wake.signal()
        wake.unlock()
    }

    /// The first error the writer hit, if any (the engine stops the run on it).
    public var failure: (any Error)? { state.withLock { $0.failure } }

    /// Returns once everything enqueued before the call is committed.
    public func flush() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            enqueue(.barrier(c))
            nudge()
        }
    }

    /// Commits what is queued and stops the thread.
    public func close() async throws {
        try await flush()
        state.withLock { $0.closed = true }
        nudge()
    }

    public func record(_ attempts: [CallAttempt], entry: ModelEntry, context: CallContext) async throws {
        guard !attempts.isEmpty else { return }
        enqueue(.calls(attempts, entry: entry, context: context, at: Timestamp.now()))
    }

    // MARK: The writer thread

    private func loop() {
        var writer = Statements()
        while true {
            wake.lock()
            let pending = state.withLock { $0.queue.count }
            if pending < batchSize && !state.withLock({ $0.closed }) {
                _ = wake.wait(until: Date(timeIntervalSinceNow: interval))
            }
            wake.unlock()
            let (batch, closed) = state.withLock { s -> ([Operation], Bool) in
                let b = s.queue
                s.queue.removeAll(keepingCapacity: true)
                return (b, s.closed)
            }
            if !batch.isEmpty { apply(batch, &writer) }
            if closed && state.withLock({ $0.queue.isEmpty }) { return }
        }
    }

    private func apply(_ batch: [Operation], _ statements: inout Statements) {
        var waiters: [CheckedContinuation<Void, any Error>] = []
        for case .barrier(let c) in batch { waiters.append(c) }
        if let failure = state.withLock({ $0.failure }) {
            for c in waiters { c.resume(throwing: failure) }
            return
        }
        var observed: [([CallAttempt], ModelEntry)] = []
        do {
            try warehouse.writer.write { db in
                for op in batch {
                    if case .calls(let attempts, let entry, _, _) = op { observed.append((attempts, entry)) }
                    try statements.apply(op, db)
                }
            }
            if let onCalls { for (a, e) in observed { onCalls(a, e) } }
            for c in waiters { c.resume() }
        } catch {
            state.withLock { if $0.failure == nil { $0.failure = error } }
            for c in waiters { c.resume(throwing: error) }
        }
    }

    /// Prepared statements of the writer connection, bound and stepped through the SQLite C API
    /// (no argument arrays per row), and the row ids of assistant messages whose tool calls
    /// still await results.
    private struct Statements {
        var callMessages: [Int64: [Int: Int64]] = [:]
        private var prepared: [Kind: Statement] = [:]

        private enum Kind { case started, message, toolCall, toolResult, llmCall, finished }

        private static let sql: [Kind: String] = [
            // Both only touch a rollout still running (claimed by this process): one another
            // process interrupted and re-attempted, after this one's heartbeat lapsed, stays so.
            .started: "UPDATE rollouts SET started_at = ? WHERE id = ? AND status = 'running'",
            .message: """
                INSERT INTO messages(rollout_id, idx, role, content, reasoning_content, tool_call_id, name, turn, extra, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            .toolCall: """
                INSERT INTO tool_calls(rollout_id, message_id, idx, call_id, name, arguments, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            .toolResult: """
                UPDATE tool_calls SET result_message_id = ?, result = ?, is_error = ?, latency_ms = ?, server_id = ?
                WHERE message_id = ? AND idx = ?
                """,
            .llmCall: """
                INSERT INTO llm_calls(run_id, rollout_id, role, model, provider, attempt, http_status, latency_ms,
                    prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_usd, finish_reason, error,
                    request_hash, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            .finished: """
                UPDATE rollouts SET status = ?, stop_reason = ?, prediction = ?, error = ?, turns = ?, metadata = ?,
                    finished_at = ? WHERE id = ? AND status = 'running'
                """,
        ]

        /// The statement for `kind`, prepared once on the writer connection.
        private mutating func statement(_ kind: Kind, _ db: Database) throws -> Row {
            if let s = prepared[kind] { return Row(s.sqliteStatement, db.sqliteConnection) }
            let s = try db.makeStatement(sql: Self.sql[kind]!)
            prepared[kind] = s
            return Row(s.sqliteStatement, db.sqliteConnection)
        }

        mutating func apply(_ op: Operation, _ db: Database) throws {
            switch op {
            case .started(let rollout, let at):
                var r = try statement(.started, db)
                r.text(at); r.int(rollout)
                try r.run()
            case .message(let rollout, let idx, let turn, let m, let at):
                let id = try insertMessage(db, rollout: rollout, idx: idx, turn: turn, m, at: at)
                if !m.toolCalls.isEmpty {
                    callMessages[rollout, default: [:]][idx] = id
                    for (i, call) in m.toolCalls.enumerated() {
                        var r = try statement(.toolCall, db)
                        r.int(rollout); r.int(id); r.int(i); r.text(call.id); r.text(call.name); r.text(call.arguments); r.text(at)
                        try r.run()
                    }
                }
            case .toolResult(let rollout, let idx, let turn, let m, let key, let outcome, let at):
                let id = try insertMessage(db, rollout: rollout, idx: idx, turn: turn, m, at: at)
                guard let callMessage = callMessages[rollout]?[key.messageIdx] else { return }
                var r = try statement(.toolResult, db)
                r.int(id); r.text(outcome.text); r.int(outcome.isError ? 1 : 0); r.double(outcome.latencyMs); r.int(outcome.serverID)
                r.int(callMessage); r.int(key.callIdx)
                try r.run()
            case .calls(let attempts, let entry, let context, let at):
                for a in attempts {
                    var r = try statement(.llmCall, db)
                    r.int(context.runID); r.int(context.rolloutID); r.text(context.role.rawValue); r.text(entry.name)
                    r.text(entry.provider.rawValue); r.int(a.attempt); r.int(a.httpStatus); r.double(a.latencyMs)
                    r.int(a.usage?.promptTokens); r.int(a.usage?.completionTokens); r.int(a.usage?.reasoningTokens)
                    r.int(a.usage?.cachedTokens); r.double(Ledger.cost(a.usage, entry: entry)); r.text(a.finishReason)
                    r.text(Secrets.mask(a.error)); r.text(a.requestHash); r.text(at)
                    try r.run()
                }
            case .finished(let rollout, let o, let at):
                callMessages[rollout] = nil
                var r = try statement(.finished, db)
                r.text(o.status.rawValue); r.text(o.stopReason?.rawValue); r.text(o.prediction); r.text(Secrets.mask(o.error)); r.int(o.turns)
                r.text(JSONValue.object(o.metadata).jsonText); r.text(at); r.int(rollout)
                try r.run()
            case .custom(let body):
                try body(db)
            case .barrier:
                break
            }
        }

        private mutating func insertMessage(_ db: Database, rollout: Int64, idx: Int, turn: Int?, _ m: ChatMessage, at: String) throws -> Int64 {
            var r = try statement(.message, db)
            r.int(rollout); r.int(idx); r.text(m.role); r.text(m.content); r.text(m.reasoningContent); r.text(m.toolCallID)
            r.text(m.name); r.int(turn); r.text(m.extra.map { JSONValue.object($0).jsonText }); r.text(at)
            try r.run()
            return sqlite3_last_insert_rowid(db.sqliteConnection)
        }

        /// Binds parameters in order, then steps once and resets.
        private struct Row {
            let stmt: OpaquePointer?
            let connection: OpaquePointer?
            var index: Int32 = 0

            init(_ stmt: OpaquePointer?, _ connection: OpaquePointer?) {
                self.stmt = stmt
                self.connection = connection
            }

            mutating func int<I: BinaryInteger>(_ v: I?) {
                index += 1
                if let v { sqlite3_bind_int64(stmt, index, Int64(v)) } else { sqlite3_bind_null(stmt, index) }
            }

            mutating func double(_ v: Double?) {
                index += 1
                if let v { sqlite3_bind_double(stmt, index, v) } else { sqlite3_bind_null(stmt, index) }
            }

            mutating func text(_ v: String?) {
                index += 1
                bindText(stmt, index, v)
            }

            func run() throws {
                let rc = sqlite3_step(stmt)
                let failure = rc == SQLITE_DONE ? nil : String(cString: sqlite3_errmsg(connection))
                sqlite3_reset(stmt)
                sqlite3_clear_bindings(stmt)
                if let failure { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: failure) }
            }
        }
    }
}
