import Foundation
import GRDB
import RolloutKit
import Testing

@Suite("Ingest round trips")
struct IngestRoundTripTests {
    // MARK: Rollout-framework layout (bundled example)

    @Test func bundledExampleIngestsThreeDatasetsAndSeventeenTasks() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let report = try w.ingestBundledExample(into: tmp.path)

        #expect(report.kind == "dir")
        #expect(report["tasks"].inserted == 17)
        #expect(report["datasets"].inserted == 3)
        #expect(report["domains"].inserted == 3)
        #expect(report["policies"].inserted == 3)
        #expect(report["servers"].inserted == 2)
        #expect(report["tools"].inserted == 9)
        #expect(report.skipped == 0)
        #expect(report.duplicates == 0)

        #expect(try w.count("tasks") == 17)
        #expect(try w.strings("SELECT name FROM datasets ORDER BY name") == ["CityTransit", "Library", "Library_CityTransit"])
        #expect(try w.strings("SELECT DISTINCT kind FROM datasets") == ["dialogue"])
        #expect(try w.strings("SELECT key FROM domains ORDER BY key") == ["CityTransit", "CityTransit+Library", "Library"])
        #expect(try w.strings("SELECT name FROM servers ORDER BY name") == ["CityTransit", "Library"])
        #expect(try w.strings("SELECT t.name FROM tools t JOIN servers s ON s.id = t.server_id WHERE s.name = 'Library' ORDER BY t.ordinal")
            == ["search_catalog", "get_member", "list_loans", "renew_loan", "place_hold"])
        #expect(try w.strings("""
            SELECT d.key || '>' || s.name FROM domain_servers ds JOIN domains d ON d.id = ds.domain_id
            JOIN servers s ON s.id = ds.server_id ORDER BY 1
            """) == ["CityTransit>CityTransit", "Library>Library"])

        // The cross-domain key: policy from CityTransit_Library.md, queries from Library_CityTransit.jsonl.
        let cross = try #require(try w.rows("SELECT size, policy, policy_source FROM domains WHERE key = 'CityTransit+Library'").first)
        #expect(cross["size"] as Int == 2)
        let policySource: String = cross["policy_source"]
        #expect(policySource.hasSuffix("cross_domain/policies/CityTransit_Library.md"))
        #expect(cross["policy"] as String == (try String(contentsOfFile: tmp.file("cross_domain/policies/CityTransit_Library.md"), encoding: .utf8)))
        let crossTasks = try w.rows("""
            SELECT t.source_file, d.name AS dataset FROM tasks t JOIN domains k ON k.id = t.domain_id
            JOIN datasets d ON d.id = t.dataset_id WHERE k.key = 'CityTransit+Library'
            """)
        #expect(crossTasks.count == 4)
        for row in crossTasks {
            #expect((row["source_file"] as String).hasSuffix("cross_domain/queries/Library_CityTransit.jsonl"))
            #expect(row["dataset"] as String == "Library_CityTransit")
        }

        // One task in full: fields taken from its line, the line kept exactly.
        let line = try #require(try String(contentsOfFile: tmp.file("single_domain/queries/Library.jsonl"), encoding: .utf8)
            .split(separator: "\n").first.map(String.init))
        let task = try #require(try w.rows("SELECT * FROM tasks WHERE external_id = 'lib00001'").first)
        #expect(task["opening"] as String == "Hi, can you renew my books? My member id is M-1001.")
        #expect(task["user_prompt"] as String == "You are a user who needs help with: renewing library loans\n\nYour goal: Renew every loan that can still be renewed and learn the new due dates.\n\nInformation you know: Member id M-1001.")
        #expect(Array((task["record"] as String).utf8) == Array(line.utf8))
        #expect(task["source_line"] as Int == 1)
        #expect(task["created_ingest"] as Int64 == report.ingestID)

        let ingest = try #require(try w.rows("SELECT * FROM ingests").first)
        #expect(try w.count("ingests") == 1)
        #expect(ingest["kind"] as String == "dir")
        #expect(ingest["inserted"] as Int > 0)
        #expect(ingest["skipped"] as Int == 0)
        #expect((ingest["finished_at"] as String?) != nil)
    }

    @Test func queriesAndPolicyCommandsOnTheirOwn() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        _ = try w.ingestBundledExample(into: tmp.path)
        let other = try Warehouse.inMemory()
        let tools = try other.ingestTools(file: tmp.file("single_domain/tool_lists/Library.json"), server: "LibrarySrv", domains: ["Library"])
        #expect(tools["tools"].inserted == 5)
        let policy = try other.ingestPolicy(file: tmp.file("cross_domain/policies/CityTransit_Library.md"), domains: ["Library", "CityTransit"])
        #expect(policy["policies"].inserted == 1)
        let queries = try other.ingestQueries(file: tmp.file("cross_domain/queries/Library_CityTransit.jsonl"),
                                              domains: ["CityTransit", "Library"], dataset: "cross")
        #expect(queries["tasks"].inserted == 4)
        #expect(try other.strings("SELECT key FROM domains ORDER BY key") == ["CityTransit", "CityTransit+Library", "Library"])
        #expect(try other.int("SELECT count(*) FROM tasks t JOIN domains d ON d.id = t.domain_id WHERE d.key = 'CityTransit+Library'") == 4)
        #expect(try other.strings("SELECT external_id FROM tasks ORDER BY external_id")
            == (try w.strings("SELECT external_id FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = 'Library_CityTransit' ORDER BY external_id")))
    }

    @Test func serverDefinitionIsStoredWithoutSecrets() throws {
        let w = try Warehouse.inMemory()
        let report = try w.ingestServer(name: "time", command: "uvx", args: ["mcp-server-time", "--local-timezone=UTC"],
                                        env: ["API_TOKEN=${API_TOKEN}", "MODE=test"], cwd: "/tmp", domains: ["Clock"])
        #expect(report["servers"].inserted == 1)
        let row = try #require(try w.rows("SELECT * FROM servers WHERE name = 'time'").first)
        #expect(row["command"] as String == "uvx")
        #expect(row["args"] as String == #"["mcp-server-time","--local-timezone=UTC"]"#)
        #expect(row["env"] as String == #"{"API_TOKEN":"${API_TOKEN}","MODE":"test"}"#)
        #expect(row["cwd"] as String == "/tmp")
        #expect(try w.strings("SELECT d.key FROM domain_servers ds JOIN domains d ON d.id = ds.domain_id") == ["Clock"])
        let again = try w.ingestServer(name: "time", command: "uvx", args: ["mcp-server-time", "--local-timezone=UTC"],
                                       env: ["API_TOKEN=${API_TOKEN}", "MODE=test"], cwd: "/tmp", domains: ["Clock"])
        #expect(again["servers"].unchanged == 1)
        #expect(again["servers"].inserted == 0)

        let secret = try expectIngestError(w) {
            try w.ingestServer(name: "leaky", command: "x", env: ["OPENAI_API_KEY=sk-abc123456789"])
        }
        #expect(secret.field == "OPENAI_API_KEY")
        #expect(!secret.description.contains("sk-abc123456789"))
    }

    @Test func crossDomainFileNamesSplitOnKnownNamesWithUnderscores() throws {
        let tmp = try TempDir()
        try tmp.write("single_domain/queries/Car_Rental.jsonl", queryLine(id: "c1") + "\n")
        try tmp.write("single_domain/queries/Hotel.jsonl", queryLine(id: "h1") + "\n")
        try tmp.write("cross_domain/queries/Hotel_Car_Rental.jsonl", queryLine(id: "x1") + "\n")
        try tmp.write("cross_domain/policies/Car_Rental_Hotel.md", "# both\n")
        let w = try Warehouse.inMemory()
        _ = try w.ingestDirectory(tmp.path)
        #expect(try w.strings("SELECT key FROM domains ORDER BY size, key") == ["Car_Rental", "Hotel", "Car_Rental+Hotel"])
        #expect(try w.string("SELECT d.key FROM tasks t JOIN domains d ON d.id = t.domain_id WHERE external_id = 'x1'") == "Car_Rental+Hotel")
        #expect(try w.string("SELECT policy FROM domains WHERE key = 'Car_Rental+Hotel'") == "# both\n")
    }

    /// Duplicate keys resolve to the last value (JSONObject, Python's json). The stored columns
    /// must say the same as the parser, even where they are derived from the record in SQL
    /// (SQLite's json_extract takes the first of duplicate keys).
    @Test func duplicateKeysResolveToTheLastValueInStoredColumns() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", """
            {"id": "d1", "messages": [{"role": "user", "content": "Hi"}], "user_system_prompt": "old prompt", "user_system_prompt": "new prompt"}
            {"id": "d2", "messages": [{"role": "user", "content": "old opening", "content": "new opening"}], "user_system_prompt": "p"}

            """)
        let w = try Warehouse.inMemory()
        _ = try w.ingestQueries(file: file, domains: ["D"])
        let prompt = try w.string("SELECT user_prompt FROM tasks WHERE external_id = 'd1'")
        let opening = try w.string("SELECT opening FROM tasks WHERE external_id = 'd2'")
        #expect(prompt == "new prompt")
        #expect(opening == "new opening")
    }

    @Test func queriesOpeningAndPromptColumnsMatchTheRecord() throws {
        let tmp = try TempDir()
        let lines = [
            #"{"id": "s", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "after system"}], "user_system_prompt": "p1"}"#,
            #"{"id": "e", "messages": [{"role": "user", "content": "caf\u00e9 \"quoted\" \ud83d\ude00"}], "user_system_prompt": "tab\there"}"#,
            #"{"id": "n", "messages": [], "user_system_prompt": "no messages"}"#,
            #"{"id": "a", "messages": [{"role": "assistant", "content": "greeting"}, {"role": "user", "content": "second"}], "user_system_prompt": "p"}"#,
        ]
        let file = try tmp.write("q.jsonl", lines.joined(separator: "\n") + "\n")
        let w = try Warehouse.inMemory()
        _ = try w.ingestQueries(file: file, domains: ["D"])
        let rows = try w.rows("SELECT external_id, opening, user_prompt FROM tasks ORDER BY source_line")
        #expect(rows.map { $0["opening"] as String? } == ["after system", "café \"quoted\" 😀", nil, "second"])
        #expect(rows.map { $0["user_prompt"] as String } == ["p1", "tab\there", "no messages", "p"])
    }

    // MARK: τ²-bench

    @Test func tau2MockDomainRoundTrips() throws {
        let w = try Warehouse.inMemory()
        let dir = Fixture.path("tau2/mock")
        let report = try w.ingestTau2(directory: dir)
        let tasksDoc = try JSONParser.parse(Fixture.text("tau2/mock/tasks.json"))
        let tasks = try #require(tasksDoc.arrayValue)
        let toolsDoc = try #require(try JSONParser.parse(Fixture.text("tau2/mock/agent_tools.json")).arrayValue)
        #expect(tasks.count == 10)

        #expect(report["tasks"].inserted == tasks.count)
        #expect(try w.count("tasks") == tasks.count)
        #expect(try w.strings("SELECT name FROM datasets") == ["tau2-mock"])
        #expect(try w.strings("SELECT key FROM domains") == ["mock"])
        #expect(try w.string("SELECT policy FROM domains WHERE key = 'mock'") == (try Fixture.text("tau2/mock/policy.md")))
        #expect(try w.count("tools") == toolsDoc.count)
        #expect(try w.strings("SELECT name FROM tools ORDER BY ordinal") == ["create_task", "get_users", "update_task_status", "transfer_to_human_agents"])
        #expect(try w.strings("SELECT api_name FROM tools ORDER BY ordinal") == ["create_task", "get_users", "update_task_status", "transfer_to_human_agents"])
        // Stored tool schemas are the file's objects ($defs/$ref/anyOf kept).
        let storedSchemas = try w.strings("SELECT schema FROM tools ORDER BY ordinal").map { try JSONParser.parse($0) }
        #expect(storedSchemas == toolsDoc)
        #expect(try w.strings("SELECT DISTINCT splits FROM tasks") == [#"["base"]"#])

        for t in tasks {
            let id = try #require(t["id"]?.stringValue)
            let row = try #require(try w.rows("SELECT * FROM tasks WHERE external_id = ?", [id]).first, "task \(id)")
            let criteria = try JSONParser.parse(row["criteria"] as String)
            #expect(criteria == t["evaluation_criteria"], "criteria of \(id)")
            let prompt: String = row["user_prompt"]
            if let persona = t["user_scenario"]?["persona"]?.stringValue, !persona.isEmpty {
                #expect(prompt.contains(persona), "persona of \(id)")
            }
            let instructions = try #require(t["user_scenario"]?["instructions"]?.stringValue)
            #expect(prompt.contains(instructions), "instructions of \(id)")
            #expect(try JSONParser.parse(row["record"] as String) == t)
        }
        let first = try #require(try w.rows("SELECT * FROM tasks WHERE external_id = 'create_task_1'").first)
        #expect(first["user_prompt"] as String == "Persona:\nProfessional and direct communicator who writes in a clear and concise style\n\nInstructions:\nYou are a team member who needs to create a task for an upcoming meeting. Your goal is to create a task to track this important meeting. Create a new task called 'Important Meeting' for user_1.")
        #expect(try w.string("SELECT json_extract(criteria, '$.actions[0].name') FROM tasks WHERE external_id = 'create_task_1'") == "create_task")
        #expect(try w.string("SELECT json_extract(criteria, '$.actions[0].arguments.title') FROM tasks WHERE external_id = 'create_task_1'") == "Important Meeting")
        #expect(try w.string("SELECT json_extract(criteria, '$.actions[0].name') FROM tasks WHERE external_id = 'impossible_task_1'") == "transfer_to_human_agents")
    }

    @Test func tau2RetailStructuredInstructionsAndSplits() throws {
        let w = try Warehouse.inMemory()
        let report = try w.ingestTau2(directory: Fixture.path("tau2/retail"), dataset: "retail5")
        #expect(report["tasks"].inserted == 5)
        #expect(try w.strings("SELECT external_id FROM tasks ORDER BY source_line") == ["0", "1", "2", "3", "4"])
        #expect(try w.strings("SELECT DISTINCT splits FROM tasks") == [#"["base","train"]"#])
        #expect(try w.count("tools") == 16)
        #expect(try w.strings("SELECT key FROM domains") == ["retail"])
        let prompt = try #require(try w.string("SELECT user_prompt FROM tasks WHERE external_id = '0'"))
        #expect(prompt.hasPrefix("Instructions:\nDomain: retail\n"))
        #expect(!prompt.contains("Persona"))
        #expect(prompt.contains("Reason for call:\nYou received your order #W2378156"))
        #expect(prompt.contains("Known info:\nYou are Yusuf Rossi in zip code 19122."))
        #expect(prompt.contains("Unknown info:\nYou do not remember your email address."))
        #expect(prompt.contains("Task instructions:\nYou are detail-oriented and want to make sure everything is addressed in one go."))
        #expect(try w.strings("SELECT json_extract(value, '$.name') FROM tasks, json_each(tasks.criteria, '$.actions') WHERE external_id = '0'")
            == ["find_user_id_by_name_zip", "get_order_details", "get_product_details", "get_product_details", "exchange_delivered_order_items"])
        // Line numbers point into the pretty-printed tasks.json.
        let lines = try Fixture.text("tau2/retail/tasks.json").split(separator: "\n", omittingEmptySubsequences: false)
        let line1 = try #require(try w.int("SELECT source_line FROM tasks WHERE external_id = '1'"))
        #expect(lines[line1 - 1].trimmingCharacters(in: .whitespaces) == "{")
        #expect(lines[line1].contains(#""id": "1""#))
    }

    // MARK: QA

    @Test func qaQuestionsAndAnswersRoundTrip() throws {
        let w = try Warehouse.inMemory()
        let report = try w.ingestQA(file: Fixture.path("deepresearch/webresummer_example.jsonl"), dataset: "webresummer")
        #expect(report["tasks"].inserted == 4)
        let rows = try w.rows("SELECT external_id, opening, answer, source_line FROM tasks ORDER BY source_line")
        // ids are md5(question), computed with hashlib.
        #expect(rows.map { $0["external_id"] as String } == ["db993c453e6f73423fb8a5ffa3173ac4", "800888c02af474f1628f2a7d5139282b",
                                                          "fdb3228e70a100a74cc3f1c3ccc2dc72", "bda2f0c2623bdbeba422e843f2c7af72"])
        #expect(rows.map { $0["answer"] as String } == ["SIGIR 2025", "Ireland v Romania", "2", "5"])
        #expect(rows[0]["opening"] as String == "Among CS conferences, in 2025, which conference has exactly the same full paper submission deadline and the same CCF rank as IJCAI?")
        #expect(rows.map { $0["source_line"] as Int } == [1, 2, 3, 4])
        #expect(try w.string("SELECT kind FROM datasets WHERE name = 'webresummer'") == "qa")

        let empty = try w.ingestQA(file: Fixture.path("deepresearch/inference_example.jsonl"), dataset: "inference")
        #expect(empty["tasks"].inserted == 1)
        let row = try #require(try w.rows("SELECT t.opening, t.answer FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = 'inference'").first)
        #expect(row["opening"] as String == "Introduce Alibaba web agent ")
        #expect(row["answer"] as String? == "")

        let browse = try w.ingestQA(file: Fixture.path("deepresearch/browsecomp_20.jsonl"), dataset: "browsecomp")
        #expect(browse["tasks"].inserted == 20)
        #expect(try w.int("SELECT count(*) FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = 'browsecomp'") == 20)
    }

    @Test func qaMissingQuestionIsTakenFromSecondMessageAfterUser() throws {
        let tmp = try TempDir()
        let file = try tmp.write("qa.jsonl", """
            {"messages": [{"role": "system", "content": "You are a research agent."}, {"role": "user", "content": "Answer carefully.\\nUser: What is the capital of Australia?  "}], "answer": "Canberra"}
            {"id": 7, "question": "Q?", "answer": 42}

            """)
        let w = try Warehouse.inMemory()
        let report = try w.ingestQA(file: file, dataset: "qa")
        #expect(report["tasks"].inserted == 2)
        let first = try #require(try w.rows("SELECT * FROM tasks WHERE source_line = 1").first)
        #expect(first["opening"] as String == "What is the capital of Australia?")
        #expect(first["external_id"] as String == "7dc9849feb732c1b4bc652fa2e9e465f") // md5 of the question
        #expect(first["answer"] as String == "Canberra")
        let second = try #require(try w.rows("SELECT * FROM tasks WHERE source_line = 2").first)
        #expect(second["external_id"] as String == "7")
        #expect(second["answer"] as String == "42")
    }

    // MARK: SWE-bench

    @Test func swebenchInstancesRoundTripWithNormalizedTestLists() throws {
        let w = try Warehouse.inMemory()
        let file = Fixture.path("swebench/swebench_lite_5.jsonl")
        let report = try w.ingestSWEBench(file: file, dataset: "lite")
        let lines = try Fixture.lines("swebench/swebench_lite_5.jsonl")
        // The SWE-bench Lite file has CRLF line endings; the "\r" is not part of the record.
        let bytes = try Data(contentsOf: Fixture.root.appending(path: "swebench/swebench_lite_5.jsonl"))
        #expect(bytes.split(separator: 0x0A).allSatisfy { $0.last == 0x0D })
        #expect(try w.int("SELECT count(*) FROM tasks WHERE record LIKE '%' || char(13)") == 0)
        #expect(report["tasks"].inserted == 5)
        #expect(try w.string("SELECT kind FROM datasets") == "swebench")

        for (i, line) in lines.enumerated() {
            let record = try JSONParser.parse(line)
            let id = try #require(record["instance_id"]?.stringValue)
            let row = try #require(try w.rows("SELECT * FROM tasks WHERE external_id = ?", [id]).first, "\(id)")
            #expect(Array((row["record"] as String).utf8) == Array(line.utf8), "record of \(id) is byte-exact")
            #expect(row["source_line"] as Int == i + 1)
            #expect(Array((row["opening"] as String).utf8) == Array(try #require(record["problem_statement"]?.stringValue).utf8))
            #expect(row["answer"] as String? == record["patch"]?.stringValue)
            let criteria = try JSONParser.parse(row["criteria"] as String)
            for key in ["FAIL_TO_PASS", "PASS_TO_PASS"] {
                let encoded = try #require(record[key]?.stringValue, "\(key) is a JSON-encoded string in the fixture")
                #expect(criteria[key] == (try JSONParser.parse(encoded)), "\(key) of \(id)")
            }
        }
        let requests = try #require(try w.rows("""
            SELECT json_array_length(criteria, '$.FAIL_TO_PASS') AS f2p, json_array_length(criteria, '$.PASS_TO_PASS') AS p2p,
                   json_extract(criteria, '$.FAIL_TO_PASS[0]') AS first, json_type(criteria, '$.FAIL_TO_PASS') AS type
            FROM tasks WHERE external_id = 'psf__requests-2317'
            """).first)
        #expect(requests["f2p"] as Int == 8)
        #expect(requests["p2p"] as Int == 133)
        #expect(requests["type"] as String == "array")
        #expect(requests["first"] as String == "test_requests.py::RequestsTestCase::test_HTTP_302_ALLOW_REDIRECT_GET")

        // django__django-12983's problem statement holds a zero-width space (U+200B), kept as is.
        let zwsp = try #require(try w.string("SELECT opening FROM tasks WHERE external_id = 'django__django-12983'"))
        #expect(zwsp.unicodeScalars.contains("\u{200B}"))
        #expect(try w.int("SELECT instr(record, char(8203)) > 0 FROM tasks WHERE external_id = 'django__django-12983'") == 1)
    }

    /// The SWE-bench Lite file has no U+00A0 in any text field, so this record is generated: one
    /// with raw UTF-8 NBSPs (C2 A0) and one with the \u00a0 escape.
    @Test func swebenchNonBreakingSpaceSurvivesByteExactly() throws {
        let tmp = try TempDir()
        let problem = "Price:\u{00A0}10\u{00A0}€ — formatting drops non-breaking spaces"
        func instance(_ id: String) -> JSONObject {
            ["repo": "octo/demo", "instance_id": .string(id), "base_commit": "0123abc", "patch": "diff --git a/x b/x",
             "test_patch": "", "problem_statement": .string(problem), "hints_text": "", "created_at": "2024-01-01T00:00:00Z",
             "version": "1.0", "FAIL_TO_PASS": #"["tests/test_fmt.py::test_nbsp"]"#, "PASS_TO_PASS": "[]",
             "environment_setup_commit": "0123abc"]
        }
        let raw = JSONValue.object(instance("octo__demo-1")).jsonText
        #expect(raw.utf8.contains(0xA0), "the generated line holds raw C2 A0 bytes")
        let escaped = JSONValue.object(instance("octo__demo-2")).jsonText.replacingOccurrences(of: "\u{00A0}", with: "\\u00a0")
        #expect(escaped.contains("\\u00a0"))
        let file = try tmp.write("nbsp.jsonl", raw + "\n" + escaped + "\n")
        let w = try Warehouse.inMemory()
        _ = try w.ingestSWEBench(file: file, dataset: "nbsp")

        let one = try #require(try w.rows("SELECT record, opening FROM tasks WHERE external_id = 'octo__demo-1'").first)
        #expect(Array((one["record"] as String).utf8) == Array(raw.utf8))
        #expect(Array((one["opening"] as String).utf8) == Array(problem.utf8))
        let two = try #require(try w.rows("SELECT record, opening FROM tasks WHERE external_id = 'octo__demo-2'").first)
        #expect(Array((two["record"] as String).utf8) == Array(escaped.utf8), "the escape stays an escape in the record")
        #expect(Array((two["opening"] as String).utf8) == Array(problem.utf8), "and is decoded in opening")
        #expect(try w.int("SELECT count(*) FROM tasks WHERE instr(opening, char(160)) > 0") == 2)
        #expect(try w.string("SELECT criteria FROM tasks WHERE external_id = 'octo__demo-1'") == #"{"FAIL_TO_PASS":["tests/test_fmt.py::test_nbsp"],"PASS_TO_PASS":[]}"#)
    }

    @Test func swebenchJSONArrayInputGivesTheSameRecords() throws {
        let tmp = try TempDir()
        let lines = try Fixture.lines("swebench/swebench_lite_5.jsonl")
        let arrayFile = try tmp.write("lite.json", "[\n" + lines.joined(separator: ",\n") + "\n]\n")
        let w = try Warehouse.inMemory()
        let report = try w.ingestSWEBench(file: arrayFile, dataset: "lite-array")
        #expect(report["tasks"].inserted == 5)
        let records = try w.strings("SELECT record FROM tasks ORDER BY id")
        #expect(records.map { Array($0.utf8) } == lines.map { Array($0.utf8) })
        #expect(try w.rows("SELECT source_line FROM tasks ORDER BY id").map { $0[0] as Int } == [2, 3, 4, 5, 6])

        // A pretty-printed element is stored compact; test lists given as real arrays are accepted.
        let pretty = try tmp.write("pretty.json", """
            [
              {
                "repo": "octo/demo",
                "instance_id": "octo__demo-9",
                "base_commit": "abc",
                "problem_statement": "Crash on\\u00a0start",
                "FAIL_TO_PASS": ["t::a", "t::b"],
                "PASS_TO_PASS": []
              }
            ]
            """)
        _ = try w.ingestSWEBench(file: pretty, dataset: "pretty")
        let row = try #require(try w.rows("SELECT record, criteria, opening, answer FROM tasks WHERE external_id = 'octo__demo-9'").first)
        #expect(row["record"] as String == "{\"repo\":\"octo/demo\",\"instance_id\":\"octo__demo-9\",\"base_commit\":\"abc\",\"problem_statement\":\"Crash on\u{00A0}start\",\"FAIL_TO_PASS\":[\"t::a\",\"t::b\"],\"PASS_TO_PASS\":[]}")
        #expect(row["criteria"] as String == #"{"FAIL_TO_PASS":["t::a","t::b"],"PASS_TO_PASS":[]}"#)
        #expect(row["opening"] as String == "Crash on\u{00A0}start")
        #expect(row["answer"] as String? == nil)
    }

    // MARK: Agentless repo structures

    @Test func repoStructureRoundTrips() throws {
        let w = try Warehouse.inMemory()
        let report = try w.ingestRepoStructures(directory: Fixture.path("agentless"))
        #expect(report["repo_structures"].inserted == 1)
        let row = try #require(try w.rows("""
            SELECT instance_id, repo, base_commit, bytes, json_type(structure) AS type, source_file FROM repo_structures
            """).first)
        #expect(row["instance_id"] as String == "psf__requests-2317")
        #expect(row["repo"] as String == "psf/requests")
        #expect(row["base_commit"] as String == "091991be0da19de9108dbe5e3752917fea3d7fdc")
        #expect(row["type"] as String == "object")
        #expect(row["bytes"] as Int == 1_590_454)
        #expect((row["source_file"] as String).hasSuffix("agentless/psf__requests-2317.json"))
        #expect(try w.strings("SELECT key FROM repo_structures, json_each(repo_structures.structure)") == ["requests", "ext", "docs"])
        #expect(try w.strings("""
            SELECT json_extract(value, '$.name') FROM repo_structures, json_each(repo_structures.structure, '$.requests."sessions.py".classes')
            """) == ["SessionRedirectMixin", "Session"])
        #expect(try w.int(#"SELECT json_array_length(structure, '$.requests."sessions.py".text') FROM repo_structures"#) == 671)
        #expect(try w.string(#"SELECT json(json_extract(structure, '$.requests.Makefile')) FROM repo_structures"#) == "{}")

        // A single file path works too, and finds the same content unchanged.
        let again = try w.ingestRepoStructures(directory: Fixture.path("agentless/psf__requests-2317.json"))
        #expect(again["repo_structures"].unchanged == 1)
        #expect(again["repo_structures"].inserted == 0)
    }

    // MARK: Trajectories

    @Test func tauBenchTrajectoriesRoundTrip() throws {
        let w = try Warehouse.inMemory()
        let report = try w.ingestTrajectories(file: Fixture.path("tau-bench/gpt-4o-airline-10.json"), run: "gpt4o-airline", format: .tauBench)
        // Expected numbers computed with python from the fixture.
        #expect(report["rollouts"].inserted == 10)
        #expect(report["runs"].inserted == 1)
        #expect(report["tasks"].inserted == 10)
        let run = try #require(try w.rows("SELECT * FROM runs").first)
        #expect(run["name"] as String == "gpt4o-airline")
        #expect(run["mode"] as String == "imported")
        #expect(run["status"] as String == "completed")
        #expect(try w.count("rollouts") == 10)
        #expect(try w.strings("SELECT DISTINCT status FROM rollouts") == ["completed"])
        let rewards = try w.rows("SELECT t.external_id, o.reward, o.sample FROM rollouts o JOIN tasks t ON t.id = o.task_id ORDER BY CAST(t.external_id AS INTEGER)")
        #expect(rewards.map { $0["external_id"] as String } == (0..<10).map(String.init))
        #expect(rewards.map { $0["reward"] as Double } == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        #expect(rewards.map { $0["sample"] as Int } == Array(repeating: 0, count: 10))

        #expect(try w.count("messages") == 302)
        #expect(try w.strings("SELECT role || '=' || count(*) FROM messages GROUP BY role ORDER BY role")
            == ["assistant=141", "system=10", "tool=58", "user=93"])
        #expect(try w.int("SELECT count(*) FROM messages WHERE content IS NULL") == 55)
        let perRollout = try w.rows("""
            SELECT (SELECT count(*) FROM messages m WHERE m.rollout_id = o.id) AS messages,
                   (SELECT count(*) FROM tool_calls c WHERE c.rollout_id = o.id) AS calls, o.turns
            FROM rollouts o JOIN tasks t ON t.id = o.task_id ORDER BY CAST(t.external_id AS INTEGER)
            """)
        #expect(perRollout.map { $0["messages"] as Int } == [32, 12, 24, 62, 26, 26, 24, 26, 18, 52])
        #expect(perRollout.map { $0["calls"] as Int } == [8, 0, 7, 20, 6, 6, 6, 5, 0, 0])
        #expect(perRollout.map { $0["turns"] as Int } == [8, 6, 5, 11, 7, 7, 6, 8, 9, 26])

        #expect(try w.count("tool_calls") == 58)
        // Every call is linked to the tool message answering it.
        #expect(try w.int("""
            SELECT count(*) FROM tool_calls c JOIN messages r ON r.id = c.result_message_id
            WHERE r.role = 'tool' AND r.tool_call_id = c.call_id AND r.rollout_id = c.rollout_id AND c.result IS r.content
            """) == 58)
        let call = try #require(try w.rows("""
            SELECT c.call_id, c.name, c.arguments, c.idx, m.idx AS message_idx, r.name AS result_name, c.result
            FROM tool_calls c JOIN messages m ON m.id = c.message_id JOIN messages r ON r.id = c.result_message_id
            JOIN rollouts o ON o.id = c.rollout_id JOIN tasks t ON t.id = o.task_id
            WHERE t.external_id = '0' ORDER BY m.idx, c.idx LIMIT 1
            """).first)
        #expect(call["call_id"] as String == "call_oIHazX6yQrB8hUwl4cRilFKj")
        #expect(call["name"] as String == "get_user_details")
        #expect(call["arguments"] as String == #"{"user_id":"mia_li_3668"}"#)
        #expect(call["idx"] as Int == 0)
        #expect(call["result_name"] as String == "get_user_details")
        #expect((call["result"] as String).hasPrefix(#"{"name": {"first_name": "Mia", "last_name": "Li"}, "address": "#))

        // The task comes from info.task: its instruction as the user prompt, actions as criteria.
        let task = try #require(try w.rows("SELECT user_prompt, criteria FROM tasks WHERE external_id = '6'").first)
        #expect((task["user_prompt"] as String).hasPrefix("You are aarav_garcia_1177. For your upcoming trip from ATL to PHL"))
        #expect(try w.int("SELECT json_array_length(criteria, '$.actions') FROM tasks WHERE external_id = '0'") == 1)
    }

    @Test func deepResearchResultsBecomeRolloutsWithFailures() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let qa = try tmp.write("qa.jsonl", """
            {"question": "Q1?", "answer": "A1"}
            {"question": "Q2?", "answer": "A2"}

            """)
        _ = try w.ingestQA(file: qa, dataset: "dr")
        let results = try tmp.write("run/iter2.jsonl", """
            {"question": "Q1?", "answer": "A1", "rollout_id": 2, "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "<answer>A1</answer>"}], "prediction": "A1", "termination": "answer"}
            {"question": "Q2?", "answer": "A2", "messages": [], "prediction": "[Failed]", "error": "Timeout after 600s"}

            """)
        let report = try w.ingestTrajectories(file: results, run: "dr-run", format: .deepresearch, dataset: "dr")
        #expect(report["rollouts"].inserted == 2)
        #expect(report["tasks"].inserted == 0, "results are matched to the QA tasks by md5(question)")
        #expect(try w.count("tasks") == 2)
        let rows = try w.rows("""
            SELECT t.external_id, o.sample, o.status, o.stop_reason, o.prediction, o.error,
                   (SELECT count(*) FROM messages m WHERE m.rollout_id = o.id) AS messages
            FROM rollouts o JOIN tasks t ON t.id = o.task_id ORDER BY t.source_line
            """)
        #expect(rows.count == 2)
        #expect(rows[0]["external_id"] as String == "13f47610f1c7dc0d939ad662fd58a462") // md5("Q1?")
        #expect(rows[0]["sample"] as Int == 1, "iter2.jsonl is sample index 1")
        #expect(rows[0]["status"] as String == "completed")
        #expect(rows[0]["stop_reason"] as String == "answer")
        #expect(rows[0]["prediction"] as String == "A1")
        #expect(rows[0]["error"] as String? == nil)
        #expect(rows[0]["messages"] as Int == 3)
        #expect(rows[1]["external_id"] as String == "9997ba4e77e7226c2074e70b6482687e") // md5("Q2?")
        #expect(rows[1]["sample"] as Int == 1)
        #expect(rows[1]["status"] as String == "failed")
        #expect(rows[1]["stop_reason"] as String == "error")
        #expect(rows[1]["prediction"] as String == "[Failed]")
        #expect(rows[1]["error"] as String == "Timeout after 600s")
        #expect(rows[1]["messages"] as Int == 0)
        #expect(try w.int("SELECT json_extract(metadata, '$.rollout_id') FROM rollouts WHERE prediction = 'A1'") == 2)

        // Without an iterK name, rollout_id k numbers the sample (k - 1).
        let other = try tmp.write("results.jsonl", """
            {"question": "Q1?", "answer": "A1", "rollout_id": 3, "messages": [], "prediction": "A1", "termination": "answer"}

            """)
        _ = try w.ingestTrajectories(file: other, run: "dr-run-2", format: .deepresearch, dataset: "dr")
        #expect(try w.int("SELECT o.sample FROM rollouts o JOIN runs r ON r.id = o.run_id WHERE r.name = 'dr-run-2'") == 2)
    }

    static let rolloutLines = [
        #"{"id": "t1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_x", "arguments": "{\"a\":1}"}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "42"}, {"role": "assistant", "content": "It is 42", "reasoning_content": "think"}], "success": true, "error": null, "stopped": true, "transferred": false, "out_of_scope": false, "total_turns": 1, "stop_reason": "user_token", "has_reasoning": true}"#,
        #"{"id": "t2", "messages": [{"role": "user", "content": "Yo"}], "success": false, "error": "APIError: 500 Internal Server Error", "total_turns": 0}"#,
        #"{"id": "t3", "messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}], "success": true, "error": null, "reached_max_turns": true, "total_turns": 8}"#,
        #"{"id": "t1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello again"}], "success": true, "error": null, "transferred": true}"#,
    ]

    @Test func toolResultsAreMatchedByIDNotByOrder() throws {
        let tmp = try TempDir()
        let line = #"{"id": "p", "messages": [{"role": "user", "content": "both"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"n\":1}"}}, {"id": "c2", "type": "function", "function": {"name": "f", "arguments": {"n": 2}}}]}, {"role": "tool", "tool_call_id": "c2", "content": "two"}, {"role": "tool", "tool_call_id": "c1", "content": "one"}, {"role": "assistant", "content": "done"}], "success": true}"#
        let file = try tmp.write("out.jsonl", line + "\n")
        let w = try Warehouse.inMemory()
        _ = try w.ingestTrajectories(file: file, run: "r", format: .rollout)
        let calls = try w.rows("""
            SELECT c.idx, c.call_id, c.arguments, c.result, r.idx AS result_idx FROM tool_calls c
            JOIN messages r ON r.id = c.result_message_id ORDER BY c.idx
            """)
        #expect(calls.map { $0["call_id"] as String } == ["c1", "c2"])
        #expect(calls.map { $0["result"] as String } == ["one", "two"])
        #expect(calls.map { $0["result_idx"] as Int } == [3, 2])
        #expect(calls.map { $0["arguments"] as String } == [#"{"n":1}"#, #"{"n":2}"#], "object arguments are serialized")
    }

    @Test func rolloutFormatKeepsSuccessErrorAndFlattenedMetadata() throws {
        let tmp = try TempDir()
        let file = try tmp.write("out.jsonl", Self.rolloutLines.joined(separator: "\n") + "\n")
        let w = try Warehouse.inMemory()
        let report = try w.ingestTrajectories(file: file, run: "framework", format: .rollout)
        #expect(report["rollouts"].inserted == 4)
        #expect(report["tasks"].inserted == 3)
        let rows = try w.rows("""
            SELECT t.external_id, o.sample, o.status, o.stop_reason, o.error, o.metadata, o.turns
            FROM rollouts o JOIN tasks t ON t.id = o.task_id ORDER BY t.external_id, o.sample
            """)
        #expect(rows.map { "\($0["external_id"] as String)#\($0["sample"] as Int)" } == ["t1#0", "t1#1", "t2#0", "t3#0"])
        #expect(rows.map { $0["status"] as String } == ["completed", "completed", "failed", "completed"])
        #expect(rows.map { $0["stop_reason"] as String } == ["user_stop", "transfer", "error", "max_turns"])
        #expect(rows.map { $0["error"] as String? } == [nil, nil, "APIError: 500 Internal Server Error", nil])
        let meta = try JSONParser.parse(rows[0]["metadata"] as String)
        #expect(meta["total_turns"] == .number("1"))
        #expect(meta["stop_reason"] == .string("user_token"))
        #expect(meta["has_reasoning"] == .bool(true))
        #expect(meta["stopped"] == .bool(true))
        #expect(meta["_source"]?["line"] == .number("1"))
        #expect(meta["messages"] == nil && meta["id"] == nil && meta["success"] == nil)
        #expect(try JSONParser.parse(rows[3]["metadata"] as String)["reached_max_turns"] == .bool(true))

        let messages = try w.rows("""
            SELECT m.idx, m.role, m.content, m.reasoning_content, m.tool_call_id FROM messages m
            JOIN rollouts o ON o.id = m.rollout_id JOIN tasks t ON t.id = o.task_id
            WHERE t.external_id = 't1' AND o.sample = 0 ORDER BY m.idx
            """)
        #expect(messages.map { $0["role"] as String } == ["user", "assistant", "tool", "assistant"])
        #expect(messages.map { $0["content"] as String? } == ["Hi", nil, "42", "It is 42"])
        #expect(messages[3]["reasoning_content"] as String == "think")
        #expect(messages[2]["tool_call_id"] as String == "call_1")
        let call = try #require(try w.rows("""
            SELECT c.call_id, c.name, c.arguments, c.result, r.idx AS result_idx FROM tool_calls c
            JOIN messages r ON r.id = c.result_message_id
            """).first)
        #expect(try w.count("tool_calls") == 1)
        #expect(call["call_id"] as String == "call_1")
        #expect(call["name"] as String == "get_x")
        #expect(call["arguments"] as String == #"{"a":1}"#)
        #expect(call["result"] as String == "42")
        #expect(call["result_idx"] as Int == 2)
        #expect(try w.string("SELECT opening FROM tasks WHERE external_id = 't1'") == "Hi")
    }
}
