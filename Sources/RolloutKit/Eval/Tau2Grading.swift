import Foundation

/// The τ-bench / τ²-bench checks that a trajectory alone decides.
///
/// - **actions**: every expected action the agent should take (τ² `evaluation_criteria.actions`
///   whose `requestor` is not `user`; τ-bench v1 `actions` with `kwargs`) has a tool call of that
///   name whose arguments equal the expected ones on `compare_args` (default: every expected
///   argument; numbers compared by value). τ² reward basis `ACTION`.
/// - **communicate**: every `communicate_info` string (τ-bench v1: `outputs`) appears in some
///   assistant message, compared lower-cased with commas removed (τ²'s rule). Basis `COMMUNICATE`.
///
/// A component with nothing to check passes (as in τ²). The overall verdict is both
/// components; a task that lists neither action nor communicate_info gets NULL. What needs the
/// environment or a judge (`DB`, `ENV_ASSERTION`, `NL_ASSERTION`) is listed as not decided.
public enum Tau2Grading {
    public struct Call: Sendable {
        public var name: String
        public var arguments: String?
        public init(name: String, arguments: String?) {
            self.name = name
            self.arguments = arguments
        }
    }

    public struct Result: Sendable {
        public var overall: Verdict
        public var actions: Verdict
        public var communicate: Verdict
    }

    /// nil when the criteria hold nothing τ-shaped (no actions, communicate_info, outputs, or
    /// reward basis).
    public static func grade(criteria: JSONValue?, calls: [Call], assistantTexts: [String]) -> Result? {
        guard let criteria, case .object(let c) = criteria,
              c["actions"] != nil || c["communicate_info"] != nil || c["outputs"] != nil || c["reward_basis"] != nil
                || c["nl_assertions"] != nil || c["env_assertions"] != nil else { return nil }
        let parsedCalls: [(name: String, args: JSONValue?)] = calls.map { call in
            (call.name, call.arguments.flatMap { try? JSONParser.parse($0) })
        }
        // Actions.
        var checked = 0, matched = 0
        var missing: [String] = []
        for (i, action) in (c["actions"]?.arrayValue ?? []).enumerated() {
            guard case .object(let a) = action, let name = a["name"]?.stringValue else { continue }
            if a["requestor"]?.stringValue == "user" { continue }
            let expected = a["arguments"]?.objectValue ?? a["kwargs"]?.objectValue ?? JSONObject()
            let keys = a["compare_args"]?.arrayValue?.compactMap(\.stringValue) ?? expected.keys
            checked += 1
            let ok = parsedCalls.contains { call in
                guard call.name == name else { return false }
                let args = call.args?.objectValue ?? JSONObject()
                return keys.allSatisfy { k in
                    guard let want = expected[k] else { return true }
                    guard let got = args[k] else { return false }
                    return JSONSchemaCheck.equal(want, got)
                }
            }
            if ok { matched += 1 } else { missing.append(a["action_id"]?.scalarText ?? "\(name)#\(i)") }
        }
        let actions = Verdict(passed: matched == checked, value: checked == 0 ? 1 : Double(matched) / Double(checked),
                              explanation: checked == 0 ? "actions: nothing to check"
                                  : "actions: \(matched)/\(checked) expected tool calls made" + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))"))
        // Communicate.
        let infos = (c["communicate_info"]?.arrayValue ?? c["outputs"]?.arrayValue ?? []).compactMap(\.scalarText)
        let texts = assistantTexts.map { $0.lowercased().replacingOccurrences(of: ",", with: "") }
        var said = 0
        var unsaid: [String] = []
        for info in infos {
            let needle = info.lowercased().replacingOccurrences(of: ",", with: "")
            if texts.contains(where: { $0.contains(needle) }) { said += 1 } else { unsaid.append(TextGrading.quote(info, limit: 60)) }
        }
        let communicate = Verdict(passed: said == infos.count, value: infos.isEmpty ? 1 : Double(said) / Double(infos.count),
                                  explanation: infos.isEmpty ? "communicate: nothing to check"
                                      : "communicate: \(said)/\(infos.count) said" + (unsaid.isEmpty ? "" : "; not said: \(unsaid.joined(separator: ", "))"))
        // What the trajectory cannot decide.
        var undecided: [String] = []
        let basis = c["reward_basis"]?.arrayValue?.compactMap(\.stringValue) ?? (c["outputs"] != nil ? [] : ["DB", "COMMUNICATE"])
        for b in basis where !["ACTION", "COMMUNICATE"].contains(b) { undecided.append(b) }
        if c["nl_assertions"] != nil, !undecided.contains("NL_ASSERTION") { undecided.append("NL_ASSERTION") }
        if c["env_assertions"] != nil, !undecided.contains("ENV_ASSERTION") { undecided.append("ENV_ASSERTION") }
        let total = checked + infos.count
        let passedChecks = matched + said
        let both = (actions.passed ?? false) && (communicate.passed ?? false)
        var text = "\(actions.explanation); \(communicate.explanation)"
        if !undecided.isEmpty { text += "; not decided from the trajectory: \(undecided.joined(separator: ", "))" }
        // Overall: both components, over what the task lists; with neither listed the trajectory
        // decides nothing about this task.
        let overall = total == 0
            ? Verdict.undecidable("no actions or communicate_info to check" + (undecided.isEmpty ? "" : "; not decided from the trajectory: \(undecided.joined(separator: ", "))"))
            : Verdict(passed: both, value: Double(passedChecks) / Double(total), explanation: text)
        return Result(overall: overall, actions: actions, communicate: communicate)
    }
}
