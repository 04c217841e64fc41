/// How a server wants to be told to think (or not). The OpenAI request body has no common field
/// for it, so each model registry entry names the style its server understands.
public enum ThinkingStyle: String, Sendable, CaseIterable {
    /// The server has no switch: `options.thinking` is not sent.
    case none
    /// vLLM, SGLang and Qwen templates: `"chat_template_kwargs": {"enable_thinking": true|false}`.
    case chatTemplateKwargs = "chat_template_kwargs"
    /// OpenAI reasoning models: `"reasoning_effort": "low" | "medium" | "high"` (see
    /// `OpenAICodec.reasoningEffort(budgetTokens:)`).
    case reasoningEffort = "reasoning_effort"
}

/// The OpenAI chat-completions wire format (`POST /v1/chat/completions`), spoken by OpenAI and by
/// compatible servers (vLLM, SGLang, llama.cpp, DeepSeek, OpenRouter, …). Pure functions from
/// `ChatRequest` to a JSON body and from response bytes to `ChatResponse`; no I/O.
public enum OpenAICodec {
    // MARK: - Request

    /// The request body. Keys come in a fixed order (model, messages, tools, temperature, top_p,
    /// max_tokens, max_completion_tokens, tool_choice, parallel_tool_calls, stop, seed,
    /// response_format, the thinking switch, stream, stream_options, then `extraBody`), so equal
    /// requests give byte-identical bodies and stable hashes. Options that are nil are not sent;
    /// `tool_choice` and `parallel_tool_calls` are not sent without tools (OpenAI rejects them).
    ///
    /// Messages: assistant tool calls as `{"id","type":"function","function":{"name","arguments"}}`
    /// with `"content": null` when the text is empty; `reasoning_content` sent back on assistant
    /// messages that have it (DeepSeek and vLLM read it; others ignore it); tool results as
    /// `{"role":"tool","tool_call_id","content"}` (their `name` is not sent: the API has no such
    /// field). Missing ids are filled in deterministically so calls and results still pair up (see
    /// `ConversationIDs`). A user or system message read from a list of content parts is sent as
    /// those parts while its text still matches them.
    ///
    /// `extraBody` is merged last, replacing keys already set, except `chat_template_kwargs`,
    /// whose members are merged so other template switches can sit beside `enable_thinking`.
    public static func body(for request: ChatRequest, thinkingStyle: ThinkingStyle, stream: Bool = false) -> JSONValue {
        let options = request.options
        var body = JSONObject()
        body["model"] = .string(request.model)
        let ids = ConversationIDs(request.messages)
        body["messages"] = .array(request.messages.indices.map { message(request.messages[$0], at: $0, ids: ids) })
        if !request.tools.isEmpty { body["tools"] = .array(request.tools.map(tool)) }
        if let v = options.temperature { body["temperature"] = JSONValue(v) }
        if let v = options.topP { body["top_p"] = JSONValue(v) }
        if let v = options.maxTokens { body["max_tokens"] = JSONValue(v) }
        if let v = options.maxCompletionTokens { body["max_completion_tokens"] = JSONValue(v) }
        if !request.tools.isEmpty {
            if let v = options.toolChoice { body["tool_choice"] = toolChoice(v) }
            if let v = options.parallelToolCalls { body["parallel_tool_calls"] = .bool(v) }
        }
        if let v = options.stop { body["stop"] = .array(v.map { .string($0) }) }
        if let v = options.seed { body["seed"] = JSONValue(v) }
        if let v = options.responseFormat { body["response_format"] = v }
        if let thinking = options.thinking {
            switch thinkingStyle {
            case .none:
                break
            case .chatTemplateKwargs:
                body["chat_template_kwargs"] = .object(["enable_thinking": .bool(thinking.enabled)])
            case .reasoningEffort:
                if thinking.enabled { body["reasoning_effort"] = .string(reasoningEffort(budgetTokens: thinking.budgetTokens)) }
            }
        }
        if stream {
            body["stream"] = true
            body["stream_options"] = .object(["include_usage": true])
        }
        merge(options.extraBody, into: &body, mergingMembersOf: ["chat_template_kwargs"])
        return .object(body)
    }

    /// The `reasoning_effort` for a thinking budget: up to 4,096 tokens "low", up to 16,384
    /// "medium", more "high"; no budget "medium" (OpenAI's default). The bounds sit between the
    /// budgets common proxies give the three levels (about 4K / 10–16K / 20–32K). Thinking that is
    /// switched off sends no effort at all: o-series models cannot turn reasoning off, and newer
    /// values ("minimal", "none") are per model, so send those through `extraBody`.
    public static func reasoningEffort(budgetTokens: Int?) -> String {
        guard let budget = budgetTokens else { return "medium" }
        if budget <= 4096 { return "low" }
        if budget <= 16384 { return "medium" }
        return "high"
    }

    static func message(_ m: ChatMessage, at index: Int, ids: ConversationIDs) -> JSONValue {
        var o = JSONObject()
        o["role"] = .string(m.role)
        switch m.role {
        case "assistant":
            let calls = ids.callIDs[index] ?? []
            if let content = m.content, !(content.isEmpty && !m.toolCalls.isEmpty) {
                o["content"] = .string(content)
            } else {
                o["content"] = .null
            }
            if let reasoning = m.reasoningContent, !reasoning.isEmpty { o["reasoning_content"] = .string(reasoning) }
            if !m.toolCalls.isEmpty {
                o["tool_calls"] = .array(m.toolCalls.indices.map { i in
                    .object([
                        "id": .string(calls[i]),
                        "type": "function",
                        "function": .object(["name": .string(m.toolCalls[i].name), "arguments": .string(m.toolCalls[i].arguments)]),
                    ])
                })
            }
            if let name = m.name { o["name"] = .string(name) }
        case "tool":
            o["tool_call_id"] = .string(ids.resultIDs[index] ?? "")
            o["content"] = contentValue(m)
        default:
            o["content"] = contentValue(m)
            if let name = m.name { o["name"] = .string(name) }
        }
        return .object(o)
    }

    /// The text, or the original list of content parts when the message was read from one and
    /// its text still matches them (so images and other parts survive a round trip).
    private static func contentValue(_ m: ChatMessage) -> JSONValue {
        if case .array(let parts)? = m.extra?["content"],
           parts.compactMap({ $0["text"]?.stringValue }).joined() == (m.content ?? "") {
            return .array(parts)
        }
        return .string(m.content ?? "")
    }

    static func tool(_ t: ToolSpecification) -> JSONValue {
        var function = JSONObject()
        function["name"] = .string(t.name)
        if let d = t.description { function["description"] = .string(d) }
        function["parameters"] = t.parameters
        if let s = t.strict { function["strict"] = .bool(s) }
        return .object(["type": "function", "function": .object(function)])
    }

    /// "auto" / "none" / "required" as they are; `{"name": X}` or `{"function": {"name": X}}`
    /// as OpenAI's `{"type":"function","function":{"name":X}}`; anything else unchanged.
    static func toolChoice(_ v: JSONValue) -> JSONValue {
        guard case .object(let o) = v, o["type"] == nil, let name = toolChoiceName(o) else { return v }
        return .object(["type": "function", "function": .object(["name": .string(name)])])
    }

    /// The function a tool-choice object names, in OpenAI (`function.name`) or bare (`name`) form.
    static func toolChoiceName(_ o: JSONObject) -> String? {
        o["function"]?["name"]?.stringValue ?? o["name"]?.stringValue
    }

    /// Sets every key of `extra` on `body` (an existing key keeps its place), merging the members of
    /// the keys in `mergingMembersOf` when both sides are objects.
    static func merge(_ extra: JSONObject?, into body: inout JSONObject, mergingMembersOf deep: Set<String> = []) {
        guard let extra else { return }
        for (key, value) in extra {
            if deep.contains(key), case .object(var inner)? = body[key], case .object(let more) = value {
                for (k, v) in more { inner[k] = v }
                body[key] = .object(inner)
            } else {
                body[key] = value
            }
        }
    }

    // MARK: - Response

    /// Decodes a complete (non-streamed) response body. Tolerates what real servers send: tool-call
    /// ids of any form, missing ids (`call_<index>` is generated), `finish_reason` values of any
    /// kind (kept as sent, e.g. "length" beside tool calls), extra fields (`timings`), `content: ""`
    /// beside tool calls (read as nil), reasoning as `reasoning_content` (DeepSeek, vLLM) or
    /// `reasoning`, arguments that are not valid JSON (kept as the raw string), content as a list
    /// of parts (text joined, parts kept in `extra["content"]`). Unmodelled message fields that
    /// are not null or empty are kept in `message.extra`.
    ///
    /// Throws `apiError` for a non-2xx status or an `error` object (even beside HTTP 200),
    /// `htmlErrorPage`, `emptyBody`, `invalidUTF8`, `truncatedBody`, `invalidJSON`,
    /// `missingChoices`, or `unexpectedShape`.
    public static func decode(_ body: [UInt8], status: Int) throws(LLMError) -> ChatResponse {
        let root = try LLMWire.successObject(body, status: status)
        guard case .array(let choices)? = root["choices"], !choices.isEmpty else {
            let what = root["choices"].map { $0 == .array([]) ? "an empty `choices` list" : "`choices` of type \($0.typeName)" }
                ?? "no `choices`"
            throw LLMError(.missingChoices, status: status, message: "\(what) (keys: \(root.keys.joined(separator: ", ")))")
        }
        let choice = choices.first { LLMWire.int($0["index"]) == 0 } ?? choices[0]
        guard case .object(let message)? = choice["message"] else {
            throw LLMError(.unexpectedShape, status: status, message: "choice has no `message` object")
        }
        return ChatResponse(message: try assistantMessage(message, status: status),
                            finishReason: choice["finish_reason"]?.stringValue,
                            usage: usage(root["usage"]),
                            id: root["id"]?.stringValue, model: root["model"]?.stringValue)
    }

    static func assistantMessage(_ m: JSONObject, status: Int?) throws(LLMError) -> ChatMessage {
        var extra = JSONObject()
        var modelled: Set<String> = ["role", "content", "reasoning_content", "tool_calls"]
        guard let (text, parts) = ChatMessage.content(m["content"]) else {
            throw LLMError(.unexpectedShape, status: status, message: "message content is a \(m["content"]!.typeName)")
        }
        var content = text
        if let parts { extra["content"] = parts }
        var reasoning = m["reasoning_content"]?.stringValue
        if let r = m["reasoning"]?.stringValue, reasoning == nil || reasoning == r {
            reasoning = r
            modelled.insert("reasoning")
        }
        var calls: [ToolCall] = []
        switch m["tool_calls"] {
        case .array(let list)?:
            for (i, item) in list.enumerated() { calls.append(try toolCall(item, index: i, status: status)) }
        case nil, .null?:
            // The deprecated single `function_call` of older servers.
            if case .object(let fn)? = m["function_call"], let name = fn["name"]?.stringValue {
                calls.append(ToolCall(id: "call_0", name: name, arguments: argumentsText(fn["arguments"])))
                modelled.insert("function_call")
            }
        case let other?:
            throw LLMError(.unexpectedShape, status: status, message: "`tool_calls` is a \(other.typeName)")
        }
        if content == "" && !calls.isEmpty { content = nil }
        for (k, v) in m where !modelled.contains(k) && !isEmptyValue(v) { extra[k] = v }
        return ChatMessage(role: "assistant", content: content, reasoningContent: reasoning, toolCalls: calls,
                           extra: extra.isEmpty ? nil : extra)
    }

    private static func toolCall(_ item: JSONValue, index: Int, status: Int?) throws(LLMError) -> ToolCall {
        guard case .object(let c) = item else {
            throw LLMError(.unexpectedShape, status: status, message: "tool call \(index) is a \(item.typeName)")
        }
        let arguments: String
        let name: String
        if let fn = c["function"]?.objectValue, let n = fn["name"]?.stringValue {
            name = n
            arguments = argumentsText(fn["arguments"])
        } else if let custom = c["custom"]?.objectValue, let n = custom["name"]?.stringValue {
            name = n
            arguments = custom["input"]?.stringValue ?? argumentsText(custom["input"])
        } else {
            throw LLMError(.unexpectedShape, status: status, message: "tool call \(index) has no function name")
        }
        return ToolCall(id: callID(c["id"], index: index), name: name, arguments: arguments)
    }

    /// The raw arguments: a string as sent (valid JSON or not), an object serialized, none as "{}".
    static func argumentsText(_ v: JSONValue?) -> String {
        switch v {
        case .string(let s)?: s
        case nil, .null?: "{}"
        case let other?: other.jsonText
        }
    }

    /// The id as sent (any form: `call_…`, llama.cpp's random 32 characters, a number), or
    /// `call_<index>` when there is none.
    static func callID(_ v: JSONValue?, index: Int) -> String {
        if let text = v?.scalarText, !text.isEmpty { return text }
        return "call_\(index)"
    }

    /// The text without leading and trailing ASCII spaces, tabs, CRs and LFs.
    private static func trimmedASCII(_ text: String) -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return text[first...last]
    }

    private static func isEmptyValue(_ v: JSONValue) -> Bool {
        switch v {
        case .null: true
        case .array(let a): a.isEmpty
        case .object(let o): o.isEmpty
        default: false
        }
    }

    /// OpenAI usage; DeepSeek's `prompt_cache_hit_tokens` stands in for `cached_tokens`.
    static func usage(_ u: JSONValue?) -> TokenUsage {
        guard case .object(let o)? = u else { return TokenUsage() }
        return TokenUsage(promptTokens: LLMWire.int(o["prompt_tokens"]),
                          completionTokens: LLMWire.int(o["completion_tokens"]),
                          reasoningTokens: LLMWire.int(o["completion_tokens_details"]?["reasoning_tokens"]),
                          cachedTokens: LLMWire.int(o["prompt_tokens_details"]?["cached_tokens"])
                              ?? LLMWire.int(o["prompt_cache_hit_tokens"]))
    }

    // MARK: - Streaming

    /// Assembles the full response from a complete `text/event-stream` body (`data: {chunk}` events
    /// ending with `data: [DONE]`): content and reasoning deltas concatenated, tool-call deltas
    /// merged by `index` (id, type and name from the first delta that has them, arguments
    /// concatenated), the last `finish_reason`, and the usage chunk (`stream_options.include_usage`).
    /// Only choice 0 is assembled. A stream with neither `[DONE]` nor a `finish_reason` is
    /// `truncatedBody`; an `error` event or chunk is `apiError` (no HTTP status: the stream had
    /// already begun with 200). A body with no events at all is decoded as a plain response (a
    /// server that ignored `stream: true`, or an error body).
    public static func decodeStream(_ sse: [UInt8]) throws(LLMError) -> ChatResponse {
        let events = SSEParser.events(sse)
        if events.isEmpty { return try decode(sse, status: 200) }

        struct PartialCall { var id: String?; var name: String?; var arguments = "" }
        var content = ""
        var sawContent = false
        var reasoning = ""
        var calls: [Int: PartialCall] = [:]
        var finishReason: String?
        var usage = TokenUsage()
        var id: String?
        var model: String?
        var sawChoice = false
        var done = false

        for (n, event) in events.enumerated() {
            let trimmed = trimmedASCII(event.text)
            if trimmed == "[DONE]" { done = true; break }
            if trimmed.isEmpty { continue }
            let value: JSONValue
            do {
                value = try LLMWire.parseBody(event.data, status: nil)
            } catch {
                if error.kind == .truncatedBody && n != events.count - 1 {
                    throw LLMError(.invalidJSON, message: "event \(n + 1) is not complete JSON: \(LLMWire.excerpt(event.text))")
                }
                throw error
            }
            if let error = LLMWire.apiError(in: value, status: nil) { throw error }
            if event.event == "error" {
                throw LLMError(.apiError, message: value["message"]?.stringValue ?? LLMWire.excerpt(value.jsonText))
            }
            guard case .object(let chunk) = value else {
                throw LLMError(.unexpectedShape, message: "event \(n + 1) is a \(value.typeName), not a chunk object")
            }
            if id == nil { id = chunk["id"]?.stringValue }
            if model == nil { model = chunk["model"]?.stringValue }
            if case .object? = chunk["usage"] { usage = Self.usage(chunk["usage"]) }
            guard case .array(let choices)? = chunk["choices"] else { continue }
            for choice in choices where (LLMWire.int(choice["index"]) ?? 0) == 0 {
                sawChoice = true
                if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
                guard case .object(let delta)? = choice["delta"] else { continue }
                if let s = delta["content"]?.stringValue { content += s; sawContent = true }
                if let s = delta["reasoning_content"]?.stringValue ?? delta["reasoning"]?.stringValue { reasoning += s }
                guard case .array(let deltas)? = delta["tool_calls"] else { continue }
                for (position, d) in deltas.enumerated() {
                    let index = LLMWire.int(d["index"]) ?? position
                    var call = calls[index] ?? PartialCall()
                    if call.id == nil, let s = d["id"]?.scalarText, !s.isEmpty { call.id = s }
                    if call.name == nil, let s = d["function"]?["name"]?.stringValue, !s.isEmpty { call.name = s }
                    switch d["function"]?["arguments"] {
                    case .string(let s)?: call.arguments += s
                    case nil, .null?: break
                    case let other?: call.arguments += other.jsonText
                    }
                    calls[index] = call
                }
            }
        }
        if !done && finishReason == nil {
            throw LLMError(.truncatedBody, message: "the stream ended after \(events.count) events without a finish_reason or [DONE]")
        }
        guard sawChoice else {
            throw LLMError(.missingChoices, message: "no chunk of the stream had a choice")
        }
        var toolCalls: [ToolCall] = []
        for (position, index) in calls.keys.sorted().enumerated() {
            let call = calls[index]!
            guard let name = call.name else {
                throw LLMError(.unexpectedShape, message: "streamed tool call \(index) has no function name")
            }
            toolCalls.append(ToolCall(id: call.id ?? "call_\(position)", name: name,
                                      arguments: call.arguments.isEmpty ? "{}" : call.arguments))
        }
        var text: String? = sawContent ? content : nil
        if text == "" && !toolCalls.isEmpty { text = nil }
        let message = ChatMessage(role: "assistant", content: text, reasoningContent: reasoning.isEmpty ? nil : reasoning,
                                  toolCalls: toolCalls)
        return ChatResponse(message: message, finishReason: finishReason, usage: usage, id: id, model: model)
    }
}

/// Ids for every tool call and tool result of a conversation, so they pair up on the wire even
/// when the stored messages lack them: a call without an id gets `call_<message>_<call>`
/// (message and call positions); a tool result without `tool_call_id` takes the id of the call
/// at its own position among the results that follow the last assistant message.
struct ConversationIDs {
    /// Message index → ids of its tool calls, in order.
    var callIDs: [Int: [String]] = [:]
    /// Message index → the call id a tool message answers.
    var resultIDs: [Int: String] = [:]

    init(_ messages: [ChatMessage]) {
        var lastCalls: [String] = []
        var position = 0
        for (m, message) in messages.enumerated() {
            switch message.role {
            case "assistant":
                lastCalls = message.toolCalls.enumerated().map { i, call in
                    if let id = call.id, !id.isEmpty { return id }
                    return "call_\(m)_\(i)"
                }
                callIDs[m] = lastCalls
                position = 0
            case "tool":
                if let id = message.toolCallID, !id.isEmpty {
                    resultIDs[m] = id
                } else {
                    resultIDs[m] = position < lastCalls.count ? lastCalls[position] : "call_\(m)"
                }
                position += 1
            default:
                break
            }
        }
    }
}
