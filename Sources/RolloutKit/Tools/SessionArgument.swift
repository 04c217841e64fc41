import Foundation

/// A tool argument through which a server keeps per-session state (tau2-mock-mcp-eval's
/// `state_key`, for one), for servers that do not key on `_meta.sessionId`. The engine hides the
/// argument from the schemas it offers the agent and sets it on every call to `template`
/// rendered for the rollout, overriding anything the agent wrote there.
public struct SessionArgument: Sendable, Hashable {
    /// The argument's name in the tool's input schema.
    public var name: String
    /// The value, with placeholders from `placeholders`.
    public var template: String

    /// What a template may refer to.
    public static let placeholders = ["session", "task", "run", "sample", "attempt", "domain"]
    /// The template when none is given: the session id `_meta` carries too.
    public static let defaultTemplate = "{session}"

    public init(name: String, template: String = SessionArgument.defaultTemplate) throws {
        guard !name.isEmpty, !name.contains(where: { $0.isWhitespace || $0 == "=" }) else {
            throw FieldError(field: "session argument", reason: "\"\(name)\" is not an argument name")
        }
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw FieldError(field: "session argument \(name)", reason: "unclosed { in \"\(template)\"")
            }
            let key = String(rest[rest.index(after: open)..<close])
            guard Self.placeholders.contains(key) else {
                throw FieldError(field: "session argument \(name)",
                                 reason: "unknown placeholder {\(key)} in \"\(template)\"; use \(Self.placeholders.map { "{\($0)}" }.joined(separator: ", "))")
            }
            rest = rest[rest.index(after: close)...]
        }
        guard template.contains("{session}") else {
            throw FieldError(field: "session argument \(name)",
                             reason: "\"\(template)\" has no {session}: every rollout would share one state")
        }
        self.name = name
        self.template = template
    }

    /// `NAME` or `NAME=TEMPLATE`, as `rollout ingest server --session-arg` takes it.
    public init(parsing text: String) throws {
        if let eq = text.firstIndex(of: "=") {
            try self.init(name: String(text[..<eq]), template: String(text[text.index(after: eq)...]))
        } else {
            try self.init(name: text)
        }
    }

    /// The template with each placeholder replaced.
    public func render(_ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            let key = String(rest[rest.index(after: open)..<close])
            out += values[key] ?? ""
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    /// A tool's OpenAI `parameters` without this argument (from `properties` and `required`).
    public func hidden(from parameters: JSONValue) -> JSONValue {
        guard case .object(var p) = parameters else { return parameters }
        if case .object(var props)? = p["properties"], props[name] != nil {
            props[name] = nil
            p["properties"] = .object(props)
        }
        if case .array(let required)? = p["required"] {
            p["required"] = .array(required.filter { $0.stringValue != name })
        }
        return .object(p)
    }
}
