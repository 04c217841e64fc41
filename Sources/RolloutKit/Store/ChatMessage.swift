/// The one message model: the OpenAI chat shape plus `reasoning_content`.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String?
    public var reasoningContent: String?
    public var toolCalls: [ToolCall]
    public var toolCallID: String?
    public var name: String?
    /// Fields we do not model, kept so nothing read is lost (content parts, signatures, ...).
    public var extra: JSONObject?

    public init(role: String, content: String?, reasoningContent: String? = nil, toolCalls: [ToolCall] = [],
                toolCallID: String? = nil, name: String? = nil, extra: JSONObject? = nil) {
        self.role = role
        self.content = content
        self.reasoningContent = reasoningContent
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
        self.extra = extra
    }

    public static let roles: Set<String> = ["system", "user", "assistant", "tool"]

    /// A message's `content` as text: a string, null, or a list of parts whose text parts are
    /// joined (the list itself is returned so it can be kept). nil for any other JSON type.
    static func content(_ value: JSONValue?) -> (text: String?, parts: JSONValue?)? {
        switch value {
        case nil, .null?: return (nil, nil)
        case .string(let s)?: return (s, nil)
        case .array(let parts)?: return (parts.compactMap { $0["text"]?.stringValue }.joined(), .array(parts))
        default: return nil
        }
    }

    /// Reads an OpenAI-shaped message. `content` may be a string, null, or a list of parts
    /// (text parts are joined; the original list is kept in `extra`). Tool-call arguments that
    /// are objects rather than JSON strings are serialized.
    init(reading r: RecordReader) throws {
        let object = try r.object()
        var role = try r.requiredString("role")
        var extra = JSONObject()
        if role == "function" { role = "tool"; extra["original_role"] = .string("function") }
        guard Self.roles.contains(role) else {
            throw FieldError(field: r.fieldPath("role"), reason: "unknown role \"\(role)\" (expected system, user, assistant or tool)")
        }
        self.role = role
        guard let (text, parts) = Self.content(object["content"]) else {
            throw FieldError(field: r.fieldPath("content"),
                             reason: "expected a string, null or a list of parts, found \(object["content"]!.typeName)")
        }
        content = text
        if let parts { extra["content"] = parts }
        reasoningContent = try r.optionalString("reasoning_content")
        toolCallID = try r.optionalString("tool_call_id")
        name = try r.optionalString("name")
        toolCalls = []
        if let calls = r.child("tool_calls"), !calls.value.isNull {
            for c in try calls.array() {
                _ = try c.object()
                let fn = try c.required("function")
                let name = try fn.requiredString("name")
                let arguments: String
                switch fn.value["arguments"] {
                case .string(let s)?: arguments = s
                case nil, .null?: arguments = "{}"
                case let v?: arguments = v.jsonText
                }
                let id: String? = try c.child("id").flatMap { $0.value.isNull ? nil : try $0.idText() }
                toolCalls.append(ToolCall(id: id, name: name, arguments: arguments))
            }
        }
        let modelled: Set<String> = ["role", "content", "reasoning_content", "tool_call_id", "name", "tool_calls"]
        for (k, v) in object where !modelled.contains(k) { extra[k] = v }
        self.extra = extra.isEmpty ? nil : extra
    }
}

/// A tool call made by an assistant message. `arguments` is the raw JSON string the model wrote
/// (kept even when it is not valid JSON).
extension ChatMessage {
    /// The message in the OpenAI chat shape plus `reasoning_content` (the canonical model):
    /// `content` null when absent, tool calls as `{id, type, function{name, arguments}}`.
    public var openAIJSON: JSONValue {
        var o = JSONObject()
        o["role"] = .string(role)
        o["content"] = content.map(JSONValue.string) ?? .null
        if let r = reasoningContent { o["reasoning_content"] = .string(r) }
        if !toolCalls.isEmpty {
            o["tool_calls"] = .array(toolCalls.map { call in
                .object(["id": call.id.map(JSONValue.string) ?? .null, "type": "function",
                         "function": .object(["name": .string(call.name), "arguments": .string(call.arguments)])])
            })
        }
        if let id = toolCallID { o["tool_call_id"] = .string(id) }
        if let name { o["name"] = .string(name) }
        return .object(o)
    }
}

public struct ToolCall: Sendable, Equatable {
    public var id: String?
    public var name: String
    public var arguments: String

    public init(id: String?, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}
