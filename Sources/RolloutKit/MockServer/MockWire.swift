import Foundation

/// The server side of the wire formats, for `rollout mock-server`: requests in, responses out.
/// (The client side lives in OpenAICodec / AnthropicCodec; the tests check the two agree.)
enum MockServerWire {
    /// Reads an OpenAI chat-completions request body. Returns the request and whether it asked
    /// for a stream.
    static func openAIRequest(_ body: JSONValue) throws -> (ChatRequest, stream: Bool) {
        let r = RecordReader(body)
        _ = try r.object()
        let model = try r.requiredString("model")
        let messages = try r.required("messages").array().map { try ChatMessage(reading: $0) }
        if messages.isEmpty { throw FieldError(field: "messages", reason: "must not be empty") }
        var tools: [ToolSpecification] = []
        if let list = r.child("tools"), !list.value.isNull {
            for t in try list.array() {
                let fn = try t.required("function")
                tools.append(ToolSpecification(name: try fn.requiredString("name"), description: try fn.optionalString("description"),
                                               parameters: fn.value["parameters"] ?? .object([:]),
                                               strict: fn.value["strict"]?.boolValue))
            }
        }
        var options = ChatOptions()
        options.temperature = body["temperature"]?.doubleValue
        options.topP = body["top_p"]?.doubleValue
        options.maxTokens = body["max_tokens"]?.doubleValue.map { Int($0) }
        options.maxCompletionTokens = body["max_completion_tokens"]?.doubleValue.map { Int($0) }
        options.toolChoice = body["tool_choice"]
        options.parallelToolCalls = body["parallel_tool_calls"]?.boolValue
        switch body["stop"] {
        case .string(let s)?: options.stop = [s]
        case .array(let a)?: options.stop = a.compactMap(\.stringValue)
        default: break
        }
        options.seed = body["seed"]?.doubleValue.map { Int($0) }
        options.responseFormat = body["response_format"]
        return (ChatRequest(model: model, messages: messages, tools: tools, options: options), body["stream"]?.boolValue == true)
    }

    /// An OpenAI chat-completion response body.
    static func openAIResponse(_ response: ChatResponse, created: Int) -> JSONValue {
        var message = JSONObject()
        message["role"] = "assistant"
        message["content"] = response.message.content.map(JSONValue.string) ?? .null
        if let r = response.message.reasoningContent { message["reasoning_content"] = .string(r) }
        if !response.message.toolCalls.isEmpty {
            message["tool_calls"] = .array(response.message.toolCalls.map(toolCallJSON))
        }
        return .object([
            "id": .string(response.id ?? "chatcmpl-mock"),
            "object": "chat.completion",
            "created": JSONValue(created),
            "model": .string(response.model ?? "mock"),
            "choices": .array([.object(["index": JSONValue(0), "message": .object(message),
                                        "finish_reason": response.finishReason.map(JSONValue.string) ?? .null])]),
            "usage": usageJSON(response.usage),
        ])
    }

    /// The same response as server-sent events: role, content in pieces, tool calls, finish,
    /// then a usage chunk and `[DONE]` (what `stream_options.include_usage` asks for).
    static func openAIStream(_ response: ChatResponse, created: Int) -> [UInt8] {
        var out: [UInt8] = []
        func chunk(_ delta: JSONObject, finish: String? = nil, usage: Bool = false) {
            var o: JSONObject = ["id": .string(response.id ?? "chatcmpl-mock"), "object": "chat.completion.chunk",
                                 "created": JSONValue(created), "model": .string(response.model ?? "mock")]
            o["choices"] = usage ? .array([]) : .array([.object(["index": JSONValue(0), "delta": .object(delta),
                                                                  "finish_reason": finish.map(JSONValue.string) ?? .null])])
            if usage { o["usage"] = usageJSON(response.usage) }
            out += Array("data: \(JSONValue.object(o).jsonText)\n\n".utf8)
        }
        chunk(["role": "assistant", "content": ""])
        if let r = response.message.reasoningContent { chunk(["reasoning_content": .string(r)]) }
        if let content = response.message.content {
            var rest = Substring(content)
            while !rest.isEmpty {
                let piece = rest.prefix(16)
                chunk(["content": .string(String(piece))])
                rest = rest.dropFirst(piece.count)
            }
        }
        for (i, call) in response.message.toolCalls.enumerated() {
            chunk(["tool_calls": .array([.object(["index": JSONValue(i), "id": .string(call.id ?? "call_\(i)"), "type": "function",
                                                  "function": .object(["name": .string(call.name), "arguments": ""])])])])
            chunk(["tool_calls": .array([.object(["index": JSONValue(i), "function": .object(["arguments": .string(call.arguments)])])])])
        }
        chunk([:], finish: response.finishReason)
        chunk([:], usage: true)
        out += Array("data: [DONE]\n\n".utf8)
        return out
    }

    static func toolCallJSON(_ call: ToolCall) -> JSONValue {
        .object(["id": .string(call.id ?? "call_0"), "type": "function",
                 "function": .object(["name": .string(call.name), "arguments": .string(call.arguments)])])
    }

    static func usageJSON(_ u: TokenUsage) -> JSONValue {
        let prompt = u.promptTokens ?? 0, completion = u.completionTokens ?? 0
        return .object([
            "prompt_tokens": JSONValue(prompt), "completion_tokens": JSONValue(completion),
            "total_tokens": JSONValue(prompt + completion),
            "prompt_tokens_details": .object(["cached_tokens": JSONValue(u.cachedTokens ?? 0)]),
            "completion_tokens_details": .object(["reasoning_tokens": JSONValue(u.reasoningTokens ?? 0)]),
        ])
    }

    /// Reads an Anthropic Messages request into the canonical shape: `system` becomes a system
    /// message, `tool_use` blocks tool calls, `tool_result` blocks tool messages.
    static func anthropicRequest(_ body: JSONValue) throws -> ChatRequest {
        let r = RecordReader(body)
        _ = try r.object()
        let model = try r.requiredString("model")
        var messages: [ChatMessage] = []
        switch body["system"] {
        case .string(let s)?: messages.append(ChatMessage(role: "system", content: s))
        case .array(let blocks)?: messages.append(ChatMessage(role: "system", content: blocks.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")))
        default: break
        }
        for m in try r.required("messages").array() {
            let role = try m.requiredString("role")
            guard role == "user" || role == "assistant" else {
                throw FieldError(field: m.fieldPath("role"), reason: "expected user or assistant")
            }
            let content = try m.required("content")
            if case .string(let s) = content.value {
                messages.append(ChatMessage(role: role, content: s))
                continue
            }
            var texts: [String] = []
            var calls: [ToolCall] = []
            var reasoning: String?
            for block in try content.array() {
                switch block.value["type"]?.stringValue {
                case "text": texts.append(try block.requiredString("text"))
                case "thinking": reasoning = try block.optionalString("thinking")
                case "tool_use":
                    calls.append(ToolCall(id: try block.optionalString("id"), name: try block.requiredString("name"),
                                          arguments: (block.value["input"] ?? .object([:])).jsonText))
                case "tool_result":
                    let text: String
                    switch block.value["content"] {
                    case .string(let s)?: text = s
                    case .array(let parts)?: text = parts.compactMap { $0["text"]?.stringValue }.joined()
                    default: text = ""
                    }
                    messages.append(ChatMessage(role: "tool", content: text, toolCallID: try block.optionalString("tool_use_id")))
                default: break
                }
            }
            if !texts.isEmpty || !calls.isEmpty || reasoning != nil {
                messages.append(ChatMessage(role: role, content: texts.isEmpty ? nil : texts.joined(separator: "\n"),
                                            reasoningContent: reasoning, toolCalls: calls))
            }
        }
        var tools: [ToolSpecification] = []
        if let list = r.child("tools"), !list.value.isNull {
            for t in try list.array() {
                tools.append(ToolSpecification(name: try t.requiredString("name"), description: try t.optionalString("description"),
                                               parameters: t.value["input_schema"] ?? .object([:])))
            }
        }
        var options = ChatOptions()
        options.maxTokens = body["max_tokens"]?.doubleValue.map { Int($0) }
        options.temperature = body["temperature"]?.doubleValue
        switch body["tool_choice"]?["type"]?.stringValue {
        case "none"?: options.toolChoice = "none"
        case "any"?: options.toolChoice = "required"
        case "auto"?: options.toolChoice = "auto"
        default: break
        }
        if body["thinking"]?["type"]?.stringValue == "enabled" {
            options.thinking = .init(enabled: true, budgetTokens: body["thinking"]?["budget_tokens"]?.doubleValue.map { Int($0) })
        }
        return ChatRequest(model: model, messages: messages, tools: tools, options: options)
    }

    /// An Anthropic Messages response body.
    static func anthropicResponse(_ response: ChatResponse) -> JSONValue {
        var blocks: [JSONValue] = []
        if let r = response.message.reasoningContent {
            blocks.append(.object(["type": "thinking", "thinking": .string(r),
                                   "signature": .string("mock-signature-\(Hashing.contentHash(r))")]))
        }
        if let c = response.message.content, !c.isEmpty { blocks.append(.object(["type": "text", "text": .string(c)])) }
        for call in response.message.toolCalls {
            let input = (try? JSONParser.parse(call.arguments)) ?? .object([:])
            blocks.append(.object(["type": "tool_use", "id": .string(call.id ?? "toolu_0"), "name": .string(call.name), "input": input]))
        }
        let stop: String = response.message.toolCalls.isEmpty ? (response.finishReason == "length" ? "max_tokens" : "end_turn") : "tool_use"
        return .object([
            "id": .string(response.id.map { "msg_\($0)" } ?? "msg_mock"), "type": "message", "role": "assistant",
            "model": .string(response.model ?? "mock"), "content": .array(blocks), "stop_reason": .string(stop),
            "stop_sequence": .null,
            "usage": .object(["input_tokens": JSONValue(response.usage.promptTokens ?? 0),
                              "output_tokens": JSONValue(response.usage.completionTokens ?? 0),
                              "cache_read_input_tokens": JSONValue(response.usage.cachedTokens ?? 0),
                              "cache_creation_input_tokens": JSONValue(0)]),
        ])
    }
}

extension MockServerWire {
    /// The OpenAI request text of `request`, for hashing in-process mock calls like HTTP ones.
    static func openAIRequestText(_ request: ChatRequest) -> String {
        OpenAICodec.body(for: request, thinkingStyle: .none).jsonText
    }
}
