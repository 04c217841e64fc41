import Foundation
import GRDB
import RolloutKit
import Testing

/// Every ingest error names FILE:LINE: field: reason, and leaves the database as it was.
@Suite("Bad input")
struct BadInputTests {
    static let good1 = queryLine(id: "a", opening: "First", prompt: "You are a user who needs help with: one")
    static let good2 = queryLine(id: "b", opening: "Second", prompt: "You are a user who needs help with: two")

    // MARK: records

    @Test func malformedJSONLineNamesFileAndLine() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", [Self.good1, #"{"id": "b", "user_system_prompt": }"#, Self.good2].joined(separator: "\n") + "\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.file == file)
        #expect(error.line == 2)
        #expect(error.field == nil)
        #expect(error.description == "\(file):2: malformed JSON at byte 35: expected a value, found '}'")
    }

    @Test func missingRequiredFieldNamesTheField() throws {
        let tmp = try TempDir()
        let noPrompt = #"{"id": "c", "messages": [{"role": "user", "content": "Hi"}]}"#
        let file = try tmp.write("q.jsonl", [Self.good1, Self.good2, noPrompt].joined(separator: "\n") + "\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.line == 3)
        #expect(error.field == "user_system_prompt")
        #expect(error.description == "\(file):3: user_system_prompt: missing (required)")
    }

    @Test(arguments: [
        (#"{"id": "c", "messages": [{"role": "user", "content": 5}], "user_system_prompt": "p"}"#, "messages[0].content", "expected a string, found number"),
        (#"{"id": "c", "messages": [{"role": "robot", "content": "x"}], "user_system_prompt": "p"}"#, "messages[0].role", "unknown role \"robot\""),
        (#"{"id": "c", "messages": {"role": "user"}, "user_system_prompt": "p"}"#, "messages", "expected an array, found object"),
        (#"{"id": "c", "user_system_prompt": ["p"]}"#, "user_system_prompt", "expected a string, found array"),
        (#"{"id": "", "user_system_prompt": "p"}"#, "id", "empty id"),
        (#"{"id": true, "user_system_prompt": "p"}"#, "id", "expected a string or integer id, found boolean"),
        (#"{"id": "c", "user_system_prompt": "p", "task_info": "x"}"#, "task_info", "expected a JSON object, found string"),
    ])
    func wrongFieldTypesNameTheFieldPath(line: String, field: String, reason: String) throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", Self.good1 + "\n" + line + "\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.line == 2)
        #expect(error.field == field)
        #expect(error.reason.contains(reason), "reason was: \(error.reason)")
        #expect(error.description.hasPrefix("\(file):2: \(field): "))
    }

    @Test func recordThatIsNotAnObjectIsRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", Self.good1 + "\n[1, 2]\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.line == 2)
        #expect(error.reason == "expected a JSON object, found array")
    }

    @Test func missingFieldsInOtherFormatsNameTheirLine() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()

        let qa = try tmp.write("qa.jsonl", #"{"question": "Q?", "answer": "A"}"# + "\n" + #"{"question": "Q2?"}"# + "\n")
        let qaError = try expectIngestError(w) { try w.ingestQA(file: qa, dataset: "qa") }
        #expect(qaError.description == "\(qa):2: answer: missing (required)")

        let noQuestion = try tmp.write("qa2.jsonl", #"{"answer": "A", "messages": [{"role": "system", "content": "s"}]}"# + "\n")
        let noQuestionError = try expectIngestError(w) { try w.ingestQA(file: noQuestion, dataset: "qa") }
        #expect(noQuestionError.line == 1)
        #expect(noQuestionError.field == "question")

        let swe = try tmp.write("swe.jsonl", #"{"repo": "o/r", "base_commit": "abc", "problem_statement": "p"}"# + "\n")
        let sweError = try expectIngestError(w) { try w.ingestSWEBench(file: swe, dataset: "swe") }
        #expect(sweError.description == "\(swe):1: instance_id: missing (required)")

        let badList = try tmp.write("swe2.jsonl", #"{"repo": "o/r", "instance_id": "o__r-1", "base_commit": "abc", "problem_statement": "p", "FAIL_TO_PASS": "[\"a\", "}"# + "\n")
        let badListError = try expectIngestError(w) { try w.ingestSWEBench(file: badList, dataset: "swe") }
        #expect(badListError.line == 1)
        #expect(badListError.field == "FAIL_TO_PASS")
        #expect(badListError.reason.contains("not a JSON-encoded list"))

        let tau = try tmp.write("tau.json", """
            [
              {"task_id": 0, "reward": 1.0, "trial": 0, "traj": []},
              {"task_id": 1, "reward": "high", "trial": 0, "traj": []}
            ]
            """)
        let tauError = try expectIngestError(w) { try w.ingestTrajectories(file: tau, run: "r", format: .tauBench) }
        #expect(tauError.line == 3)
        #expect(tauError.field == "reward")
        #expect(tauError.description == "\(tau):3: reward: expected a number, found string")

        let framework = try tmp.write("out.jsonl", #"{"id": "t", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]}]}"# + "\n")
        let fwError = try expectIngestError(w) { try w.ingestTrajectories(file: framework, run: "r", format: .rollout) }
        #expect(fwError.line == 1)
        #expect(fwError.field == "messages[1].tool_calls[0].function.name")
    }

    @Test func tau2TaskWithoutUserScenarioNamesItsLine() throws {
        let tmp = try TempDir()
        for name in ["policy.md", "agent_tools.json", "split_tasks.json"] {
            try tmp.write("shop/\(name)", try Fixture.text("tau2/mock/\(name)"))
        }
        try tmp.write("shop/tasks.json", """
            [
              {"id": "t1", "user_scenario": {"persona": "p", "instructions": "do it"}},
              {
                "id": "t2",
                "description": {"purpose": "no scenario"}
              }
            ]
            """)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTau2(directory: tmp.file("shop")) }
        #expect(error.file == tmp.file("shop/tasks.json"))
        #expect(error.line == 3)
        #expect(error.field == "user_scenario")
        #expect(error.reason == "missing (required)")
    }

    // MARK: tool lists

    @Test func toolListThatIsNotAnArrayIsRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("tools.json", #"{"type": "function", "function": {"name": "x", "parameters": {"type": "object"}}}"#)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTools(file: file, server: "srv", domains: ["mock"]) }
        #expect(error.file == file)
        #expect(error.description.hasPrefix("\(file): a tool list must be a JSON array"))
        #expect(error.description.contains("found object"))
    }

    @Test(arguments: [
        (#"[{"type": "function", "function": {"description": "x", "parameters": {"type": "object"}}}]"#, "[0].function.name", "missing (required)"),
        (#"[{"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}}, {"type": "function", "function": {"name": "p", "parameters": "{\"type\": \"object\"}"}}]"#,
         "[1].function.parameters", "expected a JSON object, found string"),
        (#"[{"type": "function", "function": {"name": "p"}}]"#, "[0].function.parameters", "missing (required)"),
        (#"[{"type": "function", "function": {"name": "p", "parameters": {"type": "array"}}}]"#, "[0].function.parameters.type", "type \"object\""),
        (#"[{"type": "function"}]"#, "[0].function", "missing (required)"),
        (#"[{"type": "tool", "function": {"name": "p", "parameters": {}}}]"#, "[0].type", "expected \"function\""),
        (#"[{"type": "function", "function": {"name": "", "parameters": {}}}]"#, "[0].function.name", "empty tool name"),
        (#"[{"type": "function", "function": {"name": "a", "parameters": {}}}, {"type": "function", "function": {"name": "a", "parameters": {}}}]"#,
         "[1].function.name", "listed twice"),
        ("[1]", "[0]", "expected a JSON object, found number"),
    ])
    func badToolEntriesNameTheFieldPath(text: String, field: String, reason: String) throws {
        let tmp = try TempDir()
        let file = try tmp.write("tools.json", text)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTools(file: file, server: "srv", domains: ["mock"]) }
        #expect(error.file == file)
        #expect(error.field == field)
        #expect(error.reason.contains(reason), "reason was: \(error.reason)")
        #expect(error.description.hasPrefix("\(file)"))
        #expect(error.description.contains(": \(field): "))
    }

    @Test func emptyToolListIsRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("tools.json", "[]\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTools(file: file, server: "srv") }
        #expect(error.description == "\(file): empty tool list")
    }

    @Test func dottedToolNamesGetAnAPISafeNameAndANotice() throws {
        let tmp = try TempDir()
        func tool(_ name: String) -> String {
            #"{"type": "function", "function": {"name": "\#(name)", "description": "d", "parameters": {"type": "object", "properties": {}}}}"#
        }
        let long = "mcp." + String(repeating: "x", count: 70)
        let file = try tmp.write("tools.json", "[" + [tool("sap.get_x"), tool("sap_get_x"), tool(long), tool("ok-name"), tool("café.menu")].joined(separator: ", ") + "]")
        let w = try Warehouse.inMemory()
        let report = try w.ingestTools(file: file, server: "sap", domains: ["SAP"])
        #expect(report["tools"].inserted == 5)

        let rows = try w.rows("SELECT name, api_name, json_extract(schema, '$.function.name') AS schema_name FROM tools ORDER BY ordinal")
        #expect(rows.map { $0["name"] as String } == ["sap.get_x", "sap_get_x", long, "ok-name", "café.menu"])
        #expect(rows.map { $0["schema_name"] as String } == ["sap.get_x", "sap_get_x", long, "ok-name", "café.menu"], "the schema keeps the original name")
        let apiNames = rows.map { $0["api_name"] as String }
        for name in apiNames { #expect(isAPISafeName(name), "\(name) must match ^[a-zA-Z0-9_-]{1,64}$") }
        #expect(Set(apiNames).count == 5, "api names are unique: \(apiNames)")
        #expect(apiNames[1] == "sap_get_x", "an already safe name is kept")
        #expect(apiNames[3] == "ok-name")
        #expect(apiNames[0] != "sap.get_x")
        #expect(apiNames[0].hasPrefix("sap_get_x"))

        #expect(report.notices.count == 3)
        #expect(report.notices.contains { $0.contains("\"sap.get_x\"") && $0.contains("\"\(apiNames[0])\"") })
        #expect(report.notices.contains { $0.contains(long) })
        #expect(report.notices.contains { $0.contains("café.menu") })
        #expect(report.skipped == 0)

        let again = try w.ingestTools(file: file, server: "sap", domains: ["SAP"])
        #expect(again["tools"].unchanged == 5)
        #expect(try w.strings("SELECT api_name FROM tools ORDER BY ordinal") == apiNames, "api names are stable")
    }

    /// A tool list that later adds a safe name equal to the API name an earlier unsafe tool was
    /// given must still ingest (Catalog's storeTools promises to park api names so updates
    /// cannot trip UNIQUE (server_id, api_name)).
    @Test func newSafeToolNameCollidingWithAnEarlierAPINameStillIngests() throws {
        let tmp = try TempDir()
        func tool(_ name: String) -> String {
            #"{"type": "function", "function": {"name": "\#(name)", "parameters": {"type": "object", "properties": {}}}}"#
        }
        let file = try tmp.write("tools.json", "[" + tool("sap.get_x") + "]")
        let w = try Warehouse.inMemory()
        _ = try w.ingestTools(file: file, server: "sap")
        #expect(try w.strings("SELECT api_name FROM tools") == ["sap_get_x"])

        try tmp.write("tools.json", "[" + [tool("sap_get_x"), tool("sap.get_x")].joined(separator: ", ") + "]")
        let report = try w.ingestTools(file: file, server: "sap")
        #expect(report["tools"].inserted == 1)
        #expect(report["tools"].updated == 1)
        let rows = try w.rows("SELECT name, api_name FROM tools ORDER BY ordinal")
        #expect(rows.map { $0["name"] as String } == ["sap_get_x", "sap.get_x"])
        #expect(rows.first?["api_name"] as String? == "sap_get_x", "a safe name is offered as itself")
        let apiNames = rows.map { $0["api_name"] as String }
        #expect(Set(apiNames).count == 2)
        #expect(apiNames.allSatisfy(isAPISafeName))
    }

    @Test func reorderedToolListKeepsEveryTool() throws {
        let tmp = try TempDir()
        func tool(_ name: String) -> String {
            #"{"type": "function", "function": {"name": "\#(name)", "parameters": {"type": "object", "properties": {}}}}"#
        }
        let file = try tmp.write("tools.json", "[" + ["a", "b.c", "d"].map(tool).joined(separator: ", ") + "]")
        let w = try Warehouse.inMemory()
        _ = try w.ingestTools(file: file, server: "s")
        try tmp.write("tools.json", "[" + ["d", "b.c", "a"].map(tool).joined(separator: ", ") + "]")
        let report = try w.ingestTools(file: file, server: "s")
        #expect(report["tools"].updated == 2)
        #expect(report["tools"].unchanged == 1)
        #expect(try w.strings("SELECT name FROM tools ORDER BY ordinal") == ["d", "b.c", "a"])
    }

    // MARK: duplicates

    @Test func sameIDWithDifferentContentNamesTheFirstLine() throws {
        let tmp = try TempDir()
        let changed = queryLine(id: "a", opening: "First", prompt: "You are a user who needs help with: something else")
        let file = try tmp.write("q.jsonl", [Self.good1, Self.good2, changed].joined(separator: "\n") + "\n")
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.line == 3)
        #expect(error.field == "id")
        #expect(error.description == "\(file):3: id: id \"a\" appears twice with different content (first at \(file):1)")
    }

    @Test func identicalRecordTwiceIsADuplicateNotAnError() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", [Self.good1, Self.good2, Self.good1].joined(separator: "\n") + "\n")
        let w = try Warehouse.inMemory()
        let report = try w.ingestQueries(file: file, domains: ["D"])
        #expect(report.duplicates == 1)
        #expect(report["tasks"].inserted == 2)
        #expect(report["tasks"].unchanged == 0)
        #expect(try w.strings("SELECT external_id || '@' || source_line FROM tasks ORDER BY external_id") == ["a@1", "b@2"])
    }

    @Test func sameTrajectorySampleTwiceWithDifferentContentIsRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("iter1.jsonl", """
            {"question": "Q?", "answer": "A", "messages": [], "prediction": "A", "termination": "answer"}
            {"question": "Q?", "answer": "A", "messages": [], "prediction": "B", "termination": "answer"}

            """)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTrajectories(file: file, run: "dr", format: .deepresearch) }
        #expect(error.line == 2)
        #expect(error.reason.contains("second, different rollout"))
    }

    // MARK: files and folders

    @Test func nonexistentFilesAreNamed() throws {
        let tmp = try TempDir()
        let missing = tmp.file("nope.jsonl")
        let w = try seededWarehouse()
        let calls: [(String, () throws -> IngestReport)] = [
            ("queries", { try w.ingestQueries(file: missing, domains: ["D"]) }),
            ("qa", { try w.ingestQA(file: missing, dataset: "x") }),
            ("swebench", { try w.ingestSWEBench(file: missing, dataset: "x") }),
            ("tools", { try w.ingestTools(file: missing, server: "s") }),
            ("policy", { try w.ingestPolicy(file: missing, domains: ["D"]) }),
            ("rollout", { try w.ingestTrajectories(file: missing, run: "r", format: .rollout) }),
            ("deepresearch", { try w.ingestTrajectories(file: missing, run: "r", format: .deepresearch) }),
            ("tau-bench", { try w.ingestTrajectories(file: missing, run: "r", format: .tauBench) }),
        ]
        for (name, call) in calls {
            let error = try expectIngestError(w, call)
            #expect(error.description == "\(missing): no such file", "\(name)")
        }
        for call in [{ try w.ingestDirectory(missing) }, { try w.ingestTau2(directory: missing) }, { try w.ingestRepoStructures(directory: missing) }] {
            let error = try expectIngestError(w, call)
            #expect(error.file == missing)
            #expect(error.reason.contains("not a directory") || error.reason.contains("no such directory"), "\(error)")
        }
    }

    @Test func aDirectoryWhereAFileIsExpectedIsRefused() throws {
        let tmp = try TempDir()
        let dir = try tmp.mkdir("folder.jsonl")
        let w = try seededWarehouse()
        for call in [{ try w.ingestQueries(file: dir, domains: ["D"]) }, { try w.ingestQA(file: dir, dataset: "x") },
                     { try w.ingestTools(file: dir, server: "s") }, { try w.ingestPolicy(file: dir, domains: ["D"]) },
                     { try w.ingestTrajectories(file: dir, run: "r", format: .tauBench) }, { try w.ingestSWEBench(file: dir, dataset: "x") }] {
            let error = try expectIngestError(w, call)
            #expect(error.description == "\(dir): is a directory, expected a file")
        }
    }

    @Test(.enabled(if: getuid() != 0, "root reads files whatever their permissions; run the tests as a normal user to check this"))
    func fileWithoutReadPermissionIsRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", Self.good1 + "\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: file)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file) }
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.file == file)
        #expect(error.reason.contains("permission denied"))
    }

    @Test func wrongDirectoryLayoutsAreExplained() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        let empty = try tmp.mkdir("empty")
        let emptyError = try expectIngestError(w) { try w.ingestDirectory(empty) }
        #expect(emptyError.file == empty)
        #expect(emptyError.reason.hasPrefix("wrong layout: expected single_domain/ and/or cross_domain/"))

        try tmp.write("noqueries/single_domain/policies/Shop.md", "# Shop\n")
        let noQueries = try expectIngestError(w) { try w.ingestDirectory(tmp.file("noqueries")) }
        #expect(noQueries.reason.hasPrefix("wrong layout: no queries/*.jsonl"))

        try tmp.write("tau/policy.md", "# p\n")
        let tau = try expectIngestError(w) { try w.ingestTau2(directory: tmp.file("tau")) }
        #expect(tau.reason.contains("wrong layout: no tasks.json"))

        let noStructures = try expectIngestError(w) { try w.ingestRepoStructures(directory: empty) }
        #expect(noStructures.reason.contains("wrong layout"))

        let file = try tmp.write("plain.txt", "x")
        let notDir = try expectIngestError(w) { try w.ingestDirectory(file) }
        #expect(notDir.description == "\(file): not a directory")
    }

    @Test func emptyAndZeroByteFilesAreRefused() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        let blank = try tmp.write("blank.jsonl", "\n  \n\t\n")
        let zero = try tmp.write("zero.jsonl", "")
        for file in [blank, zero] {
            let queries = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
            #expect(queries.description == "\(file): empty file: no records (an ingest needs at least one)")
            let qa = try expectIngestError(w) { try w.ingestQA(file: file, dataset: "x") }
            #expect(qa.reason.hasPrefix("empty file"))
            let rollouts = try expectIngestError(w) { try w.ingestTrajectories(file: file, run: "r", format: .rollout) }
            #expect(rollouts.reason.hasPrefix("empty file"))
            let swe = try expectIngestError(w) { try w.ingestSWEBench(file: file, dataset: "x") }
            #expect(swe.reason.hasPrefix("empty file"))
            let tools = try expectIngestError(w) { try w.ingestTools(file: file, server: "s") }
            #expect(tools.reason.hasPrefix("empty file") || tools.reason.contains("unexpected end of text"), "\(tools)")
            let policy = try expectIngestError(w) { try w.ingestPolicy(file: file, domains: ["D"]) }
            #expect(policy.description == "\(file): empty file")
            let tau = try expectIngestError(w) { try w.ingestTrajectories(file: file, run: "r", format: .tauBench) }
            #expect(tau.reason.hasPrefix("empty file"))
        }
        let emptyArray = try tmp.write("empty.json", "[]\n")
        let tau = try expectIngestError(w) { try w.ingestTrajectories(file: emptyArray, run: "r", format: .tauBench) }
        #expect(tau.description == "\(emptyArray): empty array: no records")
    }

    @Test func truncatedLastLineIsCalledTruncated() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", Self.good1 + "\n" + #"{"id": "b", "messages": [{"role": "us"#)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.file == file)
        #expect(error.line == 2)
        #expect(error.description.hasPrefix("\(file):2: malformed JSON"))
        #expect(error.description.contains("truncated"))
        #expect(error.description.contains("the last line has no newline"))
    }

    @Test func truncatedJSONArrayIsCalledTruncated() throws {
        let tmp = try TempDir()
        let text = try Fixture.text("tau-bench/gpt-4o-airline-10.json")
        let cut = String(decoding: Array(text.utf8).prefix(50_000), as: UTF8.self)
        let file = try tmp.write("cut.json", cut)
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestTrajectories(file: file, run: "r", format: .tauBench) }
        #expect(error.file == file)
        #expect(error.line == 1)
        #expect(error.reason.contains("truncated"))
    }

    @Test func invalidUTF8NamesTheLine() throws {
        let tmp = try TempDir()
        let prefix = Array(#"{"id": "b", "messages": [{"role": "user", "content": "caf"#.utf8)
        let bad = prefix + [0xFF] + Array(#""}], "user_system_prompt": "p"}"#.utf8)
        let file = try tmp.write("q.jsonl", bytes: Array((Self.good1 + "\n").utf8) + bad + [0x0A] + Array((Self.good2 + "\n").utf8))
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.file == file)
        #expect(error.line == 2)
        #expect(error.description.hasPrefix("\(file):2: not valid UTF-8 (byte \(prefix.count + 1)"), "\(error)")
        #expect(error.description.contains("re-encode the file as UTF-8"))
    }

    /// Every kind of ill-formed UTF-8 is refused (not repaired into U+FFFD and not stored raw).
    @Test(arguments: [
        ("overlong NUL", [0xC0, 0x80] as [UInt8]), ("overlong slash", [0xE0, 0x80, 0xAF]), ("UTF-16 surrogate", [0xED, 0xA0, 0x80]),
        ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]), ("truncated sequence", [0xE2, 0x82]), ("lone continuation", [0x80]),
        ("five-byte form", [0xF8, 0x88, 0x80, 0x80, 0x80]), ("0xFE", [0xFE]), ("Latin-1 é", [0xE9]),
    ])
    func illFormedUTF8IsRefused(kind: String, bad: [UInt8]) throws {
        let tmp = try TempDir()
        // Long enough on both sides that the 8-byte scanner meets the bad bytes mid-word.
        let prefix = Array(#"{"id": "b", "messages": [{"role": "user", "content": "abcdefghijklmnop"#.utf8)
        let line = prefix + bad + Array(#"qrstuvwxyz0123456789"}], "user_system_prompt": "p"}"#.utf8)
        let file = try tmp.write("q.jsonl", bytes: Array((Self.good1 + "\n").utf8) + line + [0x0A])
        let w = try seededWarehouse()
        let error = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["D"]) }
        #expect(error.line == 2, "\(kind)")
        #expect(error.reason.contains("not valid UTF-8"), "\(kind): \(error)")
        let parse = try #require(throws: JSONParseError.self) { try JSONParser.parse(Array(line)) }
        #expect(parse.description.hasPrefix("not valid UTF-8"), "\(kind): \(parse)")
    }

    @Test func nonASCIIOutsideStringsIsASyntaxError() throws {
        let error = try #require(throws: JSONParseError.self) { try JSONParser.parse([0x5B, 0xC3, 0xA9, 0x5D]) }
        #expect(error.offset == 1)
        #expect(error.reason.contains("non-ASCII byte 0xc3 outside a string"))
    }

    @Test func errorDeepInALargeFileNamesItsLine() throws {
        let tmp = try TempDir()
        var lines = (1...3000).map { queryLine(id: "q\($0)", opening: "Opening \($0)") }
        let good = try tmp.write("big.jsonl", lines.joined(separator: "\n") + "\n")
        let w = try seededWarehouse()
        let report = try w.ingestQueries(file: good, domains: ["D"], dataset: "big")
        #expect(report["tasks"].inserted == 3000)
        #expect(report.lines == 3000)
        #expect(try w.int("SELECT max(source_line) FROM tasks WHERE external_id LIKE 'q%'") == 3000)
        #expect(try w.string("SELECT opening FROM tasks WHERE external_id = 'q2718'") == "Opening 2718")

        lines[2998] = #"{"id": "q2999", "messages": [{"role": "user", "content": "x"}]}"#
        lines[1000] = "{not json"
        let bad = try tmp.write("bad.jsonl", lines.joined(separator: "\n") + "\n")
        let error = try expectIngestError(w) { try w.ingestQueries(file: bad, domains: ["D"], dataset: "bad") }
        #expect(error.line == 1001, "the first bad line in file order")
        let skipped = try w.ingestQueries(file: bad, domains: ["D"], dataset: "bad", options: IngestOptions(skipInvalid: true))
        #expect(skipped.skipped == 2)
        #expect(skipped.skippedErrors.map(\.line) == [1001, 2999])
        #expect(skipped["tasks"].inserted == 2998)
    }

    @Test func invalidUTF8InDocumentsNamesTheLine() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        let policy = try tmp.write("policy.md", bytes: Array("# Policy\n\nBe nice.\n".utf8) + [0x63, 0x61, 0x66, 0xE9, 0x0A])
        let policyError = try expectIngestError(w) { try w.ingestPolicy(file: policy, domains: ["D"]) }
        #expect(policyError.line == 4)
        #expect(policyError.reason.contains("not valid UTF-8"))

        let tools = try tmp.write("tools.json", bytes: Array("[\n  {\"type\": \"function\",\n   \"function\": {\"name\": \"x\", \"description\": \"".utf8)
                                    + [0xC3, 0x28] + Array("\", \"parameters\": {}}}\n]\n".utf8))
        let toolsError = try expectIngestError(w) { try w.ingestTools(file: tools, server: "s") }
        #expect(toolsError.line == 3)
        #expect(toolsError.reason.contains("not valid UTF-8"))

        let tau = try tmp.write("tau.json", bytes: Array("[\n{\"task_id\": 0, \"reward\": 1.0, \"trial\": 0, \"traj\": []},\n{\"task_id\": 1, \"reward\": 0.0, \"trial\": 0,\n \"traj\": [{\"role\": \"user\", \"content\": \"".utf8)
                                + [0xFF] + Array("\"}]}\n]\n".utf8))
        let tauError = try expectIngestError(w) { try w.ingestTrajectories(file: tau, run: "r", format: .tauBench) }
        #expect(tauError.line == 4)
        #expect(tauError.reason.contains("not valid UTF-8"))
    }

    @Test func invalidDomainNamesAreRefused() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", Self.good1 + "\n")
        let w = try seededWarehouse()
        let plus = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["A+B"]) }
        #expect(plus.field == "--domain")
        let none = try expectIngestError(w) { try w.ingestQueries(file: file, domains: []) }
        #expect(none.field == "--domain")
    }

    @Test func datasetOfAnotherKindIsRefused() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        let qa = try tmp.write("qa.jsonl", #"{"question": "Q?", "answer": "A"}"# + "\n")
        let error = try expectIngestError(w) { try w.ingestQA(file: qa, dataset: "tau2-mock") }
        #expect(error.reason.contains("dataset \"tau2-mock\" already holds dialogue tasks"))
    }

    @Test func repoStructureProblemsNameFileAndField() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        try tmp.write("a/o__r-1.json", #"{"repo": "o/r", "base_commit": "abc", "instance_id": "o__r-2", "structure": {}}"#)
        let mismatch = try expectIngestError(w) { try w.ingestRepoStructures(directory: tmp.file("a")) }
        #expect(mismatch.file == tmp.file("a/o__r-1.json"))
        #expect(mismatch.field == "instance_id")
        #expect(mismatch.reason.contains("does not match the file name"))

        try tmp.write("b/o__r-1.json", #"{"repo": "o/r", "base_commit": "abc", "structure": ["x"]}"#)
        let notObject = try expectIngestError(w) { try w.ingestRepoStructures(directory: tmp.file("b")) }
        #expect(notObject.field == "structure")
        #expect(notObject.reason == "expected an object, found array")

        // Without instance_id the file name is the id.
        try tmp.write("d/o__r-7.json", #"{"repo": "o/r", "base_commit": "abc", "structure": {"r": {"a.py": {}}}}"#)
        _ = try w.ingestRepoStructures(directory: tmp.file("d"))
        #expect(try w.strings("SELECT instance_id FROM repo_structures") == ["o__r-7"])
    }

    /// A structure file that is not valid JSON must give FILE:LINE: reason (and be skippable),
    /// not a raw SQLite "malformed JSON" error.
    @Test func malformedRepoStructureNamesFileAndLine() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        let file = try tmp.write("c/o__r-1.json", "{\n  \"repo\": \"o/r\",\n  \"structure\": {\"a\": }\n}\n")
        try tmp.write("c/o__r-2.json", #"{"repo": "o/r", "base_commit": "abc", "structure": {}}"#)
        let malformed = try expectIngestError(w) { try w.ingestRepoStructures(directory: tmp.file("c")) }
        #expect(malformed.file == file)
        #expect(malformed.line == 3)
        #expect(malformed.reason.contains("malformed JSON"))

        let report = try w.ingestRepoStructures(directory: tmp.file("c"), options: IngestOptions(skipInvalid: true))
        #expect(report.skipped == 1)
        #expect(report["repo_structures"].inserted == 1)
        #expect(try w.strings("SELECT file FROM ingest_errors") == [file])
    }

    @Test func importingIntoARunMadeByRolloutRunIsRefused() throws {
        let tmp = try TempDir()
        let w = try seededWarehouse()
        try w.writer.write { db in
            try db.execute(sql: "INSERT INTO runs(name, mode, created_at) VALUES ('live', 'dialogue', '2026-01-01T00:00:00.000Z')")
        }
        let file = try tmp.write("out.jsonl", IngestRoundTripTests.rolloutLines[0] + "\n")
        let error = try expectIngestError(w) { try w.ingestTrajectories(file: file, run: "live", format: .rollout) }
        #expect(error.field == "--run")
        #expect(error.reason.contains("import into a new run name"))
    }

    @Test func warehouseOnADirectoryIsRefused() throws {
        let tmp = try TempDir()
        let error = try #require(throws: WarehouseError.self) { try Warehouse.open(path: tmp.path) }
        #expect(error.path == tmp.path)
    }

    // MARK: --skip-invalid

    @Test func skipInvalidIngestsGoodRecordsAndRecordsTheBadOnes() throws {
        let tmp = try TempDir()
        let lines = [
            queryLine(id: "a"), #"{"id": "b", "messages": [}"#, queryLine(id: "c"),
            #"{"id": "d", "messages": [{"role": "user", "content": "no prompt"}]}"#, queryLine(id: "e"), queryLine(id: "f"),
        ]
        let file = try tmp.write("q.jsonl", lines.joined(separator: "\n") + "\n")
        let w = try Warehouse.inMemory()
        let report = try w.ingestQueries(file: file, domains: ["D"], options: IngestOptions(skipInvalid: true))
        #expect(report.skipped == 2)
        #expect(report.skippedErrors.map(\.line) == [2, 4])
        #expect(report["tasks"].inserted == 4)
        #expect(try w.strings("SELECT external_id FROM tasks ORDER BY external_id") == ["a", "c", "e", "f"])

        let errors = try w.rows("SELECT ingest_id, file, line, field, reason FROM ingest_errors ORDER BY line")
        #expect(errors.count == 2)
        #expect(errors.map { $0["file"] as String } == [file, file])
        #expect(errors.map { $0["line"] as Int } == [2, 4])
        #expect(errors.map { $0["field"] as String? } == [nil, "user_system_prompt"])
        #expect((errors[0]["reason"] as String).hasPrefix("malformed JSON at byte 26"))
        #expect(errors[1]["reason"] as String == "missing (required)")
        #expect(errors.allSatisfy { ($0["ingest_id"] as Int64) == report.ingestID })
        #expect(try w.int("SELECT skipped FROM ingests WHERE id = ?", [report.ingestID]) == 2)

        // The bundled query lists them.
        let listed = try QueryRunner(w).run("ingest-errors", parameters: ["ingest": String(report.ingestID)])
        #expect(listed[0].rows.count == 2)
    }

    @Test func skipInvalidInAJSONArraySkipsTheBadElement() throws {
        let tmp = try TempDir()
        let file = try tmp.write("tau.json", """
            [
              {"task_id": 0, "reward": 1.0, "trial": 0, "traj": [{"role": "user", "content": "hi"}]},
              {"task_id": 1, "reward": , "trial": 0, "traj": []},
              {"task_id": 2, "reward": 0.0, "trial": 0, "traj": [{"role": "user", "content": "yo"}]}
            ]
            """)
        let w = try Warehouse.inMemory()
        let report = try w.ingestTrajectories(file: file, run: "r", format: .tauBench, options: IngestOptions(skipInvalid: true))
        #expect(report.skipped == 1)
        #expect(report["rollouts"].inserted == 2)
        #expect(try w.strings("SELECT t.external_id FROM rollouts o JOIN tasks t ON t.id = o.task_id ORDER BY 1") == ["0", "2"])
        let error = try #require(try w.rows("SELECT file, line, reason FROM ingest_errors").first)
        #expect(error["file"] as String == file)
        #expect(error["line"] as Int == 3)
        #expect((error["reason"] as String).contains("malformed JSON"))
    }

    @Test func skipInvalidLeavesNothingOfASkippedTrajectory() throws {
        let tmp = try TempDir()
        let good = #"{"id": "t1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "success": true}"#
        let bad = #"{"id": "t2", "messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}], "success": true}"#
        let file = try tmp.write("out.jsonl", good + "\n" + bad + "\n")
        let w = try Warehouse.inMemory()
        let report = try w.ingestTrajectories(file: file, run: "r", format: .rollout, options: IngestOptions(skipInvalid: true))
        #expect(report.skipped == 1)
        #expect(try w.count("rollouts") == 1)
        #expect(try w.count("messages") == 2)
        #expect(try w.strings("SELECT external_id FROM tasks") == ["t1"])
        #expect(try w.strings("SELECT field FROM ingest_errors") == ["messages[1].role"])
    }
}

@Suite("Opening a warehouse")
struct WarehouseOpenTests {
    @Test func newFileGetsTheSchemaAndOurApplicationID() throws {
        let tmp = try TempDir()
        let path = tmp.file("w.db")
        do {
            let w = try Warehouse.open(path: path)
            let status = try w.status()
            #expect(status.upToDate)
            #expect(status.applied == Warehouse.knownMigrations)
            #expect(status.journalMode == "wal")
            #expect(try w.int("PRAGMA application_id") == Int(Warehouse.applicationID))
            #expect(try w.int("PRAGMA user_version") == Warehouse.knownMigrations.count)
            _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
        }
        let reopened = try Warehouse.open(path: path, create: false)
        #expect(try reopened.count("tasks") == 10)
    }

    /// Ingests into a file may switch to a rollback journal for speed; WAL must be back after
    /// success and after failure, or readers would block the writer.
    @Test func fileWarehouseIsBackInWALAfterIngests() throws {
        let tmp = try TempDir()
        let w = try Warehouse.open(path: tmp.file("w.db"))
        _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
        #expect(try w.status().journalMode == "wal")
        #expect(try w.writer.write { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
        let bad = try tmp.write("bad.jsonl", "{oops\n")
        _ = try #require(throws: IngestError.self) { try w.ingestQA(file: bad, dataset: "x") }
        #expect(try w.writer.write { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
        #expect(try w.count("tasks") == 10)
        // A second connection reading during an ingest does not break it.
        let other = try DatabaseQueue(path: tmp.file("w.db"))
        try other.read { db in
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM tasks") == 10)
            let qa = try tmp.write("qa.jsonl", #"{"question": "Q?", "answer": "A"}"# + "\n")
            let report = try w.ingestQA(file: qa, dataset: "qa")
            #expect(report["tasks"].inserted == 1)
        }
        try other.close()
        #expect(try w.count("tasks") == 11)
        #expect(try w.writer.write { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
    }

    @Test func missingFileWithoutCreateIsAnError() throws {
        let tmp = try TempDir()
        let path = tmp.file("none.db")
        let error = try #require(throws: WarehouseError.self) { try Warehouse.open(path: path, create: false) }
        #expect(error.path == path)
        #expect(error.description.contains("no warehouse here"))
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func zeroByteFileBecomesAWarehouse() throws {
        let tmp = try TempDir()
        let path = try tmp.write("empty.db", "")
        let w = try Warehouse.open(path: path)
        #expect(try w.status().upToDate)
    }

    @Test func sqliteDatabaseOfAnotherApplicationIsRefusedAndUntouched() throws {
        let tmp = try TempDir()
        let path = tmp.file("other.db")
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(sql: "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) VALUES ('keep me')")
            }
            try queue.close()
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let error = try #require(throws: WarehouseError.self) { try Warehouse.open(path: path) }
        #expect(error.path == path)
        #expect(error.description.contains("not a rollout warehouse"))
        #expect(error.description.contains("application_id 0"))
        // "refusing to change it" must hold for the file itself: opening must not switch it to WAL.
        let after = try Data(contentsOf: URL(fileURLWithPath: path))
        let changed = zip(before, after).enumerated().filter { $0.element.0 != $0.element.1 }
            .map { "byte \($0.offset): \($0.element.0) -> \($0.element.1)" }
        #expect(after == before, "the refused database was modified: \(changed.prefix(8))")
        let queue = try DatabaseQueue(path: path)
        #expect(try queue.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") } == ["notes"])
        #expect(try queue.read { try Int.fetchOne($0, sql: "PRAGMA application_id") } == 0)
        #expect(try queue.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "delete",
                "the refused database was switched to WAL")
        try queue.close()
    }

    @Test func fileThatIsNotSQLiteIsRefusedAndUntouched() throws {
        let tmp = try TempDir()
        let text = "name,value\nthis is a CSV file, not a database\n"
        let path = try tmp.write("data.db", text)
        let error = try #require(throws: WarehouseError.self) { try Warehouse.open(path: path) }
        #expect(error.description.contains("not a SQLite database"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func databaseFromANewerVersionIsRefused() throws {
        let tmp = try TempDir()
        let path = tmp.file("future.db")
        do {
            let w = try Warehouse.open(path: path)
            _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
            try (w.writer as? DatabasePool)?.close()
        }
        do {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('9999_future')") }
            try queue.close()
        }
        let error = try #require(throws: WarehouseError.self) { try Warehouse.open(path: path) }
        #expect(error.description.contains("newer"))
        #expect(error.description.contains("9999_future"))
        // Nothing was changed by the refused open.
        let queue = try DatabaseQueue(path: path)
        #expect(try queue.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM tasks") } == 10)
        #expect(try queue.read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier") }
            == Warehouse.knownMigrations + ["9999_future"])
        try queue.close()
    }
}
