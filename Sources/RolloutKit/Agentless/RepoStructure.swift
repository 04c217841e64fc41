import Foundation

/// An Agentless repository structure (`repo_structures.structure`): folder names nest; a parsed
/// `.py` file is `{"classes", "functions", "text": [lines]}`, any other file `{}`.
///
/// Read without building the file texts: objects that are values of object keys (folders and
/// file entries) become nodes, every array and scalar is skipped and remembered as a byte
/// range, so a 10 MB structure costs one pass over its bytes and a file's text is decoded only
/// when asked for. The rules below are Agentless's own (`show_project_structure`,
/// `filter_none_python`, `filter_out_test_files`, `get_full_file_paths_and_classes_and_functions`),
/// so prompts and paths come out as Agentless made them.
public struct RepoStructure: Sendable {
    indirect enum Node: Sendable {
        case object([(String, Node)])
        /// An array or scalar value, as its byte range in `bytes`.
        case value(Range<Int>, isArray: Bool, isString: Bool)

        var entries: [(String, Node)]? {
            if case .object(let e) = self { return e }
            return nil
        }

        func has(_ key: String) -> Bool { entries?.contains { $0.0 == key } ?? false }

        /// Agentless's test for a file entry: exactly three keys, among them functions,
        /// classes or text. Anything else that is an object is a folder.
        var isFileEntry: Bool {
            guard let e = entries else { return false }
            return e.count == 3 && (has("functions") || has("classes") || has("text"))
        }
    }

    let bytes: [UInt8]
    let root: [(String, Node)]

    /// Reads the structure object (the `structure` column, or a whole `<instance_id>.json`
    /// whose `structure` key is taken).
    public init(json: [UInt8]) throws {
        bytes = json
        var parsed: [(String, Node)] = []
        try json.withUnsafeBytes { raw in
            var scanner = StructureScanner(bytes: raw)
            scanner.skipWhitespace()
            parsed = try scanner.object()
        }
        if let inner = parsed.first(where: { $0.0 == "structure" })?.1.entries,
           parsed.contains(where: { $0.0 == "instance_id" }) {
            parsed = inner
        }
        root = parsed
    }

    public init(json: String) throws { try self.init(json: Array(json.utf8)) }

    private init(bytes: [UInt8], root: [(String, Node)]) {
        self.bytes = bytes
        self.root = root
    }

    // MARK: - Views

    /// What the bug fixer's localize sees: non-Python files and folders left empty removed
    /// (`filter_none_python`), then every entry whose name starts with "test" at any depth
    /// (`filter_out_test_files`) — except for pytest's own repository, as Agentless does.
    public func bugfixView(instanceID: String) -> RepoStructure {
        var tree = Self.filterNonePython(root)
        if !instanceID.hasPrefix("pytest") { tree = Self.filterOutTests(tree) }
        return RepoStructure(bytes: bytes, root: tree)
    }

    static func filterNonePython(_ entries: [(String, Node)]) -> [(String, Node)] {
        var out: [(String, Node)] = []
        for (key, value) in entries {
            if value.isFileEntry {
                if key.hasSuffix(".py") { out.append((key, value)) }
            } else if case .object(let inner) = value {
                let kept = filterNonePython(inner)
                if !kept.isEmpty { out.append((key, .object(kept))) }
            } else {
                out.append((key, value))
            }
        }
        return out
    }

    static func filterOutTests(_ entries: [(String, Node)]) -> [(String, Node)] {
        entries.compactMap { key, value in
            if key.hasPrefix("test") { return nil }
            if case .object(let inner) = value { return (key, .object(filterOutTests(inner))) }
            return (key, value)
        }
    }

    // MARK: - Rendering

    /// `show_project_structure`: one name a line, four spaces per level, folders (and files
    /// without an extension) with a trailing "/", names with a dot other than `.py` names left
    /// out; an entry with `classes` is not descended into. Without the final newline, as the
    /// prompt uses it (`.strip()`).
    public func render() -> String {
        var out = ""
        out.reserveCapacity(64 * 1024)
        Self.render(root, spacing: 0, into: &out)
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func render(_ entries: [(String, Node)], spacing: Int, into out: inout String) {
        for (key, value) in entries {
            let dotted = key.contains(".")
            if dotted && !key.contains(".py") { continue }
            out += String(repeating: " ", count: spacing)
            out += key
            out += dotted ? "\n" : "/\n"
            if case .object(let inner) = value, !value.has("classes") {
                render(inner, spacing: spacing + 4, into: &out)
            }
        }
    }

    // MARK: - Files

    /// Every file path, in structure order (folders joined with "/").
    public var files: [String] {
        var out: [String] = []
        Self.collect(root, prefix: "", into: &out)
        return out
    }

    static func collect(_ entries: [(String, Node)], prefix: String, into out: inout [String]) {
        for (key, value) in entries {
            let path = prefix.isEmpty ? key : prefix + "/" + key
            if case .object(let inner) = value, !value.isFileEntry {
                collect(inner, prefix: path, into: &out)
            } else {
                out.append(path)
            }
        }
    }

    /// The names of the top-level folders.
    public var topFolders: [String] {
        root.compactMap { key, value in
            if case .object = value, !value.isFileEntry { return key }
            return nil
        }
    }

    private func node(at path: String) -> Node? {
        var entries = root
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for (i, part) in parts.enumerated() {
            guard let found = entries.last(where: { $0.0 == part }) else { return nil }
            let node = found.1
            if i == parts.count - 1 { return node }
            guard case .object(let inner) = node, !node.isFileEntry else { return nil }
            entries = inner
        }
        return nil
    }

    /// Whether `path` is a file of this structure.
    public func contains(_ path: String) -> Bool {
        guard let n = node(at: path) else { return false }
        if case .object = n { return n.isFileEntry }
        return true
    }

    /// A file's content as Agentless reads it: its `text` lines joined with "\n" (no final
    /// newline). nil for a path that is not a file; "" for a file without parsed text.
    public func content(of path: String) throws -> String? {
        guard let n = node(at: path) else { return nil }
        guard n.isFileEntry, let entries = n.entries, let text = entries.last(where: { $0.0 == "text" })?.1 else {
            if case .object = n { return n.isFileEntry ? "" : nil }
            return ""
        }
        guard case .value(let range, let isArray, let isString) = text else { return "" }
        let value: JSONValue = try bytes.withUnsafeBytes { raw in
            try JSONParser.parse(UnsafeRawBufferPointer(rebasing: raw[range]))
        }
        if isArray, case .array(let lines) = value {
            return lines.map { $0.stringValue ?? $0.jsonText }.joined(separator: "\n")
        }
        if isString, case .string(let s) = value {
            return s.map(String.init).joined(separator: "\n")  // Python's "\n".join(str)
        }
        return ""
    }

    // MARK: - Path correction

    /// A path a model named, as a file of this structure: exactly, else under one of the
    /// top-level folders (Agentless merges a repository's root files into a folder named after
    /// the repository). Leading "./" and "/" and surrounding backticks or quotes are dropped.
    public func correct(_ path: String, files: Set<String>) -> String? {
        var p = path.trimmingCharacters(in: .whitespaces)
        while let f = p.first, f == "`" || f == "\"" || f == "'" { p.removeFirst() }
        while let l = p.last, l == "`" || l == "\"" || l == "'" { p.removeLast() }
        while p.hasPrefix("./") { p.removeFirst(2) }
        while p.hasPrefix("/") { p.removeFirst() }
        if p.isEmpty { return nil }
        if files.contains(p) { return p }
        for folder in topFolders where files.contains(folder + "/" + p) { return folder + "/" + p }
        return nil
    }
}

/// Walks the structure's bytes: objects under object keys are parsed, everything else skipped.
struct StructureScanner {
    let bytes: UnsafeRawBufferPointer
    var pos = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: pos, reason: reason) }

    mutating func skipWhitespace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 { pos += 1 }
    }

    mutating func object() throws(JSONParseError) -> [(String, RepoStructure.Node)] {
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "{") else { throw fail("expected an object") }
        pos += 1
        var out: [(String, RepoStructure.Node)] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return out }
        while true {
            skipWhitespace()
            let key = try string()
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            pos += 1
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end") }
            if bytes[pos] == UInt8(ascii: "{") {
                out.append((key, .object(try object())))
            } else {
                let start = pos
                let first = bytes[pos]
                try skipValue()
                out.append((key, .value(start..<pos, isArray: first == UInt8(ascii: "["), isString: first == UInt8(ascii: "\""))))
            }
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return out }
            throw fail("expected ',' or '}'")
        }
    }

    /// A string's value (keys are short: decoded at once, escapes through the JSON parser).
    mutating func string() throws(JSONParseError) -> String {
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a string") }
        let start = pos
        try skipString()
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
        if !slice.contains(0x5C) {
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(start + 1)..<(pos - 1)]), as: UTF8.self)
        }
        guard case .success(.string(let s)) = JSONParser.result(slice) else { throw fail("bad string") }
        return s
    }

    mutating func skipString() throws(JSONParseError) {
        pos += 1  // opening quote
        let base = bytes.baseAddress!
        while pos < bytes.count {
            guard let hit = memchr(base + pos, 0x22, bytes.count - pos) else { break }
            let q = base.distance(to: UnsafeRawPointer(hit))
            var backslashes = 0
            var i = q - 1
            while i >= pos && bytes[i] == 0x5C { backslashes += 1; i -= 1 }
            pos = q + 1
            if backslashes % 2 == 0 { return }
        }
        throw fail("unterminated string")
    }

    mutating func skipValue() throws(JSONParseError) {
        guard pos < bytes.count else { throw fail("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            var depth = 0
            while pos < bytes.count {
                let b = bytes[pos]
                if b == 0x22 { try skipString(); continue }
                if b == UInt8(ascii: "[") || b == UInt8(ascii: "{") { depth += 1 }
                if b == UInt8(ascii: "]") || b == UInt8(ascii: "}") {
                    depth -= 1
                    if depth == 0 { pos += 1; return }
                }
                pos += 1
            }
            throw fail("unterminated array or object")
        default:
            while pos < bytes.count {
                let b = bytes[pos]
                if b == UInt8(ascii: ",") || b == UInt8(ascii: "}") || b == UInt8(ascii: "]") || b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { return }
                pos += 1
            }
        }
    }
}
