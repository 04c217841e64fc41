/// One chat-completion request in the canonical shape (OpenAI chat plus reasoning); providers
/// translate it at the edge.
public struct ChatRequest: Sendable, Equatable {
    /// The model name the provider knows (`gpt-4o`), not the registry name (`openai/gpt-4o`).
    public var model: String
    public var messages: [ChatMessage]
    public var tools: [ToolSpecification]
    public var options: ChatOptions

    public init(model: String, messages: [ChatMessage], tools: [ToolSpecification] = [], options: ChatOptions = .init()) {
        self.model = model
        self.messages = messages
        self.tools = tools
        self.options = options
    }
}

/// A function tool offered to the model (OpenAI `{"type":"function","function":{…}}`).
public struct ToolSpecification: Sendable, Equatable {
    /// The API-safe name sent to the model.
    public var name: String
    public var description: String?
    /// JSON Schema of the arguments (an object schema).
    public var parameters: JSONValue
    public var strict: Bool?

    public init(name: String, description: String? = nil, parameters: JSONValue, strict: Bool? = nil) {
        self.name = name
        self.description = description
        self.parameters = parameters
        self.strict = strict
    }
}

/// Sampling and protocol options; nil means "not sent".
public struct ChatOptions: Sendable, Equatable {
    /// Extended thinking / reasoning: on or off, with an optional token budget.
    public struct Thinking: Sendable, Equatable {
        public var enabled: Bool
        public var budgetTokens: Int?
        public init(enabled: Bool, budgetTokens: Int? = nil) {
            self.enabled = enabled
            self.budgetTokens = budgetTokens
        }
    }

    public var temperature: Double?
    public var topP: Double?
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    /// "auto", "none", "required", or an object naming a function.
    public var toolChoice: JSONValue?
    public var parallelToolCalls: Bool?
    public var stop: [String]?
    public var seed: Int?
    public var responseFormat: JSONValue?
    public var thinking: Thinking?
    /// Merged into the request body last (vLLM / SGLang extras and anything else).
    public var extraBody: JSONObject?

    public init(temperature: Double? = nil, topP: Double? = nil, maxTokens: Int? = nil, maxCompletionTokens: Int? = nil,
                toolChoice: JSONValue? = nil, parallelToolCalls: Bool? = nil, stop: [String]? = nil, seed: Int? = nil,
                responseFormat: JSONValue? = nil, thinking: Thinking? = nil, extraBody: JSONObject? = nil) {
        self.temperature = temperature
        self.topP = topP
        self.maxTokens = maxTokens
        self.maxCompletionTokens = maxCompletionTokens
        self.toolChoice = toolChoice
        self.parallelToolCalls = parallelToolCalls
        self.stop = stop
        self.seed = seed
        self.responseFormat = responseFormat
        self.thinking = thinking
        self.extraBody = extraBody
    }
}

/// Token counts of one response; nil where the provider did not say.
public struct TokenUsage: Sendable, Equatable {
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var reasoningTokens: Int?
    public var cachedTokens: Int?
    public var cacheCreationTokens: Int?

    public init(promptTokens: Int? = nil, completionTokens: Int? = nil, reasoningTokens: Int? = nil,
                cachedTokens: Int? = nil, cacheCreationTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.reasoningTokens = reasoningTokens
        self.cachedTokens = cachedTokens
        self.cacheCreationTokens = cacheCreationTokens
    }
}

/// The assistant's reply in the canonical shape.
public struct ChatResponse: Sendable, Equatable {
    /// role "assistant"; tool calls keep their raw argument strings, valid JSON or not.
    public var message: ChatMessage
    /// As the provider said it ("stop", "tool_calls", "length", "end_turn", …); unknown ones kept.
    public var finishReason: String?
    public var usage: TokenUsage
    public var id: String?
    public var model: String?

    public init(message: ChatMessage, finishReason: String?, usage: TokenUsage = .init(), id: String? = nil, model: String? = nil) {
        self.message = message
        self.finishReason = finishReason
        self.usage = usage
        self.id = id
        self.model = model
    }
}
