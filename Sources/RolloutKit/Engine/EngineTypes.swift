import Foundation

/// How a rollout ended. Stored in `rollouts.stop_reason`.
public enum StopReason: String, Sendable, CaseIterable {
    /// The user simulator wrote `###STOP###`.
    case userStop = "user_stop"
    /// The user simulator wrote `###TRANSFER###` (asked for a human agent).
    case transfer
    /// The user simulator wrote `###OUT-OF-SCOPE###`.
    case outOfScope = "out_of_scope"
    /// The dialogue reached `max_turns` user turns.
    case maxTurns = "max_turns"
    /// The agent used `max_steps_per_turn` steps in one turn without replying to the user.
    case maxSteps = "max_steps"
    /// `monitor_max_no_tool_turns` consecutive turns in which the agent called no tool
    /// (only with `enable_monitor`).
    case noToolTurns = "no_tool_turns"
    /// Task mode: the agent answered (a reply without tool calls, or `<answer>…</answer>`).
    case answer
    /// Task mode: the LLM-call budget ran out before an answer.
    case maxCalls = "max_calls"
    /// Task mode: the token budget ran out before an answer.
    case tokenBudget = "token_budget"
    /// A model call failed for good (after retries), or the writer failed.
    case error
    /// The run was stopped (SIGINT / SIGTERM) while this rollout was in flight.
    case interrupted
}

/// Status of a rollout row.
public enum RolloutStatus: String, Sendable {
    case pending, running, completed, failed, interrupted
}

/// What a finished rollout writes to its row.
struct RolloutOutcome: Sendable {
    var status: RolloutStatus
    var stopReason: StopReason?
    var prediction: String?
    var error: String?
    var turns: Int?
    var metadata: JSONObject = [:]
}

/// How much of the agent's earlier reasoning goes back into its context (a per-model
/// setting, `reasoning_history` in the model registry). The full reasoning is always stored.
public enum ReasoningHistory: String, Sendable, CaseIterable {
    /// Send all earlier reasoning back.
    case keep
    /// Send back only the reasoning of the current turn (the Rollout framework's behaviour).
    case dropPreviousTurns = "drop_previous_turns"
    /// Like `drop_previous_turns`, but keep the reasoning of every assistant message that made
    /// tool calls (DeepSeek's API requires it back after tool calls).
    case keepAfterToolCalls = "keep_after_tool_calls"

    /// The messages to send: `reasoning_content` removed where this policy drops it.
    func apply(_ messages: [ChatMessage]) -> [ChatMessage] {
        if self == .keep { return messages }
        let turnStart = messages.lastIndex { $0.role == "user" } ?? -1
        var out = messages
        for i in out.indices where out[i].role == "assistant" && out[i].reasoningContent != nil && i < turnStart {
            if self == .keepAfterToolCalls && !out[i].toolCalls.isEmpty { continue }
            out[i].reasoningContent = nil
        }
        return out
    }
}

/// Live counters of a run, read by the progress line and the final summary.
public struct RunCounters: Sendable, Equatable {
    public var total = 0
    public var done = 0
    public var completed = 0
    public var failed = 0
    public var interrupted = 0
    public var running = 0
    public var llmCalls = 0
    public var promptTokens = 0
    public var completionTokens = 0
    public var costUSD = 0.0
    public var toolCalls = 0
    public var toolErrors = 0
    public var stopReasons: [String: Int] = [:]
}
