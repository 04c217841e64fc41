import Foundation
@testable import RolloutKit
import Testing

/// The OpenAI and Anthropic wire codecs against real recorded traffic (Fixtures/llama-server,
/// Fixtures/openai-sdk) and against the shapes the providers document.
@Suite("Codecs")
struct CodecTests {
    // MARK: - Helpers

    static func bytes(_ relative: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: Fixture.path(relative))))
    }

    static func json(_ text: String) -> JSONValue {
        do { return try JSONParser.parse(text) } catch { fatalError("bad test JSON: \(error)") }
    }

    static let weatherParameters = json(#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#)

    /// The request the `openai` SDK sent in `sdk_wire_capture.jsonl`, in our canonical shape.
    static var sdkRequest: ChatRequest {
        ChatRequest(
            model: "gpt-4o-mini",
            messages: [
                ChatMessage(role: "system", content: "be brief"),
                ChatMessage(role: "user", content: "weather?"),
                ChatMessage(role: "assistant", content: nil,
                            toolCalls: [ToolCall(id: "call_1", name: "get_weather", arguments: #"{"city":"Paris"}"#)]),
                ChatMessage(role: "tool", content: "sunny", toolCallID: "call_1"),
            ],
            tools: [ToolSpecification(name: "get_weather", description: "d", parameters: weatherParameters, strict: true)],
            options: ChatOptions(temperature: 0, maxCompletionTokens: 64, toolChoice: "auto", parallelToolCalls: false, seed: 7))
    }

    /// Splits a raw HTTP/1.1 response into its status code and body.
    static func httpResponse(_ raw: [UInt8]) throws -> (status: Int, body: [UInt8]) {
        let separator: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
        let split = try #require((0...(raw.count - 4)).first { Array(raw[$0..<($0 + 4)]) == separator })
        let lineEnd = try #require(raw.firstIndex(of: 0x0D))
        let statusLine = String(decoding: raw[..<lineEnd], as: UTF8.self)
        let status = try #require(Int(statusLine.split(separator: " ")[1]))
        return (status, Array(raw[(split + 4)...]))
    }

    static func openAIError(_ body: String, status: Int) -> LLMError? {
        do {
            _ = try OpenAICodec.decode(Array(body.utf8), status: status)
            return nil
        } catch {
            return error
        }
    }

    static func streamError(_ sse: String) -> LLMError? {
        do {
            _ = try OpenAICodec.decodeStream(Array(sse.utf8))
            return nil
        } catch {
            return error
        }
    }

    static func anthropicError(_ body: String, status: Int) -> LLMError? {
        do {
            _ = try AnthropicCodec.decode(Array(body.utf8), status: status)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - OpenAI request body

    @Test func bodyMatchesTheOpenAISDKsOwnRequestFieldByField() throws {
        let capture = try JSONParser.parse(try #require(try Fixture.lines("openai-sdk/sdk_wire_capture.jsonl").first))
        #expect(capture["method"] == "POST")
        #expect(capture["path"] == "/v1/chat/completions")
        let sdk = try #require(capture["body"]?.objectValue)
        let ours = try #require(OpenAICodec.body(for: Self.sdkRequest, thinkingStyle: .none).objectValue)
        #expect(ours.keys.sorted() == ["max_completion_tokens", "messages", "model", "parallel_tool_calls", "seed",
                                      "temperature", "tool_choice", "tools"])
        #expect(ours.keys.sorted() == sdk.keys.sorted())
        for key in sdk.keys {
            #expect(ours[key] == sdk[key], "field \(key)")
        }
        // Same content as the SDK's, in our own fixed key order.
        #expect(JSONValue.object(ours).jsonText == #"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true}}],"temperature":0,"max_completion_tokens":64,"tool_choice":"auto","parallel_tool_calls":false,"seed":7}"#)
    }

    @Test func bodiesValidateAgainstTheSDKsRequestSchema() throws {
        let schema = try JSONParser.parse(try Fixture.text("openai-sdk/CompletionCreateParamsNonStreaming.schema.json"))
        let checker = SchemaChecker(document: schema)
        let known = Set(try #require(schema["properties"]?.objectValue).keys)
        #expect(schema["required"] == .array(["messages", "model"]))

        var rich = Self.sdkRequest
        rich.messages = [
            ChatMessage(role: "system", content: "policy", name: "retail"),
            ChatMessage(role: "user", content: "look",
                        extra: ["content": .array([.object(["type": "text", "text": "look"])])]),
            ChatMessage(role: "assistant", content: "", reasoningContent: "think first",
                        toolCalls: [ToolCall(id: nil, name: "get_weather", arguments: "{bad")]),
            ChatMessage(role: "tool", content: nil),
            ChatMessage(role: "assistant", content: "done"),
        ]
        rich.options = ChatOptions(temperature: 0.7, topP: 0.95, maxTokens: 256, maxCompletionTokens: 300,
                                   toolChoice: .object(["type": "function", "function": .object(["name": "get_weather"])]),
                                   parallelToolCalls: true, stop: ["END"], seed: 1,
                                   responseFormat: .object(["type": "json_object"]),
                                   thinking: .init(enabled: true, budgetTokens: 20000))
        for (request, style) in [(Self.sdkRequest, ThinkingStyle.none), (rich, .reasoningEffort)] {
            let body = OpenAICodec.body(for: request, thinkingStyle: style)
            #expect(checker.problems(body, against: schema) == [])
            let keys = try #require(body.objectValue).keys
            #expect(keys.filter { !known.contains($0) } == [])
        }
        let richBody = OpenAICodec.body(for: rich, thinkingStyle: .reasoningEffort)
        #expect(richBody["reasoning_effort"] == "high")
        #expect(richBody["tool_choice"]?.jsonText == #"{"type":"function","function":{"name":"get_weather"}}"#)

        // The streaming extras validate against their own definitions.
        let streamed = OpenAICodec.body(for: Self.sdkRequest, thinkingStyle: .none, stream: true)
        #expect(streamed["stream"] == true)
        #expect(checker.problems(try #require(streamed["stream_options"]),
                                 against: .object(["$ref": "#/$defs/ChatCompletionStreamOptionsParam"])) == [])

        // The check is not vacuous: a tool message without its id and a string temperature fail.
        var broken = try #require(OpenAICodec.body(for: Self.sdkRequest, thinkingStyle: .none).objectValue)
        var messages = try #require(broken["messages"]?.arrayValue)
        messages[3] = .object(["role": "tool", "content": "sunny"])
        broken["messages"] = .array(messages)
        broken["temperature"] = "0"
        #expect(checker.problems(.object(broken), against: schema) == [
            "$.messages[3]: matches none of 6 alternatives",
            "$.temperature: matches none of 2 alternatives",
        ])
    }

    @Test func everyOptionInItsPlaceWithThinkingStreamAndExtraBody() {
        let request = ChatRequest(
            model: "Qwen/Qwen3-8B",
            messages: [ChatMessage(role: "user", content: "hi")],
            tools: [ToolSpecification(name: "get_weather", parameters: Self.json(#"{"type":"object","properties":{}}"#))],
            options: ChatOptions(temperature: 0.6, topP: 0.95, maxTokens: 512, maxCompletionTokens: 600, toolChoice: "required",
                                 parallelToolCalls: true, stop: ["</answer>", "END"], seed: 42,
                                 responseFormat: .object(["type": "text"]), thinking: .init(enabled: false),
                                 extraBody: ["top_k": JSONValue(20),
                                             "chat_template_kwargs": .object(["add_generation_prompt": true]),
                                             "temperature": JSONValue(0.7)]))
        let body = OpenAICodec.body(for: request, thinkingStyle: .chatTemplateKwargs, stream: true)
        #expect(body.jsonText == #"{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{}}}}],"temperature":0.7,"top_p":0.95,"max_tokens":512,"max_completion_tokens":600,"tool_choice":"required","parallel_tool_calls":true,"stop":["</answer>","END"],"seed":42,"response_format":{"type":"text"},"chat_template_kwargs":{"enable_thinking":false,"add_generation_prompt":true},"stream":true,"stream_options":{"include_usage":true},"top_k":20}"#)
        // Equal requests give byte-identical bodies.
        #expect(OpenAICodec.body(for: request, thinkingStyle: .chatTemplateKwargs, stream: true).jsonText == body.jsonText)
    }

    @Test func thinkingStyles() {
        var request = ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: "q")])
        request.options.thinking = .init(enabled: true, budgetTokens: 2048)
        #expect(OpenAICodec.body(for: request, thinkingStyle: .none).jsonText == #"{"model":"m","messages":[{"role":"user","content":"q"}]}"#)
        #expect(OpenAICodec.body(for: request, thinkingStyle: .chatTemplateKwargs)["chat_template_kwargs"]?.jsonText
                == #"{"enable_thinking":true}"#)
        #expect(OpenAICodec.body(for: request, thinkingStyle: .reasoningEffort)["reasoning_effort"] == "low")
        request.options.thinking = .init(enabled: false, budgetTokens: 50000)
        #expect(OpenAICodec.body(for: request, thinkingStyle: .reasoningEffort).jsonText
                == #"{"model":"m","messages":[{"role":"user","content":"q"}]}"#)
        #expect(OpenAICodec.body(for: request, thinkingStyle: .chatTemplateKwargs)["chat_template_kwargs"]?.jsonText
                == #"{"enable_thinking":false}"#)

        let budgets: [Int?] = [nil, 0, 1024, 4096, 4097, 16384, 16385, 32000]
        #expect(budgets.map(OpenAICodec.reasoningEffort(budgetTokens:))
                == ["medium", "low", "low", "low", "medium", "medium", "high", "high"])
        #expect(ThinkingStyle(rawValue: "chat_template_kwargs") == .chatTemplateKwargs)
        #expect(ThinkingStyle(rawValue: "reasoning_effort") == .reasoningEffort)
        #expect(ThinkingStyle(rawValue: "none") == ThinkingStyle.none)
    }

    @Test func messagesOnTheWire() {
        let parts: JSONValue = .array([.object(["type": "text", "text": "look"]),
                                       .object(["type": "image_url", "image_url": .object(["url": "https://x/y.png"])])])
        let request = ChatRequest(model: "m", messages: [
            ChatMessage(role: "system", content: "sys", name: "policy"),
            ChatMessage(role: "user", content: "look", extra: ["content": parts]),
            ChatMessage(role: "user", content: "changed", extra: ["content": parts]),
            ChatMessage(role: "assistant", content: "", reasoningContent: "think",
                        toolCalls: [ToolCall(id: nil, name: "a", arguments: "{}"), ToolCall(id: "", name: "b", arguments: "{bad")]),
            ChatMessage(role: "tool", content: "ra", name: "a"),
            ChatMessage(role: "tool", content: nil),
            ChatMessage(role: "assistant", content: "done", reasoningContent: "", name: "bot"),
            ChatMessage(role: "assistant", content: nil),
        ], options: ChatOptions(toolChoice: "auto", parallelToolCalls: false))
        // No tools: tool_choice and parallel_tool_calls are not sent (OpenAI rejects them).
        #expect(OpenAICodec.body(for: request, thinkingStyle: .none).jsonText == #"{"model":"m","messages":[{"role":"system","content":"sys","name":"policy"},{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"changed"},{"role":"assistant","content":null,"reasoning_content":"think","tool_calls":[{"id":"call_3_0","type":"function","function":{"name":"a","arguments":"{}"}},{"id":"call_3_1","type":"function","function":{"name":"b","arguments":"{bad"}}]},{"role":"tool","tool_call_id":"call_3_0","content":"ra"},{"role":"tool","tool_call_id":"call_3_1","content":""},{"role":"assistant","content":"done","name":"bot"},{"role":"assistant","content":null}]}"#)
        // A bare `{"name": …}` tool choice becomes OpenAI's shape.
        #expect(OpenAICodec.toolChoice(.object(["name": "a"])).jsonText == #"{"type":"function","function":{"name":"a"}}"#)
        #expect(OpenAICodec.toolChoice("none") == "none")
    }

    // MARK: - OpenAI responses: llama-server fixtures

    @Test func llamaServerPlainReply() throws {
        let r = try OpenAICodec.decode(try Self.bytes("llama-server/chat_plain.json"), status: 200)
        #expect(r.message == ChatMessage(role: "assistant", content: "Say hello in one word.<|im_end|>\n<|im_"))
        #expect(r.finishReason == "length")
        #expect(r.usage == TokenUsage(promptTokens: 29, completionTokens: 16, cachedTokens: 0))
        #expect(r.id == "chatcmpl-2vlF0WuS9ThrNGx2SG7WPP0kFiLUkZTA")
        #expect(r.model == "/data/models/gemma-3-270m-q4_k_m.gguf")
    }

    @Test func llamaServerToolCallsWithOddIdsAndLengthFinish() throws {
        let r = try OpenAICodec.decode(try Self.bytes("llama-server/chat_tools_fewshot.json"), status: 200)
        #expect(r.message == ChatMessage(role: "assistant", content: nil, toolCalls: [
            ToolCall(id: "2Q2YFjk3hSsmEvk6nxmtosmXrGdrBEd9", name: "get_weather", arguments: #"{"city": "Paris"}"#),
            ToolCall(id: "3HIV5hVnDQTOW3kqrekwON3wrChAQFVE", name: "get_weather", arguments: #"{"city": "Paris"}"#),
            ToolCall(id: "YLOlX9Wce0x1vJ2aHYqAJaMGRssvatrf", name: "get_weather", arguments: #"{"city": "Paris"}"#),
        ]))
        #expect(r.finishReason == "length")
        #expect(r.usage == TokenUsage(promptTokens: 428, completionTokens: 96, cachedTokens: 1))
        #expect(r.id == "chatcmpl-dnP4rBbeLg3EzafxZfPQz9eimItl5ncH")
    }

    @Test func llamaServerBadRequestIsAnAPIErrorWithTheServersMessage() throws {
        let (status, body) = try Self.httpResponse(try Self.bytes("llama-server/chat_bad_request.txt"))
        #expect(status == 400)
        #expect(body.count == 100)  // the recorded Content-Length
        let error = try #require(throws: LLMError.self) { try OpenAICodec.decode(body, status: status) }
        #expect(error == LLMError(.apiError, status: 400, message: "Expected 'messages' to be an array",
                                  errorType: "invalid_request_error", code: "400"))
        #expect(!error.retryable)
        #expect(error.description == "API error (HTTP 400, invalid_request_error): Expected 'messages' to be an array")
    }

    @Test func llamaServerStreamAssemblesTheText() throws {
        let r = try OpenAICodec.decodeStream(try Self.bytes("llama-server/chat_stream.sse"))
        #expect(r.message == ChatMessage(role: "assistant", content: "<|im_end|>\n<|im_start"))
        #expect(r.finishReason == "length")
        #expect(r.usage == TokenUsage(promptTokens: 27, completionTokens: 12, cachedTokens: 1))
        #expect(r.id == "chatcmpl-uzZqZAC9kfp8VDUOi1lvtnqMiY6NZczv")
        #expect(r.model == "/data/models/gemma-3-270m-q4_k_m.gguf")
    }

    @Test func llamaServerToolStreamMergesDeltasByIndex() throws {
        let r = try OpenAICodec.decodeStream(try Self.bytes("llama-server/chat_tools_stream.sse"))
        #expect(r.message == ChatMessage(role: "assistant", content: nil, toolCalls: [
            ToolCall(id: "3obCVMxVOtLIX3uVCzLHVBhnzrZxe7lp", name: "get_weather", arguments: #"{"city": "Paris"}"#),
            ToolCall(id: "KhxQ0hgoi4nsd6QKJCrnZMEqt9Bjkjgm", name: "get_weather", arguments: #"{"city": "Paris"}"#),
            ToolCall(id: "wlpX2P6KfaJVqLgzvRGWVTJ2gzbyOdnQ", name: "get_weather", arguments: #"{"city": "Paris"}"#),
        ]))
        #expect(r.finishReason == "length")
        // This recording asked for no usage chunk, so there is none.
        #expect(r.usage == TokenUsage())
        #expect(r.id == "chatcmpl-Nb9l6LTcpJfuwmSUhfZJuqBpe4x2ZtUT")
    }

    @Test func streamsSplitAnywhereGiveTheSameEvents() throws {
        for name in ["llama-server/chat_stream.sse", "llama-server/chat_tools_stream.sse"] {
            let whole = try Self.bytes(name)
            let events = SSEParser.events(whole)
            #expect(events.count == (name.hasSuffix("tools_stream.sse") ? 24 : 16))
            #expect(events.last == SSEEvent(data: Array("[DONE]".utf8)))
            for size in [1, 7, 64, 1000] {
                var parser = SSEParser()
                var fed: [SSEEvent] = []
                var i = 0
                while i < whole.count {
                    fed += parser.feed(whole[i..<min(i + size, whole.count)])
                    i += size
                }
                fed += parser.finish()
                #expect(fed == events, "\(name) in pieces of \(size)")
            }
            // The same stream with CRLF line endings decodes to the same response.
            var crlf: [UInt8] = []
            for b in whole { if b == 0x0A { crlf += [0x0D, 0x0A] } else { crlf.append(b) } }
            #expect(try OpenAICodec.decodeStream(crlf) == OpenAICodec.decodeStream(whole))
        }
    }

    @Test func sseLineRules() {
        let text = ": keep-alive\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\rdata: y\r\r\nid: 5\nretry: 10\n\nevent: lonely\n\ndata: last"
        #expect(SSEParser.events(Array(text.utf8)) == [
            SSEEvent(event: "message_start", data: Array("{\"a\":\n1}".utf8)),
            SSEEvent(data: Array("x\ny".utf8)),
            SSEEvent(data: Array("last".utf8)),
        ])
        // A CR at the end of one piece and its LF at the start of the next make one line end.
        var parser = SSEParser()
        #expect(parser.feed(Array("data: a\r".utf8)) == [])
        #expect(parser.feed(Array("\n\r\n".utf8)) == [SSEEvent(data: Array("a".utf8))])
        #expect(parser.finish() == [])
    }

    // MARK: - OpenAI responses: other servers' shapes

    @Test func deepSeekReasoningContent() throws {
        let body = #"{"id":"930c60df-bf64-41c9-a88e-3ec75f81e00e","object":"chat.completion","created":1705651092,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"9.11 is smaller.","reasoning_content":"Compare 9.11 and 9.8: 0.11 < 0.8."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":240,"total_tokens":258,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":210},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":18},"system_fingerprint":"fp_7e73fd9a08"}"#
        let r = try OpenAICodec.decode(Array(body.utf8), status: 200)
        #expect(r == ChatResponse(
            message: ChatMessage(role: "assistant", content: "9.11 is smaller.", reasoningContent: "Compare 9.11 and 9.8: 0.11 < 0.8."),
            finishReason: "stop",
            usage: TokenUsage(promptTokens: 18, completionTokens: 240, reasoningTokens: 210, cachedTokens: 0),
            id: "930c60df-bf64-41c9-a88e-3ec75f81e00e", model: "deepseek-reasoner"))

        // `reasoning` (vLLM, OpenRouter); nulls and empty lists are not kept; other fields are.
        let other = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok","reasoning":"r1","refusal":null,"annotations":[],"audio":{"id":"a1"}},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":2.0,"prompt_cache_hit_tokens":8}}"#
        let r2 = try OpenAICodec.decode(Array(other.utf8), status: 200)
        #expect(r2.message == ChatMessage(role: "assistant", content: "ok", reasoningContent: "r1",
                                          extra: ["audio": .object(["id": "a1"])]))
        #expect(r2.usage == TokenUsage(promptTokens: 10, completionTokens: 2, cachedTokens: 8))

        // Streamed: reasoning deltas first, then content, then the usage chunk.
        let sse = """
            data: {"id":"s1","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Compare "},"finish_reason":null}]}

            data: {"id":"s1","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"digits."},"finish_reason":null}]}

            data: {"id":"s1","choices":[{"index":0,"delta":{"content":"9.11","reasoning_content":null},"finish_reason":null}]}

            data: {"id":"s1","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}

            data: {"id":"s1","choices":[],"usage":{"prompt_tokens":18,"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":4}}}

            data: [DONE]


            """
        #expect(try OpenAICodec.decodeStream(Array(sse.utf8)) == ChatResponse(
            message: ChatMessage(role: "assistant", content: "9.11", reasoningContent: "Compare digits."),
            finishReason: "stop", usage: TokenUsage(promptTokens: 18, completionTokens: 9, reasoningTokens: 4),
            id: "s1", model: "deepseek-reasoner"))
    }

    @Test func toolCallQuirksAreKept() throws {
        let body = #"{"id":"x","model":"m","choices":[{"index":0,"finish_reason":"eos_token","message":{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"search","arguments":"{\"q\": \"swift"}},{"id":7,"type":"function","function":{"name":"open","arguments":{"url":"https://swift.org"}}},{"id":"","function":{"name":"noop"}}]}}],"timings":{"predicted_n":3}}"#
        let r = try OpenAICodec.decode(Array(body.utf8), status: 200)
        #expect(r.message == ChatMessage(role: "assistant", content: nil, toolCalls: [
            ToolCall(id: "call_0", name: "search", arguments: #"{"q": "swift"#),
            ToolCall(id: "7", name: "open", arguments: #"{"url":"https://swift.org"}"#),
            ToolCall(id: "call_2", name: "noop", arguments: "{}"),
        ]))
        #expect(r.finishReason == "eos_token")
        #expect(r.usage == TokenUsage())

        // Content parts are joined; the list is kept. A tool call without a name is refused.
        let parts = #"{"choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"stop"}]}"#
        #expect(try OpenAICodec.decode(Array(parts.utf8), status: 200).message == ChatMessage(
            role: "assistant", content: "ab",
            extra: ["content": Self.json(#"[{"type":"text","text":"a"},{"type":"text","text":"b"}]"#)]))
        let nameless = #"{"choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}}]}"#
        #expect(Self.openAIError(nameless, status: 200) == LLMError(.unexpectedShape, status: 200, message: "tool call 0 has no function name"))
    }

    @Test func aServerThatIgnoresStreamTrueStillDecodes() throws {
        let plain = try Self.bytes("llama-server/chat_plain.json")
        #expect(try OpenAICodec.decodeStream(plain) == OpenAICodec.decode(plain, status: 200))
    }

    // MARK: - OpenAI errors

    @Test func htmlErrorPages() throws {
        let nginx = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        let e = try #require(Self.openAIError(nginx, status: 502))
        #expect(e == LLMError(.htmlErrorPage, status: 502, message: "502 Bad Gateway"))
        #expect(e.retryable)
        #expect(e.description == "HTML page instead of JSON (a proxy or gateway answered) (HTTP 502): 502 Bad Gateway")

        let untitled = "\n<!DOCTYPE html><html><body><h1>Service Unavailable</h1><p>Try later</p></body></html>"
        #expect(Self.openAIError(untitled, status: 503) == LLMError(.htmlErrorPage, status: 503, message: "Service Unavailable Try later"))
        // A captive portal answering 200 is still not a reply, and not worth retrying.
        let portal = try #require(Self.openAIError("<HTML><TITLE>Login required</TITLE></HTML>", status: 200))
        #expect(portal == LLMError(.htmlErrorPage, status: 200, message: "Login required"))
        #expect(!portal.retryable)
    }

    @Test func errorObjectInsideA200() throws {
        let openRouter = #"{"error":{"message":"Provider returned error","code":502,"metadata":{"provider_name":"X"}},"user_id":"u"}"#
        let e = try #require(Self.openAIError(openRouter, status: 200))
        #expect(e == LLMError(.apiError, status: 200, message: "Provider returned error", code: "502"))
        #expect(e.retryable)
        let context = #"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#
        let e2 = try #require(Self.openAIError(context, status: 200))
        #expect(e2 == LLMError(.apiError, status: 200, message: "This model's maximum context length is 8192 tokens.",
                               errorType: "invalid_request_error", code: "context_length_exceeded"))
        #expect(!e2.retryable)
        #expect(e2.description == "API error (HTTP 200, invalid_request_error, code context_length_exceeded): This model's maximum context length is 8192 tokens.")
    }

    @Test func otherErrorBodies() {
        // vLLM's error object, FastAPI's detail, a plain-text gateway error, JSON without an error.
        #expect(Self.openAIError(#"{"object":"error","message":"max_tokens is too large","type":"BadRequestError","param":null,"code":400}"#, status: 400)
                == LLMError(.apiError, status: 400, message: "max_tokens is too large", errorType: "BadRequestError", code: "400"))
        #expect(Self.openAIError(#"{"detail":"Internal Server Error"}"#, status: 500)
                == LLMError(.apiError, status: 500, message: "Internal Server Error"))
        #expect(Self.openAIError("upstream connect error or disconnect/reset before headers\n", status: 503)
                == LLMError(.apiError, status: 503, message: "upstream connect error or disconnect/reset before headers"))
        #expect(Self.openAIError(#"{"ok":false}"#, status: 404) == LLMError(.apiError, status: 404, message: #"{"ok":false}"#))
        #expect(Self.openAIError("[1,2]", status: 200) == LLMError(.unexpectedShape, status: 200, message: "expected a JSON object, found array"))
    }

    @Test func missingChoices() {
        #expect(Self.openAIError(#"{"id":"x","object":"chat.completion"}"#, status: 200)
                == LLMError(.missingChoices, status: 200, message: "no `choices` (keys: id, object)"))
        #expect(Self.openAIError(#"{"choices":[],"usage":{"prompt_tokens":3}}"#, status: 200)
                == LLMError(.missingChoices, status: 200, message: "an empty `choices` list (keys: choices, usage)"))
        #expect(Self.openAIError(#"{"choices":null}"#, status: 200)
                == LLMError(.missingChoices, status: 200, message: "`choices` of type null (keys: choices)"))
    }

    @Test func truncatedInvalidEmptyAndNonUTF8Bodies() throws {
        let plain = try Self.bytes("llama-server/chat_plain.json")
        let cut = try #require(throws: LLMError.self) { try OpenAICodec.decode(Array(plain.prefix(300)), status: 200) }
        #expect(cut == LLMError(.truncatedBody, status: 200, message: "the JSON ends after 300 bytes, before the value is complete"))

        #expect(Self.openAIError(#"{"choices":[}"#, status: 200)
                == LLMError(.invalidJSON, status: 200, message: #"malformed JSON at byte 13: expected a value, found '}' — {"choices":[}"#))
        #expect(Self.openAIError(#"{"choices":[]} trailing"#, status: 200)?.kind == .invalidJSON)

        let empty = try #require(Self.openAIError("", status: 200))
        #expect(empty == LLMError(.emptyBody, status: 200, message: ""))
        #expect(empty.description == "empty response body (HTTP 200)")
        let emptyUnavailable = try #require(Self.openAIError(" \r\n", status: 503))
        #expect(emptyUnavailable == LLMError(.emptyBody, status: 503, message: ""))
        #expect(emptyUnavailable.retryable)

        var latin1 = Array(#"{"choices":[{"index":0,"message":{"role":"assistant","content":"caf"#.utf8)
        latin1 += [0xE9] + Array(#""}}]}"#.utf8)
        let e = try #require(throws: LLMError.self) { try OpenAICodec.decode(latin1, status: 200) }
        #expect(e == LLMError(.invalidUTF8, status: 200, message: "invalid UTF-8 at byte 68"))
    }

    @Test func streamFailures() throws {
        let whole = try Self.bytes("llama-server/chat_tools_stream.sse")
        // Where each event starts (after the blank line before it).
        let starts = whole.indices.filter { i in
            (i == 0 || whole[i - 1] == 0x0A) && whole[i...].starts(with: Array("data: ".utf8))
        }
        #expect(starts.count == 24)
        // Cut inside the 10th event's JSON.
        let offset = starts[9]
        let cut = try #require(throws: LLMError.self) { try OpenAICodec.decodeStream(Array(whole.prefix(offset + 40))) }
        #expect(cut == LLMError(.truncatedBody, message: "the JSON ends after 34 bytes, before the value is complete"))
        // Cut cleanly between events: no finish_reason, no [DONE].
        let clean = try #require(throws: LLMError.self) { try OpenAICodec.decodeStream(Array(whole.prefix(offset))) }
        #expect(clean == LLMError(.truncatedBody, message: "the stream ended after 9 events without a finish_reason or [DONE]"))
        // An error chunk mid-stream (OpenRouter) and a broken event that is not the last.
        let overloaded = Self.streamError("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n")
        #expect(overloaded == LLMError(.apiError, message: "overloaded", code: "503"))
        #expect(overloaded?.retryable == true)
        #expect(Self.streamError("data: {\"choices\":[\n\ndata: [DONE]\n\n")
                == LLMError(.invalidJSON, message: #"event 1 is not complete JSON: {"choices":["#))
        #expect(Self.streamError("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n")
                == LLMError(.missingChoices, message: "no chunk of the stream had a choice"))
        #expect(Self.streamError("") == LLMError(.emptyBody, status: 200, message: ""))
        var bad = Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"".utf8)
        bad += [0xFF] + Array("\"}}]}\n\ndata: [DONE]\n\n".utf8)
        #expect(throws: LLMError(.invalidUTF8, message: "invalid UTF-8 at byte 44")) { try OpenAICodec.decodeStream(bad) }
    }

    // MARK: - LLMError

    @Test(arguments: [(408, true), (409, true), (429, true), (500, true), (502, true), (503, true), (504, true), (529, true),
                      (599, true), (400, false), (401, false), (403, false), (404, false), (413, false), (422, false),
                      (200, false), (301, false)])
    func retryableByStatus(status: Int, retryable: Bool) {
        #expect(LLMError.isRetryable(status: status) == retryable)
        #expect(LLMError(.apiError, status: status, message: "m").retryable == retryable)
        #expect(LLMError(.htmlErrorPage, status: status, message: "m").retryable == retryable)
    }

    @Test func retryableWithoutAnHTTPErrorStatus() {
        #expect(!LLMError(.truncatedBody, message: "cut").retryable)
        #expect(!LLMError(.invalidJSON, status: 200, message: "x").retryable)
        #expect(LLMError(.apiError, status: 200, message: "x", code: "429").retryable)
        #expect(!LLMError(.apiError, status: 200, message: "x", code: "400").retryable)
        #expect(!LLMError(.apiError, message: "x", code: "rate_limit_exceeded").retryable)
        // A non-2xx status decides, whatever the body's code says.
        #expect(!LLMError(.apiError, status: 400, message: "x", code: "503").retryable)
    }

    @Test func keysNeverReachTheMessage() throws {
        let leak = #"{"error":{"message":"Invalid key sk-proj-abcdefghijklmnop1234 (header Authorization: Bearer eyJhbGciOi.J9.x-yz_123; task-1234567890 ok; sk-short)","type":"authentication_error"}}"#
        let e = try #require(Self.openAIError(leak, status: 401))
        #expect(e.message == "Invalid key sk-[redacted] (header Authorization: Bearer [redacted]; task-1234567890 ok; sk-short)")
        #expect(!e.description.contains("abcdefgh"))
        #expect(!e.description.contains("eyJhbGci"))
        #expect(!e.retryable)
        #expect(LLMError(.apiError, message: "sk-ant-api03-AAAAAAAAAAAAAAAA").message == "sk-[redacted]")
    }

    // MARK: - Anthropic

    static var anthropicConversation: ChatRequest {
        ChatRequest(
            model: "claude-sonnet-4-5",
            messages: [
                ChatMessage(role: "system", content: "You are terse."),
                ChatMessage(role: "user", content: "Weather in Paris and Rome?"),
                ChatMessage(role: "assistant", content: "Checking both.", reasoningContent: "The user wants two cities.",
                            toolCalls: [ToolCall(id: "toolu_01A", name: "get_weather", arguments: #"{"city":"Paris"}"#),
                                        ToolCall(id: "toolu_01B", name: "get_weather", arguments: #"{"city": "Rome""#)],
                            extra: ["thinking_signature": "sig-1"]),
                ChatMessage(role: "tool", content: "18°C, sunny", toolCallID: "toolu_01A"),
                ChatMessage(role: "tool", content: "error: arguments are not valid JSON", toolCallID: "toolu_01B",
                            extra: ["is_error": true]),
                ChatMessage(role: "system", content: "Answer in one line."),
                ChatMessage(role: "assistant", content: "Paris is sunny.", reasoningContent: "unsigned, from another provider"),
                ChatMessage(role: "user", content: "Thanks"),
            ],
            tools: [ToolSpecification(name: "get_weather", description: "Current weather", parameters: weatherParameters, strict: true)],
            options: ChatOptions(temperature: 1, toolChoice: "required", parallelToolCalls: false, stop: ["END"], seed: 3,
                                 thinking: .init(enabled: true, budgetTokens: 2048),
                                 extraBody: ["metadata": .object(["user_id": "u-1"])]))
    }

    static let anthropicReply = #"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"thinking","thinking":"Rome failed; retry it.","signature":"sig-2"},{"type":"text","text":"Retrying Rome. "},{"type":"text","text":"One moment."},{"type":"tool_use","id":"toolu_01C","name":"get_weather","input":{"city":"Rome","units":"metric"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":512,"cache_creation_input_tokens":0,"cache_read_input_tokens":1024,"output_tokens":87,"service_tier":"standard"}}"#

    @Test func anthropicRoundTrip() throws {
        var request = Self.anthropicConversation
        #expect(AnthropicCodec.body(for: request).jsonText == #"{"model":"claude-sonnet-4-5","max_tokens":4096,"system":"You are terse.\n\nAnswer in one line.","messages":[{"role":"user","content":"Weather in Paris and Rome?"},{"role":"assistant","content":[{"type":"thinking","thinking":"The user wants two cities.","signature":"sig-1"},{"type":"text","text":"Checking both."},{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"18°C, sunny"},{"type":"tool_result","tool_use_id":"toolu_01B","content":"error: arguments are not valid JSON","is_error":true}]},{"role":"assistant","content":[{"type":"text","text":"Paris is sunny."}]},{"role":"user","content":"Thanks"}],"tools":[{"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},"temperature":1,"stop_sequences":["END"],"thinking":{"type":"enabled","budget_tokens":2048},"metadata":{"user_id":"u-1"}}"#)

        let reply = try AnthropicCodec.decode(Array(Self.anthropicReply.utf8), status: 200)
        #expect(reply == ChatResponse(
            message: ChatMessage(role: "assistant", content: "Retrying Rome. One moment.", reasoningContent: "Rome failed; retry it.",
                                 toolCalls: [ToolCall(id: "toolu_01C", name: "get_weather", arguments: #"{"city":"Rome","units":"metric"}"#)],
                                 extra: ["thinking_signature": "sig-2"]),
            finishReason: "tool_use",
            usage: TokenUsage(promptTokens: 512, completionTokens: 87, cachedTokens: 1024, cacheCreationTokens: 0),
            id: "msg_01XFDUDYJgAACzvnptvVoYEL", model: "claude-sonnet-4-5-20250929"))

        // The decoded reply goes back signed, with its tool result answered.
        request.messages += [reply.message, ChatMessage(role: "tool", content: "21°C", toolCallID: "toolu_01C")]
        let messages = try #require(AnthropicCodec.body(for: request)["messages"]?.arrayValue)
        #expect(messages.count == 7)
        #expect(messages[5].jsonText == #"{"role":"assistant","content":[{"type":"thinking","thinking":"Rome failed; retry it.","signature":"sig-2"},{"type":"text","text":"Retrying Rome. One moment."},{"type":"tool_use","id":"toolu_01C","name":"get_weather","input":{"city":"Rome","units":"metric"}}]}"#)
        #expect(messages[6].jsonText == #"{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01C","content":"21°C"}]}"#)
    }

    @Test func anthropicSeveralThinkingBlocksGoBackVerbatim() throws {
        let body = #"{"id":"msg_2","type":"message","role":"assistant","model":"claude-opus-4-1","content":[{"type":"thinking","thinking":"a","signature":"sig-a"},{"type":"redacted_thinking","data":"EmwKAhgB"},{"type":"text","text":"x"},{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}},{"type":"thinking","thinking":"b","signature":"sig-b"}],"stop_reason":"stop_sequence","stop_sequence":"END","usage":{"input_tokens":5,"output_tokens":6}}"#
        let r = try AnthropicCodec.decode(Array(body.utf8), status: 200)
        let blocks = Self.json(#"[{"type":"thinking","thinking":"a","signature":"sig-a"},{"type":"redacted_thinking","data":"EmwKAhgB"},{"type":"thinking","thinking":"b","signature":"sig-b"}]"#)
        #expect(r.message == ChatMessage(role: "assistant", content: "x", reasoningContent: "a\n\nb", extra: [
            "thinking_signature": "sig-a",
            "redacted_thinking": .array(["EmwKAhgB"]),
            "thinking_blocks": blocks,
            "other_blocks": Self.json(#"[{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}}]"#),
            "stop_sequence": "END",
        ]))
        #expect(r.finishReason == "stop_sequence")
        #expect(r.usage == TokenUsage(promptTokens: 5, completionTokens: 6))
        let sent = AnthropicCodec.assistantBlocks(r.message, callIDs: [])
        #expect(JSONValue.array(sent).jsonText == #"[{"type":"thinking","thinking":"a","signature":"sig-a"},{"type":"redacted_thinking","data":"EmwKAhgB"},{"type":"thinking","thinking":"b","signature":"sig-b"},{"type":"text","text":"x"}]"#)

        // One thinking block and a redacted one, without thinking_blocks: rebuilt from the fields.
        let rebuilt = AnthropicCodec.assistantBlocks(ChatMessage(role: "assistant", content: nil, reasoningContent: "t",
                                                                 extra: ["thinking_signature": "s", "redacted_thinking": .array(["D"])]),
                                                     callIDs: [])
        #expect(JSONValue.array(rebuilt).jsonText == #"[{"type":"thinking","thinking":"t","signature":"s"},{"type":"redacted_thinking","data":"D"}]"#)
    }

    @Test func anthropicOptions() {
        func body(_ options: ChatOptions, tools: Bool = true) -> JSONValue {
            AnthropicCodec.body(for: ChatRequest(
                model: "c", messages: [ChatMessage(role: "user", content: "q")],
                tools: tools ? [ToolSpecification(name: "t", parameters: .object([:]))] : [], options: options))
        }
        #expect(body(ChatOptions(toolChoice: "auto"))["tool_choice"]?.jsonText == #"{"type":"auto"}"#)
        #expect(body(ChatOptions(toolChoice: "none", parallelToolCalls: false))["tool_choice"]?.jsonText == #"{"type":"none"}"#)
        #expect(body(ChatOptions(toolChoice: Self.json(#"{"type":"function","function":{"name":"t"}}"#)))["tool_choice"]?.jsonText
                == #"{"type":"tool","name":"t"}"#)
        #expect(body(ChatOptions(toolChoice: Self.json(#"{"name":"t"}"#)))["tool_choice"]?.jsonText == #"{"type":"tool","name":"t"}"#)
        #expect(body(ChatOptions(toolChoice: Self.json(#"{"type":"tool","name":"t"}"#), parallelToolCalls: false))["tool_choice"]?.jsonText
                == #"{"type":"tool","name":"t","disable_parallel_tool_use":true}"#)
        #expect(body(ChatOptions(parallelToolCalls: false))["tool_choice"]?.jsonText == #"{"type":"auto","disable_parallel_tool_use":true}"#)
        #expect(body(ChatOptions(toolChoice: "auto"), tools: false).jsonText == #"{"model":"c","max_tokens":4096,"messages":[{"role":"user","content":"q"}]}"#)
        // max_tokens: maxTokens, then maxCompletionTokens, then 4096 (budget + 4096 for a large budget).
        #expect(body(ChatOptions(maxTokens: 100, maxCompletionTokens: 200))["max_tokens"] == JSONValue(100))
        #expect(body(ChatOptions(maxCompletionTokens: 200))["max_tokens"] == JSONValue(200))
        #expect(body(ChatOptions(thinking: .init(enabled: true)))["max_tokens"] == JSONValue(4096))
        #expect(body(ChatOptions(thinking: .init(enabled: true)))["thinking"]?.jsonText == #"{"type":"enabled","budget_tokens":1024}"#)
        #expect(body(ChatOptions(thinking: .init(enabled: true, budgetTokens: 10000)))["max_tokens"] == JSONValue(14096))
        #expect(body(ChatOptions(thinking: .init(enabled: false, budgetTokens: 10000)))["thinking"] == nil)
        #expect(body(ChatOptions(temperature: 0.2, topP: 0.9, seed: 1, responseFormat: .object(["type": "json_object"])), tools: false).jsonText
                == #"{"model":"c","max_tokens":4096,"messages":[{"role":"user","content":"q"}],"temperature":0.2,"top_p":0.9}"#)
    }

    @Test func anthropicErrors() throws {
        let overloaded = try #require(Self.anthropicError(#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#, status: 529))
        #expect(overloaded == LLMError(.apiError, status: 529, message: "Overloaded", errorType: "overloaded_error"))
        #expect(overloaded.retryable)
        #expect(overloaded.description == "API error (HTTP 529, overloaded_error): Overloaded")
        let invalid = try #require(Self.anthropicError(#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: unexpected `tool_use_id`"}}"#, status: 400))
        #expect(invalid == LLMError(.apiError, status: 400, message: "messages.1.content.0: unexpected `tool_use_id`", errorType: "invalid_request_error"))
        #expect(!invalid.retryable)
        #expect(Self.anthropicError(#"{"id":"msg_3","type":"message","role":"assistant"}"#, status: 200)
                == LLMError(.missingChoices, status: 200, message: "no `content` list (keys: id, type, role)"))
        #expect(Self.anthropicError("<html><title>504 Gateway Time-out</title></html>", status: 504)
                == LLMError(.htmlErrorPage, status: 504, message: "504 Gateway Time-out"))
    }
}

/// A light JSON Schema check for the subset the SDK's schemas use: `$ref` into `$defs`, `anyOf`,
/// `const`, `enum`, `type`, `required`, `properties`, `items`, `additionalProperties: false`.
struct SchemaChecker {
    let document: JSONValue

    func problems(_ value: JSONValue, against schema: JSONValue, at path: String = "$") -> [String] {
        if let ref = schema["$ref"]?.stringValue {
            guard ref.hasPrefix("#/$defs/"), let target = document["$defs"]?[String(ref.dropFirst(8))] else {
                return ["\(path): unresolved \(ref)"]
            }
            return problems(value, against: target, at: path)
        }
        var out: [String] = []
        if case .array(let branches)? = schema["anyOf"],
           !branches.contains(where: { problems(value, against: $0, at: path).isEmpty }) {
            out.append("\(path): matches none of \(branches.count) alternatives")
        }
        if let constant = schema["const"], constant != value {
            out.append("\(path): expected \(constant.jsonText), found \(value.jsonText)")
        }
        if case .array(let allowed)? = schema["enum"], !allowed.contains(value) {
            out.append("\(path): \(value.jsonText) is not one of \(JSONValue.array(allowed).jsonText)")
        }
        if let type = schema["type"] {
            let types = type.arrayValue?.compactMap(\.stringValue) ?? [type.stringValue ?? ""]
            if !types.contains(where: { Self.matches(value, type: $0) }) {
                out.append("\(path): expected \(types.joined(separator: " or ")), found \(value.typeName)")
            }
        }
        if case .object(let object) = value {
            for case .string(let key) in schema["required"]?.arrayValue ?? [] where object[key] == nil {
                out.append("\(path): missing required \(key)")
            }
            let properties = schema["properties"]?.objectValue ?? JSONObject()
            for (key, member) in object {
                if let sub = properties[key] {
                    out += problems(member, against: sub, at: "\(path).\(key)")
                } else if schema["additionalProperties"] == .bool(false) {
                    out.append("\(path): unexpected \(key)")
                }
            }
        }
        if case .array(let items) = value, let itemSchema = schema["items"] {
            for (i, item) in items.enumerated() { out += problems(item, against: itemSchema, at: "\(path)[\(i)]") }
        }
        return out
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null), ("number", .number):
            true
        case ("integer", .number(let n)):
            Int(n) != nil
        default:
            false
        }
    }
}
