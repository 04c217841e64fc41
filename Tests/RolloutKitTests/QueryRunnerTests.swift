import Foundation
import GRDB
import RolloutKit
import Testing

@Suite("Bundled queries")
struct QueryRunnerTests {
    static let sqlite3 = "/usr/bin/sqlite3"

    func exampleWarehouse() throws -> (Warehouse, TempDir) {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        _ = try w.ingestBundledExample(into: tmp.path)
        return (w, tmp)
    }

    /// A result's rows as text, for compact comparisons.
    func text(_ result: QueryResult) -> [[String]] { result.rows.map { $0.map(\.text) } }

    @Test func statsCountsEveryTable() throws {
        let (w, _) = try exampleWarehouse()
        let results = try QueryRunner(w).run("stats")
        #expect(results.count == 1)
        let stats = results[0]
        #expect(stats.columns == ["table", "rows"])
        var rows: [String: String] = [:]
        for r in text(stats) { rows[r[0]] = r[1] }
        #expect(rows.count == 22)
        #expect(rows["tasks"] == "17")
        #expect(rows["datasets"] == "3")
        #expect(rows["domains"] == "3")
        #expect(rows["servers"] == "2")
        #expect(rows["tools"] == "9")
        #expect(rows["ingests"] == "1")
        #expect(rows["rollouts"] == "0")
        #expect(rows["ingest_errors"] == "0")
        let tables = try w.stats().tables
        #expect(tables == stats)
    }

    @Test func domainsWithFilters() throws {
        let (w, _) = try exampleWarehouse()
        let runner = QueryRunner(w)
        let all = try runner.run("domains")[0]
        #expect(all.columns == ["domain", "members", "policy", "tools", "tasks"])
        #expect(text(all) == [["CityTransit", "1", "own", "4", "6"], ["Library", "1", "own", "5", "7"],
                              ["CityTransit+Library", "2", "own", "9", "4"]])
        let cross = try runner.run("domains", parameters: ["cross": "1"])[0]
        #expect(text(cross) == [["CityTransit+Library", "2", "own", "9", "4"]])
        let withPolicy = try runner.run("domains", parameters: ["cross": "1", "require_policy": "1"])[0]
        #expect(text(withPolicy) == [["CityTransit+Library", "2", "own", "9", "4"]])
        let requirePolicy = try runner.run("domains", parameters: ["require_policy": "1"])[0]
        #expect(requirePolicy.rows.count == 3)
        let minDomains = try runner.run("domains", parameters: ["min_domains": "2"])[0]
        #expect(text(minDomains).map { $0[0] } == ["CityTransit+Library"])

        // A combination without its own policy whose members have one reports 'members'.
        try w.writer.write { db in try db.execute(sql: "UPDATE domains SET policy = NULL WHERE key = 'CityTransit+Library'") }
        #expect(text(try runner.run("domains", parameters: ["cross": "1"])[0]).first?[2] == "members")
        #expect(try runner.run("domains", parameters: ["cross": "1", "require_policy": "1"])[0].rows.isEmpty)
    }

    @Test func tasksByDataset() throws {
        let (w, _) = try exampleWarehouse()
        let result = try QueryRunner(w).run("tasks-by-dataset")[0]
        #expect(result.columns == ["dataset", "kind", "domain", "tasks"])
        #expect(text(result) == [["CityTransit", "dialogue", "CityTransit", "6"], ["Library", "dialogue", "Library", "7"],
                                 ["Library_CityTransit", "dialogue", "CityTransit+Library", "4"]])
        let one = try QueryRunner(w).run("tasks-by-dataset", parameters: ["dataset": "Library"])[0]
        #expect(text(one) == [["Library", "dialogue", "Library", "7"]])
        #expect(try w.stats().tasks == result)
    }

    @Test func toolsIngestsAndRunsQueries() throws {
        let (w, _) = try exampleWarehouse()
        let runner = QueryRunner(w)
        let tools = try runner.run("tools", parameters: ["server": "CityTransit"])[0]
        #expect(tools.column("name").map(\.text) == ["plan_trip", "get_card", "top_up_card", "report_lost_card"])
        #expect(tools.column("domains").map(\.text) == Array(repeating: "CityTransit", count: 4))
        let ingests = try runner.run("ingests")[0]
        #expect(ingests.rows.count == 1)
        #expect(ingests.column("kind") == [.text("dir")])
        #expect(try runner.run("runs")[0].rows.isEmpty)
    }

    @Test func unknownParameterIsAnError() throws {
        let (w, _) = try exampleWarehouse()
        let error = try #require(throws: QueryError.self) { try QueryRunner(w).run("stats", parameters: ["bogus": "1"]) }
        #expect(error.source == "queries/stats.sql")
        #expect(error.description.contains("unknown parameter(s) bogus"))
        let domains = try #require(throws: QueryError.self) { try QueryRunner(w).run("domains", parameters: ["crosss": "1"]) }
        #expect(domains.description.contains("crosss"))
        #expect(domains.description.contains("cross, min_domains, require_policy"))
    }

    @Test func unknownQueryNameListsTheBundledOnes() throws {
        let w = try Warehouse.inMemory()
        let error = try #require(throws: QueryError.self) { try QueryRunner(w).run("nope") }
        #expect(error.description.contains("no bundled query of that name"))
        #expect(error.description.contains("stats"))
    }

    @Test func readOnlyModeRefusesWrites() throws {
        let (w, _) = try exampleWarehouse()
        let before = try w.snapshot()
        let error = try #require(throws: QueryError.self) { try QueryRunner(w).run(sql: "DELETE FROM tasks", source: "cleanup.sql") }
        #expect(error.source == "cleanup.sql")
        #expect(error.reason.contains("readonly"))
        #expect(try w.snapshot() == before)
        #expect(try w.count("tasks") == 17)

        _ = try QueryRunner(w).run(sql: "DELETE FROM tasks WHERE external_id = :id", source: "cleanup.sql",
                                   parameters: ["id": "lib00001"], write: true)
        #expect(try w.count("tasks") == 16)
    }

    @Test func userSQLFileWithNumericParameters() throws {
        let (w, tmp) = try exampleWarehouse()
        let file = try tmp.write("my.sql", """
            -- two statements; both results come back
            SELECT count(*) AS n FROM tasks WHERE source_line <= :max_line;
            SELECT :label AS label, :ratio * 2 AS doubled;
            """)
        let results = try QueryRunner(w).run(file, parameters: ["max_line": "2", "label": "lib", "ratio": "1.5"])
        #expect(results.count == 2)
        #expect(results[0].rows == [[.integer(6)]])
        #expect(results[1].columns == ["label", "doubled"])
        #expect(results[1].rows == [[.text("lib"), .real(3.0)]])
    }

    /// `--param id=007` must find the task whose (TEXT) id is "007": a value is a number only when
    /// it reads back as the same text.
    @Test func parameterWithLeadingZerosStaysText() throws {
        let tmp = try TempDir()
        let w = try Warehouse.inMemory()
        let qa = try tmp.write("qa.jsonl", #"{"id": "007", "question": "Q?", "answer": "A"}"# + "\n" + #"{"id": "7", "question": "Q7?", "answer": "B"}"# + "\n")
        _ = try w.ingestQA(file: qa, dataset: "ids")
        let sql = "SELECT answer FROM tasks WHERE external_id = :id"
        #expect(try QueryRunner(w).run(sql: sql, source: "q.sql", parameters: ["id": "7"])[0].rows == [[.text("B")]])
        #expect(try QueryRunner(w).run(sql: sql, source: "q.sql", parameters: ["id": "007"])[0].rows == [[.text("A")]])
        #expect(try QueryRunner(w).run(sql: "SELECT :v AS v", source: "q.sql", parameters: ["v": "007"])[0].rows == [[.text("007")]])
    }

    @Test func resultFormatsRenderRows() throws {
        let w = try Warehouse.inMemory()
        let result = try QueryRunner(w).run(sql: #"SELECT 1 AS a, 'x,"y"' AS b UNION ALL SELECT NULL, 2.5"#, source: "q.sql")[0]
        #expect(result.rows == [[.integer(1), .text("x,\"y\"")], [.null, .real(2.5)]])
        #expect(ResultFormat.json.render(result) == #"[{"a":1,"b":"x,\"y\""},{"a":null,"b":2.5}]"# + "\n")
        #expect(ResultFormat.nl.render(result) == #"{"a":1,"b":"x,\"y\""}"# + "\n" + #"{"a":null,"b":2.5}"# + "\n")
        #expect(ResultFormat.csv.render(result) == "a,b\r\n1,\"x,\"\"y\"\"\"\r\n,2.5\r\n")
    }

    @Test func bundledQueriesAreTheFilesInQueriesFolder() throws {
        let folder = Fixture.repoRoot.appending(path: "queries")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }
            .map { String($0.dropLast(4)) }.sorted()
        #expect(QueryRunner.bundledNames.sorted() == files)
        for name in files {
            let (_, sql) = try QueryRunner.sql(for: name)
            #expect(sql == (try String(contentsOf: folder.appending(path: "\(name).sql"), encoding: .utf8)), "\(name)")
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: QueryRunnerTests.sqlite3),
                   "needs the stock sqlite3 shell at /usr/bin/sqlite3 (apt-get install sqlite3)"))
    func everyBundledQueryRunsInTheStockSQLiteShell() throws {
        let tmp = try TempDir()
        let dbPath = tmp.file("warehouse.db")
        do {
            let w = try Warehouse.open(path: dbPath)
            _ = try w.ingestBundledExample(into: tmp.file("example"))
            _ = try w.ingestTrajectories(file: Fixture.path("tau-bench/gpt-4o-airline-10.json"), run: "tau", format: .tauBench)
            try (w.writer as? DatabasePool)?.close()
        }
        let folder = Fixture.repoRoot.appending(path: "queries")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(names.count == QueryRunner.bundledNames.count)
        for name in names {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.sqlite3)
            process.arguments = ["-bail", dbPath]
            process.standardInput = try FileHandle(forReadingFrom: folder.appending(path: name))
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "sqlite3 < queries/\(name): \(stderr)")
            #expect(stderr.isEmpty, "sqlite3 < queries/\(name): \(stderr)")
            switch name {
            case "stats.sql":
                #expect(stdout.contains("tasks|27\n"), "\(stdout)")
                #expect(stdout.contains("rollouts|10\n"))
            case "tasks-by-dataset.sql":
                #expect(stdout.contains("Library_CityTransit|dialogue|CityTransit+Library|4\n"), "\(stdout)")
            case "runs.sql":
                #expect(stdout.hasPrefix("tau|imported|completed|||10|10|0|0|"), "\(stdout)")
            case "domains.sql":
                #expect(stdout.contains("CityTransit+Library|2|own|9|4\n"), "\(stdout)")
            default:
                break
            }
        }
    }
}
