import Foundation

/// The bug fixer and the test writer.
public enum AgentlessPipeline: String, Sendable, CaseIterable, Codable {
    case bugfix, testwrite

    /// The structure a stage of this pipeline sees: tests hidden for the bug fixer, everything
    /// for the test writer.
    func view(_ s: RepoStructure, instanceID: String) -> RepoStructure {
        self == .bugfix ? s.bugfixView(instanceID: instanceID) : s
    }
}

/// What one repair (or write-test) answer became.
public struct FinalizedSample: Sendable {
    /// The fenced text the edits were read from (thinking stripped).
    public var searchReplaceText = ""
    /// One `git diff` per edited file, each file once, headed with its corrected path. Empty
    /// when any edit failed (unless partial edits are allowed).
    public var modelPatch = ""
    /// The same diff made from every edit that applied, whether or not others failed.
    public var rawModelPatch = ""
    public var editedFiles: [String] = []
    /// Agentless's `original_file_content` / `new_file_content`: lines joined with "\n".
    public var originalContents: [String] = []
    public var newContents: [String] = []
    public var failures: [EditFailure] = []
    /// Test writer: the reproduce_bug.py new-file patch and the test it runs.
    public var testPatch: String?
    public var testFuncName: String?

    /// A patch came out (for the test writer: with a test to run).
    public var ok: Bool { !modelPatch.isEmpty }
}

/// A structure with its file list and the contents decoded so far: the passes of one instance
/// edit the same few files, which are then decoded once.
public final class StructureFiles {
    public let structure: RepoStructure
    public let files: Set<String>
    private var contents: [String: String?] = [:]
    private var lineCache: [String: [String]] = [:]

    public init(_ structure: RepoStructure) {
        self.structure = structure
        files = Set(structure.files)
    }

    public func content(of path: String) -> String? {
        if let known = contents[path] { return known }
        let c = (try? structure.content(of: path)) ?? nil
        contents[path] = c
        return c
    }

    /// The content split into lines, once per file.
    public func lines(of path: String) -> [String] {
        if let known = lineCache[path] { return known }
        let l = content(of: path).map(AgentlessFinalizer.lines) ?? []
        lineCache[path] = l
        return l
    }
}

public enum AgentlessFinalizer {
    /// Strips thinking, takes the fenced edit blocks, applies them file by file to the
    /// structure's contents and makes the patch. `allowPartial` keeps the edits that applied
    /// when others failed; by default one failed edit empties `modelPatch`.
    public static func finalize(answer: String, structure: RepoStructure, pipeline: AgentlessPipeline,
                                allowPartial: Bool = false) -> FinalizedSample {
        finalize(answer: answer, files: StructureFiles(structure), pipeline: pipeline, allowPartial: allowPartial)
    }

    public static func finalize(answer: String, files repo: StructureFiles, pipeline: AgentlessPipeline,
                                allowPartial: Bool = false) -> FinalizedSample {
        let structure = repo.structure
        var out = FinalizedSample()
        guard let text = ModelAnswer.stripThinking(answer) else {
            out.failures.append(EditFailure(stage: "finalize", reason: "the answer opens a thinking block and never closes it (cut off by max tokens?)"))
            return out
        }
        out.searchReplaceText = ModelAnswer.fencedLines(text).joined(separator: "\n")
        let (edits, parseFailures) = SearchReplace.parse(text)
        out.failures += parseFailures
        if edits.isEmpty {
            if parseFailures.isEmpty { out.failures.append(EditFailure(stage: "finalize", reason: "no SEARCH/REPLACE edit in the answer")) }
            return out
        }
        // Group by corrected path, in order of first appearance.
        let files = repo.files
        var order: [String] = []
        var byFile: [String: [SearchReplaceEdit]] = [:]
        for e in edits {
            let path: String
            if let p = structure.correct(e.path, files: files) {
                path = p
            } else if e.search.allSatisfy({ $0.isBlank }), let p = newFilePath(e.path) {
                path = p
            } else {
                out.failures.append(EditFailure(stage: "finalize", reason: "\(e.path) is not a file of the repository structure", file: e.path, block: e.block))
                continue
            }
            if byFile[path] == nil { order.append(path) }
            byFile[path, default: []].append(e)
        }
        var patches: [String] = []
        var anyEditFailed = !out.failures.isEmpty
        for path in order {
            let original = repo.content(of: path)
            let exists = original != nil
            let originalLines = exists ? repo.lines(of: path) : []
            var current = originalLines
            var fileFailed = false
            for e in byFile[path]! {
                do {
                    _ = try SearchReplace.apply(e, to: &current, fileExists: exists)
                } catch {
                    out.failures.append(EditFailure(stage: "finalize", reason: "edit block \(e.block): \(error.description)", file: path, block: e.block))
                    fileFailed = true
                    anyEditFailed = true
                }
            }
            let diff = UnifiedDiff.file(path: path, old: exists ? originalLines : nil, new: current)
            if diff.isEmpty {
                if !fileFailed { out.failures.append(EditFailure(stage: "finalize", reason: "the edits leave \(path) unchanged", file: path)) }
                continue
            }
            patches.append(diff)
            out.editedFiles.append(path)
            out.originalContents.append(original ?? "")
            out.newContents.append(current.joined(separator: "\n"))
        }
        out.rawModelPatch = patches.joined()
        out.modelPatch = (anyEditFailed && !allowPartial) ? "" : out.rawModelPatch
        if pipeline == .testwrite, !out.modelPatch.isEmpty {
            reproductionTest(&out)
        }
        return out
    }

    /// A path for a file the model creates: relative, without "..", as written.
    static func newFilePath(_ raw: String) -> String? {
        var p = raw.trimmingCharacters(in: .whitespaces)
        while p.hasPrefix("./") { p.removeFirst(2) }
        guard !p.isEmpty, !p.hasPrefix("/"), !p.split(separator: "/").contains(".."), !p.contains(" "), p.hasSuffix(".py") else { return nil }
        return p
    }

    static func lines(_ content: String) -> [String] {
        content.isEmpty ? [] : ModelAnswer.splitLines(content)
    }

    /// The test writer's reproduce_bug.py: the edited test file with a runner that runs the new
    /// tests under pytest and prints Agentless's verdict ("Issue reproduced" when they fail,
    /// "Issue resolved" when they pass, "Other issues" otherwise).
    static func reproductionTest(_ out: inout FinalizedSample) {
        var names: [String] = []
        var source: [String] = []
        for (i, newContent) in out.newContents.enumerated() {
            let before = Set(lines(out.originalContents[i]))
            let added = lines(newContent).filter { !before.contains($0) }
            let found = added.compactMap(testFunctionName)
            if !found.isEmpty && source.isEmpty {
                names = found
                source = lines(newContent)
            }
        }
        guard let first = names.first else {
            out.failures.append(EditFailure(stage: "finalize", reason: "the edits add no test function (def test_…)"))
            out.modelPatch = ""
            return
        }
        let selector = names.joined(separator: " or ")
        let runner = [
            "", "",
            "if __name__ == \"__main__\":",
            "    import pytest",
            "    code = pytest.main([__file__, \"-q\", \"-p\", \"no:cacheprovider\", \"-k\", \"\(selector)\"])",
            "    print(\"Issue resolved\" if code == 0 else \"Issue reproduced\" if code == 1 else \"Other issues\")",
        ]
        out.testPatch = UnifiedDiff.file(path: "reproduce_bug.py", old: nil, new: withoutMainBlock(source) + runner)
        out.testFuncName = first
    }

    /// The source without its top-level `if __name__ == "__main__":` block (a test file's own
    /// `unittest.main()` would run before the runner and exit).
    static func withoutMainBlock(_ lines: [String]) -> [String] {
        guard let start = lines.lastIndex(where: { $0.hasPrefix("if __name__ ==") || $0.hasPrefix("if __name__==") }) else { return lines }
        var end = start + 1
        while end < lines.count, lines[end].isEmpty || lines[end].hasPrefix(" ") || lines[end].hasPrefix("\t") { end += 1 }
        var out = Array(lines[..<start]) + Array(lines[end...])
        while out.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { out.removeLast() }
        return out
    }

    /// `name` of a `def test_name(` line.
    static func testFunctionName(_ line: String) -> String? {
        var t = line.drop { $0 == " " || $0 == "\t" }
        if t.hasPrefix("async ") { t = t.dropFirst(6) }
        guard t.hasPrefix("def test") else { return nil }
        let name = t.dropFirst(4).prefix { $0.isLetter || $0.isNumber || $0 == "_" }
        return name.isEmpty ? nil : String(name)
    }

    /// The files a SWE-bench gold patch edits (`diff --git a/X b/X`).
    static func patchFiles(_ patch: String?) -> [String] {
        guard let patch else { return [] }
        var out: [String] = []
        for line in patch.split(separator: "\n") where line.hasPrefix("diff --git a/") {
            if let b = line.range(of: " b/", options: .backwards) { out.append(String(line[b.upperBound...])) }
        }
        return out
    }
}
