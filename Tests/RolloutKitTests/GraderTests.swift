import Foundation
import GRDB
import RolloutKit
import Testing

/// Every grader on real data: τ-bench GPT-4o trajectories (their stored reward is the
/// reference), DeepResearch QA sets made into result files, τ² mock tasks. Expected verdicts
/// are computed here from the fixture files, independently of the graders.
@Suite("Graders")
struct GraderTests {
    static let tauFile = "tau-bench/gpt-4o-airline-12x4.json"

    /// The τ-bench fixture read with Foundation (not our parser): (task, trial, reward, entry).
    static func tauEntries() throws -> [(task: String, trial: Int, reward: Double, entry: [String: Any])] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixture.path(tauFile)))
        let array = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        return array.map { e in ("\(e["task_id"]!)", (e["trial"] as! NSNumber).intValue, (e["reward"] as! NSNumber).doubleValue, e) }
    }

    static func choose(_ n: Int, _ k: Int) -> Double {
        if k < 0 || k > n { return 0 }
        var r = 1.0
        for i in 0..<k { r = r * Double(n - i) / Double(i + 1) }
        return r
    }

    static func tauWarehouse() throws -> Warehouse {
        let w = try Warehouse.inMemory()
        _ = try w.ingestTrajectories(file: Fixture.path(tauFile), run: "gpt4o", format: .tauBench)
        return w
    }

    /// (task external id, sample) → (passed, value, explanation) of one grader.
    static func grades(_ w: Warehouse, _ grader: String, version: Int = 1, run: String = "gpt4o") throws -> [String: (Int?, Double?, String?)] {
        var out: [String: (Int?, Double?, String?)] = [:]
        for row in try w.rows("""
            SELECT t.external_id, r.sample, g.passed, g.value, g.explanation FROM grades g
            JOIN rollouts r ON r.id = g.rollout_id JOIN tasks t ON t.id = r.task_id JOIN runs ru ON ru.id = r.run_id
            WHERE g.grader = ? AND g.grader_version = ? AND ru.name = ?
            """, [grader, version, run]) {
            out["\(row[0] as String)#\(row[1] as Int)"] = (row[2], row[3], row[4])
        }
        return out
    }

    // MARK: reward

    @Test func rewardReproducesTheStoredTauBenchRewardsAndPassHatK() async throws {
        let w = try Self.tauWarehouse()
        let entries = try Self.tauEntries()
        let report = try await w.grade(run: "gpt4o", definition: try GraderDefinition(kind: .reward, options: [:]))
        #expect(report.graded == 48 && report.version == 1 && report.newVersion)
        #expect(report.passed == entries.filter { $0.reward >= 1 }.count)
        let grades = try Self.grades(w, "reward")
        for e in entries {
            let g = try #require(grades["\(e.task)#\(e.trial)"])
            #expect(g.0 == (e.reward >= 1 ? 1 : 0) && g.1 == e.reward, "task \(e.task) trial \(e.trial)")
        }
        // pass^k and pass@k per k against the fixture's own counts.
        var byTask: [String: (n: Int, c: Int)] = [:]
        for e in entries { byTask[e.task, default: (0, 0)].n += 1; if e.reward >= 1 { byTask[e.task]!.c += 1 } }
        let result = try w.evaluate(EvalRequest(run: "gpt4o", grader: "reward", ks: [1, 2, 3, 4], by: .dataset))
        #expect(result.graded == 48 && result.samples == 48)
        for row in EvalFixtures.rows(result.table) where row["key"]!.text == "all" {
            let k = row["k"]!.int!
            let hat = byTask.values.map { Self.choose($0.c, k) / Self.choose($0.n, k) }.reduce(0, +) / Double(byTask.count)
            let at = byTask.values.map { 1 - Self.choose($0.n - $0.c, k) / Self.choose($0.n, k) }.reduce(0, +) / Double(byTask.count)
            #expect(abs(row["pass_hat_k"]!.double! - hat) < 1e-12, "pass^\(k)")
            #expect(abs(row["pass_at_k"]!.double! - at) < 1e-12, "pass@\(k)")
        }
        // Stored in scores with the resolved parameters.
        let score = try #require(try w.rows("SELECT query, params, result FROM scores").first)
        #expect((score[0] as String) == "pass-at-k")
        #expect((score[1] as String).contains(#""version":1"#) && (score[1] as String).contains(#""k":"1,2,3,4""#))
        #expect((score[2] as String).contains(#""key":"gpt4o""#))

        // A changed threshold is a new version; version 1 and its grades stay.
        let v2 = try await w.grade(run: "gpt4o", definition: try GraderDefinition(kind: .reward, options: ["threshold": "0.5"]))
        #expect(v2.version == 2 && v2.newVersion && v2.graded == 48)
        #expect(try w.int("SELECT count(*) FROM grades WHERE grader = 'reward' AND grader_version = 1") == 48)
        #expect(try w.rows("SELECT version FROM graders WHERE name = 'reward' ORDER BY version").map { $0[0] as Int } == [1, 2])
        // Grading v1 again finds nothing to do.
        let again = try await w.grade(run: "gpt4o", definition: try GraderDefinition(kind: .reward, options: [:]))
        #expect(again.version == 1 && !again.newVersion && again.graded == 0 && again.alreadyGraded == 48)
    }

    // MARK: tau2

    /// Foundation's equality: numbers by value, objects and arrays deeply.
    static func same(_ a: Any?, _ b: Any?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x as [String: Any], y as [String: Any]): return x.count == y.count && x.allSatisfy { same($0.value, y[$0.key]) }
        case let (x as [Any], y as [Any]): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (x as String, y as String): return x == y
        case let (x as NSNumber, y as NSNumber): return x.doubleValue == y.doubleValue
        default: return false
        }
    }

    @Test func tau2ChecksTauBenchActionsAndOutputsPerComponent() async throws {
        let w = try Self.tauWarehouse()
        let report = try await w.grade(run: "gpt4o", definition: try GraderDefinition(kind: .tau2, options: [:]))
        #expect(report.graded == 48 && report.components.map(\.grader) == ["tau2.actions", "tau2.communicate"])
        let overall = try Self.grades(w, "tau2"), actions = try Self.grades(w, "tau2.actions"), said = try Self.grades(w, "tau2.communicate")
        var agreeWithReward = 0
        for e in try Self.tauEntries() {
            let task = try #require((e.entry["info"] as? [String: Any])?["task"] as? [String: Any])
            var calls: [(String, [String: Any])] = []
            var texts: [String] = []
            for m in e.entry["traj"] as! [[String: Any]] {
                if (m["role"] as? String) == "assistant", let c = m["content"] as? String { texts.append(c.lowercased().replacingOccurrences(of: ",", with: "")) }
                for call in (m["tool_calls"] as? [[String: Any]]) ?? [] {
                    let f = call["function"] as! [String: Any]
                    let args = try JSONSerialization.jsonObject(with: Data((f["arguments"] as! String).utf8)) as? [String: Any] ?? [:]
                    calls.append((f["name"] as! String, args))
                }
            }
            let expected = task["actions"] as! [[String: Any]]
            let actionsOK = expected.allSatisfy { a in
                let kwargs = a["kwargs"] as! [String: Any]
                return calls.contains { call in call.0 == a["name"] as! String && kwargs.allSatisfy { k, v in Self.same(call.1[k], v) } }
            }
            let outputs = task["outputs"] as? [String] ?? []
            let outputsOK = outputs.allSatisfy { o in texts.contains { $0.contains(o.lowercased().replacingOccurrences(of: ",", with: "")) } }
            let key = "\(e.task)#\(e.trial)"
            #expect(actions[key]?.0 == (actionsOK ? 1 : 0), "actions of \(key)")
            #expect(said[key]?.0 == (outputsOK ? 1 : 0), "outputs of \(key)")
            // A task that lists no actions and no outputs leaves nothing to decide from the trajectory.
            let expectedOverall: Int? = expected.isEmpty && outputs.isEmpty ? nil : actionsOK && outputsOK ? 1 : 0
            #expect(overall[key]?.0 == expectedOverall, "overall of \(key)")
            if (actionsOK && outputsOK) == (e.reward >= 1) { agreeWithReward += 1 }
        }
        // The trajectory decides less than τ-bench's database check, but it mostly agrees.
        #expect(agreeWithReward >= 30)
        let explanation = try #require(actions.values.first { $0.0 == 0 }?.2)
        #expect(explanation.contains("expected tool calls made; missing:"))
    }

    /// τ² tasks (criteria from tasks.json) with trajectories written in the Rollout framework's
    /// format: the right call, wrong arguments, compare_args [], communicate_info said or not,
    /// a failed rollout.
    @Test func tau2OnTau2MockTasks() async throws {
        let w = try seededWarehouse()
        let tmp = try TempDir()
        func call(_ name: String, _ args: String, _ id: String = "c1") -> String {
            #"{"role":"assistant","content":null,"tool_calls":[{"id":"\#(id)","type":"function","function":{"name":"\#(name)","arguments":\#(JSONValue.string(args).jsonText)}}]},{"role":"tool","tool_call_id":"\#(id)","content":"ok"}"#
        }
        func record(_ id: String, _ messages: [String], success: Bool = true) -> String {
            #"{"id":"\#(id)","messages":[{"role":"user","content":"hi"},\#(messages.joined(separator: ","))],"success":\#(success),"error":\#(success ? "null" : "\"boom\""),"stopped":true}"#
        }
        let lines = [
            record("create_task_1", [call("create_task", #"{"user_id":"user_1","title":"Important Meeting"}"#), #"{"role":"assistant","content":"Created."}"#]),
            record("create_task_1", [call("create_task", #"{"user_id":"user_1","title":"Meeting"}"#)]),
            record("update_task_with_initialization_data", [call("update_task_status", #"{"task_id":"task_2","status":"completed"}"#),
                                                            #"{"role":"assistant","content":"The agent acknowledged the previous context; the agent confirmed the task status was updated successfully."}"#]),
            record("update_task_with_initialization_data", [call("update_task_status", #"{"task_id":"task_2","status":"completed"}"#),
                                                            #"{"role":"assistant","content":"The agent acknowledged the previous context."}"#]),
            record("impossible_task_1", [call("transfer_to_human_agents", #"{"summary":"anything at all"}"#)]),
            record("update_task_with_history_and_env_assertions", [#"{"role":"assistant","content":"Done."}"#]),
            record("update_task_1", [call("update_task_status", #"{"task_id":"task_1","status":"completed"}"#)], success: false),
        ]
        let file = try tmp.write("results.jsonl", lines.joined(separator: "\n") + "\n")
        _ = try w.ingestTrajectories(file: file, run: "tau2-mock", format: .rollout, dataset: "tau2-mock")
        let report = try await w.grade(run: "tau2-mock", definition: try GraderDefinition(kind: .tau2, options: [:]))
        #expect(report.graded == 7 && report.failedRollouts == 1)
        let o = try Self.grades(w, "tau2", run: "tau2-mock"), a = try Self.grades(w, "tau2.actions", run: "tau2-mock")
        let c = try Self.grades(w, "tau2.communicate", run: "tau2-mock")
        func v(_ g: [String: (Int?, Double?, String?)], _ k: String) -> Int? { g[k]?.0 }
        #expect([v(o, "create_task_1#0"), v(a, "create_task_1#0"), v(c, "create_task_1#0")] == [1, 1, 1])
        #expect(o["create_task_1#0"]?.2?.contains("not decided from the trajectory: DB, NL_ASSERTION") == true)
        #expect([v(o, "create_task_1#1"), v(a, "create_task_1#1")] == [0, 0])
        #expect(a["create_task_1#1"]?.2 == "actions: 0/1 expected tool calls made; missing: create_1")
        #expect([v(o, "update_task_with_initialization_data#0"), v(c, "update_task_with_initialization_data#0")] == [1, 1])
        #expect([v(o, "update_task_with_initialization_data#1"), v(a, "update_task_with_initialization_data#1"),
                 v(c, "update_task_with_initialization_data#1")] == [0, 1, 0])
        #expect(c["update_task_with_initialization_data#1"]?.1 == 0.5)
        #expect(v(a, "impossible_task_1#0") == 1, "compare_args [] checks the name only")
        #expect([v(a, "update_task_with_history_and_env_assertions#0"), v(c, "update_task_with_history_and_env_assertions#0")] == [1, 1])
        #expect(v(o, "update_task_with_history_and_env_assertions#0") == nil, "nothing decidable from the trajectory")
        #expect(o["update_task_with_history_and_env_assertions#0"]?.2?.contains("ENV_ASSERTION") == true)
        #expect([v(o, "update_task_1#0"), v(a, "update_task_1#0"), v(c, "update_task_1#0")] == [0, 0, 0])
        #expect(o["update_task_1#0"]?.2 == "rollout failed: boom")
    }

    // MARK: answer graders on DeepResearch QA sets

    /// How sample k of task i answered, by construction.
    enum Variant: Int, CaseIterable { case copy, shouted, sentence, wrong, padded, failed }

    static func prediction(_ answer: String, _ v: Variant) -> String {
        switch v {
        case .copy: answer
        case .shouted: "The " + answer.uppercased() + "."
        case .sentence: "I think it is " + answer + ", probably."
        case .wrong: "Unknown"
        case .padded: "  " + answer + "\n"
        case .failed: "[Failed]"
        }
    }

    /// DeepResearch result files iter1..3.jsonl made from a QA set; returns (question, answer,
    /// variant per sample) in file order.
    static func deepResearchRun(_ w: Warehouse, qa: String, run: String, dataset: String) throws -> [(q: String, a: String, v: [Variant])] {
        let tmp = try TempDir()
        let rows = try Fixture.lines(qa).map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        var plan: [(String, String, [Variant])] = rows.map { ($0["question"] as! String, $0["answer"] as! String, []) }
        for k in 1...3 {
            var out = ""
            for (i, r) in rows.enumerated() {
                let variant = Variant(rawValue: (i + 2 * k) % Variant.allCases.count)!
                plan[i].2.append(variant)
                var o: [String: Any] = ["question": r["question"]!, "answer": r["answer"]!, "termination": "answer"]
                let p = Self.prediction(r["answer"] as! String, variant)
                o["prediction"] = p
                o["messages"] = [["role": "user", "content": r["question"]!], ["role": "assistant", "content": p]]
                if variant == .failed { o["error"] = "exceed available llm calls" }
                out += String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self) + "\n"
            }
            _ = try w.ingestTrajectories(file: try tmp.write("iter\(k).jsonl", out), run: run, format: .deepresearch, dataset: dataset)
        }
        return plan
    }

    @Test func answerGradersOnWebDancerResults() async throws {
        let w = try Warehouse.inMemory()
        let plan = try Self.deepResearchRun(w, qa: "deepresearch/webdancer_40.jsonl", run: "dr", dataset: "webdancer")
        var versions: [String: Int] = [:]
        for (name, kind, options) in [("exact", GraderKind.exact, JSONObject()), ("normalized", .normalized, [:]), ("contains", .contains, [:]),
                                      ("regex", .regex, ["pattern": "{answer}", "flags": "i"]), ("numeric", .numeric, [:])] {
            let r = try await w.grade(run: "dr", definition: try GraderDefinition(kind: kind, options: options))
            #expect(r.graded == 120 && r.failedRollouts == 20, "\(name)")
            versions[name] = r.version
        }
        let exact = try Self.grades(w, "exact", run: "dr"), normalized = try Self.grades(w, "normalized", run: "dr")
        let contains = try Self.grades(w, "contains", run: "dr"), regex = try Self.grades(w, "regex", run: "dr")
        let numeric = try Self.grades(w, "numeric", run: "dr")
        let ids = try w.rows("SELECT opening, external_id FROM tasks t JOIN datasets d ON d.id = t.dataset_id WHERE d.name = 'webdancer'")
        let idOf = Dictionary(uniqueKeysWithValues: ids.map { ($0[0] as String, $0[1] as String) })
        let singleNumber = try Regex(#"^[^0-9]*([0-9]+)[^0-9]*$"#)
        var parity = (any: 0, perSample: [0, 0, 0])
        for (q, answer, variants) in plan {
            let id = try #require(idOf[q])
            var anyCorrect = false
            for (s, v) in variants.enumerated() {
                let key = "\(id)#\(s)"
                let failed = v == .failed
                let ex = [Variant.copy, .padded].contains(v)
                let norm = [Variant.copy, .padded, .shouted].contains(v)
                let cont = norm || v == .sentence
                let re = !failed && Self.prediction(answer, v).range(of: answer, options: .caseInsensitive) != nil
                #expect(exact[key]?.0 == (ex ? 1 : 0), "exact \(key) \(v)")
                #expect(normalized[key]?.0 == (norm ? 1 : 0), "normalized \(key) \(v) \(answer)")
                #expect(contains[key]?.0 == (cont ? 1 : 0), "contains \(key) \(v) \(answer)")
                #expect(regex[key]?.0 == (re ? 1 : 0), "regex \(key) \(v) \(answer)")
                let decidable = (try? singleNumber.wholeMatch(in: answer)) != nil
                let expectedNumeric: Int? = failed ? 0 : !decidable ? nil : v == .wrong ? 0 : 1
                #expect(numeric[key]?.0 == expectedNumeric, "numeric \(key) \(v) \(answer)")
                if cont { anyCorrect = true; parity.perSample[s] += 1 }
            }
            if anyCorrect { parity.any += 1 }
        }
        // DeepResearch's own numbers: "Pass@3" (any of the three files correct) and "Avg. Pass@3"
        // (mean pass@1 over the files), next to the unbiased estimator.
        let table = try w.evaluate(EvalRequest(run: "dr", grader: "contains", ks: [1, 3], by: .dataset)).table
        let all = EvalFixtures.rows(table).filter { $0["key"]!.text == "all" }
        #expect(abs(all[0]["any_correct"]!.double! - Double(parity.any) / 40) < 1e-12)
        #expect(abs(all[0]["avg_at_n"]!.double! - Double(parity.perSample.reduce(0, +)) / 120) < 1e-12)
        let bySample = EvalFixtures.rows(try QueryRunner(w).run("pass-at-1-by-sample", parameters: ["run": "dr", "grader": "contains", "by": "dataset"])[0])
        let s = try #require(bySample.first { $0["key"]!.text == "webdancer" })
        let p1 = parity.perSample.map { Double($0) / 40 }
        #expect(s["sample_indices"]!.int == 3 && s["tasks"]!.int == 40)
        #expect(abs(s["best_pass_at_1"]!.double! - p1.max()!) < 1e-12 && abs(s["worst_pass_at_1"]!.double! - p1.min()!) < 1e-12)
        #expect(abs(s["avg_pass_at_1"]!.double! - p1.reduce(0, +) / 3) < 1e-12)
        #expect(s["best_sample"]!.int == p1.firstIndex(of: p1.max()!))
        // Per-task stability: every task has 3 outcomes in sample order.
        let stability = EvalFixtures.rows(try QueryRunner(w).run("task-stability", parameters: ["run": "dr", "grader": "contains"])[0])
        #expect(stability.count == 40 && stability.allSatisfy { $0["outcomes"]!.text.count == 3 })
        for row in stability {
            let o = Array(row["outcomes"]!.text)
            let flips = zip(o, o.dropFirst()).filter { $0 != $1 }.count
            #expect(row["flips"]!.int == flips && abs(row["flip_rate"]!.double! - Double(flips) / 2) < 1e-12)
        }
        // A tighter numeric tolerance is another version; the first stays.
        let strict = try await w.grade(run: "dr", definition: try GraderDefinition(kind: .numeric, options: ["tolerance": "0"]))
        #expect(strict.version == 2 && versions["numeric"] == 1)
    }

    /// BrowseComp's answers are withheld (empty): every answer grader says undecidable, never
    /// correct, and the judge is not asked.
    @Test func browseCompWithoutAnswersIsUndecidable() async throws {
        let w = try Warehouse.inMemory()
        _ = try Self.deepResearchRun(w, qa: "deepresearch/browsecomp_20.jsonl", run: "bc", dataset: "browsecomp")
        for kind in [GraderKind.exact, .normalized, .contains] {
            let r = try await w.grade(run: "bc", definition: try GraderDefinition(kind: kind, options: [:]))
            #expect(r.passed == 0 && r.undecidable == 60 - r.failedRollouts && r.failedRollouts > 0)
        }
        let registry = try ModelRegistry.loadOrBundled(file: "configs/models.yml", isDefault: true)
        let http = LLMClient()
        let client = ModelClient(registry: registry, http: http, warehouse: w)
        let judged = try await w.grade(run: "bc", definition: try GraderDefinition(kind: .llmJudge, options: ["model": "mock/judge"]),
                                       options: GradeOptions(client: client))
        try await http.shutdown()
        #expect(judged.passed == 0 && judged.undecidable == 60 - judged.failedRollouts)
        #expect(try w.count("llm_calls") == 0)
        let excluded = try w.evaluate(EvalRequest(run: "bc", grader: "contains", undecided: .exclude), store: false)
        #expect(EvalFixtures.rows(excluded.table).allSatisfy { $0["pass_at_k"]!.double == 0 }, "only failed rollouts are left: 0")
    }

    // MARK: llm-judge

    /// A registry with mock judges of each format (and pass rates 0 and 1).
    static func judgeRegistry(_ tmp: TempDir, extra: String = "") throws -> ModelRegistry {
        let file = try tmp.write("models.yml", """
            models:
              mock/judge: {provider: mock, mode: judge}
              mock/judge-abc: {provider: mock, mode: judge, judge_format: abc}
              mock/judge-yes-no: {provider: mock, mode: judge, judge_format: yes_no}
              mock/judge-json: {provider: mock, mode: judge, judge_format: json}
              mock/judge-never: {provider: mock, mode: judge, judge_pass_rate: 0}
              mock/judge-always: {provider: mock, mode: judge, judge_pass_rate: 1}
            \(extra)
            """)
        return try ModelRegistry.load(file: file)
    }

    @Test func mockJudgeInEveryFormatRecordsEachCall() async throws {
        let w = try Warehouse.inMemory()
        let tmp = try TempDir()
        _ = try Self.deepResearchRun(w, qa: "deepresearch/webdancer_40.jsonl", run: "dr", dataset: "webdancer")
        let registry = try Self.judgeRegistry(tmp)
        let http = LLMClient()
        defer { Task { try? await http.shutdown() } }
        let client = ModelClient(registry: registry, http: http, warehouse: w)
        for (name, model, format) in [("j-ci", "mock/judge", "correct_incorrect"), ("j-abc", "mock/judge-abc", "abc"),
                                      ("j-yn", "mock/judge-yes-no", "yes_no"), ("j-json", "mock/judge-json", "json")] {
            let d = try GraderDefinition(name: name, kind: .llmJudge, options: ["model": .string(model), "format": .string(format)])
            let r = try await w.grade(run: "dr", definition: d, options: GradeOptions(concurrency: 8, client: client))
            #expect(r.graded == 120 && r.failedRollouts == 20 && r.undecidable == 0, "\(name): every mock reply parses")
            #expect(r.passed > 10 && r.notPassed > 30, "\(name): about half pass (judge_pass_rate 0.5): \(r.passed)")
            // One judge call per graded rollout that did not fail, tied to its run and rollout.
            #expect(try w.int("""
                SELECT count(*) FROM llm_calls c JOIN grades g ON g.rollout_id = c.rollout_id AND g.grader = ?
                WHERE c.role = 'judge' AND c.model = ?
                """, [name, model]) == 100)
        }
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE role = 'judge' AND run_id IS NULL") == 0)
        let abc = try Self.grades(w, "j-abc", run: "dr")
        #expect(abc.values.allSatisfy { $0.2 == "judge: A (correct)" || $0.2 == "judge: B (incorrect)" || $0.2 == "judge: C (not attempted)" || $0.2?.hasPrefix("rollout failed") == true })
        #expect(abc.values.contains { $0.2 == "judge: C (not attempted)" && $0.0 == 0 })
        for (model, expected) in [("mock/judge-never", 0), ("mock/judge-always", 100)] {
            let d = try GraderDefinition(name: model, kind: .llmJudge, options: ["model": .string(model)])
            let r = try await w.grade(run: "dr", definition: d, options: GradeOptions(client: client))
            #expect(r.passed == expected)
        }
        // An unknown judge model is an error before anything is graded.
        let bad = try GraderDefinition(name: "j-bad", kind: .llmJudge, options: ["model": "mock/nope"])
        await #expect(throws: ConfigError.self) { _ = try await w.grade(run: "dr", definition: bad, options: GradeOptions(client: client)) }
        #expect(try w.int("SELECT count(*) FROM grades WHERE grader = 'j-bad'") == 0)
    }

    /// A QA set run by the engine in task mode (mock agent), then judged by the mock judge:
    /// one judge call per rollout, the verdict the judge's reply, reproducible.
    @Test func engineQARunGradedByTheMockJudge() async throws {
        let tmp = try TempDir()
        let w = try Warehouse.open(path: tmp.file("qa.db"))
        _ = try w.ingestQA(file: Fixture.path("deepresearch/webdancer_40.jsonl"), dataset: "webdancer")
        let registry = try Self.judgeRegistry(tmp, extra: "  mock/agent: {provider: mock, mode: agent}")
        var settings = RunConfig.Dataset(name: "webdancer", mode: .task, agent: .init(model: "mock/agent"), user: nil)
        settings.extra["max_calls"] = JSONValue(3)
        var request = RunRequest(runName: "qa-webdancer", jobs: [.init(name: "webdancer", settings: settings, selection: .dataset("webdancer"))],
                                 registry: registry)
        request.samples = 3
        let plan = try await w.planRun(request)
        let summary = try await RolloutEngine(plan: plan, warehouse: w).run()
        #expect(summary.counters.completed == 120)
        let http = LLMClient()
        let client = ModelClient(registry: registry, http: http, warehouse: w)
        let d = try GraderDefinition(kind: .llmJudge, options: ["model": "mock/judge"])
        let judged = try await w.grade(run: "qa-webdancer", definition: d, options: GradeOptions(concurrency: 8, client: client))
        #expect(judged.graded == 120 && judged.undecidable == 0 && judged.errors == 0)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE role = 'judge'") == 120)
        // The explanation is the judge's verdict; the same judge request gives the same verdict.
        let again = try await w.grade(run: "qa-webdancer", definition: try GraderDefinition(name: "judge-again", kind: .llmJudge, options: ["model": "mock/judge"]),
                                      options: GradeOptions(client: client))
        try await http.shutdown()
        #expect(try w.int("""
            SELECT count(*) FROM grades a JOIN grades b ON b.rollout_id = a.rollout_id AND b.grader = 'judge-again'
            WHERE a.grader = 'llm-judge' AND a.passed IS NOT b.passed
            """) == 0)
        #expect(again.passed == judged.passed)
        // The mock agent quotes the question instead of answering: no exact match, as its predictions say.
        let exact = try await w.grade(run: "qa-webdancer", definition: try GraderDefinition(kind: .exact, options: [:]))
        let matches = try w.int("SELECT count(*) FROM rollouts r JOIN tasks t ON t.id = r.task_id WHERE trim(r.prediction) = trim(t.answer)")
        #expect(exact.graded == 120 && exact.passed == matches)
        let table = try w.evaluate(EvalRequest(run: "qa-webdancer", grader: "llm-judge", ks: [1, 3], by: .dataset)).table
        let all = EvalFixtures.rows(table).filter { $0["key"]!.text == "all" }
        #expect(abs(all[0]["pass_at_k"]!.double! - Double(judged.passed) / 120) < 1e-12)
    }

    /// The judge over HTTP (the loopback mock server, with injected 500s): every rollout is
    /// graded once, every attempt is in llm_calls.
    @Test func judgeOverHTTPWithFaults() async throws {
        let server = try await MockServer.start(configuration: MockServerConfiguration(faults: [(0.2, .serverError)], seed: 7), threads: 1)
        let w = try Warehouse.inMemory()
        let tmp = try TempDir()
        _ = try Self.deepResearchRun(w, qa: "deepresearch/webdancer_40.jsonl", run: "dr", dataset: "webdancer")
        let registry = try Self.judgeRegistry(tmp, extra: "  local/judge: {provider: openai, api_base: \"http://127.0.0.1:\(server.port)/v1\", api_key: EMPTY}")
        let http = LLMClient()
        let client = ModelClient(registry: registry, http: http, warehouse: w, policy: RetryPolicy(maxAttempts: 6, baseDelay: 0.01, maxDelay: 0.05))
        let d = try GraderDefinition(kind: .llmJudge, options: ["model": "local/judge"])
        let r = try await w.grade(run: "dr", definition: d, options: GradeOptions(concurrency: 16, client: client))
        try await http.shutdown()
        await server.stop()
        #expect(r.graded == 120 && r.errors == 0 && r.undecidable == 0)
        #expect(try w.int("SELECT count(DISTINCT rollout_id) FROM llm_calls WHERE role = 'judge' AND http_status = 200") == 100)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE role = 'judge' AND http_status = 500") ?? 0 > 0)
        #expect(try w.int("SELECT count(*) FROM grades WHERE grader = 'llm-judge'") == 120)
    }

    /// Replies written by an independent server (fakellm, scripted): strict parsing; a reply
    /// that only starts with "A" is unparseable, not correct.
    @Test(.enabled(if: FakeLLMTests.available, "needs fakellm (scripts/install-deps.sh --test)"))
    func strictParsingOfScriptedJudgeReplies() async throws {
        let replies: [(token: String, reply: String, abc: Int?, json: Int?)] = [
            ("tok-alpha", "Actually, the response is wrong.", nil, nil),
            ("tok-beta", "A", 1, nil),
            ("tok-gamma", "B.", 0, nil),
            ("tok-delta", "(C)", 0, nil),
            ("tok-eps", "Answer: A", nil, nil),
            ("tok-zeta", "```json\\n{\\\"correct\\\": true, \\\"reason\\\": \\\"same\\\"}\\n```", nil, 1),
            ("tok-eta", "{\\\"correct\\\": \\\"yes\\\"}", nil, nil),
            ("tok-theta", "{\\\"correct\\\": false}", nil, 0),
        ]
        let rules = replies.map { "  - name: \($0.token)\n    when: {messages_contain: \"\($0.token)\"}\n    respond: {content: \"\($0.reply)\"}" }
        let config = "version: 1\ndefaults:\n  fallback: deterministic_echo\nrules:\n" + rules.joined(separator: "\n") + "\n"
        let tmp = try TempDir()
        var qa = ""
        for (i, r) in replies.enumerated() {
            qa += #"{"question": "Q\#(i)?", "answer": "A\#(i)", "prediction": "\#(r.token)", "messages": [], "termination": "answer"}"# + "\n"
        }
        let w = try Warehouse.inMemory()
        _ = try w.ingestTrajectories(file: try tmp.write("iter1.jsonl", qa), run: "fake", format: .deepresearch, dataset: "fake")
        try await FakeLLMTests.withFakeLLM(config: config) { port, http in
            let registry = try Self.judgeRegistry(tmp, extra: "  fake/judge: {provider: openai, api_base: \"http://127.0.0.1:\(port)/v1\", api_key: EMPTY}")
            let client = ModelClient(registry: registry, http: http, warehouse: w)
            for format in ["abc", "json"] {
                let d = try GraderDefinition(name: "fake-\(format)", kind: .llmJudge, options: ["model": "fake/judge", "format": .string(format)])
                let r = try await w.grade(run: "fake", definition: d, options: GradeOptions(client: client))
                #expect(r.graded == replies.count && r.errors == 0)
            }
        }
        let abc = try Self.grades(w, "fake-abc", run: "fake"), json = try Self.grades(w, "fake-json", run: "fake")
        let ids = Dictionary(uniqueKeysWithValues: try w.rows("SELECT answer, external_id FROM tasks").map { ($0[0] as String, $0[1] as String) })
        for (i, r) in replies.enumerated() {
            let key = "\(ids["A\(i)"]!)#0"
            #expect(abc[key]?.0 == r.abc, "abc \(r.reply)")
            #expect(json[key]?.0 == r.json, "json \(r.reply)")
            if r.abc == nil { #expect(abc[key]?.2?.hasPrefix("unparseable judge reply") == true) }
        }
        // Unparseable replies count as incorrect (default) or are left out; never correct.
        let incorrect = EvalFixtures.rows(try w.evaluate(EvalRequest(run: "fake", grader: "fake-abc"), store: false).table).last!
        #expect(abs(incorrect["pass_at_k"]!.double! - 1.0 / 8) < 1e-12)
        let excluded = EvalFixtures.rows(try w.evaluate(EvalRequest(run: "fake", grader: "fake-abc", undecided: .exclude), store: false).table).last!
        #expect(abs(excluded["pass_at_k"]!.double! - 1.0 / 3) < 1e-12 && excluded["tasks"]!.int == 3)
    }

    /// Grading is incremental and resumable: a limit, then the rest; a stop part-way, then the
    /// rest; no rollout graded twice, no judge call repeated beyond those in flight.
    @Test func judgeGradingResumes() async throws {
        let w = try Warehouse.inMemory()
        let tmp = try TempDir()
        _ = try Self.deepResearchRun(w, qa: "deepresearch/webdancer_40.jsonl", run: "dr", dataset: "webdancer")
        let client = ModelClient(registry: try Self.judgeRegistry(tmp), http: LLMClient(), warehouse: w)
        let d = try GraderDefinition(kind: .llmJudge, options: ["model": "mock/judge"])
        let first = try await w.grade(run: "dr", definition: d, options: GradeOptions(client: client, limit: 7))
        #expect(first.graded == 7)
        let stop = GradeStop()
        let second = try await w.grade(run: "dr", definition: d, options: GradeOptions(concurrency: 4, client: client, progress: { done, _ in
            stop.stop() // after the first batch written (at most 100 verdicts)
        }, stop: stop))
        #expect(second.stopped && second.graded >= 1 && second.graded <= 100 + 4, "\(second.graded)")
        let third = try await w.grade(run: "dr", definition: d, options: GradeOptions(client: client))
        #expect(first.graded + second.graded + third.graded == 120 && third.alreadyGraded == first.graded + second.graded)
        #expect(try w.int("SELECT count(*) FROM grades WHERE grader = 'llm-judge'") == 120)
        #expect(try w.int("SELECT count(*) FROM llm_calls WHERE role = 'judge'") == 100)
        #expect(try QueryRunner(w).run("grade-counts-check")[0].rows.isEmpty)
        try await client.http.shutdown()
    }

    @Test(arguments: [
        // (format, reply, passed) — nil: unparseable.
        ("correct_incorrect", "Correct", true), ("correct_incorrect", " **Incorrect.** ", false), ("correct_incorrect", "correct", true),
        ("correct_incorrect", "Correct, because the dates match.", nil), ("correct_incorrect", "Not correct", nil), ("correct_incorrect", "", nil),
        ("correct_incorrect", "<think>the response says 1987</think>\nCorrect", true),
        ("abc", "A", true), ("abc", "a", true), ("abc", "B", false), ("abc", "C", false), ("abc", "(A)", true), ("abc", "A.", true),
        ("abc", "Actually it is B", nil), ("abc", "A or B", nil), ("abc", "AB", nil), ("abc", "D", nil),
        ("yes_no", "extracted_final_answer: 1987\nreasoning: same year\ncorrect: yes\nconfidence: 90%", true),
        ("yes_no", "correct: no", false), ("yes_no", "**correct:** yes", true), ("yes_no", "correct: yes\ncorrect: no", nil),
        ("yes_no", "yes", nil), ("yes_no", "correct: maybe", nil),
        ("json", #"{"correct": true}"#, true), ("json", #"{"correct": false, "reason": "no"}"#, false),
        ("json", "```json\n{\"correct\": true}\n```", true), ("json", #"{"correct": "true"}"#, nil), ("json", #"{"reason": "x"}"#, nil),
        ("json", "The answer: {\"correct\": true}", nil), ("json", #"[true]"#, nil), ("json", #"{"correct": true"#, nil),
    ] as [(String, String, Bool?)])
    func judgeRepliesParseStrictly(format: String, reply: String, passed: Bool?) throws {
        let d = try GraderDefinition(kind: .llmJudge, options: ["model": "mock/judge", "format": .string(format)])
        let verdict = JudgeParser(format: JudgeFormat(rawValue: format)!, schema: d.options["schema"]).parse(reply)
        #expect(verdict.passed == passed, "\(format): \(reply) → \(verdict.explanation)")
        if passed == nil { #expect(verdict.explanation.hasPrefix("unparseable judge reply")) }
    }

    // MARK: sql, stop-reason, definitions

    /// The bundled `cancelled-expected-reservation` grader: a cancel_reservation call with the
    /// reservation_id the task's cancel action expects; NULL for tasks that expect none.
    @Test func sqlGraderChecksTheExpectedCancellation() async throws {
        let w = try Self.tauWarehouse()
        let catalog = try GraderCatalog.loadOrBundled(file: Fixture.repoRoot.appending(path: "configs/graders.yml").path, isDefault: false)
        let d = try catalog.resolve("cancelled-expected-reservation")
        let r = try await w.grade(run: "gpt4o", definition: d)
        #expect(r.graded == 48)
        let grades = try Self.grades(w, "cancelled-expected-reservation")
        for e in try Self.tauEntries() {
            let task = (e.entry["info"] as! [String: Any])["task"] as! [String: Any]
            let wanted = (task["actions"] as! [[String: Any]]).first { ($0["name"] as! String) == "cancel_reservation" }
                .map { ($0["kwargs"] as! [String: Any])["reservation_id"] as! String }
            var made: [String] = []
            for m in e.entry["traj"] as! [[String: Any]] {
                for call in (m["tool_calls"] as? [[String: Any]]) ?? [] {
                    let f = call["function"] as! [String: Any]
                    if (f["name"] as! String) == "cancel_reservation",
                       let args = try JSONSerialization.jsonObject(with: Data((f["arguments"] as! String).utf8)) as? [String: Any],
                       let id = args["reservation_id"] as? String { made.append(id) }
                }
            }
            let expected: Int? = wanted.map { made.contains($0) ? 1 : 0 }
            let g = try #require(grades["\(e.task)#\(e.trial)"])
            #expect(g.0 == expected, "task \(e.task) trial \(e.trial)")
            #expect(g.2 == "cancel_reservation calls: \(made.count)")
        }
        #expect(grades.values.contains { $0.0 == 1 } && grades.values.contains { $0.0 == 0 } && grades.values.contains { $0.0 == nil })
        // An expression that does not compile is refused with SQLite's reason; nothing changes.
        let before = try w.snapshot()
        let bad = try GraderDefinition(name: "broken", kind: .sql, options: ["expression": "EXISTS (SELECT 1 FROM nowhere)"])
        let error = await #expect(throws: GradeError.self) { _ = try await w.grade(run: "gpt4o", definition: bad) }
        #expect(error?.description.contains("no such table: nowhere") == true)
        #expect(try w.snapshot() == before)
    }

    @Test func stopReasonOnRolloutFrameworkRecords() async throws {
        let w = try Warehouse.inMemory()
        let tmp = try TempDir()
        let lines = [
            #"{"id": "q1", "messages": [{"role": "user", "content": "hi"}], "success": true, "stopped": true}"#,
            #"{"id": "q1", "messages": [{"role": "user", "content": "hi"}], "success": true, "transferred": true}"#,
            #"{"id": "q2", "messages": [{"role": "user", "content": "hi"}], "success": false, "error": "rate limited"}"#,
            #"{"id": "q2", "messages": [{"role": "user", "content": "hi"}], "success": true, "reached_max_turns": true}"#,
        ]
        _ = try w.ingestTrajectories(file: try tmp.write("out.jsonl", lines.joined(separator: "\n") + "\n"), run: "rf", format: .rollout)
        let (graded, passed) = try await w.gradeStopReason(run: "rf")
        #expect(graded == 4 && passed == 1)
        let withTransfer = try await w.grade(run: "rf", definition: try GraderDefinition(kind: .stopReason, options: ["passing": "user_stop, transfer"]))
        #expect(withTransfer.version == 2 && withTransfer.passed == 2 && withTransfer.failedRollouts == 1)
        let explanations = try w.strings("SELECT explanation FROM grades WHERE grader_version = 2 ORDER BY rollout_id")
        #expect(explanations == ["stop reason user_stop (passing)", "stop reason transfer (passing)", "rollout failed: rate limited",
                                 "stop reason max_turns (not passing)"])
    }

    @Test func definitionsAreCanonicalAndCheckedWithTheirPlace() throws {
        let a = try GraderDefinition(kind: .numeric, options: ["tolerance": "0.01"])
        let b = try GraderDefinition(kind: .numeric, options: ["tolerance": JSONValue(0.01), "pick": "last", "relative": JSONValue(0)])
        #expect(a.canonicalJSON == b.canonicalJSON)
        #expect(try GraderDefinition(kind: .stopReason, options: ["passing": "user_stop,answer"]).canonicalJSON
                == GraderDefinition(kind: .stopReason, options: ["passing": .array(["answer", "user_stop"])]).canonicalJSON)
        #expect(throws: ConfigError.self) { _ = try GraderDefinition(kind: .regex, options: [:]) }
        #expect(throws: ConfigError.self) { _ = try GraderDefinition(kind: .regex, options: ["pattern": "(unclosed"]) }
        #expect(throws: ConfigError.self) { _ = try GraderDefinition(kind: .exact, options: ["tolerance": "1"]) }
        #expect(throws: ConfigError.self) { _ = try GraderDefinition(kind: .llmJudge, options: ["model": "m", "prompt": "{questoin}"]) }
        #expect(throws: ConfigError.self) { _ = try GraderDefinition(kind: .llmJudge, options: ["model": "m", "format": "stars"]) }
        let tmp = try TempDir()
        let file = try tmp.write("graders.yml", "graders:\n  mine:\n    kind: regex\n    pattern: ok\n  judge:\n    kind: llm-judge\n    model: mock/judge\n    prompt: \"{nope}\"\n")
        let error = try #require(throws: ConfigError.self) { _ = try GraderCatalog.load(file: file) }
        #expect(error.description == "\(file):8: graders.judge.prompt: unknown placeholder {nope} (placeholders: {question} {answer} {reference} {response} {transcript} {criteria} {task_id}; {{ and }} are literal braces)")
        // The bundled catalog loads, and the command-line options go on top of an entry.
        let bundled = try GraderCatalog.load(file: Fixture.repoRoot.appending(path: "configs/graders.yml").path)
        let judge = try bundled.resolve("judge-browsecomp", overrides: ["model": "mock/judge-yes-no"], storeAs: "bc-judge")
        #expect(judge.name == "bc-judge" && judge.options["model"]?.stringValue == "mock/judge-yes-no" && judge.options["format"]?.stringValue == "yes_no")
        #expect(judge.options["prompt"]?.stringValue?.contains("[correct_answer]: {answer}") == true)
    }
}
