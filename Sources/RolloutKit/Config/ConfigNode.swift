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

    /// The largest config file read, in bytes. Real registries, run configs and grader files are a
    /// few kilobytes; the cap keeps a runaway or hostile file from being parsed at all.
    static let maxFileBytes = 4 << 20

    /// The most nodes a config may expand to once every alias (`*name`) is followed. Yams shares
    /// an anchored node between its uses, so parsing a 571-byte file of nested aliases is cheap,
    /// but anything that walks it (settings stored as JSON, key lookups) does 10^N work; real
    /// configs have a few hundred nodes.
    static let maxExpandedNodes = 100_000

    static func load(file: String) throws -> ConfigNode {
        if let size = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int, size > maxFileBytes {
            throw ConfigError(file: file, line: nil, keyPath: "",
                              reason: "the file is \(size) bytes; config files may be at most \(maxFileBytes) bytes (4 MiB)")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "cannot read the file")
        }
        guard data.count <= maxFileBytes else {
            throw ConfigError(file: file, line: nil, keyPath: "",
                              reason: "the file is \(data.count) bytes; config files may be at most \(maxFileBytes) bytes (4 MiB)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "not valid UTF-8")
        }
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigError(file: file, line: nil, keyPath: "", reason: "empty file")
            }
            try checkExpansion(node, file: file)
            return ConfigNode(node: node, path: "", file: file)
        } catch let e as ConfigError {
            throw e
        } catch let e as YamlError {
            throw ConfigError(file: file, line: nil, keyPath: "", reason: "not valid YAML: \(e)")
        }
    }

    /// Walks the tree as a reader would, following shared (aliased) nodes every time they are
    /// used, and stops as soon as the count passes `maxExpandedNodes`, so a bomb costs at most
    /// that many steps. The error names the line of the node that used the alias: an aliased
    /// node keeps its anchor's mark, which comes before the place that refers to it.
    static func checkExpansion(_ root: Node, file: String) throws {
        var count = 0
        // Each entry: a node to visit, and the line of the outermost alias use above it.
        var stack: [(node: Node, parentLine: Int?, aliasLine: Int?)] = [(root, nil, nil)]
        while let (node, parentLine, aliasLine) = stack.popLast() {
            count += 1
            let line = node.mark?.line
            var useLine = aliasLine
            if useLine == nil, let line, let parentLine, line < parentLine { useLine = parentLine }
            if count > maxExpandedNodes {
                throw ConfigError(file: file, line: useLine ?? line, keyPath: "",
                                  reason: "the document expands to more than \(maxExpandedNodes) values once its aliases (*name) are followed; "
                                      + "configs may not nest aliases that deeply; write the values out or use fewer aliases")
            }
            switch node {
            case .mapping(let m):
                for (k, v) in m { stack.append((k, line, useLine)); stack.append((v, line, useLine)) }
            case .sequence(let seq):
                for v in seq { stack.append((v, line, useLine)) }
            case .scalar, .alias:
                break
            }
        }
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

    /// The literal defaults of `${VAR:-default}` references in `text`.
    public static func fallbacks(in text: String) -> [String] {
        matches(text).compactMap(\.fallback)
    }

    /// `text` with every reference removed: the literal parts a config spells out itself.
    public static func removingReferences(_ text: String) -> String {
        var result = text
        for m in matches(text).reversed() { result.removeSubrange(m.range) }
        return result
    }

    /// `expand` for a value about to be used as a credential or handed to a tool server: every
    /// value substituted is registered with `Secrets`, so error text that echoes it is masked.
    public static func expandSecret(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                                    keyPath: String) throws -> String {
        let value = try expand(text, environment: environment, keyPath: keyPath)
        Secrets.registerSubstitutions(of: text, environment: environment)
        return value
    }
}
