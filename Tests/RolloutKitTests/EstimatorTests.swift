import Foundation
import GRDB
import RolloutKit
import Testing

/// pass@k and pass^k from queries/pass-at-k.sql against the numpy reference implementation
/// of Chen et al. 2021 (Fixtures/estimators/reference.py).
@Suite("pass@k estimators")
struct EstimatorTests {
    struct Case: Decodable {
        var n: Int
        var c: Int
        var k: Int
        var pass_at_k: Double?
        var pass_hat_k: Double?
    }

    struct Reference: Decodable {
        var numpy: String
        var cases: [Case]
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("estimators/pass_at_k_reference.json"))))
    }

    static func close(_ a: Double?, _ b: Double?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        return abs(a - b) <= 1e-9 && (b == 0 || abs(a - b) / abs(b) <= 1e-9 || abs(a - b) <= 1e-15)
    }

    /// One task per distinct (n, c), graded by the reward grader; pass-at-k by task for every k.
    @Test func everyCaseMatchesTheNumpyReferenceTo1e9() async throws {
        let ref = try Self.reference()
        var pairs: [String: (Int, Int)] = [:]
        for c in ref.cases { pairs["n\(c.n)c\(c.c)"] = (c.n, c.c) }
        let tasks = pairs.map { SyntheticTask($0.key, n: $0.value.0, c: $0.value.1) }
        let w = try await EvalFixtures.graded(tasks)
        let ks = Set(ref.cases.map(\.k)).sorted()
        let table = try QueryRunner(w).run("pass-at-k", parameters: ["run": "r", "grader": "reward", "by": "task", "short": "skip",
                                                                      "k": ks.map(String.init).joined(separator: ",")])[0]
        var got: [String: (Double?, Double?)] = [:]
        for row in EvalFixtures.rows(table) where row["key"]!.text != "all" {
            got["\(row["key"]!.text.dropFirst("synthetic/".count))|\(row["k"]!.int!)"] = (row["pass_at_k"]!.double, row["pass_hat_k"]!.double)
        }
        var checked = 0
        for c in ref.cases {
            let value = try #require(got["n\(c.n)c\(c.c)|\(c.k)"], "no row for n=\(c.n) c=\(c.c) k=\(c.k)")
            #expect(Self.close(value.0, c.pass_at_k), "pass@k n=\(c.n) c=\(c.c) k=\(c.k): \(String(describing: value.0)) vs numpy \(String(describing: c.pass_at_k))")
            #expect(Self.close(value.1, c.pass_hat_k), "pass^k n=\(c.n) c=\(c.c) k=\(c.k): \(String(describing: value.1)) vs \(String(describing: c.pass_hat_k))")
            checked += 1
        }
        #expect(checked == ref.cases.count)
        // The table covers the edges the issue names.
        #expect(ref.cases.contains { $0.c == 0 } && ref.cases.contains { $0.c == $0.n } && ref.cases.contains { $0.n - $0.c < $0.k && $0.k <= $0.n })
        #expect(ref.cases.contains { $0.k == $0.n } && ref.cases.contains { $0.k > $0.n } && ref.cases.contains { $0.n == 10_000 })
    }

    /// The fixture is what the numpy reference computes (run when numpy is installed, as
    /// `scripts/install-deps.sh --test` does).
    @Test(.enabled(if: EvalFixtures.python(has: "numpy"), "needs numpy (scripts/install-deps.sh --test installs it)"))
    func fixtureIsTheNumpyReferenceOutput() throws {
        let (status, out, err) = try EvalFixtures.run("/usr/bin/env", ["python3", Fixture.path("estimators/reference.py")])
        #expect(status == 0, "\(err)")
        struct Generated: Decodable { var cases: [Case] }
        let generated = try JSONDecoder().decode(Generated.self, from: Data(out.utf8))
        let stored = try Self.reference().cases
        #expect(generated.cases.count == stored.count)
        for (a, b) in zip(generated.cases, stored) {
            #expect(a.n == b.n && a.c == b.c && a.k == b.k)
            #expect(Self.close(a.pass_at_k, b.pass_at_k) && Self.close(a.pass_hat_k, b.pass_hat_k), "n=\(a.n) c=\(a.c) k=\(a.k)")
        }
    }

    /// k > n: refused by default (NULL estimates, a note, and `evaluate` throws), capped at the
    /// smallest n on request (equal to pass@n), or those tasks skipped.
    @Test func kGreaterThanNIsRefusedCappedOrSkipped() async throws {
        let tasks = [SyntheticTask("a", domain: "X", n: 3, c: 1), SyntheticTask("b", domain: "X", n: 5, c: 2),
                     SyntheticTask("c", domain: "Y", n: 5, c: 5)]
        let w = try await EvalFixtures.graded(tasks)
        let runner = QueryRunner(w)
        let refused = EvalFixtures.rows(try runner.run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "4"])[0])
        let x = try #require(refused.first { $0["key"]!.text == "X" })
        #expect(x["pass_at_k"] == .null && x["pass_hat_k"] == .null)
        #expect(x["note"]!.text == "refused: k=4 > n for 1 task(s) (fewest samples: 3); set :short to cap or skip")
        let y = try #require(refused.first { $0["key"]!.text == "Y" })
        #expect(y["pass_at_k"]!.double == 1 && y["pass_hat_k"]!.double == 1 && y["note"] == .null)
        let error = try #require(throws: EvalError.self) {
            _ = try w.evaluate(EvalRequest(run: "r", grader: "reward", ks: [4]))
        }
        #expect(error.description.contains("k > n: X: refused: k=4 > n for 1 task(s)"))
        #expect(error.description.contains("--short cap"))
        #expect(try w.count("scores") == 0)

        let capped = EvalFixtures.rows(try runner.run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "4", "short": "cap"])[0])
        let atN = EvalFixtures.rows(try runner.run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "3"])[0])
        #expect(capped.map { $0["k_used"]!.int } == [3, 3, 3])
        #expect(capped.map { $0["pass_at_k"] } == atN.map { $0["pass_at_k"] })
        #expect(capped.map { $0["pass_hat_k"] } == atN.map { $0["pass_hat_k"] })
        #expect(capped.allSatisfy { $0["note"]!.text == "k capped at 3 (the fewest samples of a task)" })

        let skipped = EvalFixtures.rows(try runner.run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "4", "short": "skip"])[0])
        let xs = try #require(skipped.first { $0["key"]!.text == "X" })
        #expect(xs["tasks"]!.int == 1 && xs["tasks_short"]!.int == 1)
        // Task b alone: 1 − C(3,4)/C(5,4) = 1; pass^4 = C(2,4)/C(5,4) = 0.
        #expect(xs["pass_at_k"]!.double == 1 && xs["pass_hat_k"]!.double == 0)
    }

    /// avg@n, any-correct and the mixed share, per group and over all, against a direct count.
    @Test func meansAnyCorrectAndMixedShare() async throws {
        let tasks = [SyntheticTask("a", domain: "A+B", n: 4, c: 0), SyntheticTask("b", domain: "A+B", n: 4, c: 4),
                     SyntheticTask("c", domain: "A+B", n: 4, c: 1), SyntheticTask("d", domain: "C", n: 2, c: 1)]
        let w = try await EvalFixtures.graded(tasks)
        let rows = EvalFixtures.rows(try QueryRunner(w).run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "1,2"])[0])
        #expect(rows.map { $0["key"]!.text } == ["A+B", "A+B", "C", "C", "all", "all"])
        let ab = rows[0]
        #expect(ab["tasks"]!.int == 3 && ab["samples"]!.int == 12)
        #expect(abs(ab["avg_at_n"]!.double! - (0 + 1 + 0.25) / 3) < 1e-12)
        #expect(abs(ab["any_correct"]!.double! - 2.0 / 3) < 1e-12)
        #expect(abs(ab["mixed"]!.double! - 1.0 / 3) < 1e-12)
        let all2 = rows[5]
        // pass@2 per task: 0, 1, 1 − C(3,2)/C(4,2) = 0.5, 1 − C(1,2)/C(2,2) = 1 → mean 0.625.
        #expect(abs(all2["pass_at_k"]!.double! - 0.625) < 1e-12)
        // pass^2: 0, 1, 0, C(1,2)/C(2,2) = 0 → 0.25.
        #expect(abs(all2["pass_hat_k"]!.double! - 0.25) < 1e-12)
    }

    /// Failed rollouts never count as correct: incorrect by default, left out with
    /// failed=exclude; undecidable grades likewise with undecided.
    @Test func failedAndUndecidedConventions() async throws {
        let tasks = [SyntheticTask("a", [.pass, .errored, .unknown, .fail]), SyntheticTask("b", [.errored, .errored]),
                     SyntheticTask("c", [.unknown, .pass])]
        let w = try await EvalFixtures.graded(tasks)
        func mean(_ failed: String, _ undecided: String) throws -> (Double?, Int?) {
            let r = EvalFixtures.rows(try QueryRunner(w).run("pass-at-k", parameters: ["run": "r", "grader": "reward", "by": "task",
                                                                                          "failed": failed, "undecided": undecided])[0])
            let all = r.last!
            return (all["pass_at_k"]!.double, all["samples"]!.int)
        }
        // incorrect/incorrect: a 1/4, b 0/2, c 1/2 → mean 0.25.
        let (m1, s1) = try mean("incorrect", "incorrect")
        #expect(abs(m1! - (0.25 + 0 + 0.5) / 3) < 1e-12 && s1 == 8)
        // exclude failed: a 1/3 (pass, unknown, fail), b has none left, c 1/2.
        let (m2, s2) = try mean("exclude", "incorrect")
        #expect(abs(m2! - (1.0 / 3 + 0.5) / 2) < 1e-12 && s2 == 5)
        // exclude undecided: a 1/3 (pass, errored, fail), b 0/2, c 1/1.
        let (m3, s3) = try mean("incorrect", "exclude")
        #expect(abs(m3! - (1.0 / 3 + 0 + 1) / 3) < 1e-12 && s3 == 6)
        // both: a 1/2, c 1/1.
        let (m4, s4) = try mean("exclude", "exclude")
        #expect(abs(m4! - 0.75) < 1e-12 && s4 == 3)
    }

    /// The same query under the stock sqlite3 shell, parameters set with `.parameter set`,
    /// gives the numbers QueryRunner gives.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: QueryRunnerTests.sqlite3), "needs /usr/bin/sqlite3"))
    func stockSQLiteShellGivesTheSameTable() async throws {
        let tmp = try TempDir()
        let path = tmp.file("w.db")
        do {
            let w = try Warehouse.open(path: path)
            try EvalFixtures.addRun(w, run: "r", tasks: [SyntheticTask("a", domain: "X", n: 10, c: 3), SyntheticTask("b", domain: "X", n: 10, c: 9),
                                                         SyntheticTask("c", domain: "Y", n: 10, c: 0)])
            _ = try await w.grade(run: "r", definition: try GraderDefinition(kind: .reward, options: [:]))
            try (w.writer as? DatabasePool)?.close()
        }
        let w = try Warehouse.open(path: path)
        let expected = try QueryRunner(w).run("pass-at-k", parameters: ["run": "r", "grader": "reward", "k": "1,5,10"])[0]
        let sql = try String(contentsOf: Fixture.repoRoot.appending(path: "queries/pass-at-k.sql"), encoding: .utf8)
        let script = """
            .parameter init
            .parameter set :run "'r'"
            .parameter set :grader "'reward'"
            .parameter set :k "'1,5,10'"
            .mode csv
            .headers on
            \(sql)
            """
        let (status, out, err) = try EvalFixtures.run(QueryRunnerTests.sqlite3, ["-bail", path], stdin: script)
        #expect(status == 0 && err.isEmpty, "\(err)")
        let lines = out.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(lines.first == expected.columns)
        #expect(lines.count == expected.rows.count + 1)
        for (line, row) in zip(lines.dropFirst(), expected.rows) {
            for (cell, value) in zip(line, row) {
                if let d = value.double { #expect(abs((Double(cell) ?? .nan) - d) < 1e-12, "\(cell) vs \(d)") }
                else { #expect(cell == value.text) }
            }
        }
        // With no parameters at all (the defaults) it still runs: stop-reason has no grades here.
        let (s2, o2, e2) = try EvalFixtures.run(QueryRunnerTests.sqlite3, ["-bail", path], stdin: sql)
        #expect(s2 == 0 && e2.isEmpty && o2.isEmpty, "\(e2)")
    }
}
