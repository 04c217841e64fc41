import Foundation
import GRDB
import RolloutKit
import Testing

@Suite("Idempotent ingest")
struct IdempotenceTests {
    /// Row counts must not move on a repeated ingest, apart from the new `ingests` row.
    func expectSameCounts(_ before: [String: Int], _ after: [String: Int], sourceLocation: SourceLocation = #_sourceLocation) {
        var expected = before
        expected["ingests", default: 0] += 1
        #expect(after == expected, sourceLocation: sourceLocation)
    }

    @Test func bundledExampleTwiceInsertsNothing() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        _ = try w.ingestBundledExample(into: tmp.path)
        let before = try w.counts()
        let policies = try w.strings("SELECT key || ':' || policy FROM domains ORDER BY key")
        let records = try w.strings("SELECT record FROM tasks ORDER BY id")

        let again = try w.ingestBundledExample(into: tmp.path)
        #expect(again["tasks"].inserted == 0)
        #expect(again["tasks"].updated == 0)
        #expect(again["tasks"].unchanged == 17)
        #expect(again["tasks"].total == 17)
        #expect(again["tools"].unchanged == 9)
        #expect(again["tools"].inserted == 0)
        #expect(again["policies"].unchanged == 3)
        #expect(again["datasets"].unchanged == 3)
        #expect(again["domains"].inserted == 0)
        #expect(again["servers"].inserted == 0)
        #expect(again.duplicates == 0)
        expectSameCounts(before, try w.counts())
        #expect(try w.strings("SELECT key || ':' || policy FROM domains ORDER BY key") == policies)
        #expect(try w.strings("SELECT record FROM tasks ORDER BY id") == records)
        let second = try #require(try w.rows("SELECT inserted, updated, unchanged FROM ingests WHERE id = ?", [again.ingestID]).first)
        #expect(second["inserted"] as Int == 0)
        #expect(second["updated"] as Int == 0)
        #expect(second["unchanged"] as Int == 17 + 9 + 3 + 3 + 2)  // tasks, tools, policies, datasets, example servers
    }

    @Test func tau2TwiceInsertsNothing() throws {
        let w = try Warehouse.inMemory()
        _ = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
        let before = try w.counts()
        let again = try w.ingestTau2(directory: Fixture.path("tau2/mock"))
        #expect(again["tasks"].unchanged == 10)
        #expect(again["tasks"].inserted == 0)
        #expect(again["tasks"].updated == 0)
        #expect(again["tools"].unchanged == 4)
        #expect(again["policies"].unchanged == 1)
        expectSameCounts(before, try w.counts())
    }

    @Test func qaAndSWEBenchTwiceInsertNothing() throws {
        let w = try Warehouse.inMemory()
        _ = try w.ingestQA(file: Fixture.path("deepresearch/browsecomp_20.jsonl"), dataset: "bc")
        _ = try w.ingestSWEBench(file: Fixture.path("swebench/swebench_lite_5.jsonl"), dataset: "lite")
        var before = try w.counts()
        let qa = try w.ingestQA(file: Fixture.path("deepresearch/browsecomp_20.jsonl"), dataset: "bc")
        #expect(qa["tasks"].unchanged == 20)
        #expect(qa["tasks"].inserted == 0)
        expectSameCounts(before, try w.counts())
        before = try w.counts()
        let swe = try w.ingestSWEBench(file: Fixture.path("swebench/swebench_lite_5.jsonl"), dataset: "lite")
        #expect(swe["tasks"].unchanged == 5)
        #expect(swe["tasks"].inserted == 0)
        #expect(swe["tasks"].updated == 0)
        expectSameCounts(before, try w.counts())
    }

    @Test func trajectoriesTwiceInsertNothing() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let tau = Fixture.path("tau-bench/gpt-4o-airline-10.json")
        _ = try w.ingestTrajectories(file: tau, run: "tau", format: .tauBench)
        var before = try w.counts()
        let again = try w.ingestTrajectories(file: tau, run: "tau", format: .tauBench)
        #expect(again["rollouts"].unchanged == 10)
        #expect(again["rollouts"].inserted == 0)
        #expect(again["rollouts"].updated == 0)
        #expect(again["runs"].inserted == 0)
        expectSameCounts(before, try w.counts())
        #expect(try w.count("messages") == 302)
        #expect(try w.count("tool_calls") == 58)

        let framework = try tmp.write("out.jsonl", IngestRoundTripTests.rolloutLines.joined(separator: "\n") + "\n")
        _ = try w.ingestTrajectories(file: framework, run: "fw", format: .rollout)
        before = try w.counts()
        let fw = try w.ingestTrajectories(file: framework, run: "fw", format: .rollout)
        #expect(fw["rollouts"].unchanged == 4)
        #expect(fw["rollouts"].inserted == 0)
        expectSameCounts(before, try w.counts())
    }

    @Test func changedQueryRecordIsUpdatedWithItsNewValue() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        _ = try w.ingestBundledExample(into: tmp.path)
        let file = tmp.file("single_domain/queries/Library.jsonl")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        var second = try #require(try JSONParser.parse(lines[1]).objectValue)
        #expect(second["id"] == .string("lib00002"))
        second["user_system_prompt"] = .string("You are a user who needs help with: a changed goal")
        lines[1] = JSONValue.object(second).jsonText
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let before = try w.counts()

        let report = try w.ingestDirectory(tmp.path)
        #expect(report["tasks"].updated == 1)
        #expect(report["tasks"].unchanged == 16)
        #expect(report["tasks"].inserted == 0)
        expectSameCounts(before, try w.counts())
        let row = try #require(try w.rows("SELECT user_prompt, record, changed_ingest AS ingest_id FROM tasks WHERE external_id = 'lib00002'").first)
        #expect(row["user_prompt"] as String == "You are a user who needs help with: a changed goal")
        #expect(row["record"] as String == lines[1])
        #expect(row["ingest_id"] as Int64 == report.ingestID)
    }

    @Test func changedTrajectoryReplacesItsRollout() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        var items = try #require(try JSONParser.parse(Fixture.text("tau-bench/gpt-4o-airline-10.json")).arrayValue)
        let file = try tmp.write("airline.json", JSONValue.array(items).jsonText)
        _ = try w.ingestTrajectories(file: file, run: "tau", format: .tauBench)
        #expect(try w.int("SELECT sum(reward) FROM rollouts") == 1)

        // Task 6 (reward 1.0) loses its reward and its last message.
        var six = try #require(items[6].objectValue)
        #expect(six["reward"] == .number("1.0"))
        six["reward"] = .number("0.0")
        let traj = try #require(six["traj"]?.arrayValue)
        six["traj"] = .array(Array(traj.dropLast()))
        items[6] = .object(six)
        try JSONValue.array(items).jsonText.write(toFile: file, atomically: true, encoding: .utf8)

        let report = try w.ingestTrajectories(file: file, run: "tau", format: .tauBench)
        #expect(report["rollouts"].updated == 1)
        #expect(report["rollouts"].unchanged == 9)
        #expect(report["rollouts"].inserted == 0)
        #expect(try w.count("rollouts") == 10)
        #expect(try w.int("SELECT sum(reward) FROM rollouts") == 0)
        #expect(try w.count("messages") == 301, "the old rollout's messages are replaced, not kept beside the new ones")
        #expect(try w.int("""
            SELECT count(*) FROM messages m JOIN rollouts o ON o.id = m.rollout_id JOIN tasks t ON t.id = o.task_id
            WHERE t.external_id = '6'
            """) == 23)
        #expect(try w.count("tool_calls") == 58)
    }

    @Test func changedQAAnswerAndToolListAreUpdated() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let qa = try tmp.write("qa.jsonl", #"{"question": "Q1?", "answer": "A"}"# + "\n" + #"{"question": "Q2?", "answer": "B"}"# + "\n")
        _ = try w.ingestQA(file: qa, dataset: "qa")
        try tmp.write("qa.jsonl", #"{"question": "Q1?", "answer": "A"}"# + "\n" + #"{"question": "Q2?", "answer": "B2"}"# + "\n")
        let report = try w.ingestQA(file: qa, dataset: "qa")
        #expect(report["tasks"].updated == 1)
        #expect(report["tasks"].unchanged == 1)
        #expect(try w.strings("SELECT answer FROM tasks ORDER BY source_line") == ["A", "B2"])

        func tool(_ name: String, _ description: String) -> String {
            #"{"type":"function","function":{"name":"\#(name)","description":"\#(description)","parameters":{"type":"object","properties":{}}}}"#
        }
        let tools = try tmp.write("tools.json", "[" + [tool("a", "first"), tool("b", "second"), tool("c", "third")].joined(separator: ",") + "]")
        _ = try w.ingestTools(file: tools, server: "srv")
        try tmp.write("tools.json", "[" + [tool("a", "first"), tool("c", "third, changed")].joined(separator: ",") + "]")
        let changed = try w.ingestTools(file: tools, server: "srv")
        #expect(changed["tools"].unchanged == 1)
        #expect(changed["tools"].updated == 1)
        #expect(changed["tools"].removed == 1)
        #expect(try w.strings("SELECT name || '@' || ordinal || ':' || description FROM tools ORDER BY ordinal")
            == ["a@0:first", "c@1:third, changed"])
    }

    @Test func changedPolicyIsUpdated() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let file = try tmp.write("policy.md", "# Policy\nBe nice.\n")
        #expect(try w.ingestPolicy(file: file, domains: ["Shop"])["policies"].inserted == 1)
        #expect(try w.ingestPolicy(file: file, domains: ["Shop"])["policies"].unchanged == 1)
        try tmp.write("policy.md", "# Policy\nBe very nice.\n")
        #expect(try w.ingestPolicy(file: file, domains: ["Shop"])["policies"].updated == 1)
        #expect(try w.string("SELECT policy FROM domains WHERE key = 'Shop'") == "# Policy\nBe very nice.\n")
    }

    // MARK: ids of records without one

    /// Byte for byte the tool list the expected md5s were computed from with Python:
    /// hashlib.md5((content + json.dumps(json.load(f), sort_keys=True)).encode()).hexdigest().
    static let shopTools = """
        [{"type":"function","function":{"name":"refund","description":"Rückerstattung für eine Bestellung — «order»","parameters":{"type":"object","properties":{"order_id":{"type":"string","description":"e.g. #W123"},"amount":{"type":"number","minimum":0.0,"maximum":1e3,"default":12.50}},"required":["order_id"]}}},{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"zip":{"type":"integer","enum":[10001,94105]}}}}}]

        """
    static let shopQueries = """
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grüß dich! I need a refund for order #W123 😀"}], "user_system_prompt": "You are a user who needs help with: a refund"}
        {"messages": [{"role": "user", "content": "Second question, no id either"}, {"role": "user", "content": "ignored for the id"}], "user_system_prompt": "You are a user who needs help with: something else"}

        """
    static let expectedIDs = ["f64c6e4b5555445163b4d3d225d02b53", "4c35b4bb6d93e1b9994290caf3b2c455"]

    @Test func missingIDIsMD5OfFirstUserContentAndPythonSortedTools() throws {
        let tmp = try TempDir()
        try tmp.write("single_domain/tool_lists/Shop.json", Self.shopTools)
        try tmp.write("single_domain/queries/Shop.jsonl", Self.shopQueries)
        let w = try Warehouse.inMemory()
        let report = try w.ingestDirectory(tmp.path)
        #expect(report["tasks"].inserted == 2)
        #expect(try w.strings("SELECT external_id FROM tasks ORDER BY source_line") == Self.expectedIDs)
        // The opening is the first *user* message, not messages[0].
        #expect(try w.strings("SELECT opening FROM tasks ORDER BY source_line")
            == ["Grüß dich! I need a refund for order #W123 😀", "Second question, no id either"])

        // Same ids when tools and queries are ingested by separate commands, and stable on re-ingest.
        let other = try Warehouse.inMemory()
        _ = try other.ingestTools(file: tmp.file("single_domain/tool_lists/Shop.json"), server: "Shop", domains: ["Shop"])
        _ = try other.ingestQueries(file: tmp.file("single_domain/queries/Shop.jsonl"), domains: ["Shop"])
        #expect(try other.strings("SELECT external_id FROM tasks ORDER BY source_line") == Self.expectedIDs)
        let again = try other.ingestQueries(file: tmp.file("single_domain/queries/Shop.jsonl"), domains: ["Shop"])
        #expect(again["tasks"].unchanged == 2)
        #expect(again["tasks"].inserted == 0)
    }

    @Test func missingIDWithoutToolsHashesAnEmptyList() throws {
        let tmp = try TempDir()
        let file = try tmp.write("q.jsonl", #"{"messages": [{"role": "user", "content": "x"}], "user_system_prompt": "p"}"# + "\n")
        let w = try Warehouse.inMemory()
        _ = try w.ingestQueries(file: file, domains: ["Empty"])
        #expect(try w.strings("SELECT external_id FROM tasks") == ["91256ae2c8cc914cf94895076ff64580"]) // md5("x" + "[]")
    }
}
