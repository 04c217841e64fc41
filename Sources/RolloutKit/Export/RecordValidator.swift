/// Why an export left a record out.
public enum DropReason: String, Sendable, CaseIterable, Comparable {
    /// The trajectory has no messages.
    case empty
    /// Roles out of order: a system message after the first, an assistant or tool message
    /// before any user message, two user or two assistant messages in a row, a tool message not
    /// after an assistant message that made calls.
    case roleOrder = "role_order"
    /// A tool call without an id (its answer cannot name it).
    case missingCallID = "missing_call_id"
    /// Two calls of one assistant message with the same id.
    case duplicateCallID = "duplicate_call_id"
    /// A tool call that no tool message with its id answers before the next message of
    /// another role (or the end).
    case unansweredToolCall = "unanswered_tool_call"
    /// A tool message whose `tool_call_id` is missing or names no open call.
    case orphanToolMessage = "orphan_tool_message"
    /// A call to a tool the record's tool list does not declare.
    case undeclaredTool = "undeclared_tool"
    /// Tool-call arguments that are not a JSON object.
    case invalidArguments = "invalid_arguments"
    /// No assistant message at all.
    case noAssistantMessage = "no_assistant_message"
    /// `--dedupe`: the same messages, system prompt and tools as an earlier record.
    case duplicate
    /// `dpo`: no grade (or an undecided one) from the grader.
    case ungraded
    /// `dpo`: the task has no sample of the other verdict left to pair with.
    case unpaired
    /// `dpo`: the two samples share no prompt (not even the system prompt).
    case noSharedPrompt = "no_shared_prompt"

    /// Whether the reason is a validation failure (as opposed to dedupe or pairing).
    public var isValidation: Bool {
        switch self {
        case .duplicate, .ungraded, .unpaired, .noSharedPrompt: false
        default: true
        }
    }

    public static func < (a: DropReason, b: DropReason) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A record's first problem, with where it is.
struct RecordIssue: Sendable, Equatable {
    var reason: DropReason
    var detail: String
}

/// Checks one trajectory as it will be exported: each tool call answered by a tool message with
/// its id, roles in a legal order, every called tool declared (when the record carries a tool
/// list), arguments a JSON object.
enum RecordValidator {
    /// The first problem of `t`, or nil. `tools` is the set of declared names (nil: the format
    /// carries no tool list, so declaration is not checked).
    static func firstIssue(_ t: Trajectory, tools: Set<String>?) -> RecordIssue? {
        if t.messages.isEmpty { return RecordIssue(reason: .empty, detail: "no messages") }
        var previous: Trajectory.Role?
        var open: [Int] = []          // calls of the last assistant message not yet answered
        var answered: [Int] = []      // calls of that message already answered
        var sawUser = false, sawAssistant = false
        func describe(_ call: Int) -> String {
            let c = t.calls[call]
            return "call \(t.string(c.id).map { "\"\($0)\"" } ?? "without id") (\(t.string(c.name) ?? "?"))"
        }
        func unanswered(before i: Int?) -> RecordIssue {
            let at = i.map { "before message \($0)" } ?? "by the end of the trajectory"
            return RecordIssue(reason: .unansweredToolCall, detail: "\(describe(open[0])) has no tool message \(at)")
        }
        for (i, m) in t.messages.enumerated() {
            switch m.role {
            case .system:
                if i != 0 { return RecordIssue(reason: .roleOrder, detail: "message \(i) is a system message (only the first may be)") }
            case .user:
                if !open.isEmpty { return unanswered(before: i) }
                if previous == .user { return RecordIssue(reason: .roleOrder, detail: "messages \(i - 1) and \(i) are both user messages") }
                sawUser = true
            case .assistant:
                if !open.isEmpty { return unanswered(before: i) }
                if !sawUser { return RecordIssue(reason: .roleOrder, detail: "message \(i) is an assistant message before any user message") }
                if previous == .assistant {
                    return RecordIssue(reason: .roleOrder, detail: "messages \(i - 1) and \(i) are both assistant messages")
                }
                sawAssistant = true
                answered.removeAll(keepingCapacity: true)
                for j in m.callRange {
                    let call = t.calls[j]
                    if call.id.isEmpty {
                        return RecordIssue(reason: .missingCallID, detail: "message \(i): \(describe(j))")
                    }
                    for k in m.firstCall ..< j where t.equal(t.calls[k].id, call.id) {
                        return RecordIssue(reason: .duplicateCallID, detail: "message \(i): two calls with id \"\(t.string(call.id)!)\"")
                    }
                    if let tools {
                        let name = t.string(call.name) ?? ""
                        if !tools.contains(name) {
                            let listed = tools.isEmpty ? "the record's tool list is empty" : "not in the record's \(tools.count) tools"
                            return RecordIssue(reason: .undeclaredTool, detail: "message \(i): \(describe(j)): \(listed)")
                        }
                    }
                    if let problem = argumentsProblem(t, call.arguments) {
                        return RecordIssue(reason: .invalidArguments, detail: "message \(i): \(describe(j)): \(problem)")
                    }
                    open.append(j)
                }
            case .tool:
                if !sawUser || (previous != .tool && !(previous == .assistant && (!open.isEmpty || !answered.isEmpty))) {
                    let after = previous.map { "after a \($0.name) message" } ?? "first"
                    return RecordIssue(reason: .roleOrder, detail: "message \(i) is a tool message \(after), not after an assistant message's tool calls")
                }
                guard !m.toolCallID.isEmpty else {
                    return RecordIssue(reason: .orphanToolMessage, detail: "message \(i) has no tool_call_id")
                }
                if let k = open.firstIndex(where: { t.equal(t.calls[$0].id, m.toolCallID) }) {
                    answered.append(open.remove(at: k))
                } else {
                    let id = t.string(m.toolCallID)!
                    let twice = answered.contains { t.equal(t.calls[$0].id, m.toolCallID) }
                    return RecordIssue(reason: .orphanToolMessage,
                                       detail: twice ? "message \(i) answers call \"\(id)\" a second time"
                                                     : "message \(i) answers \"\(id)\", which the preceding assistant message did not call")
                }
            }
            previous = m.role
        }
        if !open.isEmpty { return unanswered(before: nil) }
        if !sawAssistant { return RecordIssue(reason: .noAssistantMessage, detail: "\(t.messages.count) message(s), none from the assistant") }
        return nil
    }

    /// Why arguments are not a JSON object, or nil when they are.
    static func argumentsProblem(_ t: Trajectory, _ span: Span) -> String? {
        if span.isNull { return "no arguments" }
        return t.withBytes(span) { bytes in
            switch JSONParser.result(bytes) {
            case .success(.object): return nil
            case .success(let v): return "arguments are a JSON \(v.typeName), not an object"
            case .failure(let e): return "arguments are not valid JSON (\(e.description))"
            }
        }
    }
}
