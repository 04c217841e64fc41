/// The prompts of the two pipelines. The bug fixer's are Agentless's own (file-level
/// localization and the SEARCH/REPLACE repair prompt), so answers can be compared with
/// Agentless runs; the test writer's follow the same shape.
public enum AgentlessPrompts {
    static let localizeBugfix = """
        Please look through the following GitHub problem description and Repository structure and provide a list of files that one would need to edit to fix the problem.

        ### GitHub Problem Description ###
        {problem_statement}

        ###

        ### Repository Structure ###
        {structure}

        ###

        Please only provide the full path and return at most 5 files.
        The returned files should be separated by new lines ordered by most to least important and wrapped with ```
        For example:
        ```
        file1.py
        file2.py
        ```
        """

    static let localizeTestwrite = """
        Please look through the following GitHub problem description and Repository structure and provide a list of test files in which one would write a test that reproduces the problem.

        ### GitHub Problem Description ###
        {problem_statement}

        ###

        ### Repository Structure ###
        {structure}

        ###

        Please only provide the full path and return at most 5 files.
        The returned files should be separated by new lines ordered by most to least important and wrapped with ```
        For example:
        ```
        tests/test_file1.py
        tests/test_file2.py
        ```
        """

    static let editFormat = """
        Every *SEARCH/REPLACE* edit must use this format:
        1. The file path
        2. The start of search block: <<<<<<< SEARCH
        3. A contiguous chunk of lines to search for in the existing source code
        4. The dividing line: =======
        5. The lines to replace into the source code
        6. The end of the replace block: >>>>>>> REPLACE

        Here is an example:

        ```python
        ### mathweb/flask/app.py
        <<<<<<< SEARCH
        from flask import Flask
        =======
        import math
        from flask import Flask
        >>>>>>> REPLACE
        ```

        Please note that the *SEARCH/REPLACE* edit REQUIRES PROPER INDENTATION. If you would like to add the line '        print(x)', you must fully write that out, with all those spaces before the code!
        Wrap the *SEARCH/REPLACE* edit in blocks ```python...```.
        """

    static let repairBugfix = """
        We are currently solving the following issue within our repository. Here is the issue text:
        --- BEGIN ISSUE ---
        {problem_statement}
        --- END ISSUE ---


        Below are some code segments, each from a relevant file. One or more of these files may contain bugs.

        --- BEGIN FILE ---
        ```
        {content}
        ```
        --- END FILE ---

        Please first localize the bug based on the issue statement, and then generate *SEARCH/REPLACE* edits to fix the issue.


        """ + editFormat

    static let writeTest = """
        We are currently solving the following issue within our repository. Here is the issue text:
        --- BEGIN ISSUE ---
        {problem_statement}
        --- END ISSUE ---


        Below is a test file of the repository. Write a test that reproduces the issue: it must fail on the current code and pass once the issue is fixed. Name the test function test_<something> and keep the file's existing tests.

        --- BEGIN FILE ---
        ```
        {content}
        ```
        --- END FILE ---

        Please add the test to this file with *SEARCH/REPLACE* edits.


        """ + editFormat

    /// The localize prompt for an instance (`structure` already rendered).
    public static func localize(_ pipeline: AgentlessPipeline, problem: String, structure: String) -> String {
        let template = pipeline == .bugfix ? localizeBugfix : localizeTestwrite
        return fill(template, ["problem_statement": problem, "structure": structure])
    }

    /// The repair (bug fixer) or write-test prompt: each file as `### path` then its content,
    /// separated by blank lines, as Agentless builds its top-n file context.
    public static func repair(_ pipeline: AgentlessPipeline, problem: String, files: [(path: String, content: String)]) -> String {
        var content = ""
        for f in files { content += "### \(f.path)\n\(f.content)\n\n\n" }
        while content.last?.isWhitespace == true { content.removeLast() }
        let template = pipeline == .bugfix ? repairBugfix : writeTest
        return fill(template, ["problem_statement": problem, "content": content])
    }

    /// Python's `str.format` for these templates, then `.strip()`: each placeholder replaced
    /// once, in one pass, so text inside a problem statement is never taken for a placeholder.
    static func fill(_ template: String, _ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            if let close = rest[open...].firstIndex(of: "}"), let value = values[String(rest[rest.index(after: open)..<close])] {
                out += value
                rest = rest[rest.index(after: close)...]
            } else {
                out.append("{")
                rest = rest[rest.index(after: open)...]
            }
        }
        out += rest
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
