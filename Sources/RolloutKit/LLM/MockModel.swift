import Foundation

/// The built-in `mock` model: deterministic, seeded, no network. It sits behind the in-process
/// `mock` provider and the loopback HTTP mock server; the quickstart and the tests rely on the
/// behaviour written here.
///
/// **Determinism.** `respond(to:)` is a pure function of the request and the settings. Every
/// choice comes from one 64-bit key: `Hashing.contentHash` over
/// `mock|seed=<settings.seed>|request_seed=<request.options.seed or ->|<messages>`, where
/// `<messages>` is the compact JSON array of the request messages (`role`, `content`, and when
/// present `reasoning_content`, `tool_calls` as `{id, type, function{name, arguments}}`,
/// `tool_call_id`, `name`). So the same conversation and seed give the same reply in every process,
/// samples differ as soon as their conversations differ, and an engine that passes the sample
/// index as the request `seed` gets different replies for otherwise identical conversations.
/// Temperature, top_p, max_tokens and stop sequences are ignored; the offered tools and
/// `tool_choice` matter only as described for the agent.
///
/// **Role** comes from the registry entry's `mode`: `agent` (default), `user` or `judge`.
///
/// **Settings** (the other keys of the registry entry; snake_case, camelCase also accepted):
/// `seed` (integer, default 0), `user_turns` (integer ≥ 0, default 3), `transfer_rate` (0…1,
/// default 0), `out_of_scope_rate` (0…1, default 0; `transfer_rate + out_of_scope_rate` ≤ 1),
/// `judge_format` (`correct_incorrect` (default), `abc`, `yes_no`, `json`), `judge_pass_rate`
/// (0…1, default 0.5), `reasoning` (bool, default false). Other keys are ignored.
///
/// **Agent.**
/// - It calls a tool when tools are offered, `tool_choice` is not `"none"`, and no tool result
///   (role `tool`) has arrived since the latest user message (or since the start, when there is
///   no user message). With `tool_choice` `"required"` or naming a function it always calls one.
///   It calls exactly ONE tool: the one `tool_choice` names if offered, else the offered tool at
///   index `draw % tools.count`. The arguments are `SchemaSampler` output for the tool's
///   `parameters` (read first when written as a JSON string; `{}` when the output is not an
///   object), written as compact JSON; the call id is
///   `call_mock_<n>` where n = 1 + the number of tool calls already in the conversation. The
///   reply has `content` nil and finish_reason `tool_calls`.
/// - Otherwise it answers in text with finish_reason `stop`. If a tool result has arrived since
///   the latest user message, it quotes the latest one:
///   `I checked <tool>: "<excerpt>". <closing>` (the tool name is the tool message's `name`, else
///   the name of the call its `tool_call_id` answers, else `the tool`). Without a tool result it
///   quotes the latest user message: `You said: "<excerpt>". <reply>`; with no user message at all
///   it says `Hello! How can I help you today?`. The excerpt is the first 80 characters of the
///   text with whitespace runs collapsed to one space, followed by `…` when cut. `<closing>` and
///   `<reply>` are picked by the key from short fixed lists.
///
/// **User simulator.** The caller swaps roles: the simulator's own earlier messages arrive as
/// `assistant`, the agent's replies as `user`; tool traffic is not shown. Let n be the number of
/// `assistant` messages in the request.
/// - n ≥ `user_turns`: a closing sentence and a stop token. A draw d in [0, 1) picks
///   `I'd like to talk to a human agent, please. ###TRANSFER###` when d < transfer_rate,
///   `I'm sorry, I don't have that information. ###OUT-OF-SCOPE###` when d < transfer_rate +
///   out_of_scope_rate, and `Thank you, that's everything I needed. ###STOP###` otherwise.
/// - n = 0: the opening request, `Hi, I need some help. <request>`, where <request> comes from the
///   system prompt's scenario (the text inside `<scenario>…</scenario>` if present, else the whole
///   prompt): the rest of the first line starting with `Your goal:`, else `Reason for call:`,
///   `You are a user who needs help with:`, `Task instructions:`, `Instructions:` (or the next
///   non-empty line when that rest is empty), else the first non-empty line that is not a
///   Markdown heading, cut at 200 characters. Without a system prompt: `Hi, I need some help, please.`
/// - otherwise: a follow-up question (ending in `?`) picked by the key from a fixed list.
/// So from an empty conversation it writes the opening, `user_turns − 1` follow-ups and the
/// closing; when the dataset supplies the opening, `user_turns − 1` follow-ups and the closing.
///
/// **Judge.** A verdict with no other text. A draw d in [0, 1) passes when d < judge_pass_rate, so
/// that fraction of distinct requests pass (0 → never, 1 → always). Formats: `correct_incorrect`
/// → `Correct` / `Incorrect`; `abc` → `A` (pass) / `B` or, for a quarter of failures, `C`;
/// `yes_no` → `correct: yes` / `correct: no`; `json` → `{"correct": true}` / `{"correct": false}`.
///
/// **Reasoning.** With `reasoning: true`, or when the request turns thinking on, the reply also
/// carries a one-sentence `reasoning_content`.
///
/// **Usage and ids.** prompt_tokens = ⌈bytes / 4⌉ of the messages JSON plus each tool's name,
/// description and parameters JSON; completion_tokens = ⌈bytes / 4⌉ of content + tool-call names and
/// arguments + reasoning; reasoning_tokens = ⌈bytes / 4⌉ of the reasoning (nil without reasoning);
/// every count at least 1. `model` is `request.model`; `id` is `mock-<16 hex digits of the key>`.
public struct MockModel: Sendable {
    public enum Role: String, Sendable, CaseIterable {
        case agent, user, judge
    }

    public enum JudgeFormat: String, Sendable, CaseIterable {
        case correctIncorrect = "correct_incorrect"
        case abc
        case yesNo = "yes_no"
        case json
    }

    public struct Settings: Sendable, Equatable {
        public var seed: Int
        /// The simulator's own messages after which it ends the dialogue.
        public var userTurns: Int
        /// Probability that the simulator ends with `###TRANSFER###` instead of `###STOP###`.
        public var transferRate: Double
        /// Probability that the simulator ends with `###OUT-OF-SCOPE###`.
        public var outOfScopeRate: Double
        public var judgeFormat: JudgeFormat
        /// Fraction of distinct judge requests that pass.
        public var judgePassRate: Double
        /// Also emit `reasoning_content`.
        public var reasoning: Bool

        public init(seed: Int = 0, userTurns: Int = 3, transferRate: Double = 0, outOfScopeRate: Double = 0,
                    judgeFormat: JudgeFormat = .correctIncorrect, judgePassRate: Double = 0.5, reasoning: Bool = false) {
            self.seed = seed
            self.userTurns = userTurns
            self.transferRate = transferRate
            self.outOfScopeRate = outOfScopeRate
            self.judgeFormat = judgeFormat
            self.judgePassRate = judgePassRate
            self.reasoning = reasoning
        }

        /// The keys read from a registry entry (snake_case; the camelCase spellings are accepted too).
        public static let keys = ["seed", "user_turns", "transfer_rate", "out_of_scope_rate", "judge_format", "judge_pass_rate", "reasoning"]

        /// Reads the registry entry's settings; unknown keys are ignored, wrong values are errors.
        public init(_ object: JSONObject) throws(MockModelError) {
            self.init()
            func value(_ key: String) -> JSONValue? {
                if let v = object[key], !v.isNull { return v }
                let camel = Self.camelCase(key)
                if let v = object[camel], !v.isNull { return v }
                return nil
            }
            func number(_ key: String) throws(MockModelError) -> Double? {
                guard let v = value(key) else { return nil }
                switch v {
                case .number(let n): if let d = Double(n) { return d }
                case .string(let s): if let d = Double(s.trimmingCharacters(in: .whitespaces)) { return d }
                default: break
                }
                throw MockModelError(key: key, reason: "expected a number, found \(v.jsonText)")
            }
            func integer(_ key: String) throws(MockModelError) -> Int? {
                guard let d = try number(key) else { return nil }
                guard d == d.rounded(), abs(d) < 9e15 else { throw MockModelError(key: key, reason: "expected an integer, found \(value(key)!.jsonText)") }
                return Int(d)
            }
            func rate(_ key: String) throws(MockModelError) -> Double? {
                guard let d = try number(key) else { return nil }
                guard d >= 0 && d <= 1 else { throw MockModelError(key: key, reason: "expected a probability between 0 and 1, found \(value(key)!.jsonText)") }
                return d
            }
            if let s = try integer("seed") { seed = s }
            if let t = try integer("user_turns") {
                guard t >= 0 else { throw MockModelError(key: "user_turns", reason: "expected 0 or more, found \(t)") }
                userTurns = t
            }
            if let r = try rate("transfer_rate") { transferRate = r }
            if let r = try rate("out_of_scope_rate") { outOfScopeRate = r }
            if transferRate + outOfScopeRate > 1 + 1e-9 {
                throw MockModelError(key: "out_of_scope_rate", reason: "transfer_rate + out_of_scope_rate must be at most 1")
            }
            if let r = try rate("judge_pass_rate") { judgePassRate = r }
            if let v = value("judge_format") {
                guard let text = v.stringValue, let f = JudgeFormat(rawValue: text) else {
                    throw MockModelError(key: "judge_format", reason: "expected one of \(JudgeFormat.allCases.map(\.rawValue).joined(separator: ", ")), found \(v.jsonText)")
                }
                judgeFormat = f
            }
            if let v = value("reasoning") {
                switch v {
                case .bool(let b): reasoning = b
                case .string(let s) where ["true", "false"].contains(s.lowercased()): reasoning = s.lowercased() == "true"
                default: throw MockModelError(key: "reasoning", reason: "expected true or false, found \(v.jsonText)")
                }
            }
        }

        static func camelCase(_ key: String) -> String {
            let parts = key.split(separator: "_")
            guard let first = parts.first else { return key }
            return String(first) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        }
    }

    public var role: Role
    public var settings: Settings

    public init(role: Role = .agent, settings: Settings = .init()) {
        self.role = role
        self.settings = settings
    }

    /// The role from a registry `mode` (nil → agent) and the settings from the entry's other keys.
    public init(mode: String?, settings: JSONObject) throws(MockModelError) {
        let role: Role
        if let mode {
            guard let r = Role(rawValue: mode) else {
                throw MockModelError(key: "mode", reason: "a mock model's mode is agent, user or judge, found \"\(mode)\"")
            }
            role = r
        } else {
            role = .agent
        }
        self.init(role: role, settings: try Settings(settings))
    }

    public init(entry: ModelEntry) throws(MockModelError) {
        try self.init(mode: entry.mode, settings: entry.settings)
    }

    // MARK: Responding

    public func respond(to request: ChatRequest) -> ChatResponse {
        let requestSeed = request.options.seed.map(String.init) ?? "-"
        // The key's text, "mock|seed=…|request_seed=…|" + the messages' JSON, built as bytes.
        var keyText = Array("mock|seed=\(settings.seed)|request_seed=\(requestSeed)|".utf8)
        let prefixCount = keyText.count
        JSONWriter.compact.write(.array(request.messages.map(MockWire.json)), into: &keyText)
        let key = UInt64(bitPattern: keyText.withUnsafeBytes { Hashing.contentHash($0) })
        let draws = MockDraws(key: key)
        var message: ChatMessage
        var finish = "stop"
        switch role {
        case .agent:
            (message, finish) = agentReply(request, draws)
        case .user:
            message = ChatMessage(role: "assistant", content: userReply(request, draws))
        case .judge:
            message = ChatMessage(role: "assistant", content: judgeReply(draws))
        }
        if settings.reasoning || request.options.thinking?.enabled == true {
            message.reasoningContent = reasoning(for: message, request: request)
        }
        var promptBytes = keyText.count - prefixCount
        var scratch: [UInt8] = []
        for tool in request.tools {
            scratch.removeAll(keepingCapacity: true)
            JSONWriter.compact.write(tool.parameters, into: &scratch)
            promptBytes += tool.name.utf8.count + (tool.description?.utf8.count ?? 0) + scratch.count
        }
        let reasoningBytes = message.reasoningContent?.utf8.count ?? 0
        var completionBytes = (message.content?.utf8.count ?? 0) + reasoningBytes
        for call in message.toolCalls { completionBytes += call.name.utf8.count + call.arguments.utf8.count }
        let usage = TokenUsage(promptTokens: Self.tokens(promptBytes), completionTokens: Self.tokens(completionBytes),
                               reasoningTokens: message.reasoningContent == nil ? nil : Self.tokens(reasoningBytes))
        return ChatResponse(message: message, finishReason: finish, usage: usage, id: "mock-" + Self.hex16(key), model: request.model)
    }

    static func tokens(_ bytes: Int) -> Int { max(1, (bytes + 3) / 4) }

    static func hex16(_ v: UInt64) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    // MARK: Agent

    static let toolClosings = ["Is there anything else I can help you with?", "Let me know if you need anything else.",
                               "Would you like me to do anything more?", "Does that answer your question?"]
    static let plainReplies = ["I can help with that.", "Let me look into that for you.",
                               "Thanks for the details; here is what I can tell you.", "Understood; I will take care of it."]

    private func agentReply(_ request: ChatRequest, _ draws: MockDraws) -> (ChatMessage, String) {
        let messages = request.messages
        let turnStart = (messages.lastIndex { $0.role == "user" }).map { $0 + 1 } ?? 0
        let latestToolResult = messages[turnStart...].last { $0.role == "tool" }
        let choice = request.options.toolChoice
        let forcedName = choice?["function"]?["name"]?.stringValue ?? choice?["name"]?.stringValue
        let forced = choice?.stringValue == "required" || forcedName != nil
        let mayCall = !request.tools.isEmpty && choice?.stringValue != "none"
        if mayCall && (forced || latestToolResult == nil) {
            let tool = request.tools.first { $0.name == forcedName }
                ?? request.tools[Int(draws.value("tool") % UInt64(request.tools.count))]
            // A schema written as a JSON string (as one labeler did) is read first.
            let schema = tool.parameters.stringValue.flatMap { try? JSONParser.parse($0) } ?? tool.parameters
            var arguments = SchemaSampler(seed: draws.value("arguments")).sample(schema)
            if arguments.objectValue == nil { arguments = .object(JSONObject()) }
            let previousCalls = messages.reduce(0) { $0 + $1.toolCalls.count }
            let call = ToolCall(id: "call_mock_\(previousCalls + 1)", name: tool.name, arguments: arguments.jsonText)
            return (ChatMessage(role: "assistant", content: nil, toolCalls: [call]), "tool_calls")
        }
        let text: String
        if let result = latestToolResult {
            let toolName = result.name ?? result.toolCallID.flatMap { id in
                messages.lazy.flatMap(\.toolCalls).last { $0.id == id }?.name
            } ?? "the tool"
            text = "I checked \(toolName): \"\(Self.excerpt(result.content ?? ""))\". \(draws.pick(Self.toolClosings, "closing"))"
        } else if let user = messages.last(where: { $0.role == "user" }) {
            text = "You said: \"\(Self.excerpt(user.content ?? ""))\". \(draws.pick(Self.plainReplies, "reply"))"
        } else {
            text = "Hello! How can I help you today?"
        }
        return (ChatMessage(role: "assistant", content: text), "stop")
    }

    /// The first 80 characters with whitespace runs collapsed, `…` when cut.
    public static func excerpt(_ text: String, limit: Int = 80) -> String {
        let collapsed = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return collapsed.count > limit ? String(collapsed.prefix(limit)) + "…" : collapsed
    }

    // MARK: User simulator

    public static let stopClosing = "Thank you, that's everything I needed. ###STOP###"
    public static let transferClosing = "I'd like to talk to a human agent, please. ###TRANSFER###"
    public static let outOfScopeClosing = "I'm sorry, I don't have that information. ###OUT-OF-SCOPE###"
    static let followUps = ["Thanks. Could you tell me a bit more about that?", "I see. What is the next step?",
                            "Okay. Can you double-check that for me?", "Got it. Is there anything else I need to do?",
                            "Thanks for explaining. How long will that take?", "Understood. Could you confirm the details once more?"]
    static let requestLabels = ["your goal:", "reason for call:", "you are a user who needs help with:", "task instructions:", "instructions:"]

    private func userReply(_ request: ChatRequest, _ draws: MockDraws) -> String {
        let own = request.messages.filter { $0.role == "assistant" }.count
        if own >= settings.userTurns {
            let d = draws.fraction("end")
            if d < settings.transferRate { return Self.transferClosing }
            if d < settings.transferRate + settings.outOfScopeRate { return Self.outOfScopeClosing }
            return Self.stopClosing
        }
        if own == 0 {
            let system = request.messages.first { $0.role == "system" }?.content ?? ""
            return Self.opening(fromSystemPrompt: system)
        }
        return draws.pick(Self.followUps, "follow-up")
    }

    /// The simulator's first message, built from its system prompt's scenario.
    public static func opening(fromSystemPrompt system: String) -> String {
        var scenario = Substring(system)
        if let open = system.range(of: "<scenario>"), let close = system.range(of: "</scenario>", range: open.upperBound..<system.endIndex) {
            scenario = system[open.upperBound..<close.lowerBound]
        }
        let lines = scenario.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !lines.isEmpty else { return "Hi, I need some help, please." }
        for label in requestLabels {
            guard let i = lines.firstIndex(where: { $0.lowercased().hasPrefix(label) }) else { continue }
            var rest = lines[i].dropFirst(label.count).trimmingCharacters(in: .whitespaces)
            if rest.isEmpty, i + 1 < lines.count { rest = lines[i + 1] }
            if !rest.isEmpty { return "Hi, I need some help. " + excerpt(rest, limit: 200) }
        }
        if let line = lines.first(where: { !$0.hasPrefix("#") }) {
            return "Hi, I need some help. " + excerpt(line, limit: 200)
        }
        return "Hi, I need some help, please."
    }

    // MARK: Judge

    private func judgeReply(_ draws: MockDraws) -> String {
        let pass = draws.fraction("judge") < settings.judgePassRate
        switch settings.judgeFormat {
        case .correctIncorrect: return pass ? "Correct" : "Incorrect"
        case .abc: return pass ? "A" : (draws.value("abc") % 4 == 0 ? "C" : "B")
        case .yesNo: return pass ? "correct: yes" : "correct: no"
        case .json: return pass ? #"{"correct": true}"# : #"{"correct": false}"#
        }
    }

    // MARK: Reasoning

    private func reasoning(for message: ChatMessage, request: ChatRequest) -> String {
        switch role {
        case .agent:
            if let call = message.toolCalls.first { return "To help with this request I will call \(call.name) first." }
            if message.content?.hasPrefix("I checked ") == true { return "I have the tool result; I will summarize it for the user." }
            return "I can answer the user directly."
        case .user:
            return "I am the user; I reply according to my scenario."
        case .judge:
            return "I compare the response with the reference answer and give a verdict."
        }
    }
}

/// A bad `mock` setting in the model registry.
public struct MockModelError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(key): \(reason)" }
}

/// Independent draws from the request key, one per purpose.
private struct MockDraws {
    let key: UInt64

    func value(_ purpose: String) -> UInt64 {
        var rng = MockSplitMix(seed: key ^ UInt64(bitPattern: Hashing.contentHash(purpose)))
        return rng.next()
    }

    /// Uniform in [0, 1).
    func fraction(_ purpose: String) -> Double { Double(value(purpose) >> 11) * 0x1.0p-53 }

    func pick(_ options: [String], _ purpose: String) -> String {
        options[Int(value(purpose) % UInt64(options.count))]
    }
}

/// The messages in the OpenAI shape, for the request key and the prompt size.
private enum MockWire {
    static func json(_ m: ChatMessage) -> JSONValue { m.openAIJSON }
}
