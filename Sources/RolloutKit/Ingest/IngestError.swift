/// Bad input, located: `FILE:LINE: field: reason`. The field is a path into the record
/// (`messages[0].content`, `[3].function.name`).
public struct IngestError: Error, Sendable, CustomStringConvertible, Codable {
    public var file: String
    public var line: Int?
    public var field: String?
    public var reason: String

    public init(file: String, line: Int? = nil, field: String? = nil, _ reason: String) {
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        if let field, !field.isEmpty { s += ": \(field)" }
        return s + ": " + reason
    }
}

/// A record-level problem before the file and line are known; `RecordContext` locates it.
struct FieldError: Error {
    var field: String
    var reason: String
}

/// Typed access to the fields of one JSON record with errors that name the field path.
struct RecordReader {
    let value: JSONValue
    let path: String

    init(_ value: JSONValue, path: String = "") {
        self.value = value
        self.path = path
    }

    func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func object() throws -> JSONObject {
        guard case .object(let o) = value else {
            throw FieldError(field: path, reason: "expected a JSON object, found \(value.typeName)")
        }
        return o
    }

    func child(_ key: String) -> RecordReader? {
        guard let v = value[key] else { return nil }
        return RecordReader(v, path: fieldPath(key))
    }

    func required(_ key: String) throws -> RecordReader {
        _ = try object()
        guard let v = value[key], !v.isNull else {
            throw FieldError(field: fieldPath(key), reason: "missing (required)")
        }
        return RecordReader(v, path: fieldPath(key))
    }

    func string() throws -> String {
        guard case .string(let s) = value else {
            throw FieldError(field: path, reason: "expected a string, found \(value.typeName)")
        }
        return s
    }

    /// A string, or a number taken as its literal text (ids are often integers).
    func idText() throws -> String {
        switch value {
        case .string(let s) where !s.isEmpty: return s
        case .string: throw FieldError(field: path, reason: "empty id")
        case .number(let n): return n
        default: throw FieldError(field: path, reason: "expected a string or integer id, found \(value.typeName)")
        }
    }

    func array() throws -> [RecordReader] {
        guard case .array(let items) = value else {
            throw FieldError(field: path, reason: "expected an array, found \(value.typeName)")
        }
        return items.enumerated().map { RecordReader($1, path: "\(path)[\($0)]") }
    }

    func optionalString(_ key: String) throws -> String? {
        guard let c = child(key), !c.value.isNull else { return nil }
        return try c.string()
    }

    func requiredString(_ key: String) throws -> String { try required(key).string() }
}
