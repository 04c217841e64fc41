import Foundation

/// The Batch API a request file is written for.
public enum BatchProvider: String, Sendable, CaseIterable, Codable {
    /// OpenAI Batch API: `{custom_id, method, url, body}` lines, uploaded as a file.
    case openai
    /// Anthropic Message Batches: `{custom_id, params}` requests.
    case anthropic

    /// The most requests and bytes one batch may hold. OpenAI: 50,000 requests and 200 MB per
    /// input file; Anthropic: 100,000 requests or 256 MB per batch, whichever comes first. Bytes
    /// are counted in decimal megabytes (the smaller reading), lines with their newline.
    public var limits: BatchLimits {
        switch self {
        case .openai: BatchLimits(maxRequests: 50_000, maxBytes: 200_000_000)
        case .anthropic: BatchLimits(maxRequests: 100_000, maxBytes: 256_000_000)
        }
    }

    /// The URL path every request of the batch goes to. OpenAI requires the `/v1` prefix.
    public var endpoint: String {
        switch self {
        case .openai: "/v1/chat/completions"
        case .anthropic: "/v1/messages"
        }
    }
}

/// Where a batch is split into parts.
public struct BatchLimits: Sendable, Equatable, Codable {
    public var maxRequests: Int
    public var maxBytes: Int
    public init(maxRequests: Int, maxBytes: Int) {
        self.maxRequests = maxRequests
        self.maxBytes = maxBytes
    }
}

/// pass@k custom ids as the Agentless batch scripts wrote them: `{instance_id}__pass{i}` for
/// i in 0…k−1, and the plain instance id when k = 1.
public enum PassID {
    public static func make(_ instance: String, pass: Int, of k: Int) -> String {
        k <= 1 ? instance : "\(instance)__pass\(pass)"
    }

    /// The instance and pass of a custom id; an id without a `__pass<digits>` suffix is pass 0.
    public static func parse(_ customID: String) -> (instance: String, pass: Int) {
        guard let range = customID.range(of: "__pass", options: .backwards) else { return (customID, 0) }
        let digits = customID[range.upperBound...]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let pass = Int(digits),
              range.lowerBound > customID.startIndex else { return (customID, 0) }
        return (String(customID[..<range.lowerBound]), pass)
    }
}

/// `--range FROM:TO`: positions FROM ..< TO of the custom ids in sorted order (Python slice
/// rules without negatives: either side may be left out, `:100`, `100:`).
public struct IDRange: Sendable, Equatable, CustomStringConvertible {
    public var from: Int?
    public var to: Int?

    public init(from: Int? = nil, to: Int? = nil) {
        self.from = from
        self.to = to
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw BatchError("--range expects FROM:TO (e.g. 0:500, :100, 100:), got \"\(text)\"") }
        func number(_ s: Substring) throws -> Int? {
            let t = s.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { return nil }
            guard let n = Int(t), n >= 0 else { throw BatchError("--range: \"\(t)\" is not a position ≥ 0 (in \"\(text)\")") }
            return n
        }
        from = try number(parts[0])
        to = try number(parts[1])
        if let from, let to, to < from { throw BatchError("--range \(text): TO is before FROM") }
    }

    /// The selected slice of `sorted`.
    public func apply<T>(_ sorted: [T]) -> ArraySlice<T> {
        let lower = min(from ?? 0, sorted.count)
        let upper = max(lower, min(to ?? sorted.count, sorted.count))
        return sorted[lower..<upper]
    }

    public var description: String { "\(from.map(String.init) ?? ""):\(to.map(String.init) ?? "")" }
}

/// A batch command that cannot go on: what was wrong and what to do.
public struct BatchError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// Provider messages end up here; secrets in them are masked.
    public init(_ description: String) { self.description = Secrets.mask(description) }
}

/// How a request asks an OpenAI-compatible server to think. The chat API has no common field,
/// so batches name the style their server understands (Anthropic has its own `thinking`).
public enum BatchThinkingStyle: String, Sendable, CaseIterable {
    /// vLLM / SGLang / Qwen: `"chat_template_kwargs": {"enable_thinking": true}`.
    case chatTemplateKwargs = "chat_template_kwargs"
    /// OpenAI reasoning models: `reasoning_effort` from the budget.
    case reasoningEffort = "reasoning_effort"
    /// Top-level `enable_thinking` and `thinking_budget`, as the Agentless batch scripts sent
    /// (DashScope, SiliconFlow and other hosted Qwen / DeepSeek servers).
    case fields
    /// Nothing is sent.
    case none
}

/// How every request of a batch is made: model and sampling.
public struct BatchRequestOptions: Sendable {
    public var provider: BatchProvider
    /// The model name written into each body.
    public var model: String
    public var temperature: Double?
    public var topP: Double?
    public var maxTokens: Int?
    public var enableThinking = false
    public var thinkingBudget: Int?
    public var thinkingStyle: BatchThinkingStyle = .chatTemplateKwargs

    public init(provider: BatchProvider, model: String, temperature: Double? = nil, topP: Double? = nil, maxTokens: Int? = nil,
                enableThinking: Bool = false, thinkingBudget: Int? = nil, thinkingStyle: BatchThinkingStyle = .chatTemplateKwargs) {
        self.provider = provider
        self.model = model
        self.temperature = temperature
        self.topP = topP
        self.maxTokens = maxTokens
        self.enableThinking = enableThinking
        self.thinkingBudget = thinkingBudget
        self.thinkingStyle = thinkingStyle
    }

    /// The request body for `messages` in the provider's format, `temperature` overriding the
    /// batch's own (the test writer samples pass 0 greedily).
    public func body(messages: [ChatMessage], temperature override: Double? = nil) -> JSONValue {
        var options = ChatOptions(temperature: override ?? temperature, topP: topP, maxTokens: maxTokens)
        switch provider {
        case .anthropic:
            if enableThinking { options.thinking = .init(enabled: true, budgetTokens: thinkingBudget) }
            return AnthropicCodec.body(for: ChatRequest(model: model, messages: messages, options: options))
        case .openai:
            var style = ThinkingStyle.none
            if enableThinking {
                switch thinkingStyle {
                case .chatTemplateKwargs: style = .chatTemplateKwargs
                case .reasoningEffort: style = .reasoningEffort
                case .fields:
                    var extra: JSONObject = ["enable_thinking": true]
                    if let thinkingBudget { extra["thinking_budget"] = JSONValue(thinkingBudget) }
                    options.extraBody = extra
                case .none: break
                }
                if style != .none { options.thinking = .init(enabled: true, budgetTokens: thinkingBudget) }
            }
            return OpenAICodec.body(for: ChatRequest(model: model, messages: messages, options: options), thinkingStyle: style)
        }
    }

    /// The options as recorded in `batches.options`.
    var json: JSONObject {
        var o: JSONObject = ["provider": .string(provider.rawValue), "model": .string(model)]
        if let temperature { o["temperature"] = JSONValue(temperature) }
        if let topP { o["top_p"] = JSONValue(topP) }
        if let maxTokens { o["max_tokens"] = JSONValue(maxTokens) }
        if enableThinking {
            o["enable_thinking"] = true
            o["thinking_style"] = .string(thinkingStyle.rawValue)
            if let thinkingBudget { o["thinking_budget"] = JSONValue(thinkingBudget) }
        }
        return o
    }
}

/// One line of a request file, in the provider's format.
enum BatchLine {
    static func text(customID: String, body: JSONValue, provider: BatchProvider) -> String {
        switch provider {
        case .openai:
            JSONValue.object(["custom_id": .string(customID), "method": "POST", "url": .string(provider.endpoint), "body": body]).jsonText
        case .anthropic:
            JSONValue.object(["custom_id": .string(customID), "params": body]).jsonText
        }
    }

    /// Anthropic's rule for custom ids: `^[a-zA-Z0-9_-]{1,64}$`.
    static func isAnthropicSafe(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }
    }
}

/// A file name made from an id that came from outside (a custom id, a batch name): every byte
/// outside `[A-Za-z0-9_.-]` is percent-encoded, as are a leading dot and "..", so the name can
/// never leave the folder it is joined to, and two ids never share a name. A name longer than
/// `maxBytes` (file systems stop at 255) is cut and ends in `~` and 16 hex digits of the id's
/// sha256: `~` is always encoded, so a cut name never equals an uncut one.
public enum SafeFileName {
    /// The longest name `path(in:id:suffix:)` makes, suffix included.
    public static let maxBytes = 200

    public static func make(_ id: String) -> String {
        var out = ""
        let bytes = Array(id.utf8)
        for (i, b) in bytes.enumerated() {
            let plain = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
            let dotOK = b == 0x2E && i > 0 && !(i + 1 < bytes.count && bytes[i + 1] == 0x2E) && !(bytes[i - 1] == 0x2E)
            if plain || dotOK {
                out.append(Character(Unicode.Scalar(b)))
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out.isEmpty ? "%00" : out
    }

    /// `directory/name` for an id, checked to lie inside `directory`.
    public static func path(in directory: String, id: String, suffix: String) throws -> String {
        var name = make(id) + suffix
        if name.utf8.count > maxBytes {
            let tag = "~" + String(Hashing.sha256Hex(id).prefix(16))
            let room = max(1, maxBytes - tag.utf8.count - suffix.utf8.count)
            name = String(make(id).prefix(room)) + tag + suffix  // make() is ASCII: characters are bytes
        }
        let dir = URL(fileURLWithPath: directory).standardizedFileURL
        let target = dir.appending(path: name).standardizedFileURL
        guard target.deletingLastPathComponent().path == dir.path else {
            throw BatchError("\"\(id)\" does not make a file name inside \(directory)")
        }
        return target.path
    }
}
