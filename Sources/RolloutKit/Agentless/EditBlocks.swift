import Foundation

extension Substring {
    /// Without leading and trailing spaces and tabs (ASCII only: what edit matching ignores).
    var trimmedBlanks: Substring {
        let u = utf8
        guard let first = u.firstIndex(where: { $0 != 0x20 && $0 != 0x09 }) else { return self[endIndex...] }
        let last = u.lastIndex(where: { $0 != 0x20 && $0 != 0x09 })!
        return self[first...last]
    }

    /// Only spaces and tabs.
    var isBlank: Bool { utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 } }
}

extension String {
    var trimmedBlanks: Substring { self[...].trimmedBlanks }
    var isBlank: Bool { utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 } }
}

/// Reading a model's answer: thinking removed, fenced blocks, file lists, SEARCH/REPLACE edits.
public enum ModelAnswer {
    /// The answer without its thinking: the text after the last `</think>` (or `◁/think▷`).
    /// An answer that opens a thinking tag and never closes it was cut off while thinking and
    /// has no answer: nil.
    public static func stripThinking(_ text: String) -> String? {
        var t = text
        for (open, close) in [("◁think▷", "◁/think▷"), ("<think>", "</think>")] {
            if let end = t.range(of: close, options: .backwards) {
                t = String(t[end.upperBound...])
            } else if t.contains(open) {
                return nil
            }
        }
        return t
    }

    /// The lines inside ``` fences (fence lines themselves dropped), or every line when the
    /// answer has no fence. Lines are split on "\n" with a trailing "\r" removed.
    public static func fencedLines(_ text: String) -> [String] {
        let lines = splitLines(text)
        guard lines.contains(where: isFence) else { return lines }
        var out: [String] = []
        var inside = false
        for l in lines {
            if isFence(l) { inside.toggle(); continue }
            if inside { out.append(l) }
        }
        return out
    }

    static func isFence(_ line: String) -> Bool { line.trimmedBlanks.hasPrefix("```") }

    /// Lines split on "\n" bytes (a "\r\n" pair is one Character to Swift, so Character
    /// splitting would miss it), a trailing "\r" removed.
    static func splitLines(_ text: String) -> [String] {
        var out: [String] = []
        var copy = text
        copy.withUTF8 { bytes in
            var start = 0
            for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
                var end = i
                if end > start && bytes[end - 1] == 0x0D { end -= 1 }
                out.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
                start = i + 1
            }
        }
        return out
    }

    /// The file paths a localize answer lists: the non-empty lines of its fenced blocks (or of
    /// the whole answer), list markers removed, in order, each once.
    public static func fileList(_ text: String) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for raw in fencedLines(text) {
            var l = raw.trimmingCharacters(in: .whitespaces)
            for marker in ["- ", "* ", "### "] where l.hasPrefix(marker) { l.removeFirst(marker.count) }
            l = l.trimmingCharacters(in: .whitespaces)
            if l.isEmpty || l.contains(" ") && !l.hasSuffix(".py") { continue }
            if seen.insert(l).inserted { out.append(l) }
        }
        return out
    }
}

/// One `<<<<<<< SEARCH` / `=======` / `>>>>>>> REPLACE` edit of a file.
public struct SearchReplaceEdit: Sendable, Equatable {
    /// The path as the model wrote it (after `### `).
    public var path: String
    public var search: [String]
    public var replace: [String]
    /// 1-based position among the answer's edit blocks.
    public var block: Int
}

/// A problem with one answer, as failures.jsonl and `agentless_outputs.failures` record it.
public struct EditFailure: Error, Sendable, Equatable, Codable {
    public var stage: String
    public var reason: String
    public var file: String?
    public var block: Int?

    public init(stage: String, reason: String, file: String? = nil, block: Int? = nil) {
        self.stage = stage
        self.reason = reason
        self.file = file
        self.block = block
    }

    var json: JSONValue {
        var o: JSONObject = ["stage": .string(stage), "reason": .string(reason)]
        if let file { o["file"] = .string(file) }
        if let block { o["block"] = JSONValue(block) }
        return .object(o)
    }
}

public enum SearchReplace {
    static func isSearch(_ l: String) -> Bool { marker(l, "<", word: "SEARCH") }
    static func isDivider(_ l: String) -> Bool { marker(l, "=", word: nil) }
    static func isReplace(_ l: String) -> Bool { marker(l, ">", word: "REPLACE") }

    /// Seven or more of `symbol`, then the word (if any), nothing else but spaces.
    static func marker(_ line: String, _ symbol: Character, word: String?) -> Bool {
        let t = line.trimmedBlanks
        guard let f = t.first, f == symbol else { return false }
        let run = t.prefix { $0 == symbol }.count
        guard run >= 7 else { return false }
        return t.dropFirst(run).trimmedBlanks == (word ?? "")
    }

    /// The edit blocks of an answer (thinking already stripped). Inside fences when the answer
    /// has any, else anywhere. A block's path is the last non-empty line before its SEARCH
    /// marker (`### path` or the bare path). Blocks that are malformed or cut short are
    /// reported, the others kept.
    public static func parse(_ text: String) -> (edits: [SearchReplaceEdit], failures: [EditFailure]) {
        let lines = ModelAnswer.splitLines(text)
        let fenced = lines.contains(where: ModelAnswer.isFence)
        var edits: [SearchReplaceEdit] = []
        var failures: [EditFailure] = []
        enum State { case none, search, replace }
        var state = State.none
        var inFence = false
        var candidate: String?
        var current = SearchReplaceEdit(path: "", search: [], replace: [], block: 0)
        var blocks = 0
        for line in lines {
            switch state {
            case .search:
                if fenced && line.trimmedBlanks == "```" {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(current.block) is cut short: the fence closes before its ======= line",
                                                file: current.path.isEmpty ? nil : current.path, block: current.block))
                    state = .none
                    inFence = false
                    candidate = nil
                } else if isDivider(line) { state = .replace }
                else if isSearch(line) {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(current.block) has a second <<<<<<< SEARCH before its ======= line",
                                                file: current.path, block: current.block))
                    blocks += 1
                    current = SearchReplaceEdit(path: current.path, search: [], replace: [], block: blocks)
                } else if isReplace(line) {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(current.block) has no ======= line between SEARCH and REPLACE",
                                                file: current.path, block: current.block))
                    state = .none
                    candidate = nil
                } else { current.search.append(line) }
                continue
            case .replace:
                if fenced && line.trimmedBlanks == "```" {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(current.block) is cut short: the fence closes before its >>>>>>> REPLACE line",
                                                file: current.path.isEmpty ? nil : current.path, block: current.block))
                    state = .none
                    inFence = false
                    candidate = nil
                } else if isReplace(line) {
                    edits.append(current)
                    state = .none
                    candidate = nil
                } else if isSearch(line) {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(current.block) has no >>>>>>> REPLACE line before the next SEARCH",
                                                file: current.path, block: current.block))
                    blocks += 1
                    current = SearchReplaceEdit(path: current.path, search: [], replace: [], block: blocks)
                    state = .search
                } else { current.replace.append(line) }
                continue
            case .none:
                break
            }
            if ModelAnswer.isFence(line) {
                inFence.toggle()
                candidate = nil
                continue
            }
            guard inFence || !fenced else { continue }
            if isSearch(line) {
                blocks += 1
                guard let path = candidate.map(cleanPath), !path.isEmpty else {
                    failures.append(EditFailure(stage: "finalize", reason: "edit block \(blocks) has no file path before <<<<<<< SEARCH", block: blocks))
                    current = SearchReplaceEdit(path: "", search: [], replace: [], block: blocks)
                    state = .search
                    continue
                }
                current = SearchReplaceEdit(path: path, search: [], replace: [], block: blocks)
                state = .search
            } else if isDivider(line) || isReplace(line) {
                failures.append(EditFailure(stage: "finalize", reason: "a stray \(isDivider(line) ? "=======" : ">>>>>>> REPLACE") line outside an edit block", block: blocks))
            } else if !line.isBlank {
                candidate = line
            }
        }
        if state != .none {
            failures.append(EditFailure(stage: "finalize",
                                        reason: "edit block \(current.block) is cut short: no \(state == .search ? "=======" : ">>>>>>> REPLACE") line before the answer ends",
                                        file: current.path, block: current.block))
        }
        // A block that lost its path was reported; keep only blocks with one.
        return (edits.filter { !$0.path.isEmpty }, failures)
    }

    static func cleanPath(_ line: String) -> String {
        var t = line.trimmingCharacters(in: .whitespaces)
        while t.hasPrefix("#") { t.removeFirst() }
        t = t.trimmingCharacters(in: .whitespaces)
        for prefix in ["File:", "file:", "Path:", "path:"] where t.hasPrefix(prefix) {
            t = String(t.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
        }
        while let f = t.first, f == "`" || f == "*" || f == "\"" { t.removeFirst() }
        while let l = t.last, l == "`" || l == "*" || l == "\"" || l == ":" { t.removeLast() }
        return t
    }

    /// How one edit was applied.
    public enum Match: Sendable, Equatable { case exact, whitespaceInsensitive, created, appended }

    /// Applies one edit to `lines`: the SEARCH lines exactly, else the one place where they
    /// match ignoring leading and trailing whitespace (the REPLACE lines re-indented by the
    /// difference), else with the SEARCH's blank first and last lines dropped. No match, or a
    /// match in more than one place, is an error naming the lines.
    public static func apply(_ edit: SearchReplaceEdit, to lines: inout [String], fileExists: Bool) throws(EditApplyError) -> Match {
        var search = edit.search
        while search.first?.isBlank == true { search.removeFirst() }
        while search.last?.isBlank == true { search.removeLast() }
        if search.isEmpty {
            if !fileExists || lines.isEmpty {
                lines = edit.replace
                return .created
            }
            lines += edit.replace
            return .appended
        }
        for candidate in edit.search == search ? [edit.search] : [edit.search, search] {
            let exact = positions(of: candidate, in: lines, equal: ==)
            if exact.count == 1 {
                lines.replaceSubrange(exact[0]..<(exact[0] + candidate.count), with: edit.replace)
                return .exact
            }
            if exact.count > 1 { throw EditApplyError.ambiguous(exact.map { $0 + 1 }) }
        }
        for candidate in edit.search == search ? [edit.search] : [edit.search, search] {
            let loose = positions(of: candidate, in: lines) { a, b in a.trimmedBlanks == b.trimmedBlanks }
            if loose.count > 1 { throw EditApplyError.ambiguous(loose.map { $0 + 1 }) }
            if loose.count == 1 {
                let at = loose[0]
                let replacement = reindent(edit.replace, searchLines: candidate, fileLines: Array(lines[at..<(at + candidate.count)]))
                lines.replaceSubrange(at..<(at + candidate.count), with: replacement)
                return .whitespaceInsensitive
            }
        }
        throw EditApplyError.noMatch
    }

    static func positions(of needle: [String], in haystack: [String], equal: (String, String) -> Bool) -> [Int] {
        guard !needle.isEmpty, needle.count <= haystack.count else { return [] }
        var out: [Int] = []
        let first = needle[0]
        for i in 0...(haystack.count - needle.count) where equal(haystack[i], first) {
            var ok = true
            for j in 1..<needle.count where !equal(haystack[i + j], needle[j]) { ok = false; break }
            if ok { out.append(i) }
        }
        return out
    }

    static func indent(_ line: String) -> Substring { line.prefix { $0 == " " || $0 == "\t" } }

    /// The REPLACE lines moved by the indentation the file has where the SEARCH's first
    /// non-blank line has another.
    static func reindent(_ replace: [String], searchLines: [String], fileLines: [String]) -> [String] {
        guard let k = searchLines.firstIndex(where: { !$0.isBlank }) else { return replace }
        let have = String(indent(fileLines[k])), wrote = String(indent(searchLines[k]))
        if have == wrote { return replace }
        return replace.map { line in
            if line.isBlank { return line }
            let own = String(indent(line))
            let body = line.dropFirst(own.count)
            if own.hasPrefix(wrote) { return have + own.dropFirst(wrote.count) + body }
            let width = max(0, own.count + have.count - wrote.count)
            return String(repeating: have.first == "\t" ? "\t" : " ", count: width) + body
        }
    }
}

public enum EditApplyError: Error, Sendable, Equatable, CustomStringConvertible {
    case noMatch
    /// 1-based first lines of the places it matched.
    case ambiguous([Int])

    public var description: String {
        switch self {
        case .noMatch: "the SEARCH text matches nothing in the file (not even ignoring whitespace)"
        case .ambiguous(let at): "the SEARCH text matches \(at.count) places (lines \(at.prefix(5).map(String.init).joined(separator: ", "))); it must match one"
        }
    }
}
