import Foundation
import GRDB
@testable import RolloutKit
import Testing

/// Labels and exports against real data: the τ-bench GPT-4o airline trajectories (tasks 37–47,
/// four trials each, with their stored rewards) and the τ-bench airline tool list, in a SQLite
/// file; engine runs of the bundled example; each exported file read back.
enum ExportHarness {
    static let tauFile = "tau-bench/gpt-4o-airline-37-47.json"

    /// The fixture's entries as Python's `json` reads them.
    static func tauEntries() throws -> [JSONValue] {
        try JSONParser.parse(Array(try Data(contentsOf: Fixture.root.appending(path: tauFile)))).arrayValue ?? []
    }

    /// A warehouse file with the τ-bench trajectories imported as run `gpt4o`, the airline tools
    /// registered for domain `airline`, graded by their stored reward in plain SQL (grader
    /// `reward`, passed = reward ≥ 1), and labeled with the airline domain.
    static func tauWarehouse(_ dir: TempDir, label: Bool = true) throws -> Warehouse {
        let w = try Warehouse.open(path: dir.file("tau.db"))
        _ = try w.ingestTrajectories(file: Fixture.path(tauFile), run: "gpt4o", format: .tauBench, dataset: "airline")
        _ = try w.ingestTools(file: Fixture.path("tau-bench/airline_tools.json"), server: "airline", domains: ["airline"])
        try gradeByReward(w, run: "gpt4o")
        if label { _ = try w.label(run: "gpt4o", domain: "airline") }
        return w
    }

    static func gradeByReward(_ w: Warehouse, run: String) throws {
        try w.writer.write { db in
            try db.execute(sql: """
                INSERT INTO grades(rollout_id, grader, grader_version, value, passed, created_at)
                SELECT r.id, 'reward', 1, r.reward, r.reward >= 1, '2026-01-01T00:00:00.000Z'
                FROM rollouts r JOIN runs ON runs.id = r.run_id WHERE runs.name = ?
                """, arguments: [run])
        }
    }

    static func lines(_ path: String) throws -> [JSONValue] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try data.split(separator: 0x0A).map { try JSONParser.parse(Array($0)) }
    }

    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// The messages of a τ-bench entry as our training record writes them.
    static func trainingMessages(_ traj: JSONValue) -> [JSONValue] {
        (traj.arrayValue ?? []).map { m in
            var o = JSONObject()
            o["role"] = m["role"] ?? .null
            o["content"] = m["content"] ?? .null
            o["reasoning_content"] = .null
            if let calls = m["tool_calls"]?.arrayValue, !calls.isEmpty {
                o["tool_calls"] = .array(calls.map { c in
                    .object(["id": c["id"] ?? .null, "type": "function",
                             "function": .object(["name": c["function"]?["name"] ?? .null, "arguments": c["function"]?["arguments"] ?? .null])])
                })
            } else {
                o["tool_calls"] = .null
            }
            o["tool_call_id"] = m["tool_call_id"] ?? .null
            return .object(o)
        }
    }

    /// A Rollout-framework output line with the given messages (for hand-made cases).
    static func rolloutLine(_ id: String, _ messages: String) -> String {
        #"{"id": "\#(id)", "messages": \#(messages), "success": true, "stopped": true}"#
    }
}

@Suite("Export")
struct ExportTests {
    // MARK: Round trips on the τ-bench trajectories

    @Test func tauBenchPassedOnlyRoundTrip() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        var o = ExportOptions(run: "gpt4o", format: .training, out: dir.file("passed.jsonl"))
        o.passedOnly = true
        o.grader = "reward"
        let report = try w.export(o)
        let entries = try ExportHarness.tauEntries()
        // The fixture's passing entries, in (task, trial) order: what the export must hold.
        let passing = entries.filter { ($0["reward"]?.doubleValue ?? 0) >= 1 }
            .sorted { ($0["task_id"]!.intValue!, $0["trial"]!.intValue!) < ($1["task_id"]!.intValue!, $1["trial"]!.intValue!) }
        #expect(passing.count == 25)
        #expect(report.selected == 25)
        #expect(report.written == 25)
        #expect(report.droppedTotal == 0)
        let records = try ExportHarness.lines(dir.file("passed.jsonl"))
        #expect(records.count == 25)
        let airline = try JSONParser.parse(Array(try Data(contentsOf: Fixture.root.appending(path: "tau-bench/airline_tools.json"))))
        for (record, entry) in zip(records, passing) {
            #expect(record["id"] == .string(String(entry["task_id"]!.intValue!)))
            #expect(record["messages"]?.arrayValue == ExportHarness.trainingMessages(entry["traj"]!))
            #expect(record["data_source"] == "agent")
            #expect(record["use_cot"] == .bool(false))
            #expect(record["tools"] == airline, "the airline tool list, names as the trajectories call them")
            #expect(record.objectValue?.keys == ["messages", "id", "data_source", "use_cot", "tools"])
        }
        // The exports row: what, how, how many, and the file's checksum.
        let row = try #require(try w.rows("SELECT * FROM exports").first)
        #expect(row["format"] as String == "training")
        #expect(row["count"] as Int == 25)
        #expect(row["bytes"] as Int == (try ExportHarness.bytes(dir.file("passed.jsonl"))).count)
        #expect(row["sha256"] as String == Hashing.sha256Hex(try ExportHarness.bytes(dir.file("passed.jsonl"))))
        #expect(row["dropped"] as Int == 0)
        let filters = try JSONParser.parse(row["filters"] as String)
        #expect(filters["passed_only"] == .bool(true))
        #expect(filters["grader"] == "reward")
        // The recorded SQL selects exactly the exported rollouts when run again.
        let sql: String = row["sql"]
        #expect(try w.rows(sql).count == 25)
        #expect(report.files.first?.exportID == row["id"] as Int64)
    }

    @Test func labelsOfImportedTrajectoriesTakeTheirSystemMessageAndTheDomainsTools() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir, label: false)
        let report = try w.label(run: "gpt4o", domain: "airline")
        #expect(report.rollouts == 44)
        #expect(report.inserted == 44)
        #expect(report.promptSources == ["trajectory": 44])
        #expect(report.toolSources == ["domain": 44])
        #expect(report.undeclared == 0)
        #expect(report.toolsets == 1)
        // Every trajectory carries the same airline policy, stored once.
        #expect(report.prompts == 1)
        #expect(try w.count("label_prompts") == 1)
        #expect(try w.string("SELECT substr(text, 1, 22) FROM label_prompts") == "# Airline Agent Policy")
        // Tool names in the label are the names the trajectories' calls use.
        let names = try JSONParser.parse(try w.string("SELECT names FROM label_toolsets")!).arrayValue!.compactMap(\.stringValue)
        let called = try w.strings("SELECT DISTINCT name FROM tool_calls")
        #expect(Set(called).isSubset(of: Set(names)))
        #expect(names.count == 14)
        // Again: nothing changes.
        let again = try w.label(run: "gpt4o", domain: "airline")
        #expect(again.unchanged == 44 && again.inserted == 0 && again.updated == 0)
        // Without the domain the run has no tool list: labels say so, and export drops the records.
        let bare = try w.label(run: "gpt4o")
        #expect(bare.updated == 44)
        #expect(bare.toolSources == ["none": 44])
        let calling = try ExportHarness.tauEntries().filter { e in e["traj"]!.arrayValue!.contains { $0["tool_calls"]?.arrayValue?.isEmpty == false } }.count
        #expect(calling == 42)
        #expect(bare.undeclared == calling)
        let r = try w.export(ExportOptions(run: "gpt4o", format: .training, out: dir.file("bare.jsonl")))
        #expect(r.written == 44 - calling)
        #expect(r.dropped == [.undeclaredTool: calling])
        #expect(r.examples.first?.detail.contains("the record's tool list is empty") == true)
    }

    @Test func trainingRecordsReingestedGiveTheSameMessages() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let first = dir.file("all.jsonl")
        _ = try w.export(ExportOptions(run: "gpt4o", format: .training, out: first))
        let report = try w.ingestTrajectories(file: first, run: "again", format: .training, dataset: "again")
        #expect(report["rollouts"].inserted == 44)
        // The same messages, message by message and call by call.
        let messages = """
            SELECT t.external_id, r.sample, m.idx, m.role, m.content, m.reasoning_content, m.tool_call_id
            FROM messages m JOIN rollouts r ON r.id = m.rollout_id JOIN tasks t ON t.id = r.task_id JOIN runs ON runs.id = r.run_id
            WHERE runs.name = ? ORDER BY t.external_id, r.sample, m.idx
            """
        let calls = """
            SELECT t.external_id, r.sample, m.idx, c.idx, c.call_id, c.name, c.arguments, c.result
            FROM tool_calls c JOIN messages m ON m.id = c.message_id JOIN rollouts r ON r.id = c.rollout_id
            JOIN tasks t ON t.id = r.task_id JOIN runs ON runs.id = r.run_id
            WHERE runs.name = ? ORDER BY t.external_id, r.sample, m.idx, c.idx
            """
        #expect(try w.rows(messages, ["gpt4o"]).map(\.description) == (try w.rows(messages, ["again"])).map(\.description))
        #expect(try w.rows(calls, ["gpt4o"]).map(\.description) == (try w.rows(calls, ["again"])).map(\.description))
        // The carried tool list labels the re-ingested run; exporting it again gives the same bytes.
        let label = try w.label(run: "again")
        #expect(label.toolSources == ["trajectory": 44])
        let second = dir.file("again.jsonl")
        _ = try w.export(ExportOptions(run: "again", format: .training, out: second))
        #expect(try ExportHarness.bytes(second) == (try ExportHarness.bytes(first)))
    }

    @Test func rolloutRecordsReingestedKeepSamplesAndStopReasons() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let out = dir.file("rollout.jsonl")
        let report = try w.export(ExportOptions(run: "gpt4o", format: .rollout, out: out))
        #expect(report.written == 44)
        let records = try ExportHarness.lines(out)
        #expect(records.first?.objectValue?.keys == ["id", "sample", "messages", "success", "error", "stopped", "transferred",
                                                     "out_of_scope", "total_turns", "stop_reason", "has_reasoning"])
        _ = try w.ingestTrajectories(file: out, run: "back", format: .rollout, dataset: "back")
        #expect(try w.strings("""
            SELECT t.external_id || '#' || r.sample FROM rollouts r JOIN tasks t ON t.id = r.task_id JOIN runs ON runs.id = r.run_id
            WHERE runs.name = 'back' ORDER BY t.external_id, r.sample
            """) == (try w.strings("""
            SELECT t.external_id || '#' || r.sample FROM rollouts r JOIN tasks t ON t.id = r.task_id JOIN runs ON runs.id = r.run_id
            WHERE runs.name = 'gpt4o' ORDER BY t.external_id, r.sample
            """)))
        let again = dir.file("back.jsonl")
        _ = try w.export(ExportOptions(run: "back", format: .rollout, out: again))
        #expect(try ExportHarness.bytes(again) == (try ExportHarness.bytes(out)))
    }

    // MARK: Formats

    @Test func openAIFineTuningRecordsEndWithTheAssistant() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let report = try w.export(ExportOptions(run: "gpt4o", format: .openAIFT, out: dir.file("ft.jsonl")))
        #expect(report.written == 44)
        let entries = try ExportHarness.tauEntries()
        let trailing = entries.reduce(0) { n, e in
            let roles = e["traj"]!.arrayValue!.map { $0["role"]!.stringValue! }
            return n + roles.count - 1 - roles.lastIndex(of: "assistant")!
        }
        #expect(report.trimmedMessages == trailing)
        for r in try ExportHarness.lines(dir.file("ft.jsonl")) {
            #expect(r.objectValue?.keys == ["messages", "tools"])
            let messages = r["messages"]!.arrayValue!
            #expect(messages.last?["role"] == "assistant")
            for m in messages {
                switch m["role"]?.stringValue {
                case "assistant"?:
                    if m["tool_calls"] == nil { #expect(m["content"]?.stringValue != nil) }
                    for c in m["tool_calls"]?.arrayValue ?? [] {
                        #expect(c["type"] == "function")
                        #expect(c["function"]?["arguments"]?.stringValue != nil)
                    }
                case "tool"?: #expect(m["tool_call_id"]?.stringValue != nil && m["content"]?.stringValue != nil)
                default: #expect(m["content"]?.stringValue != nil)
                }
            }
        }
    }

    @Test func sharegptAlternatesAsLLaMAFactoryRequires() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        var o = ExportOptions(run: "gpt4o", format: .sharegpt, out: dir.file("sg.jsonl"))
        o.stringifyParameters = true
        #expect(try w.export(o).written == 44)
        for r in try ExportHarness.lines(dir.file("sg.jsonl")) {
            let turns = r["conversations"]!.arrayValue!
            // human / observation at odd positions, gpt / function_call at even, an even count.
            for (i, turn) in turns.enumerated() {
                let from = turn["from"]!.stringValue!
                #expect((i % 2 == 0 ? ["human", "observation"] : ["gpt", "function_call"]).contains(from), "turn \(i): \(from)")
                #expect(turn["value"]?.stringValue != nil)
                if from == "function_call" {
                    let call = try JSONParser.parse(turn["value"]!.stringValue!)
                    #expect(call["name"]?.stringValue != nil)
                    #expect(call["arguments"]?.objectValue != nil)
                }
            }
            #expect(turns.count % 2 == 0)
            #expect(r["system"]?.stringValue?.hasPrefix("# Airline Agent Policy") == true)
            let tools = try JSONParser.parse(r["tools"]!.stringValue!).arrayValue!
            #expect(tools.count == 14)
            #expect(tools.allSatisfy { $0["name"]?.stringValue != nil && $0["parameters"]?.stringValue != nil })
            #expect(try JSONParser.parse(tools[0]["parameters"]!.stringValue!)["type"] == "object")
        }
    }

    @Test func dpoPairsAPassedAndAFailedSampleOfOneTask() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let report = try w.export(ExportOptions(run: "gpt4o", format: .dpo, out: dir.file("dpo.jsonl")))
        // Per task min(passed, failed) pairs; the rest unpaired (tasks 38 and 42 passed all four).
        let entries = try ExportHarness.tauEntries()
        var byTask: [Int: (p: Int, f: Int)] = [:]
        for e in entries {
            let pass = (e["reward"]?.doubleValue ?? 0) >= 1
            byTask[e["task_id"]!.intValue!, default: (0, 0)].p += pass ? 1 : 0
            byTask[e["task_id"]!.intValue!, default: (0, 0)].f += pass ? 0 : 1
        }
        let pairs = byTask.values.reduce(0) { $0 + min($1.p, $1.f) }
        #expect(pairs == 13)
        #expect(report.written == pairs)
        #expect(report.grader == "reward")
        #expect(report.dropped == [.unpaired: 44 - 2 * pairs])
        let passedIDs = Set(try w.writer.read { db in try Int64.fetchAll(db, sql: "SELECT rollout_id FROM grades WHERE passed = 1") })
        for r in try ExportHarness.lines(dir.file("dpo.jsonl")) {
            // The prompt is what both trajectories start with: at least the policy (the user
            // simulator opened most trials in its own words); prompt + chosen is the whole
            // passed trajectory, prompt + rejected the failed one.
            let prompt = r["prompt"]!.arrayValue!
            #expect(prompt.first?["role"] == "system")
            let chosen = r["chosen"]!.arrayValue!, rejected = r["rejected"]!.arrayValue!
            #expect(chosen[0]["role"] == rejected[0]["role"])
            #expect(["user", "assistant"].contains(chosen[0]["role"]?.stringValue ?? ""))
            let count = "SELECT count(*) FROM messages WHERE rollout_id = ?"
            #expect(try w.int(count, [r["chosen_rollout"]!.intValue!]) == prompt.count + chosen.count)
            #expect(try w.int(count, [r["rejected_rollout"]!.intValue!]) == prompt.count + rejected.count)
            #expect(r["chosen"] != r["rejected"])
            #expect(passedIDs.contains(Int64(r["chosen_rollout"]!.intValue!)))
            #expect(!passedIDs.contains(Int64(r["rejected_rollout"]!.intValue!)))
            #expect(r["tools"]?.arrayValue?.count == 14)
        }
        // dpo with --passed-only makes no sense.
        var o = ExportOptions(run: "gpt4o", format: .dpo, out: dir.file("x.jsonl"))
        o.passedOnly = true
        #expect(throws: ExportError.self) { try w.export(o) }
    }

    // MARK: Filters

    @Test func whereStopReasonAndMinToolCallsSelectInSQL() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        var o = ExportOptions(run: "gpt4o", format: .training, out: dir.file("a.jsonl"))
        o.minToolCalls = 4
        let entries = try ExportHarness.tauEntries()
        let expected = entries.filter { e in
            e["traj"]!.arrayValue!.reduce(0) { $0 + ($1["tool_calls"]?.arrayValue?.count ?? 0) } >= 4
        }.count
        #expect(try w.export(o).written == expected)
        o.minToolCalls = nil
        o.whereSQL = "t.external_id IN ('37', '38') AND r.sample < 2"
        #expect(try w.export(o).written == 4)
        o.whereSQL = "r.turns >"
        let bad = try #require(throws: ExportError.self) { try w.export(o) }
        #expect(bad.description.contains("--where r.turns >"))
        #expect(try w.count("exports") == 2, "a failed export records nothing")
        o.whereSQL = "r.sample = :s"
        #expect(throws: ExportError.self) { try w.export(o) }
        // --stop-reason: the imported τ-bench rollouts have none; rewrite two to check.
        try w.writer.write { db in
            try db.execute(sql: "UPDATE rollouts SET stop_reason = 'transfer' WHERE id IN (SELECT id FROM rollouts ORDER BY id LIMIT 3)")
        }
        o.whereSQL = nil
        o.stopReasons = ["transfer", "user_stop"]
        #expect(try w.export(o).written == 3)
    }

    @Test func aFailedExportLeavesTheOldFileAndNoTemporaryFile() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let out = try dir.write("out/data.jsonl", "old contents\n")
        var o = ExportOptions(run: "gpt4o", format: .training, out: out)
        o.whereSQL = "no_such_column = 1"
        #expect(throws: ExportError.self) { try w.export(o) }
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "old contents\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("out")) == ["data.jsonl"])
        #expect(try w.count("exports") == 0)
        o.whereSQL = nil
        _ = try w.export(o)
        #expect(try ExportHarness.lines(out).count == 44)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("out")) == ["data.jsonl"])
    }

    // MARK: Dedupe and split

    @Test func dedupeDropsRepeatsWhateverTheirToolCallIDs() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("d.db"))
        _ = try w.ingestTools(file: Fixture.path("tau-bench/airline_tools.json"), server: "airline", domains: ["airline"])
        func line(_ id: String, _ call: String, _ city: String = "SFO") -> String {
            ExportHarness.rolloutLine(id, #"[{"role": "user", "content": "Flights from \#(city)?"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "\#(call)", "type": "function", "function": {"name": "list_all_airports", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "\#(call)", "content": "[]"}, {"role": "assistant", "content": "None."}]"#)
        }
        let file = try dir.write("d.jsonl", [line("a", "c1"), line("a", "c2"), line("b", "c3"), line("c", "c4", "JFK")].joined(separator: "\n") + "\n")
        _ = try w.ingestTrajectories(file: file, run: "d", format: .rollout)
        _ = try w.label(run: "d", domain: "airline")
        var o = ExportOptions(run: "d", format: .training, out: dir.file("d.jsonl.out"))
        o.dedupe = true
        let report = try w.export(o)
        #expect(report.written == 2)
        #expect(report.dropped == [.duplicate: 2])
        let drops = try w.rows("SELECT rollout_id, reason, detail FROM export_drops ORDER BY rollout_id")
        #expect(drops.count == 2)
        #expect(drops.allSatisfy { ($0["detail"] as String).contains("same messages, system prompt and tools as rollout") })
        #expect(try ExportHarness.lines(dir.file("d.jsonl.out")).map { $0["messages"]?[0]?["content"] } == ["Flights from SFO?", "Flights from JFK?"])
    }

    @Test func splitIsAStableHashOfSeedAndTask() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        func export(_ name: String, seed: UInt64, passedOnly: Bool = false, unit: SplitSpec.Unit = .task) throws -> [String: [String]] {
            var o = ExportOptions(run: "gpt4o", format: .training, out: dir.file("\(name).jsonl"))
            o.split = try SplitSpec(parsing: "train=0.7,val=0.3", seed: seed, unit: unit)
            o.passedOnly = passedOnly
            if passedOnly { o.grader = "reward" }
            let report = try w.export(o)
            #expect(report.files.map(\.split) == ["train", "val"])
            var out: [String: [String]] = [:]
            for f in report.files {
                out[f.split!] = try ExportHarness.lines(f.path).map { $0["id"]!.stringValue! }
                #expect(f.path.hasSuffix("\(name).\(f.split!).jsonl"))
            }
            return out
        }
        let a = try export("a", seed: 7)
        let b = try export("b", seed: 7)
        #expect(a == b, "the same seed gives the same split")
        #expect(a["train"]!.count + a["val"]!.count == 44)
        // All samples of a task land in one share.
        #expect(Set(a["train"]!).isDisjoint(with: Set(a["val"]!)))
        // Filtering does not move a task to another share.
        let p = try export("p", seed: 7, passedOnly: true)
        #expect(Set(p["train"]!).isSubset(of: Set(a["train"]!)) && Set(p["val"]!).isSubset(of: Set(a["val"]!)))
        // Another seed gives another split (checked against the hash itself).
        let spec = try SplitSpec(parsing: "train=0.7,val=0.3", seed: 8)
        let c = try export("c", seed: 8)
        for id in Set(c["train"]!) { #expect(spec.share(of: "airline\u{1F}" + id) == "train") }
        #expect(c != a)
        // The exports rows name their share.
        #expect(try w.strings("SELECT split FROM exports WHERE path LIKE '%/a.%' ORDER BY id") == ["train", "val"])
        // By rollout: samples of one task may part ways, still stable.
        #expect(try export("r1", seed: 3, unit: .rollout) == (try export("r2", seed: 3, unit: .rollout)))
        #expect(throws: ExportError.self) { try SplitSpec(parsing: "train=0.9,val=0.2") }
        #expect(throws: ExportError.self) { try SplitSpec(parsing: "train=0.9,train=0.1") }
        #expect(throws: ExportError.self) { try SplitSpec(parsing: "train") }
    }

    // MARK: Validation

    @Test func validationDropsBrokenRecordsAndSaysWhy() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("v.db"))
        _ = try w.ingestTools(file: Fixture.path("tau-bench/airline_tools.json"), server: "airline", domains: ["airline"])
        let call = { (id: String, name: String, args: String) in
            #"{"id": "\#(id)", "type": "function", "function": {"name": "\#(name)", "arguments": "\#(args)"}}"#
        }
        let user = #"{"role": "user", "content": "hi"}"#
        let answer = #"{"role": "assistant", "content": "done"}"#
        func ask(_ calls: String) -> String { #"{"role": "assistant", "content": null, "tool_calls": [\#(calls)]}"# }
        func tool(_ id: String) -> String { #"{"role": "tool", "tool_call_id": "\#(id)", "content": "ok"}"# }
        let good = call("c1", "think", #"{\"thought\": \"x\"}"#)
        let cases: [(String, [String], DropReason?)] = [
            ("ok", [user, ask(good), tool("c1"), answer], nil),
            ("ok-ends-with-tool", [user, ask(good), tool("c1")], nil),
            ("unanswered", [user, ask(good), answer], .unansweredToolCall),
            ("unanswered-at-end", [user, ask(good)], .unansweredToolCall),
            ("wrong-id", [user, ask(good), tool("c9"), answer], .orphanToolMessage),
            ("no-id", [user, ask(#"{"id": null, "type": "function", "function": {"name": "think", "arguments": "{}"}}"#), tool("c1"), answer], .missingCallID),
            ("same-id-twice", [user, ask(good + ", " + good), tool("c1"), tool("c1"), answer], .duplicateCallID),
            ("assistant-first", [answer, user, answer], .roleOrder),
            ("two-users", [user, user, answer], .roleOrder),
            ("two-assistants", [user, answer, answer], .roleOrder),
            ("tool-after-user", [user, tool("c1"), answer], .roleOrder),
            ("late-system", [user, #"{"role": "system", "content": "s"}"#, answer], .roleOrder),
            ("undeclared", [user, ask(call("c1", "book_hotel", "{}")), tool("c1"), answer], .undeclaredTool),
            ("bad-json", [user, ask(call("c1", "think", "{thought: x}")), tool("c1"), answer], .invalidArguments),
            ("array-args", [user, ask(call("c1", "think", "[1]")), tool("c1"), answer], .invalidArguments),
            ("no-assistant", [user], .noAssistantMessage),
        ]
        let file = try dir.write("v.jsonl", cases.map { ExportHarness.rolloutLine($0.0, "[" + $0.1.joined(separator: ", ") + "]") }
            .joined(separator: "\n") + "\n")
        _ = try w.ingestTrajectories(file: file, run: "v", format: .rollout)
        let label = try w.label(run: "v", domain: "airline")
        #expect(label.undeclaredNames == ["book_hotel": 1])
        let report = try w.export(ExportOptions(run: "v", format: .training, out: dir.file("v.out.jsonl")))
        #expect(report.selected == cases.count)
        #expect(Set(try ExportHarness.lines(dir.file("v.out.jsonl")).map { $0["id"]!.stringValue! }) == ["ok", "ok-ends-with-tool"])
        var expected: [DropReason: Int] = [:]
        for c in cases { if let r = c.2 { expected[r, default: 0] += 1 } }
        #expect(report.dropped == expected)
        // Every drop is a row naming the rollout, the reason and where.
        let drops = try w.rows("""
            SELECT t.external_id, d.reason, d.detail FROM export_drops d JOIN rollouts r ON r.id = d.rollout_id
            JOIN tasks t ON t.id = r.task_id ORDER BY d.id
            """)
        let byID = Dictionary(uniqueKeysWithValues: drops.map { ($0["external_id"] as String, ($0["reason"] as String, $0["detail"] as String)) })
        for (id, _, reason) in cases {
            #expect(byID[id]?.0 == reason?.rawValue, "\(id)")
        }
        #expect(byID["unanswered"]?.1 == #"call "c1" (think) has no tool message before message 2"#)
        #expect(byID["undeclared"]?.1.contains("book_hotel") == true)
        #expect(byID["bad-json"]?.1.contains("not valid JSON") == true)
        #expect(byID["two-users"]?.1 == "messages 0 and 1 are both user messages")
        #expect(try w.int("SELECT dropped FROM exports") == expected.values.reduce(0, +))
        #expect(try QueryRunner(w).run("export-drops", parameters: ["export": "1"])[0].rows.count == drops.count)
        // --keep-invalid writes them anyway and still reports each.
        var keep = ExportOptions(run: "v", format: .training, out: dir.file("keep.jsonl"))
        keep.keepInvalid = true
        let kept = try w.export(keep)
        #expect(kept.written == cases.count)
        #expect(kept.keptInvalid == expected.values.reduce(0, +))
        // The rollout format carries no tool list, so an undeclared tool is no reason there.
        let r = try w.export(ExportOptions(run: "v", format: .rollout, out: dir.file("v.rollout.jsonl")))
        #expect(r.dropped[.undeclaredTool] == nil)
        #expect(r.written == 3)
    }

    @Test func failedRolloutsAreResultsInTheResultFormats() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("f.db"))
        let broken = #"{"id": "f1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "think", "arguments": "{}"}}]}], "success": false, "error": "APIError: 500"}"#
        let fine = ExportHarness.rolloutLine("f2", #"[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]"#)
        _ = try w.ingestTrajectories(file: try dir.write("f.jsonl", broken + "\n" + fine + "\n"), run: "f", format: .rollout)
        // Without --include-failed only the completed one.
        #expect(try w.export(ExportOptions(run: "f", format: .rollout, out: dir.file("a.jsonl"))).written == 1)
        var o = ExportOptions(run: "f", format: .rollout, out: dir.file("b.jsonl"))
        o.includeFailed = true
        let r = try w.export(o)
        #expect(r.written == 2 && r.droppedTotal == 0)
        let failed = try #require(try ExportHarness.lines(dir.file("b.jsonl")).first { $0["id"] == "f1" })
        #expect(failed["success"] == .bool(false) && failed["error"] == "APIError: 500")
        // As training data the broken transcript is still dropped.
        var t = ExportOptions(run: "f", format: .openAIFT, out: dir.file("c.jsonl"))
        t.includeFailed = true
        let tr = try w.export(t)
        #expect(tr.written == 1 && tr.droppedTotal == 1, "\(tr.summary)")
    }

    // MARK: Engine runs

    @Test(.enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
    func engineRunsAreLabeledWithWhatTheEngineSent() async throws {
        let dir = try TempDir()
        let w = try EngineHarness.exampleWarehouse(dir)
        let request = EngineHarness.dialogueRequest(registry: try EngineHarness.registry(in: dir), samples: 2)
        let (plan, _) = try await EngineHarness.run(w, request)
        let report = try w.label(run: plan.runName)
        #expect(report.rollouts == 34)
        #expect(report.promptSources == ["run": 34])
        #expect(report.toolSources == ["run": 34])
        #expect(report.undeclared == 0)
        #expect(report.toolsets == 3 && report.prompts == 3)
        let relabel = try w.label(run: plan.runName)
        #expect(relabel.unchanged == 34 && relabel.inserted == 0 && relabel.updated == 0)
        // A label made stale is set right, and counted as changed.
        try await w.writer.write { db in
            try db.execute(sql: "UPDATE labels SET prompt_source = 'none' WHERE rollout_id IN (SELECT rollout_id FROM labels LIMIT 2)")
        }
        let fixed = try w.label(run: plan.runName)
        #expect(fixed.updated == 2 && fixed.unchanged == 32)
        // Each label's prompt and tools are exactly the run's record for the task's domain.
        #expect(try w.int("""
            SELECT count(*) FROM labels l JOIN rollouts r ON r.id = l.rollout_id JOIN tasks t ON t.id = r.task_id
            JOIN run_domains rd ON rd.run_id = r.run_id AND rd.domain_id = t.domain_id
            JOIN label_prompts p ON p.id = l.prompt_id JOIN label_toolsets s ON s.id = l.toolset_id
            WHERE p.text = rd.policy AND s.tools = rd.tools AND l.domain_id = t.domain_id
            """) == 34)
        // The combination's own policy file (cross_domain/policies/CityTransit_Library.md).
        let cross = try w.string("""
            SELECT p.text FROM labels l JOIN label_prompts p ON p.id = l.prompt_id JOIN domains d ON d.id = l.domain_id
            WHERE d.key = 'CityTransit+Library' LIMIT 1
            """)
        #expect(cross == (try w.string("SELECT policy FROM domains WHERE key = 'CityTransit+Library'")))

        // Training records: the policy first, the run's tools; read back, the same messages.
        let out = dir.file("engine.jsonl")
        let exported = try w.export(ExportOptions(run: plan.runName, format: .training, out: out))
        #expect(exported.written == 34)
        #expect(exported.droppedTotal == 0)
        let records = try ExportHarness.lines(out)
        #expect(records.allSatisfy { $0["messages"]?[0]?["role"] == "system" && ($0["tools"]?.arrayValue?.isEmpty == false) })
        _ = try w.ingestTrajectories(file: out, run: "engine-back", format: .training, dataset: "engine-back")
        _ = try w.label(run: "engine-back")
        let again = dir.file("engine-back.jsonl")
        _ = try w.export(ExportOptions(run: "engine-back", format: .training, out: again))
        #expect(try ExportHarness.bytes(again) == (try ExportHarness.bytes(out)))

        // --stop-reason against the engine's stop reasons.
        var o = ExportOptions(run: plan.runName, format: .openAIFT, out: dir.file("stop.jsonl"))
        o.stopReasons = ["user_stop"]
        #expect(try w.export(o).written == (try w.int("SELECT count(*) FROM rollouts WHERE run_id = ? AND stop_reason = 'user_stop'", [plan.runID])))

        // --output-dir goes through the same path: one file per job, recorded.
        let files = try w.writeRolloutOutputs(run: plan.runID, directory: dir.file("outputs"))
        #expect(files.map { URL(fileURLWithPath: $0.path).lastPathComponent } == ["dialogue.jsonl"])
        #expect(files[0].count == 34)
        #expect(try w.int("SELECT count(*) FROM exports WHERE format = 'rollout' AND json_extract(filters, '$.job') = 'dialogue'") == 1)
        let rollout = try ExportHarness.lines(files[0].path)
        #expect(rollout.allSatisfy { $0["success"] == .bool(true) && $0["stopped"] == .bool(true) && $0["stop_reason"] == "user_token" })
    }

    @Test func namespacedToolNamesAreLabeledAsTheTrajectoryCallsThem() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("n.db"))
        _ = try w.ingestBundledExample(into: dir.file("example"))
        // The Rollout framework called the Library tools as `lib.<name>`.
        let line = ExportHarness.rolloutLine("L-1", #"[{"role": "user", "content": "Renew my loan"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lib.renew_loan", "arguments": "{\"loan_id\": \"L-501\"}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "ok"}, {"role": "assistant", "content": "Renewed."}]"#)
        _ = try w.ingestTrajectories(file: try dir.write("n.jsonl", line + "\n"), run: "ns", format: .rollout)
        let report = try w.label(run: "ns", domain: "Library")
        #expect(report.undeclared == 0)
        #expect(report.renamed["renew_loan"] == "lib.renew_loan")
        let names = try JSONParser.parse(try w.string("SELECT names FROM label_toolsets")!).arrayValue!.compactMap(\.stringValue)
        #expect(names.contains("lib.renew_loan"))
        #expect(names.allSatisfy { $0.hasPrefix("lib.") }, "the server's uncalled tools get the same prefix")
        #expect(report.promptSources == ["domain": 1])
        let r = try w.export(ExportOptions(run: "ns", format: .training, out: dir.file("ns.jsonl")))
        #expect(r.written == 1)
        let record = try #require(try ExportHarness.lines(dir.file("ns.jsonl")).first)
        #expect(record["messages"]?[0]?["content"]?.stringValue == (try w.string("SELECT policy FROM domains WHERE key = 'Library'")))
    }

    @Test func crossDomainPoliciesAreMatchedInAnyOrder() throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("x.db"))
        _ = try w.ingestBundledExample(into: dir.file("example"))
        let line = ExportHarness.rolloutLine("X-1", #"[{"role": "user", "content": "Trip to the library"}, {"role": "assistant", "content": "Sure."}]"#)
        let file = try dir.write("x.jsonl", line + "\n")
        _ = try w.ingestTrajectories(file: file, run: "x", format: .rollout)
        let own = try #require(try w.string("SELECT policy FROM domains WHERE key = 'CityTransit+Library'"))
        for name in ["Library_CityTransit", "CityTransit_Library", "Library+CityTransit", "CityTransit,Library"] {
            let report = try w.label(run: "x", domain: name)
            #expect(report.domain == "CityTransit+Library")
            #expect(report.promptSources == ["domain": 1])
            #expect(try w.string("SELECT p.text FROM labels l JOIN label_prompts p ON p.id = l.prompt_id") == own)
        }
        // A combination without a policy of its own: its domains' policies in turn.
        try w.writer.write { db in try db.execute(sql: "UPDATE domains SET policy = NULL WHERE key = 'CityTransit+Library'") }
        let members = try w.label(run: "x", domain: "Library_CityTransit")
        #expect(members.promptSources == ["members": 1])
        let a = try #require(try w.string("SELECT policy FROM domains WHERE key = 'CityTransit'"))
        let b = try #require(try w.string("SELECT policy FROM domains WHERE key = 'Library'"))
        #expect(try w.string("SELECT p.text FROM labels l JOIN label_prompts p ON p.id = l.prompt_id") == a + "\n\n" + b)
        #expect(throws: ExportError.self) { try w.label(run: "x", domain: "Nowhere") }
    }

    @Test func deepResearchFilesAreOnePerSampleAndReadBack() async throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("dr.db"))
        _ = try w.ingestQA(file: Fixture.path("deepresearch/browsecomp_20.jsonl"), dataset: "browsecomp")
        var settings = RunConfig.Dataset(name: "browsecomp", mode: .task, agent: .init(model: "mock/agent"), user: nil)
        settings.extra["max_calls"] = JSONValue(3)
        var request = RunRequest(runName: "dr", jobs: [.init(name: "browsecomp", settings: settings, selection: .dataset("browsecomp"))],
                                 registry: try EngineHarness.registry(in: dir))
        request.samples = 3
        _ = try await EngineHarness.run(w, request)
        let out = dir.file("results")
        let report = try w.export(ExportOptions(run: "dr", format: .deepresearch, out: out))
        #expect(report.files.map { URL(fileURLWithPath: $0.path).lastPathComponent } == ["iter1.jsonl", "iter2.jsonl", "iter3.jsonl"])
        #expect(report.files.map(\.sample) == [0, 1, 2])
        let questions = try Fixture.lines("deepresearch/browsecomp_20.jsonl").map { try JSONParser.parse($0) }
        for k in 1...3 {
            let items = try ExportHarness.lines(out + "/iter\(k).jsonl")
            #expect(items.count == 20)
            for (item, q) in zip(items, questions) {
                // What DeepResearch's evaluation reads: question, answer, prediction (a string),
                // termination, messages[1] the question, every content a string.
                #expect(item.objectValue?.keys == ["question", "answer", "rollout_id", "messages", "prediction", "termination"])
                #expect(item["question"] == q["question"])
                #expect(item["answer"] == q["answer"])
                #expect(item["rollout_id"] == JSONValue(k))
                #expect(item["prediction"]?.stringValue != nil)
                #expect(item["termination"] == "answer")
                let messages = item["messages"]!.arrayValue!
                #expect(messages[0]["role"] == "system")
                #expect(messages[1]["content"] == q["question"])
                #expect(messages.allSatisfy { $0["content"]?.stringValue != nil })
            }
        }
        // DeepResearch's own result files ingest back as the same samples and predictions.
        for k in 1...3 {
            _ = try w.ingestTrajectories(file: out + "/iter\(k).jsonl", run: "dr-back", format: .deepresearch, dataset: "browsecomp")
        }
        let q = """
            SELECT t.external_id || '#' || r.sample || '#' || r.prediction FROM rollouts r JOIN tasks t ON t.id = r.task_id
            JOIN runs ON runs.id = r.run_id WHERE runs.name = ? ORDER BY t.external_id, r.sample
            """
        #expect(try w.strings(q, ["dr-back"]) == (try w.strings(q, ["dr"])))
        #expect(try w.count("exports") == 3)
    }

    @Test func toolCallsBecomeDeepResearchTextAndShareGPTFunctionCalls() throws {
        let dir = try TempDir()
        let w = try ExportHarness.tauWarehouse(dir)
        let report = try w.export(ExportOptions(run: "gpt4o", format: .deepresearch, out: dir.file("dr")))
        #expect(report.files.count == 4)
        let items = try ExportHarness.lines(dir.file("dr/iter1.jsonl"))
        let calls = items.reduce(0) { n, item in
            n + item["messages"]!.arrayValue!.filter { $0["role"] == "assistant" }
                .reduce(0) { $0 + ($1["content"]!.stringValue!.components(separatedBy: "<tool_call>").count - 1) }
        }
        let expected = try ExportHarness.tauEntries().filter { $0["trial"] == .number("0") }.reduce(0) { n, e in
            n + e["traj"]!.arrayValue!.reduce(0) { $0 + ($1["tool_calls"]?.arrayValue?.count ?? 0) }
        }
        #expect(calls == expected)
        #expect(items.allSatisfy { item in item["messages"]!.arrayValue!.allSatisfy { $0["role"] != "tool" } })
        let firstCall = try #require(items.lazy.flatMap { $0["messages"]!.arrayValue! }.first { $0["content"]!.stringValue!.contains("<tool_call>") })
        let text = firstCall["content"]!.stringValue!
        let inner = text.components(separatedBy: "<tool_call>\n")[1].components(separatedBy: "\n</tool_call>")[0]
        let call = try JSONParser.parse(inner)
        #expect(call["name"]?.stringValue != nil && call["arguments"]?.objectValue != nil)
    }
}

@Suite("Export CLI")
struct ExportCLITests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: CLITests.binary), "build the rollout executable first (swift build)"))
    func labelAndExportFromTheCommandLine() throws {
        let dir = try CLITests.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func run(_ args: [String]) throws -> CLITests.Result { try CLITests.rollout(args, in: dir) }
        #expect(try run(["ingest", "trajectories", Fixture.path(ExportHarness.tauFile), "--run", "gpt4o", "--format", "tau-bench"]).status == 0)
        #expect(try run(["ingest", "tools", Fixture.path("tau-bench/airline_tools.json"), "--server", "airline", "--domain", "airline"]).status == 0)
        let grade = try CLITests.rollout(["query", "--write", dir.appending(path: "grade.sql").path], in: dir, sql: """
            INSERT INTO grades(rollout_id, grader, grader_version, value, passed, created_at)
            SELECT id, 'reward', 1, reward, reward >= 1, '2026-01-01T00:00:00.000Z' FROM rollouts;
            """)
        #expect(grade.status == 0, "\(grade.stderr)")
        let label = try run(["label", "--run", "gpt4o", "--domain", "airline"])
        #expect(label.status == 0, "\(label.stderr)")
        #expect(label.stdout.contains("labeled 44 rollouts of run gpt4o (domain airline): 44 new"))
        let export = try run(["export", "--run", "gpt4o", "--format", "training", "--out", "train.jsonl", "--passed-only",
                              "--split", "train=0.8,val=0.2", "--seed", "7", "--stop-reason", "a,b", "--json"])
        #expect(export.status == 0, "\(export.stderr)")
        let report = try JSONParser.parse(export.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(report["grader"] == "reward", "the run's only grader")
        #expect(report["written"] == .number("0"), "no imported τ-bench rollout has a stop reason")
        #expect(report["files"]?.arrayValue?.count == 2)
        let all = try run(["export", "--run", "gpt4o", "--format", "sharegpt", "--out", "sg.jsonl", "--passed-only", "--dedupe"])
        #expect(all.status == 0, "\(all.stderr)")
        #expect(all.stdout.contains("exported 25 sharegpt records of run gpt4o to"))
        #expect(all.stdout.contains("selected 25 rollouts (grader reward); none dropped"))
        #expect(try ExportHarness.lines(dir.appending(path: "sg.jsonl").path).count == 25)
        let exports = try run(["query", "exports", "--csv"])
        #expect(exports.stdout.split(whereSeparator: \.isNewline).count == 4, "a header and three files")
        // Bad input: a clear message, exit 1, nothing recorded.
        let bad = try run(["export", "--run", "gpt4o", "--format", "alpaca", "--out", "x.jsonl"])
        #expect(bad.status != 0 && bad.stderr.contains("unknown --format alpaca"))
        let seed = try run(["export", "--run", "gpt4o", "--format", "training", "--out", "x.jsonl", "--seed", "3"])
        #expect(seed.status != 0 && seed.stderr.contains("--seed only matters with --split"))
        let noRun = try run(["export", "--run", "nope", "--format", "training", "--out", "x.jsonl"])
        #expect(noRun.status == 1 && noRun.stderr.contains("no run \"nope\""))
        let cot = try run(["export", "--run", "gpt4o", "--format", "openai-ft", "--out", "x.jsonl", "--use-cot"])
        #expect(cot.status == 1 && cot.stderr.contains("--use-cot"))
        #expect(!FileManager.default.fileExists(atPath: dir.appending(path: "x.jsonl").path))
        #expect(try run(["query", "exports", "--csv"]).stdout == exports.stdout)
    }
}
