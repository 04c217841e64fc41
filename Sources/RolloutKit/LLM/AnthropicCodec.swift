/// The Anthropic Messages wire format (`POST /v1/messages`): the canonical OpenAI-shaped
/// conversation translated to content blocks and back. Pure functions; no I/O.
public enum AnthropicCodec {
    /// `max_tokens` when the request sets neither `maxTokens` nor `maxCompletionTokens`
    /// (Anthropic requires the field).
    public static let defaultMaxTokens = 4096
    /// `budget_tokens` when thinking is on without a budget (Anthropic's minimum).
    public static let defaultThinkingBudget = 1024

    // MARK: - Request

    /// The request body, keys in a fixed order: model, max_tokens, system, messages, tools,
    /// tool_choice, temperature, top_p, stop_sequences, thinking, then `extraBody` merged over.
    ///
    /// - System messages (wherever they are) are joined with a blank line into top-level `system`.
    /// - Consecutive tool messages become one `user` message of `tool_result` blocks
    ///   (`tool_use_id`, `content`, and `is_error: true` when `extra["is_error"] == true`).
    /// - An assistant message becomes blocks: its thinking first, then `text`, then `tool_use`.
    ///   Thinking is sent back only with its signature (`extra["thinking_signature"]`): Anthropic
    ///   rejects unsigned thinking blocks, so reasoning without one (from another provider) is
    ///   dropped. Several thinking blocks read from one reply (`extra["thinking_blocks"]`) are sent
    ///   back verbatim; `extra["redacted_thinking"]` data become `redacted_thinking` blocks.
    ///   `tool_use.input` is the parsed arguments object; arguments that are not a JSON object (a
    ///   model's malformed JSON, kept raw in the store) are sent as `{}` so the conversation can
    ///   go on. An assistant message with nothing to send is left out (Anthropic rejects empty
    ///   content; the neighbouring user turns are then combined by the API).
    /// - `max_tokens` is `maxTokens ?? maxCompletionTokens ?? 4096`; when neither is set and the
    ///   thinking budget is 4096 or more, the default becomes budget + 4096, since Anthropic
    ///   requires `max_tokens` > `budget_tokens`.
    /// - `tool_choice` "auto" → `{"type":"auto"}`, "required" → `{"type":"any"}`, "none" →
    ///   `{"type":"none"}`, a named function → `{"type":"tool","name":…}`;
    ///   `parallelToolCalls == false` adds `disable_parallel_tool_use: true`. Neither is sent
    ///   without tools. `seed` and `responseFormat` have no Anthropic equivalent and are not sent.
    public static func body(for request: ChatRequest) -> JSONValue {
        let options = request.options
        var body = JSONObject()
        body["model"] = .string(request.model)
        let budget = options.thinking.flatMap { $0.enabled ? ($0.budgetTokens ?? defaultThinkingBudget) : nil }
        let fallback = budget.map { $0 >= defaultMaxTokens ? $0 + defaultMaxTokens : defaultMaxTokens } ?? defaultMaxTokens
        body["max_tokens"] = JSONValue(options.maxTokens ?? options.maxCompletionTokens ?? fallback)
        let system = request.messages.filter { $0.role == "system" }.compactMap(\.content)
        if !system.isEmpty { body["system"] = .string(system.joined(separator: "\n\n")) }
        body["messages"] = .array(messages(request.messages))
        if !request.tools.isEmpty {
            body["tools"] = .array(request.tools.map { t in
                var o = JSONObject()
                o["name"] = .string(t.name)
                if let d = t.description { o["description"] = .string(d) }
                o["input_schema"] = t.parameters
                return .object(o)
            })
            var choice = options.toolChoice.flatMap(toolChoice)
            if options.parallelToolCalls == false {
                var c = choice ?? ["type": "auto"]
                if c["type"] != "none" { c["disable_parallel_tool_use"] = true }
                choice = c
            }
            if let choice { body["tool_choice"] = .object(choice) }
        }
        if let v = options.temperature { body["temperature"] = JSONValue(v) }
        if let v = options.topP { body["top_p"] = JSONValue(v) }
        if let v = options.stop { body["stop_sequences"] = .array(v.map { .string($0) }) }
        if let budget { body["thinking"] = .object(["type": "enabled", "budget_tokens": JSONValue(budget)]) }
        OpenAICodec.merge(options.extraBody, into: &body)
        return .object(body)
    }

    /// The Anthropic `tool_choice` for a canonical one; nil for a value it cannot express.
    static func toolChoice(_ v: JSONValue) -> JSONObject? {
        switch v {
        case .string("auto"): return ["type": "auto"]
        case .string("required"), .string("any"): return ["type": "any"]
        case .string("none"): return ["type": "none"]
        case .object(let o):
            let type = o["type"]?.stringValue
            if type == nil || type == "function", let name = OpenAICodec.toolChoiceName(o) {
                return ["type": "tool", "name": .string(name)]
            }
            return type == nil ? nil : o  // already Anthropic's shape
        default:
            return nil
        }
    }

    static func messages(_ messages: [ChatMessage]) -> [JSONValue] {
        let ids = ConversationIDs(messages)
        var out: [JSONValue] = []
        var results: [JSONValue] = []
        func flushResults() {
            if !results.isEmpty { out.append(.object(["role": "user", "content": .array(results)])) }
            results = []
        }
        for (index, m) in messages.enumerated() {
            switch m.role {
            case "system":
                continue
            case "tool":
                var block: JSONObject = ["type": "tool_result", "tool_use_id": .string(ids.resultIDs[index] ?? "")]
                block["content"] = .string(m.content ?? "")
                if m.extra?["is_error"] == true { block["is_error"] = true }
                results.append(.object(block))
            case "assistant":
                flushResults()
                let blocks = assistantBlocks(m, callIDs: ids.callIDs[index] ?? [])
                if !blocks.isEmpty { out.append(.object(["role": "assistant", "content": .array(blocks)])) }
            default:
                flushResults()
                out.append(.object(["role": .string(m.role), "content": .string(m.content ?? "")]))
            }
        }
        flushResults()
        return out
    }

    static func assistantBlocks(_ m: ChatMessage, callIDs: [String]) -> [JSONValue] {
        var blocks: [JSONValue] = []
        if case .array(let saved)? = m.extra?["thinking_blocks"] {
            blocks += saved
        } else {
            if let thinking = m.reasoningContent, !thinking.isEmpty,
               let signature = m.extra?["thinking_signature"]?.stringValue, !signature.isEmpty {
                blocks.append(.object(["type": "thinking", "thinking": .string(thinking), "signature": .string(signature)]))
            }
            if case .array(let redacted)? = m.extra?["redacted_thinking"] {
                for case .string(let data) in redacted {
                    blocks.append(.object(["type": "redacted_thinking", "data": .string(data)]))
                }
            }
        }
        if let text = m.content, !text.isEmpty { blocks.append(.object(["type": "text", "text": .string(text)])) }
        for (i, call) in m.toolCalls.enumerated() {
            var input = JSONValue.object([:])
            if let parsed = try? JSONParser.parse(call.arguments), case .object = parsed { input = parsed }
            blocks.append(.object(["type": "tool_use", "id": .string(callIDs[i]), "name": .string(call.name), "input": input]))
        }
        return blocks
    }

    // MARK: - Response

    /// Decodes a Messages response: `text` blocks joined into `content`; `thinking` blocks into
    /// `reasoningContent` (joined with a blank line) with the first signature in
    /// `extra["thinking_signature"]`; `redacted_thinking` data in `extra["redacted_thinking"]`;
    /// when there is more than one thinking or redacted block, all of them verbatim in
    /// `extra["thinking_blocks"]` (sent back as they were); `tool_use` blocks as tool calls whose
    /// arguments are the compact JSON text of `input`; other block types kept in
    /// `extra["other_blocks"]`. `stop_reason` is the finish reason as sent ("end_turn",
    /// "tool_use", "max_tokens", …). Usage: `input_tokens` → promptTokens (Anthropic counts cached
    /// tokens apart, so this excludes them), `output_tokens`, `cache_read_input_tokens` →
    /// cachedTokens, `cache_creation_input_tokens` → cacheCreationTokens.
    ///
    /// `{"type":"error","error":{"type","message"}}` (or any non-2xx) throws `apiError`; a reply
    /// without a `content` list throws `missingChoices`.
    public static func decode(_ body: [UInt8], status: Int) throws(LLMError) -> ChatResponse {
        let root = try LLMWire.successObject(body, status: status)
        guard case .array(let blocks)? = root["content"] else {
            throw LLMError(.missingChoices, status: status,
                           message: "no `content` list (keys: \(root.keys.joined(separator: ", ")))")
        }
        var texts: [String] = []
        var thoughts: [String] = []
        var signature: String?
        var redacted: [JSONValue] = []
        var thinkingBlocks: [JSONValue] = []
        var calls: [ToolCall] = []
        var others: [JSONValue] = []
        for block in blocks {
            switch block["type"]?.stringValue {
            case "text":
                texts.append(block["text"]?.stringValue ?? "")
            case "thinking":
                thoughts.append(block["thinking"]?.stringValue ?? "")
                if signature == nil, let s = block["signature"]?.stringValue, !s.isEmpty { signature = s }
                thinkingBlocks.append(block)
            case "redacted_thinking":
                if let data = block["data"] { redacted.append(data) }
                thinkingBlocks.append(block)
            case "tool_use":
                guard let name = block["name"]?.stringValue else {
                    throw LLMError(.unexpectedShape, status: status, message: "tool_use block \(calls.count) has no name")
                }
                let input = block["input"] ?? .object([:])
                calls.append(ToolCall(id: OpenAICodec.callID(block["id"], index: calls.count), name: name,
                                      arguments: input.isNull ? "{}" : input.jsonText))
            default:
                others.append(block)
            }
        }
        var extra = JSONObject()
        if let signature { extra["thinking_signature"] = .string(signature) }
        if !redacted.isEmpty { extra["redacted_thinking"] = .array(redacted) }
        if thinkingBlocks.count > 1 { extra["thinking_blocks"] = .array(thinkingBlocks) }
        if !others.isEmpty { extra["other_blocks"] = .array(others) }
        if let stop = root["stop_sequence"], !stop.isNull { extra["stop_sequence"] = stop }
        let message = ChatMessage(role: "assistant", content: texts.isEmpty ? nil : texts.joined(),
                                  reasoningContent: thoughts.isEmpty ? nil : thoughts.joined(separator: "\n\n"),
                                  toolCalls: calls, extra: extra.isEmpty ? nil : extra)
        let u = root["usage"]
        let usage = TokenUsage(promptTokens: LLMWire.int(u?["input_tokens"]),
                               completionTokens: LLMWire.int(u?["output_tokens"]),
                               cachedTokens: LLMWire.int(u?["cache_read_input_tokens"]),
                               cacheCreationTokens: LLMWire.int(u?["cache_creation_input_tokens"]))
        return ChatResponse(message: message, finishReason: root["stop_reason"]?.stringValue, usage: usage,
                            id: root["id"]?.stringValue, model: root["model"]?.stringValue)
    }
}
