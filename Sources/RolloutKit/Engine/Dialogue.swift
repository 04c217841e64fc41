import Foundation
import GRDB

/// The user simulator's side of a dialogue: its prompt, its view of the conversation, and the
/// tokens with which it ends the dialogue.
public enum UserSimulator {
    /// The guidelines that precede the task's scenario in the simulator's system prompt
    /// (replace them with `user_guidelines: FILE` in the run config).
    public static let defaultGuidelines = """
        You are playing a customer who contacts an agent for help. Stay in character: write only \
        what the customer would say, one message at a time, in plain language. Reveal the details \
        of your situation gradually, only when the agent needs them, and never invent facts that are \
        not in your scenario. Do not explain that you are simulating a user.

        When your goal is met, or the agent cannot help any further, end the conversation by writing \
        ###STOP###. If you are asked to be, or need to be, transferred to a human agent, write \
        ###TRANSFER###. If the agent asks for information your scenario does not give you and you \
        cannot continue without it, write ###OUT-OF-SCOPE###.
        """

    /// The simulator's system prompt: guidelines, then the task's scenario.
    public static func systemPrompt(guidelines: String, scenario: String) -> String {
        guidelines + "\n\n<scenario>\n" + scenario + "\n</scenario>"
    }

    /// The conversation as the simulator sees it: roles swapped (agent → user, user →
    /// assistant), and no tool traffic (tool results and the agent's tool-call-only messages).
    public static func view(of dialogue: [ChatMessage], system: String) -> [ChatMessage] {
        var out = [ChatMessage(role: "system", content: system)]
        for m in dialogue {
            switch m.role {
            case "user": out.append(ChatMessage(role: "assistant", content: m.content ?? ""))
            case "assistant":
                if let text = m.content, !text.isEmpty { out.append(ChatMessage(role: "user", content: text)) }
            default: continue
            }
        }
        return out
    }

    /// The stop tokens, each with the reason it records.
    public static let tokens: [(token: String, reason: StopReason)] = [
        ("###STOP###", .userStop), ("###TRANSFER###", .transfer), ("###OUT-OF-SCOPE###", .outOfScope),
    ]

    /// The reply with every stop token removed and trimmed, and the reason of the first token
    /// found (the framework checks for the substring anywhere in the reply).
    public static func parse(_ reply: String) -> (text: String, stop: StopReason?) {
        var text = reply
        var stop: StopReason?
        for (token, reason) in tokens where text.contains(token) {
            if stop == nil { stop = reason }
            text = text.replacingOccurrences(of: token, with: "")
        }
        return (text.trimmingCharacters(in: .whitespacesAndNewlines), stop)
    }
}

/// Extracts the text inside the last `<answer>…</answer>` of a reply.
func extractAnswer(_ text: String) -> String? {
    guard let open = text.range(of: "<answer>", options: .backwards) else { return nil }
    let rest = text[open.upperBound...]
    let inner = rest.range(of: "</answer>").map { rest[..<$0.lowerBound] } ?? rest
    return inner.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// One rollout in progress: the transcript so far, written to the warehouse as it grows.
final class RolloutRun: @unchecked Sendable {
    let item: WorkItem
    let job: RunRequest.Job
    let task: TaskContent
    let setup: DomainSetup
    let engine: RolloutEngine
    private(set) var messages: [ChatMessage] = []
    private(set) var turn = 0
    var agentCalls = 0
    var tokens = 0

    struct TaskContent: Sendable {
        var externalID: String
        var opening: String?
        var userPrompt: String?
    }

    init(item: WorkItem, job: RunRequest.Job, task: TaskContent, setup: DomainSetup, engine: RolloutEngine) {
        self.item = item
        self.job = job
        self.task = task
        self.setup = setup
        self.engine = engine
    }

    var context: CallContext { CallContext(role: .agent, runID: engine.plan.runID, rolloutID: item.rolloutID) }

    /// Whom this rollout's tool calls are for: the rollout id (`_meta.sessionId`) and what a
    /// server's session-argument template may use.
    var toolSession: ToolSession {
        let id = String(item.rolloutID)
        return ToolSession(id: id, values: ["session": id, "task": task.externalID, "run": engine.plan.runName,
                                            "sample": String(item.sample), "attempt": String(item.attempt),
                                            "domain": item.domainKey ?? ""])
    }

    private func append(_ m: ChatMessage) {
        engine.writer.enqueue(.message(rollout: item.rolloutID, idx: messages.count, turn: turn, message: m, at: Timestamp.now()))
        engine.transcript(self, m)
        messages.append(m)
    }

    private func appendUser(_ text: String) {
        turn += 1
        append(ChatMessage(role: "user", content: text))
    }

    // MARK: Model calls

    private func options(_ role: RunConfig.Role) -> ChatOptions {
        var o = ChatOptions(temperature: role.temperature)
        o.seed = item.sample
        if role.enableThinking == true {
            o.thinking = .init(enabled: true, budgetTokens: role.extra["thinking_budget"]?.intValue)
        }
        o.maxTokens = role.extra["max_tokens"]?.intValue
        o.topP = role.extra["top_p"]?.doubleValue
        if case .object(let extra)? = role.extra["extra_body"] { o.extraBody = extra }
        return o
    }

    private func callAgent() async throws -> ChatResponse {
        var sent: [ChatMessage] = []
        if let policy = systemPrompt { sent.append(ChatMessage(role: "system", content: policy)) }
        sent += engine.reasoningHistory(job.settings.agent.model).apply(messages)
        let request = ChatRequest(model: job.settings.agent.model, messages: sent, tools: setup.toolset.specifications,
                                  options: options(job.settings.agent))
        agentCalls += 1
        let response = try await engine.client.complete(job.settings.agent.model, request, context: context)
        tokens += (response.usage.promptTokens ?? 0) + (response.usage.completionTokens ?? 0)
        return response
    }

    private var systemPrompt: String? {
        if job.settings.mode == .task, let p = job.settings.extra["system_prompt"]?.stringValue { return p }
        if let p = setup.policy { return p }
        return job.settings.mode == .task ? Self.defaultTaskPrompt : nil
    }

    static let defaultTaskPrompt = """
        Answer the user's question. Use the tools when they help. When you are done, give the final \
        answer inside <answer></answer>.
        """

    private func callUser() async throws -> String {
        guard let user = job.settings.user else { throw EngineError("job \(job.name) has no user simulator") }
        let system = UserSimulator.systemPrompt(guidelines: engine.userGuidelines, scenario: task.userPrompt ?? "")
        let request = ChatRequest(model: user.model, messages: UserSimulator.view(of: messages, system: system),
                                  options: options(user))
        var ctx = context
        ctx.role = .user
        let response = try await engine.client.complete(user.model, request, context: ctx)
        return response.message.content ?? ""
    }

    /// Appends the agent's reply; runs its tool calls concurrently and appends the results in
    /// call order. Returns whether it called tools.
    private func agentStep() async throws -> (calledTools: Bool, response: ChatResponse) {
        let response = try await callAgent()
        var reply = response.message
        reply.role = "assistant"
        for i in reply.toolCalls.indices where reply.toolCalls[i].id?.isEmpty ?? true {
            reply.toolCalls[i].id = "call_\(messages.count)_\(i)"
        }
        let callIdx = messages.count
        append(reply)
        guard !reply.toolCalls.isEmpty else { return (false, response) }
        let session = toolSession
        let calls = reply.toolCalls
        let answers = await withTaskGroup(of: (Int, ToolRouter.Answer).self) { group in
            for (i, call) in calls.enumerated() {
                group.addTask { (i, await self.engine.tools.call(call, toolset: self.setup.toolset, session: session)) }
            }
            var out = [ToolRouter.Answer?](repeating: nil, count: calls.count)
            for await (i, a) in group { out[i] = a }
            return out.map { $0! }
        }
        for (i, (call, answer)) in zip(calls, answers).enumerated() {
            let m = ChatMessage(role: "tool", content: answer.text, toolCallID: call.id, name: call.name)
            engine.writer.enqueue(.toolResult(rollout: item.rolloutID, idx: messages.count, turn: turn, message: m,
                                              call: .init(messageIdx: callIdx, callIdx: i),
                                              result: .init(text: answer.text, isError: answer.isError, latencyMs: answer.latencyMs,
                                                            serverID: answer.serverID),
                                              at: Timestamp.now()))
            engine.transcript(self, m)
            messages.append(m)
            engine.countTool(error: answer.isError)
        }
        return (true, response)
    }

    // MARK: Dialogue mode

    func dialogue() async throws -> RolloutOutcome {
        let settings = job.settings
        if let opening = task.opening, !opening.isEmpty {
            appendUser(opening)
        } else {
            let (text, stop) = UserSimulator.parse(try await callUser())
            if !text.isEmpty { appendUser(text) }
            if let stop { return finish(stop) }
        }
        var noToolTurns = 0
        while true {
            var calledTool = false
            var replied = false
            for _ in 0..<settings.maxStepsPerTurn {
                try Task.checkCancellation()
                let (called, _) = try await agentStep()
                if called { calledTool = true } else { replied = true; break }
            }
            if !replied { return finish(.maxSteps) }
            noToolTurns = calledTool ? 0 : noToolTurns + 1
            if engine.plan.request.enableMonitor && noToolTurns >= engine.plan.request.monitorMaxNoToolTurns {
                return finish(.noToolTurns)
            }
            if turn >= settings.maxTurns { return finish(.maxTurns) }
            try Task.checkCancellation()
            let (text, stop) = UserSimulator.parse(try await callUser())
            if !text.isEmpty { appendUser(text) }
            if let stop { return finish(stop) }
        }
    }

    // MARK: Task mode

    func taskMode() async throws -> RolloutOutcome {
        let extra = job.settings.extra
        let maxCalls = extra["max_calls"]?.intValue ?? 100
        let tokenBudget = extra["token_budget"]?.intValue
        appendUser(task.opening ?? "")
        while true {
            if agentCalls >= maxCalls { return finish(.maxCalls) }
            try Task.checkCancellation()
            let (called, response) = try await agentStep()
            let content = response.message.content ?? ""
            if let answer = extractAnswer(content) { return finish(.answer, prediction: answer) }
            if !called { return finish(.answer, prediction: content) }
            if let tokenBudget, tokens >= tokenBudget { return finish(.tokenBudget) }
        }
    }

    private func finish(_ reason: StopReason, prediction: String? = nil) -> RolloutOutcome {
        var meta: JSONObject = ["agent_calls": JSONValue(agentCalls)]
        if let d = job.settings.mcpDomain ?? item.domainKey { meta["domain"] = .string(d) }
        return RolloutOutcome(status: .completed, stopReason: reason, prediction: prediction, error: nil, turns: turn, metadata: meta)
    }
}
