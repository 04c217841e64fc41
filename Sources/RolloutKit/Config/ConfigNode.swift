import Foundation
import Yams

/// A config problem, named by its key path (`datasets.Airline.agent.model: unknown model …`).
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int?
    public let keyPath: String
    public let reason: String

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return keyPath.isEmpty ? "\(place): \(reason)" : "\(place): \(keyPath): \(reason)"
    }
}

/// A YAML node with its key path, for reading configs with errors that say where.
struct ConfigNode {
    let node: Node
    let path: String
    let file: String

    static func load(file: String) throws -> ConfigNode {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "not valid UTF-8")
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigError(file: file, line: nil, keyPath: "", reason: "empty file")
            }
            // An alias is the anchored node itself, so anchors of aliases of anchors nest
            // exponentially ("billion laughs"): 600 bytes can stand for 10^9 values, and reading
            // them (json()) would never end. No real config comes near the limit.
            if expandedSize(node, limit: maxValues) > maxValues {
                throw ConfigError(file: file, line: nil, keyPath: "",
                                  reason: "expands to more than \(maxValues) values (aliases of anchors nested in each other); write the values out")
            }
            return ConfigNode(node: node, path: "", file: file)
        } catch let e as ConfigError {
            throw e
        } catch let e as YamlError {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "not valid YAML: \(e)")
        }
    }

    /// The most values (scalars, mappings, sequences) a config may hold with its aliases expanded.
    static let maxValues = 100_000

    /// The values under `node` with aliases expanded, counted up to just past `limit` (counted
    /// as they are reached, so the walk holds at most `limit` plus one node's children).
    private static func expandedSize(_ node: Node, limit: Int) -> Int {
        var count = 1
        var stack = [node]
        while let n = stack.popLast() {
            switch n {
            case .scalar, .alias: continue
            case .mapping(let m):
                count += 2 * m.count
                if count > limit { return count }
                for (k, v) in m { stack.append(k); stack.append(v) }
            case .sequence(let s):
                count += s.count
                if count > limit { return count }
                stack.append(contentsOf: s)
            }
        }
        return count
    }

    var line: Int? { node.mark.map { $0.line } }

    func error(_ reason: String) -> ConfigError { ConfigError(file: file, line: line, keyPath: path, reason: reason) }

    func child(_ key: String) -> ConfigNode? {
        guard case .mapping(let m) = node, let v = m[key] else { return nil }
        if case .scalar(let s) = v, s.tag.rawValue == Tag.Name.null.rawValue || (s.string.isEmpty && s.style == .plain) { return nil }
        if case .scalar(let s) = v, ["null", "~"].contains(s.string), s.style == .plain { return nil }
        return ConfigNode(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    func mapping() throws -> [(key: String, value: ConfigNode)] {
        guard case .mapping(let m) = node else { throw error("expected a mapping of keys to values") }
        return m.map { k, v in
            let key = k.string ?? "\(k)"
            return (key, ConfigNode(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file))
        }
    }

    var keys: [String] { (try? mapping().map(\.key)) ?? [] }

    func string() throws -> String {
        guard case .scalar(let s) = node else { throw error("expected a text value") }
        return s.string
    }

    func int(min: Int? = nil) throws -> Int {
        guard case .scalar(let s) = node, let i = Int(s.string) else { throw error("expected an integer") }
        if let min, i < min { throw error("must be at least \(min), found \(i)") }
        return i
    }

    func double() throws -> Double {
        guard case .scalar(let s) = node, let d = Double(s.string) else { throw error("expected a number") }
        return d
    }

    func bool() throws -> Bool {
        guard case .scalar(let s) = node else { throw error("expected true or false") }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found \"\(s.string)\"")
        }
    }

    /// The node as JSON (scalars typed the YAML way), for storing settings we pass through.
    func json() -> JSONValue {
        switch node {
        case .scalar(let s):
            if s.style != .plain { return .string(s.string) }
            if ["null", "~", ""].contains(s.string) { return .null }
            if let b = try? bool(), ["true", "false"].contains(s.string.lowercased()) { return .bool(b) }
            if Int(s.string) != nil { return .number(s.string) }
            if let d = Double(s.string), d.isFinite { return JSONValue(d) }
            return .string(s.string)
        case .mapping:
            return .object(JSONObject(pairs: ((try? mapping()) ?? []).map { ($0.key, $0.value.json()) }))
        case .sequence(let seq):
            return .array(seq.map { ConfigNode(node: $0, path: path, file: file).json() })
        case .alias:
            return .null
        }
    }
}

/// `${VAR}` and `${VAR:-default}` references, expanded from the environment only when a value
/// is used, so configs and the database hold the reference, never the secret.
public enum EnvReference {
    /// Names referenced in `text`.
    public static func names(in text: String) -> [String] {
        matches(text).map(\.name)
    }

    private static func matches(_ text: String) -> [(range: Range<String.Index>, name: String, fallback: String?)] {
        var out: [(Range<String.Index>, String, String?)] = []
        var i = text.startIndex
        while let start = text[i...].range(of: "${") {
            guard let end = text[start.upperBound...].firstIndex(of: "}") else { break }
            let inner = String(text[start.upperBound..<end])
            let parts = inner.components(separatedBy: ":-")
            out.append((start.lowerBound..<text.index(after: end), parts[0], parts.count > 1 ? parts.dropFirst().joined(separator: ":-") : nil))
            i = text.index(after: end)
        }
        return out
    }

    /// Replaces each reference with its value. A variable that is unset and has no default is
    /// an error naming the variable, never its would-be value.
    public static func expand(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                              keyPath: String) throws -> String {
        var result = text
        for m in matches(text).reversed() {
            guard let value = environment[m.name] ?? m.fallback else {
                throw ConfigError(file: "environment", line: nil, keyPath: keyPath,
                                  reason: "refers to ${\(m.name)}, which is not set; export \(m.name)=… before running")
            }
            result.replaceSubrange(m.range, with: value)
        }
        return result
    }

    public static func isReference(_ text: String) -> Bool { !matches(text).isEmpty }
}
