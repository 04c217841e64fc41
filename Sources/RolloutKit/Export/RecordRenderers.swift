import Foundation
/// One rollout as the export's selection query returns it.
struct RolloutHead: Sendable {
    var id: Int64
    var taskID: Int64
    var sample: Int
    var status: String
    var stopReason: String?
    var prediction: String?
    var error: String?
    var turns: Int?
    var externalID: String
    var dataset: String
    var opening: String?
    var answer: String?
    var promptID: Int64?
    var toolsetID: Int64?
    /// The grader's latest verdict (1, 0) or nil.
    var passed: Int?

    /// The key a `--split` assigns by.
    func splitKey(_ unit: SplitSpec.Unit) -> String {
        switch unit {
        case .task: dataset + "\u{1F}" + externalID
        case .rollout: dataset + "\u{1F}" + externalID + "\u{1F}" + String(sample)
        }
    }
}

/// A label's tool list, rendered once in every shape the formats need.
final class ToolsetAssets {
    let names: Set<String>
    let isEmpty: Bool
    /// The OpenAI tool array, compact.
    let openAI: [UInt8]
    /// The same with each `function.parameters` as a JSON string.
    let openAIStringified: [UInt8]
    /// ShareGPT's `tools`: a JSON string holding the list of function objects.
    let sharegpt: [UInt8]
    let sharegptStringified: [UInt8]

    init(tools: [JSONValue]) {
        names = Set(tools.compactMap { $0["function"]?["name"]?.stringValue ?? $0["name"]?.stringValue })
        isEmpty = tools.isEmpty
        func stringified(_ tool: JSONValue) -> JSONValue {
            guard case .object(var o) = tool else { return tool }
            if case .object(var f)? = o["function"], let p = f["parameters"], p.stringValue == nil {
                f["parameters"] = .string(p.jsonText)
                o["function"] = .object(f)
            } else if let p = o["parameters"], p.stringValue == nil {
                o["parameters"] = .string(p.jsonText)
            }
            return .object(o)
        }
        func functions(_ list: [JSONValue]) -> JSONValue {
            .array(list.map { $0["function"] ?? $0 })
        }
        var w = JSONBytes()
        w.value(.array(tools))
        openAI = w.out
        w = JSONBytes()
        w.value(.array(tools.map(stringified)))
        openAIStringified = w.out
        w = JSONBytes()
        w.string(functions(tools).jsonText)
        sharegpt = w.out
        w = JSONBytes()
        w.string(functions(tools.map(stringified)).jsonText)
        sharegptStringified = w.out
    }
}

/// What a record is written with besides its trajectory.
struct RecordContext {
    var head: RolloutHead
    /// The label's system prompt, to put first when the trajectory has no system message.
    var prompt: String?
    /// `prompt` as a JSON string, escaped once per distinct prompt.
    var promptJSON: [UInt8]?
    var tools: ToolsetAssets?
    var options: ExportOptions

    var prependsSystem: Bool { prompt != nil }
}

/// Writes records straight from trajectory bytes, one format each.
enum RecordRenderers {
    // MARK: Shared pieces

    @inline(__always)
    static func span(_ w: inout JSONBytes, _ t: Trajectory, _ s: Span) {
        if s.isNull { w.null(); return }
        t.withBytes(s) { w.string($0) }
    }

    /// A span as a JSON string, `""` when NULL.
    static func text(_ w: inout JSONBytes, _ t: Trajectory, _ s: Span) {
        if s.isNull { w.raw("\"\""); return }
        t.withBytes(s) { w.string($0) }
    }

    static func toolCall(_ w: inout JSONBytes, _ t: Trajectory, _ c: Trajectory.Call) {
        w.raw("{\"id\":")
        span(&w, t, c.id)
        w.raw(",\"type\":\"function\",\"function\":{\"name\":")
        text(&w, t, c.name)
        w.raw(",\"arguments\":")
        if c.arguments.isNull { w.raw("\"{}\"") } else { span(&w, t, c.arguments) }
        w.raw("}}")
    }

    static func toolCalls(_ w: inout JSONBytes, _ t: Trajectory, _ m: Trajectory.Message) {
        w.byte(UInt8(ascii: "["))
        for j in m.callRange {
            if j > m.firstCall { w.byte(UInt8(ascii: ",")) }
            toolCall(&w, t, t.calls[j])
        }
        w.byte(UInt8(ascii: "]"))
    }

    static func tools(_ w: inout JSONBytes, _ c: RecordContext) {
        guard let tools = c.tools else { w.raw("[]"); return }
        w.raw(c.options.stringifyParameters ? tools.openAIStringified : tools.openAI)
    }

    /// Index of the last assistant message (records for trainers end there), or nil.
    static func lastAssistant(_ t: Trajectory) -> Int? { t.messages.lastIndex { $0.role == .assistant } }

    // MARK: training

    /// `{"messages":[{role, content, reasoning_content, tool_calls, tool_call_id}], "id", "data_source", "use_cot", "tools"}`:
    /// every message has all five keys (null when absent); the label's system prompt comes first.
    static func training(_ w: inout JSONBytes, _ t: Trajectory, _ c: RecordContext) {
        w.raw("{\"messages\":[")
        var first = true
        if c.prompt != nil {
            w.raw("{\"role\":\"system\",\"content\":")
            promptText(&w, c)
            w.raw(",\"reasoning_content\":null,\"tool_calls\":null,\"tool_call_id\":null}")
            first = false
        }
        for m in t.messages {
            if !first { w.byte(UInt8(ascii: ",")) }
            first = false
            w.raw("{\"role\":\"")
            w.raw(roleText(m.role))
            w.raw("\",\"content\":")
            span(&w, t, m.content)
            w.raw(",\"reasoning_content\":")
            span(&w, t, m.reasoning)
            w.raw(",\"tool_calls\":")
            if m.callCount > 0 { toolCalls(&w, t, m) } else { w.null() }
            w.raw(",\"tool_call_id\":")
            span(&w, t, m.toolCallID)
            w.byte(UInt8(ascii: "}"))
        }
        w.raw("],\"id\":")
        w.string(c.head.externalID)
        w.raw(",\"data_source\":")
        w.string(c.options.dataSource)
        w.raw(",\"use_cot\":")
        w.bool(c.options.useCoT)
        w.raw(",\"tools\":")
        tools(&w, c)
        w.byte(UInt8(ascii: "}"))
    }

    // MARK: rollout (the Rollout framework's output record)

    /// A message as `ChatMessage.openAIJSON` writes it.
    static func openAIMessage(_ w: inout JSONBytes, _ t: Trajectory, _ m: Trajectory.Message) {
        w.raw("{\"role\":\"")
        w.raw(roleText(m.role))
        w.raw("\",\"content\":")
        span(&w, t, m.content)
        if !m.reasoning.isNull {
            w.raw(",\"reasoning_content\":")
            span(&w, t, m.reasoning)
        }
        if m.callCount > 0 {
            w.raw(",\"tool_calls\":")
            toolCalls(&w, t, m)
        }
        if !m.toolCallID.isNull {
            w.raw(",\"tool_call_id\":")
            span(&w, t, m.toolCallID)
        }
        if !m.name.isNull {
            w.raw(",\"name\":")
            span(&w, t, m.name)
        }
        w.byte(UInt8(ascii: "}"))
    }

    /// `{id, sample, messages, success, error, stopped, transferred, out_of_scope, total_turns,
    /// stop_reason, [reached_max_turns], has_reasoning, [prediction]}`; messages as stored.
    static func rollout(_ w: inout JSONBytes, _ t: Trajectory, _ c: RecordContext) {
        let h = c.head
        w.raw("{\"id\":")
        w.string(h.externalID)
        w.raw(",\"sample\":")
        w.int(h.sample)
        w.raw(",\"messages\":[")
        for (i, m) in t.messages.enumerated() {
            if i > 0 { w.byte(UInt8(ascii: ",")) }
            openAIMessage(&w, t, m)
        }
        w.raw("],\"success\":")
        w.bool(h.status == "completed")
        w.raw(",\"error\":")
        w.string(h.error)
        let stop = h.stopReason
        w.raw(",\"stopped\":")
        w.bool(stop == StopReason.userStop.rawValue)
        w.raw(",\"transferred\":")
        w.bool(stop == StopReason.transfer.rawValue)
        w.raw(",\"out_of_scope\":")
        w.bool(stop == StopReason.outOfScope.rawValue)
        w.raw(",\"total_turns\":")
        w.int(h.turns ?? 0)
        w.raw(",\"stop_reason\":")
        if let stop {
            let userToken = stop == StopReason.userStop.rawValue || stop == StopReason.transfer.rawValue
                || stop == StopReason.outOfScope.rawValue
            w.string(userToken ? "user_token" : stop)
        } else {
            w.null()
        }
        if stop == StopReason.maxTurns.rawValue { w.raw(",\"reached_max_turns\":true") }
        w.raw(",\"has_reasoning\":")
        w.bool(t.hasReasoning)
        if let p = h.prediction {
            w.raw(",\"prediction\":")
            w.string(p)
        }
        w.byte(UInt8(ascii: "}"))
    }

    // MARK: openai-ft

    /// A chat message as the OpenAI APIs take it: content a string (null only beside tool
    /// calls), tool calls with their ids, tool results with `tool_call_id`.
    static func chatMessage(_ w: inout JSONBytes, _ t: Trajectory, _ m: Trajectory.Message, reasoning: Bool) {
        w.raw("{\"role\":\"")
        w.raw(roleText(m.role))
        w.raw("\"")
        switch m.role {
        case .tool:
            w.raw(",\"tool_call_id\":")
            span(&w, t, m.toolCallID)
            w.raw(",\"content\":")
            text(&w, t, m.content)
        case .assistant:
            w.raw(",\"content\":")
            if m.callCount > 0 && m.content.isEmpty { w.null() } else { text(&w, t, m.content) }
            if reasoning && !m.reasoning.isNull {
                w.raw(",\"reasoning_content\":")
                span(&w, t, m.reasoning)
            }
            if m.callCount > 0 {
                w.raw(",\"tool_calls\":")
                toolCalls(&w, t, m)
            }
        case .system, .user:
            w.raw(",\"content\":")
            text(&w, t, m.content)
        }
        w.byte(UInt8(ascii: "}"))
    }

    static func systemChatMessage(_ w: inout JSONBytes, _ c: RecordContext) {
        w.raw("{\"role\":\"system\",\"content\":")
        promptText(&w, c)
        w.byte(UInt8(ascii: "}"))
    }

    /// The label's system prompt as a JSON string.
    @inline(__always)
    static func promptText(_ w: inout JSONBytes, _ c: RecordContext) {
        if let j = c.promptJSON { w.raw(j) } else { w.string(c.prompt) }
    }

    /// `{"messages":[…], "tools":[…]}`, ending at the last assistant message (what follows it
    /// teaches nothing); `tools` left out when there are none.
    static func openAIFT(_ w: inout JSONBytes, _ t: Trajectory, _ c: RecordContext) -> Int {
        let end = (lastAssistant(t) ?? -1) + 1
        w.raw("{\"messages\":[")
        var first = true
        if c.prompt != nil { systemChatMessage(&w, c); first = false }
        for m in t.messages[..<end] {
            if !first { w.byte(UInt8(ascii: ",")) }
            first = false
            chatMessage(&w, t, m, reasoning: false)
        }
        w.byte(UInt8(ascii: "]"))
        if let tools = c.tools, !tools.isEmpty {
            w.raw(",\"tools\":")
            w.raw(c.options.stringifyParameters ? tools.openAIStringified : tools.openAI)
        }
        w.byte(UInt8(ascii: "}"))
        return t.messages.count - end
    }

    // MARK: sharegpt

    /// `<think>\n…\n</think>\n\n` before a reply, as reasoning templates read it.
    static func think(_ w: inout JSONBytes, _ t: Trajectory, _ m: Trajectory.Message, _ c: RecordContext) {
        guard c.options.useCoT, m.reasoning.count > 0 else { return }
        w.raw("<think>\\n")
        t.withBytes(m.reasoning) { w.escape($0) }
        w.raw("\\n</think>\\n\\n")
    }

    /// A call as `{"name": …, "arguments": {…}}` (arguments as the object they encode).
    static func callObject(_ w: inout JSONBytes, _ t: Trajectory, _ call: Trajectory.Call) {
        w.raw("{\"name\":")
        text(&w, t, call.name)
        w.raw(",\"arguments\":")
        let parsed: JSONValue? = call.arguments.isNull ? .object([:]) : t.withBytes(call.arguments) {
            if case .success(let v) = JSONParser.result($0) { return v }
            return nil
        }
        if let parsed { w.value(parsed) } else { span(&w, t, call.arguments) }
        w.byte(UInt8(ascii: "}"))
    }

    /// `{"conversations":[{"from","value"}…], "system", "tools"}` with LLaMA-Factory's roles:
    /// human / gpt / function_call (the call, or a list of calls) / observation (the results of
    /// one step, joined as its OpenAI converter joins them). Ends at the last assistant message.
    static func sharegpt(_ w: inout JSONBytes, _ t: Trajectory, _ c: RecordContext, scratch: inout JSONBytes) -> Int {
        let end = (lastAssistant(t) ?? -1) + 1
        var system: String? = c.prompt
        w.raw("{\"conversations\":[")
        var first = true
        var i = 0
        while i < end {
            let m = t.messages[i]
            switch m.role {
            case .system:
                system = t.string(m.content) ?? ""
                i += 1
                continue
            case .user:
                if !first { w.byte(UInt8(ascii: ",")) }
                w.raw("{\"from\":\"human\",\"value\":")
                text(&w, t, m.content)
                w.byte(UInt8(ascii: "}"))
                i += 1
            case .assistant:
                if !first { w.byte(UInt8(ascii: ",")) }
                if m.callCount == 0 {
                    w.raw("{\"from\":\"gpt\",\"value\":\"")
                    think(&w, t, m, c)
                    if !m.content.isNull { t.withBytes(m.content) { w.escape($0) } }
                    w.raw("\"}")
                } else {
                    scratch.out.removeAll(keepingCapacity: true)
                    if m.callCount > 1 { scratch.byte(UInt8(ascii: "[")) }
                    for j in m.callRange {
                        if j > m.firstCall { scratch.byte(UInt8(ascii: ",")) }
                        callObject(&scratch, t, t.calls[j])
                    }
                    if m.callCount > 1 { scratch.byte(UInt8(ascii: "]")) }
                    w.raw("{\"from\":\"function_call\",\"value\":\"")
                    think(&w, t, m, c)
                    scratch.out.withUnsafeBytes { w.escape($0) }
                    w.raw("\"}")
                }
                i += 1
            case .tool:
                if !first { w.byte(UInt8(ascii: ",")) }
                w.raw("{\"from\":\"observation\",\"value\":\"")
                var k = i
                while k < end && t.messages[k].role == .tool {
                    if k > i { w.raw("\\n</tool_response>\\n<tool_response>\\n") }
                    if !t.messages[k].content.isNull { t.withBytes(t.messages[k].content) { w.escape($0) } }
                    k += 1
                }
                w.raw("\"}")
                i = k
            }
            first = false
        }
        w.byte(UInt8(ascii: "]"))
        if let system {
            w.raw(",\"system\":")
            w.string(system)
        }
        if let tools = c.tools, !tools.isEmpty {
            w.raw(",\"tools\":")
            w.raw(c.options.stringifyParameters ? tools.sharegptStringified : tools.sharegpt)
        }
        w.byte(UInt8(ascii: "}"))
        return t.messages.count - end
    }

    // MARK: deepresearch

    /// DeepResearch's termination for a stop reason (other reasons, e.g. an imported
    /// `format error: …`, pass through).
    static func termination(_ h: RolloutHead) -> String {
        switch h.stopReason {
        case StopReason.answer.rawValue?: h.prediction == nil ? "answer not found" : "answer"
        case StopReason.maxCalls.rawValue?: "exceed available llm calls"
        case StopReason.tokenBudget.rawValue?: "generate an answer as token limit reached"
        case let s?: s
        case nil: h.prediction == nil ? "answer not found" : "answer"
        }
    }

    /// `{question, answer, rollout_id, messages, prediction, termination}` (a failed rollout:
    /// `{question, answer, rollout_id, error, messages, prediction: "[Failed]"}`), messages in
    /// DeepResearch's text form: the system prompt first, then the question; tool calls as
    /// `<tool_call>{"name","arguments"}</tool_call>` in the assistant's content, reasoning as
    /// `<think>…</think>`, tool results as user messages in `<tool_response>` tags.
    static func deepresearch(_ w: inout JSONBytes, _ t: Trajectory, _ c: RecordContext, scratch: inout JSONBytes) {
        let h = c.head
        w.raw("{\"question\":")
        w.string(h.opening ?? "")
        w.raw(",\"answer\":")
        w.string(h.answer ?? "")
        w.raw(",\"rollout_id\":")
        w.int(h.sample + 1)
        let failed = h.status != "completed"
        if failed {
            w.raw(",\"error\":")
            w.string(h.error ?? "failed")
        }
        w.raw(",\"messages\":[")
        var first = true
        if c.prompt != nil {
            systemChatMessage(&w, c)
            first = false
        }
        var i = 0
        while i < t.messages.count {
            let m = t.messages[i]
            if !first { w.byte(UInt8(ascii: ",")) }
            first = false
            switch m.role {
            case .system, .user:
                w.raw("{\"role\":\"")
                w.raw(roleText(m.role))
                w.raw("\",\"content\":")
                text(&w, t, m.content)
                w.byte(UInt8(ascii: "}"))
                i += 1
            case .assistant:
                w.raw("{\"role\":\"assistant\",\"content\":\"")
                if m.reasoning.count > 0 {
                    w.raw("<think>\\n")
                    t.withBytes(m.reasoning) { w.escape($0) }
                    w.raw("\\n</think>\\n\\n")
                }
                if !m.content.isNull { t.withBytes(m.content) { w.escape($0) } }
                for j in m.callRange {
                    scratch.out.removeAll(keepingCapacity: true)
                    callObject(&scratch, t, t.calls[j])
                    w.raw(m.content.isEmpty && j == m.firstCall ? "<tool_call>\\n" : "\\n<tool_call>\\n")
                    scratch.out.withUnsafeBytes { w.escape($0) }
                    w.raw("\\n</tool_call>")
                }
                w.raw("\"}")
                i += 1
            case .tool:
                w.raw("{\"role\":\"user\",\"content\":\"")
                var k = i
                while k < t.messages.count && t.messages[k].role == .tool {
                    if k > i { w.raw("\\n") }
                    w.raw("<tool_response>\\n")
                    if !t.messages[k].content.isNull { t.withBytes(t.messages[k].content) { w.escape($0) } }
                    w.raw("\\n</tool_response>")
                    k += 1
                }
                w.raw("\"}")
                i = k
            }
        }
        w.raw("],\"prediction\":")
        if failed {
            w.raw("\"[Failed]\"}")
            return
        }
        w.string(h.prediction ?? "No answer found.")
        w.raw(",\"termination\":")
        w.string(termination(h))
        w.byte(UInt8(ascii: "}"))
    }

    // MARK: dpo

    /// How many leading messages two trajectories share as their prompt: their longest common
    /// prefix, cut where both continue with an assistant message (the last such place), else
    /// where both continue with a user message (a dialogue whose user simulator opened
    /// differently shares only the system prompt). `minimum` is 0 when a system prompt comes
    /// before the messages anyway. nil when there is no such place.
    static func sharedPrompt(_ a: Trajectory, _ b: Trajectory, minimum: Int) -> Int? {
        var k = 0
        while k < a.messages.count && k < b.messages.count && sameMessage(a, a.messages[k], b, b.messages[k]) { k += 1 }
        let top = min(k, a.messages.count - 1, b.messages.count - 1)
        guard top >= minimum else { return nil }
        for role in [Trajectory.Role.assistant, .user] {
            var p = top
            while p >= minimum {
                if a.messages[p].role == role && b.messages[p].role == role { return p }
                p -= 1
            }
        }
        return nil
    }

    static func sameMessage(_ a: Trajectory, _ x: Trajectory.Message, _ b: Trajectory, _ y: Trajectory.Message) -> Bool {
        guard x.role == y.role, x.callCount == y.callCount else { return false }
        func same(_ s: Span, _ u: Span) -> Bool {
            if s.isNull || u.isNull { return s.isNull && u.isNull }
            return a.withBytes(s) { p in b.withBytes(u) { q in p.count == q.count && (p.count == 0 || memcmp(p.baseAddress!, q.baseAddress!, p.count) == 0) } }
        }
        guard same(x.content, y.content), same(x.toolCallID, y.toolCallID) else { return false }
        for (i, j) in zip(x.callRange, y.callRange) {
            let c = a.calls[i], d = b.calls[j]
            if !same(c.id, d.id) || !same(c.name, d.name) || !same(c.arguments, d.arguments) { return false }
        }
        return true
    }

    /// `{"id", "prompt":[…], "chosen":[…], "rejected":[…], "tools":[…], "chosen_rollout", "rejected_rollout"}`:
    /// chat messages (reasoning with --use-cot); `prompt` holds the system prompt and the
    /// messages both samples share.
    static func dpo(_ w: inout JSONBytes, chosen: Trajectory, _ cc: RecordContext, rejected: Trajectory, _ rc: RecordContext, prompt p: Int) {
        let reasoning = cc.options.useCoT
        w.raw("{\"id\":")
        w.string(cc.head.externalID)
        w.raw(",\"prompt\":[")
        var first = true
        if cc.prompt != nil { systemChatMessage(&w, cc); first = false }
        for m in chosen.messages[..<p] {
            if !first { w.byte(UInt8(ascii: ",")) }
            first = false
            chatMessage(&w, chosen, m, reasoning: reasoning)
        }
        w.raw("],\"chosen\":[")
        for (i, m) in chosen.messages[p...].enumerated() {
            if i > 0 { w.byte(UInt8(ascii: ",")) }
            chatMessage(&w, chosen, m, reasoning: reasoning)
        }
        w.raw("],\"rejected\":[")
        for (i, m) in rejected.messages[p...].enumerated() {
            if i > 0 { w.byte(UInt8(ascii: ",")) }
            chatMessage(&w, rejected, m, reasoning: reasoning)
        }
        w.raw("],\"tools\":")
        tools(&w, cc)
        w.raw(",\"chosen_rollout\":")
        w.int(Int(cc.head.id))
        w.raw(",\"rejected_rollout\":")
        w.int(Int(rc.head.id))
        w.byte(UInt8(ascii: "}"))
    }

    static func roleText(_ r: Trajectory.Role) -> StaticString {
        switch r {
        case .system: "system"
        case .user: "user"
        case .assistant: "assistant"
        case .tool: "tool"
        }
    }
}
