import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// Runs a command and returns its exit status and output.
@discardableResult
func shell(_ arguments: [String], in directory: String, input: String? = nil) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = arguments
    p.currentDirectoryURL = URL(fileURLWithPath: directory)
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
    try inp.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

enum AgentlessFixture {
    static let instance = "psf__requests-2317"

    static func structure() throws -> RepoStructure {
        try RepoStructure(json: [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("agentless/psf__requests-2317.json")))))
    }

    /// A git repository holding `files` with their real contents (the structure's lines, each
    /// ending with a newline), committed.
    static func repository(_ s: RepoStructure, files: [String]) throws -> TempDir {
        let dir = try TempDir()
        for f in files { try dir.write(f, try s.content(of: f)! + "\n") }
        try shell(["git", "init", "-q"], in: dir.path)
        try shell(["git", "add", "-A"], in: dir.path)
        let c = try shell(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "base"], in: dir.path)
        #expect(c.status == 0, "\(c.err)")
        return dir
    }

    static func warehouse() throws -> Warehouse {
        let w = try Warehouse.inMemory()
        _ = try w.ingestSWEBench(file: Fixture.path("swebench/swebench_lite_5.jsonl"), dataset: "lite")
        _ = try w.ingestRepoStructures(directory: Fixture.path("agentless/psf__requests-2317.json"))
        return w
    }

    static let goldAnswer = """
        <think>The method arrives as bytes on Python 3; builtin_str turns b'GET' into "b'GET'".</think>
        The bug is in `requests/sessions.py`: `builtin_str(method)` mangles a bytes method.

        ```python
        ### requests/sessions.py
        <<<<<<< SEARCH
        from .compat import cookielib, OrderedDict, urljoin, urlparse, builtin_str
        =======
        from .compat import cookielib, OrderedDict, urljoin, urlparse
        >>>>>>> REPLACE
        ```

        ```python
        ### requests/sessions.py
        <<<<<<< SEARCH
                method = builtin_str(method)
        =======
                method = to_native_string(method)
        >>>>>>> REPLACE
        ```
        """
}

@Suite("Agentless")
struct AgentlessTests {
    @Test func structureRendersAsAgentlessDoes() throws {
        let s = try AgentlessFixture.structure()
        let shown = try Fixture.text("agentless/psf__requests-2317.structure.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        let hidden = try Fixture.text("agentless/psf__requests-2317.bugfix-structure.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(s.render() == shown, "the test writer sees Agentless's own rendering")
        let bugfix = s.bugfixView(instanceID: AgentlessFixture.instance)
        #expect(bugfix.render() == hidden, "the bug fixer sees it filtered as Agentless's localize filters it")
        #expect(!bugfix.render().contains("test_requests.py") && s.render().contains("test_requests.py"))
        #expect(!bugfix.files.contains("requests/test_requests.py") && s.files.contains("requests/test_requests.py"))
        // Agentless lists only parsed files: a file without an extension ({}) is an empty folder to it.
        #expect(!s.files.contains("requests/Makefile") && s.files.contains("docs/conf.py"))
        // pytest's own repository keeps its tests, as in Agentless.
        #expect(s.bugfixView(instanceID: "pytest-dev__pytest-5227").files.contains("requests/test_requests.py"))
        #expect(s.topFolders == ["requests", "ext", "docs"])
        let content = try #require(try s.content(of: "requests/sessions.py"))
        #expect(content.split(separator: "\n", omittingEmptySubsequences: false).count == 671)
        #expect(content.hasPrefix("# -*- coding: utf-8 -*-\n\n\"\"\""))
        #expect(try s.content(of: "requests/Makefile") == nil)
        #expect(try s.content(of: "requests/nope.py") == nil)
    }

    @Test func pathsAreCorrectedAgainstTheStructure() throws {
        let s = try AgentlessFixture.structure().bugfixView(instanceID: AgentlessFixture.instance)
        let files = Set(s.files)
        #expect(s.correct("requests/sessions.py", files: files) == "requests/sessions.py")
        #expect(s.correct("sessions.py", files: files) == "requests/sessions.py", "a root-level name under the first-level folder")
        #expect(s.correct("./requests/models.py", files: files) == "requests/models.py")
        #expect(s.correct("`requests/utils.py`", files: files) == "requests/utils.py")
        #expect(s.correct("packages/urllib3/response.py", files: files) == "requests/packages/urllib3/response.py")
        #expect(s.correct("requests/nothing.py", files: files) == nil)
        #expect(s.correct("test_requests.py", files: files) == nil, "tests are hidden from the bug fixer")
    }

    @Test func thinkingIsStripped() {
        #expect(ModelAnswer.stripThinking("<think>a\nb</think>\nanswer") == "\nanswer")
        #expect(ModelAnswer.stripThinking("◁think▷plan◁/think▷final") == "final")
        #expect(ModelAnswer.stripThinking("no thinking") == "no thinking")
        #expect(ModelAnswer.stripThinking("<think>cut off by max tokens") == nil)
        #expect(ModelAnswer.stripThinking("<think>x</think>y<think>z</think>w") == "w")
        #expect(ModelAnswer.fileList("<think>x</think>\nSure:\n```\nrequests/sessions.py\n- requests/models.py\nrequests/sessions.py\n```") ==
                ["requests/sessions.py", "requests/models.py"])
    }

    @Test func editBlocksParseAndReportMalformedOnes() {
        let text = """
            ```python
            ### a.py
            <<<<<<< SEARCH
            x = 1
            =======
            x = 2
            >>>>>>> REPLACE
            ```
            ```python
            b.py
            <<<<<<<<<< SEARCH
            y
            ==========
            z
            >>>>>>>>>> REPLACE
            ### c.py
            <<<<<<< SEARCH
            no divider
            >>>>>>> REPLACE
            <<<<<<< SEARCH
            orphan
            =======
            ```
            ### outside.py
            <<<<<<< SEARCH
            ignored outside fences
            =======
            >>>>>>> REPLACE
            """
        let (edits, failures) = SearchReplace.parse(text)
        #expect(edits.map(\.path) == ["a.py", "b.py"])
        #expect(edits[0].search == ["x = 1"] && edits[0].replace == ["x = 2"])
        #expect(edits[1].search == ["y"] && edits[1].replace == ["z"])
        #expect(failures.count == 3, "\(failures)")
        #expect(failures[0].reason.contains("no ======= line") && failures[0].file == "c.py")
        #expect(failures[1].reason.contains("no file path"))
        #expect(failures[2].reason.contains("cut short"))
        let cut = SearchReplace.parse("### a.py\n<<<<<<< SEARCH\nx\n=======\ny\n")
        #expect(cut.edits.isEmpty && cut.failures.first?.reason.contains("cut short") == true)
    }

    @Test func editsApplyExactlyThenIgnoringWhitespace() throws {
        var lines = ["def f():", "    if x:", "        return 1", "    return 2"]
        let exact = SearchReplaceEdit(path: "f.py", search: ["        return 1"], replace: ["        return 3"], block: 1)
        #expect(try SearchReplace.apply(exact, to: &lines, fileExists: true) == .exact)
        #expect(lines[2] == "        return 3")
        // Written with the wrong indentation: matched ignoring whitespace, REPLACE moved by +4.
        let loose = SearchReplaceEdit(path: "f.py", search: ["if x:", "    return 3"], replace: ["if x and y:", "    return 4", "# done"], block: 2)
        #expect(try SearchReplace.apply(loose, to: &lines, fileExists: true) == .whitespaceInsensitive)
        #expect(lines == ["def f():", "    if x and y:", "        return 4", "    # done", "    return 2"])
        let none = SearchReplaceEdit(path: "f.py", search: ["missing()"], replace: [], block: 3)
        #expect(throws: EditApplyError.noMatch) { try SearchReplace.apply(none, to: &lines, fileExists: true) }
        var twice = ["a", "b", "a"]
        let ambiguous = SearchReplaceEdit(path: "f.py", search: ["a"], replace: ["c"], block: 4)
        #expect(throws: EditApplyError.ambiguous([1, 3])) { try SearchReplace.apply(ambiguous, to: &twice, fileExists: true) }
        var new: [String] = []
        #expect(try SearchReplace.apply(SearchReplaceEdit(path: "n.py", search: [], replace: ["print(1)"], block: 5), to: &new, fileExists: false) == .created)
        #expect(new == ["print(1)"])
    }

    @Test func diffsAreMinimalAndWellFormed() throws {
        let a = (1...30).map { "line \($0)" }
        var b = a
        b[4] = "changed 5"
        b.insert("inserted", at: 20)
        b.removeLast()
        let diff = UnifiedDiff.file(path: "x.py", old: a, new: b)
        #expect(diff.hasPrefix("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -2,7 +2,7 @@\n"))
        #expect(diff.components(separatedBy: "\n@@ ").count == 4, "three separate hunks after the header")
        #expect(UnifiedDiff.file(path: "x.py", old: a, new: a) == "")
        let created = UnifiedDiff.file(path: "n.py", old: nil, new: ["a", "b"])
        #expect(created == "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1,2 @@\n+a\n+b\n")
        // Applies with git to the old text and gives the new one.
        let dir = try TempDir()
        try dir.write("x.py", a.joined(separator: "\n") + "\n")
        try dir.write("p.diff", diff + created)
        let check = try shell(["git", "apply", "--check", "p.diff"], in: dir.path)
        #expect(check.status == 0, "\(check.err)")
        try shell(["git", "apply", "p.diff"], in: dir.path)
        #expect(try String(contentsOfFile: dir.file("x.py"), encoding: .utf8) == b.joined(separator: "\n") + "\n")
        #expect(try String(contentsOfFile: dir.file("n.py"), encoding: .utf8) == "a\nb\n")
    }

    @Test func finalizeMakesPatchesThatGitApplies() throws {
        let s = try AgentlessFixture.structure().bugfixView(instanceID: AgentlessFixture.instance)
        let result = AgentlessFinalizer.finalize(answer: AgentlessFixture.goldAnswer, structure: s, pipeline: .bugfix)
        #expect(result.failures.isEmpty, "\(result.failures)")
        #expect(result.editedFiles == ["requests/sessions.py"])
        #expect(result.modelPatch.components(separatedBy: "diff --git ").count == 2, "the file appears exactly once")
        let repo = try AgentlessFixture.repository(s, files: ["requests/sessions.py", "requests/models.py"])
        try repo.write("model.diff", result.modelPatch)
        let check = try shell(["git", "apply", "--check", "model.diff"], in: repo.path)
        #expect(check.status == 0, "git apply --check: \(check.err)\n\(result.modelPatch)")
        // The same change as SWE-bench's gold patch.
        let gold = try Fixture.lines("swebench/swebench_lite_5.jsonl").map { try JSONParser.parse($0) }
            .first { $0["instance_id"] == "psf__requests-2317" }!["patch"]!.stringValue!
        try repo.write("gold.diff", gold)
        #expect(try shell(["git", "apply", "--check", "gold.diff"], in: repo.path).status == 0, "the reconstructed files are the real ones")
        try shell(["git", "apply", "model.diff"], in: repo.path)
        let ours = try String(contentsOfFile: repo.file("requests/sessions.py"), encoding: .utf8)
        #expect(ours == result.newContents[0] + "\n")
        try shell(["git", "checkout", "--", "."], in: repo.path)
        try shell(["git", "apply", "gold.diff"], in: repo.path)
        #expect(try String(contentsOfFile: repo.file("requests/sessions.py"), encoding: .utf8) == ours)

        // Two files, one of them named without its folder and indented wrongly, edits of one
        // file spread over several blocks: each file once, corrected paths in the headers.
        let answer = """
            ◁think▷Two places.◁/think▷
            ```python
            ### sessions.py
            <<<<<<< SEARCH
            method = builtin_str(method)
            =======
            method = to_native_string(method)
            >>>>>>> REPLACE
            ```
            ```python
            ### requests/models.py
            <<<<<<< SEARCH
                            self.headers['Content-Length'] = builtin_str(length)
            =======
                            self.headers['Content-Length'] = str(length)
            >>>>>>> REPLACE
            ```
            ```python
            ### requests/sessions.py
            <<<<<<< SEARCH
            from .compat import cookielib, OrderedDict, urljoin, urlparse, builtin_str
            =======
            from .compat import cookielib, OrderedDict, urljoin, urlparse
            >>>>>>> REPLACE
            ```
            """
        let two = AgentlessFinalizer.finalize(answer: answer, structure: s, pipeline: .bugfix)
        #expect(two.failures.isEmpty, "\(two.failures)")
        #expect(two.editedFiles == ["requests/sessions.py", "requests/models.py"])
        #expect(two.modelPatch.components(separatedBy: "diff --git a/requests/sessions.py b/requests/sessions.py\n").count == 2)
        #expect(two.modelPatch.components(separatedBy: "diff --git ").count == 3)
        #expect(two.newContents[0].contains("        method = to_native_string(method)"), "re-indented to the file's 8 spaces")
        try repo.write("two.diff", two.modelPatch)
        try shell(["git", "checkout", "--", "."], in: repo.path)
        let check2 = try shell(["git", "apply", "--check", "two.diff"], in: repo.path)
        #expect(check2.status == 0, "\(check2.err)\n\(two.modelPatch)")
    }

    @Test func finalizeReportsEditsThatCannotApply() throws {
        let s = try AgentlessFixture.structure().bugfixView(instanceID: AgentlessFixture.instance)
        let answer = """
            ```python
            ### requests/sessions.py
            <<<<<<< SEARCH
                    method = builtin_str(method)
            =======
                    method = to_native_string(method)
            >>>>>>> REPLACE
            ```
            ```python
            ### requests/sessions.py
            <<<<<<< SEARCH
            this line is not in the file
            =======
            x
            >>>>>>> REPLACE
            ### requests/sessions.py
            <<<<<<< SEARCH
                    \"\"\"
            =======
                    \"\"\"Docs.\"\"\"
            >>>>>>> REPLACE
            ### requests/not_there.py
            <<<<<<< SEARCH
            a
            =======
            b
            >>>>>>> REPLACE
            ```
            """
        let r = AgentlessFinalizer.finalize(answer: answer, structure: s, pipeline: .bugfix)
        #expect(r.modelPatch.isEmpty, "one failed edit: no patch")
        #expect(!r.rawModelPatch.isEmpty, "the edits that applied are kept in raw_model_patch")
        let reasons = r.failures.map(\.reason)
        #expect(reasons.contains { $0.contains("not a file of the repository structure") })
        #expect(reasons.contains { $0.contains("matches nothing") })
        #expect(reasons.contains { $0.contains("matches 13 places") })
        let partial = AgentlessFinalizer.finalize(answer: answer, structure: s, pipeline: .bugfix, allowPartial: true)
        #expect(partial.modelPatch == partial.rawModelPatch && !partial.modelPatch.isEmpty)
        #expect(AgentlessFinalizer.finalize(answer: "<think>never ends", structure: s, pipeline: .bugfix).failures.first?.reason.contains("never closes") == true)
        #expect(AgentlessFinalizer.finalize(answer: "no edits here", structure: s, pipeline: .bugfix).failures.first?.reason == "no SEARCH/REPLACE edit in the answer")
    }

    @Test func testWriterMakesAReproduceBugPatch() throws {
        let s = try AgentlessFixture.structure()
        let answer = """
            ```python
            ### test_requests.py
            <<<<<<< SEARCH
            def test_prepare_unicode_url():
            =======
            def test_binary_method_is_native_string():
                s = requests.Session()
                req = requests.Request(method=b'GET', url='http://example.com/')
                prep = s.prepare_request(req)
                assert prep.method == 'GET'


            def test_prepare_unicode_url():
            >>>>>>> REPLACE
            ```
            """
        let r = AgentlessFinalizer.finalize(answer: answer, structure: s, pipeline: .testwrite)
        #expect(r.failures.isEmpty, "\(r.failures)")
        #expect(r.editedFiles == ["requests/test_requests.py"])
        #expect(r.testFuncName == "test_binary_method_is_native_string")
        let patch = try #require(r.testPatch)
        #expect(patch.hasPrefix("diff --git a/reproduce_bug.py b/reproduce_bug.py\nnew file mode 100644\n--- /dev/null\n+++ b/reproduce_bug.py\n"))
        #expect(patch.contains("+    code = pytest.main([__file__, \"-q\", \"-p\", \"no:cacheprovider\", \"-k\", \"test_binary_method_is_native_string\"])"))
        #expect(!patch.contains("+    unittest.main()"), "the test file's own main block is dropped")
        let repo = try AgentlessFixture.repository(s, files: ["requests/test_requests.py"])
        try repo.write("test.diff", r.modelPatch + patch)
        let check = try shell(["git", "apply", "--check", "test.diff"], in: repo.path)
        #expect(check.status == 0, "\(check.err)")
        try shell(["git", "apply", "test.diff"], in: repo.path)
        let script = try String(contentsOfFile: repo.file("reproduce_bug.py"), encoding: .utf8)
        #expect(script.contains("def test_binary_method_is_native_string():"))
        let compiled = try shell(["python3", "-m", "py_compile", "reproduce_bug.py"], in: repo.path)
        #expect(compiled.status == 0, "\(compiled.err)")
        // No new test function: no test patch.
        let noTest = AgentlessFinalizer.finalize(answer: "```\n### test_requests.py\n<<<<<<< SEARCH\nimport json\n=======\nimport json  # x\n>>>>>>> REPLACE\n```", structure: s, pipeline: .testwrite)
        #expect(noTest.testPatch == nil && noTest.failures.contains { $0.reason.contains("no test function") })
    }

    @Test func promptsAreBuiltAsAgentlessBuildsThem() throws {
        let rendered = try Fixture.text("agentless/psf__requests-2317.bugfix-structure.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        let prompt = AgentlessPrompts.localize(.bugfix, problem: "P {x}", structure: rendered)
        let expected = "Please look through the following GitHub problem description and Repository structure and provide a list of files that one would need to edit to fix the problem.\n\n### GitHub Problem Description ###\nP {x}\n\n###\n\n### Repository Structure ###\n"
            + rendered + "\n\n###\n\nPlease only provide the full path and return at most 5 files.\nThe returned files should be separated by new lines ordered by most to least important and wrapped with ```\nFor example:\n```\nfile1.py\nfile2.py\n```"
        #expect(prompt == expected)
        let repair = AgentlessPrompts.repair(.bugfix, problem: "P", files: [("a.py", "x = 1"), ("b.py", "y = 2")])
        #expect(repair.hasPrefix("We are currently solving the following issue within our repository. Here is the issue text:\n--- BEGIN ISSUE ---\nP\n--- END ISSUE ---\n\n\nBelow are some code segments, each from a relevant file. One or more of these files may contain bugs.\n\n--- BEGIN FILE ---\n```\n### a.py\nx = 1\n\n\n### b.py\ny = 2\n```\n--- END FILE ---\n\nPlease first localize the bug based on the issue statement, and then generate *SEARCH/REPLACE* edits to fix the issue.\n\nEvery *SEARCH/REPLACE* edit must use this format:\n1. The file path\n"))
        #expect(repair.hasSuffix("Wrap the *SEARCH/REPLACE* edit in blocks ```python...```."))
    }
}
