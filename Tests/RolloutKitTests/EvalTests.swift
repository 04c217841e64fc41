import Foundation
import GRDB
import RolloutKit
import Testing

/// `rollout eval` and `rollout compare`: groupings, stored scores, flips; and the commands
/// as a user runs them.
@Suite("Eval and compare")
struct EvalTests {
    /// Two jobs with their own agent and user models in one run (as a run config with two
    /// datasets writes them), plus an imported run that names no model.
    @Test func groupsByAgentAndUserModelOfEachJob() async throws {
        let w = try Warehouse.inMemory()
        try EvalFixtures.addRun(w, run: "two-jobs", tasks: [SyntheticTask("a", n: 2, c: 2), SyntheticTask("b", n: 2, c: 0),
                                                           SyntheticTask("c", n: 2, c: 1)])
        let config = #"{"jobs": {"Library": {"agent": {"model": "openai/gpt-4o"}, "user": {"model": "mock/user"}}, "Transit": {"agent": {"model": "vllm/qwen3-8b"}, "user": {"model": "mock/user"}}}}"#
        try await w.writer.write { db in
            try db.execute(sql: "UPDATE runs SET config = ?, agent_model = 'openai/gpt-4o' WHERE name = 'two-jobs'", arguments: [config])
            for (task, job) in [("a", "Library"), ("b", "Transit"), ("c", "Transit")] {
                try db.execute(sql: """
                    INSERT INTO run_tasks(run_id, task_id, job, samples)
                    SELECT r.id, t.id, ?, 2 FROM runs r, tasks t WHERE r.name = 'two-jobs' AND t.external_id = ?
                    """, arguments: [job, task])
            }
        }
        try EvalFixtures.addRun(w, run: "imported", dataset: "other", tasks: [SyntheticTask("z", n: 1, c: 1)])
        for run in ["two-jobs", "imported"] {
            _ = try await w.grade(run: run, definition: try GraderDefinition(kind: .reward, options: [:]))
        }
        let byAgent = EvalFixtures.rows(try w.evaluate(EvalRequest(run: "two-jobs", grader: "reward", by: .agentModel)).table)
        #expect(byAgent.map { $0["key"]!.text } == ["openai/gpt-4o", "vllm/qwen3-8b", "all"])
        #expect(byAgent.map { $0["pass_at_k"]!.double! } == [1, 0.25, 0.5])
        let byUser = EvalFixtures.rows(try w.evaluate(EvalRequest(run: "two-jobs", grader: "reward", by: .userModel)).table)
        #expect(byUser.map { $0["key"]!.text } == ["mock/user", "all"])
        let imported = EvalFixtures.rows(try w.evaluate(EvalRequest(run: "imported", grader: "reward", by: .agentModel)).table)
        #expect(imported.first?["key"]?.text == "(unknown)")
        // Without a run filter the query spans runs: by run, each run is a group.
        let byRun = EvalFixtures.rows(try QueryRunner(w).run("pass-at-k", parameters: ["grader": "reward", "by": "run"])[0])
        #expect(byRun.map { $0["key"]!.text } == ["imported", "two-jobs", "all"])
        #expect(byRun.last?["tasks"]?.int == 4)
        // Each evaluate stored its table with the parameters it ran with.
        let stored = try w.rows("SELECT r.name, s.query, json_extract(s.params, '$.by'), json_array_length(s.result) FROM scores s JOIN runs r ON r.id = s.run_id ORDER BY s.id")
        #expect(stored.map { [$0[0] as String, $0[1] as String, $0[2] as String] } == [
            ["two-jobs", "pass-at-k", "agent_model"], ["two-jobs", "pass-at-k", "user_model"], ["imported", "pass-at-k", "agent_model"]])
        #expect(stored.map { $0[3] as Int } == [3, 2, 2])
        // Asking for a grader or version the run does not have says what it has.
        #expect(throws: EvalError.self) { _ = try w.evaluate(EvalRequest(run: "two-jobs", grader: "exact")) }
        let v = try #require(throws: EvalError.self) { _ = try w.evaluate(EvalRequest(run: "two-jobs", grader: "reward", version: 3)) }
        #expect(v.description == "run two-jobs has no grades by reward version 3 (versions: 1)")
    }

    /// Two runs over the same tasks: per-task change, flips both ways, the sign test, stored.
    @Test func compareShowsFlipsAndTheSignTest() async throws {
        let w = try Warehouse.inMemory()
        try EvalFixtures.addRun(w, run: "base", tasks: [
            SyntheticTask("t1", [.fail]), SyntheticTask("t2", [.fail]), SyntheticTask("t3", [.fail]), SyntheticTask("t4", [.pass]),
            SyntheticTask("t5", [.pass, .fail]), SyntheticTask("t6", [.pass]), SyntheticTask("only-base", [.pass])])
        try EvalFixtures.addRun(w, run: "new", tasks: [
            SyntheticTask("t1", [.pass]), SyntheticTask("t2", [.pass]), SyntheticTask("t3", [.pass]), SyntheticTask("t4", [.fail]),
            SyntheticTask("t5", [.pass, .pass]), SyntheticTask("t6", [.pass]), SyntheticTask("only-new", [.fail])])
        for run in ["base", "new"] { _ = try await w.grade(run: run, definition: try GraderDefinition(kind: .reward, options: [:])) }
        let r = try w.compareRuns("base", "new", grader: "reward")
        let s = r.summary
        #expect(s.both == 6 && s.tasksA == 7 && s.tasksB == 7)
        #expect(s.flippedToPass == 3 && s.flippedToFail == 1 && s.better == 4 && s.worse == 1 && s.same == 1)
        #expect(abs(s.passAt1A! - (0 + 0 + 0 + 1 + 0.5 + 1) / 6) < 1e-12 && abs(s.passAt1B! - 5.0 / 6) < 1e-12)
        // 3 vs 1 flips: P = 2 · (1 + 4) / 16 = 0.625.
        #expect(abs(s.signTestP! - 0.625) < 1e-12)
        let changes = Dictionary(uniqueKeysWithValues: EvalFixtures.rows(r.tasks).map { ($0["task"]!.text, $0["change"]!.text) })
        #expect(changes == ["t1": "flipped to pass", "t2": "flipped to pass", "t3": "flipped to pass", "t4": "flipped to fail",
                            "t5": "better", "t6": "same", "only-base": "only in a", "only-new": "only in b"])
        #expect(Array(EvalFixtures.rows(r.tasks).prefix(4)).allSatisfy { $0["change"]!.text.hasPrefix("flipped") })
        let stored = try #require(try w.rows("SELECT query, json_extract(result, '$.summary.flippedToPass'), json_array_length(result, '$.rows') FROM scores").first)
        #expect((stored[0] as String) == "compare" && (stored[1] as Int) == 3 && (stored[2] as Int) == 8)
    }

    // MARK: The commands

    static var binary: String { CLITests.binary }
    static var built: Bool { FileManager.default.isExecutableFile(atPath: CLITests.binary) }

    @Test(.enabled(if: EvalTests.built, "build the rollout executable first (swift build)"))
    func gradeEvalCompareFromTheCommandLine() throws {
        let dir = try CLITests.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        func rollout(_ args: String...) throws -> CLITests.Result { try CLITests.rollout(args, in: dir) }
        let tau = Fixture.path("tau-bench/gpt-4o-airline-12x4.json")
        #expect(try rollout("ingest", "trajectories", tau, "--run", "gpt4o", "--format", "tau-bench").status == 0)
        #expect(try rollout("ingest", "trajectories", Fixture.path("tau-bench/gpt-4o-airline-10.json"), "--run", "gpt4o-first",
                            "--format", "tau-bench", "--dataset", "gpt4o").status == 0)

        let grade = try rollout("grade", "--run", "gpt4o", "--grader", "reward")
        #expect(grade.status == 0, "\(grade.stderr)")
        #expect(grade.stdout == "graded 48 rollouts of run gpt4o with reward v1 (new version): 26 passed, 22 not passed, 0 undecidable\n")
        let again = try rollout("grade", "--run", "gpt4o", "--grader", "reward", "--json")
        #expect(again.stdout.contains(#""alreadyGraded":48"#) && again.stdout.contains(#""graded":0"#))
        #expect(try rollout("grade", "--run", "gpt4o-first", "--grader", "reward").status == 0)

        let eval = try rollout("eval", "--run", "gpt4o", "--grader", "reward", "--k", "1,2,4", "--by", "dataset")
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stdout.hasPrefix("run gpt4o, grader reward v1: 48 of 48 samples graded; failed rollouts count as incorrect"))
        #expect(eval.stdout.contains("stored as scores #1"))
        let csv = try rollout("eval", "--run", "gpt4o", "--grader", "reward", "--k", "4", "--csv", "--no-store")
        let lines = csv.stdout.split(separator: "\r\n").map(String.init)
        #expect(lines.first == "key,k,k_used,tasks,tasks_short,samples,pass_at_k,pass_hat_k,avg_at_n,any_correct,mixed,note")
        #expect(lines.count == 3 && lines[2].hasPrefix("all,4,4,12,0,48,0.8333333333333334,0.25,"))
        let refused = try rollout("eval", "--run", "gpt4o", "--grader", "reward", "--k", "5")
        #expect(refused.status == 1 && refused.stderr.contains("k > n: (none): refused: k=5 > n for 12 task(s) (fewest samples: 4)"))
        let capped = try rollout("eval", "--run", "gpt4o", "--grader", "reward", "--k", "5", "--short", "cap", "--json", "--no-store")
        #expect(capped.status == 0 && capped.stdout.contains(#""k":5,"k_used":4"#))

        let compare = try rollout("compare", "gpt4o-first", "gpt4o", "--grader", "reward")
        #expect(compare.status == 0, "\(compare.stderr)")
        #expect(compare.stdout.contains("gpt4o-first (reward v1) vs gpt4o (v1): 2 tasks in both, 8 only in gpt4o-first, 10 only in gpt4o"))
        let compareJSON = try rollout("compare", "gpt4o-first", "gpt4o", "--grader", "reward", "--json", "--no-store")
        #expect(compareJSON.stdout.hasPrefix(#"{"summary":{"#) && compareJSON.stdout.contains(#""tasks":[{"#))

        let unknown = try rollout("grade", "--run", "gpt4o", "--grader", "exactly")
        #expect(unknown.status == 1 && unknown.stderr.contains("no grader named \"exactly\"; built-in kinds: exact, normalized"))
        let noRun = try rollout("grade", "--run", "nope", "--grader", "reward")
        #expect(noRun.status == 1 && noRun.stderr.contains("no run named \"nope\"; runs: gpt4o-first, gpt4o"))
        let badOption = try rollout("grade", "--run", "gpt4o", "--grader", "exact", "--tolerance", "0.1")
        #expect(badOption.status == 1 && badOption.stderr.contains("tolerance: not an option of the exact grader"))
        let badSQL = try rollout("grade", "--run", "gpt4o", "--grader", "sql", "--expression", "nonsense(")
        #expect(badSQL.status == 1 && badSQL.stderr.contains("the sql grader's expression does not compile"))
        let judgeless = try rollout("grade", "--run", "gpt4o", "--grader", "llm-judge", "--judge-model", "mock/nobody")
        #expect(judgeless.status == 1 && judgeless.stderr.contains("unknown model \"mock/nobody\""))

        let sql = try rollout("grade", "--run", "gpt4o", "--grader", "cancelled-expected-reservation")
        #expect(sql.status == 0 && sql.stdout.contains("with cancelled-expected-reservation v1 (new version)"))
        // τ-bench tasks have no reference answer: judge the dialogue itself.
        try "Did the agent do what the user asked, within the airline's policy?\n\n{transcript}\n\nReply with only the letter A (yes), B (no) or C (cannot tell).\n"
            .write(to: dir.appending(path: "dialogue-judge.txt"), atomically: true, encoding: .utf8)
        let judge = try rollout("grade", "--run", "gpt4o", "--grader", "judge-abc", "--prompt-file", "dialogue-judge.txt", "--concurrency", "4")
        #expect(judge.status == 0 && judge.stdout.contains("graded 48 rollouts of run gpt4o with judge-abc v1"), "\(judge.stderr)")
        #expect(judge.stdout.contains(" 0 undecidable"), "the bundled judge-abc calls the mock judge that answers A/B/C")
        let calls = try CLITests.rollout(["query", "--csv", dir.appending(path: "q.sql").path], in: dir,
                                         sql: "SELECT count(*) AS n FROM llm_calls WHERE role = 'judge' AND rollout_id IS NOT NULL")
        #expect(calls.stdout == "n\r\n48\r\n")
        let list = try rollout("grade", "--list")
        #expect(list.stdout.contains("tolerance = 1e-06: absolute tolerance") && list.stdout.contains("  judge-browsecomp "))
        #expect(list.stdout.contains("Versions in rollout.db:"))
        let stability = try rollout("query", "task-stability", "--param", "run=gpt4o", "--param", "grader=reward", "--param", "min_flips=1", "--csv")
        #expect(stability.status == 0 && stability.stdout.hasPrefix("run,dataset,task,n,c,outcomes,p,variance,flips,flip_rate\r\n"))
        let check = try rollout("query", "grade-counts-check", "--csv")
        #expect(check.stdout.split(separator: "\r\n").count == 1, "no differences: only the header")
    }
}
