import ArgumentParser
import Foundation
import RolloutKit

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Rows per table, and tasks per dataset and domain.")
    @OptionGroup var warehouse: WarehouseOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let w = try warehouse.open(create: false)
        let (tables, tasks) = try reporting { try w.stats() }
        if output.format == .table {
            print(output.format.render(tables))
            print(output.format.render(tasks), terminator: "")
        } else {
            print(output.format.render(tables), terminator: "")
            print(output.format.render(tasks), terminator: "")
        }
    }
}

struct Domains: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List domains and cross-domain combinations (order-insensitive) with policy, tools and tasks.")
    @OptionGroup var warehouse: WarehouseOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: .long, help: "Only cross-domain combinations.") var cross = false
    @Option(name: .long, help: "Only keys with at least N member domains.") var minDomains: Int?
    @Flag(name: .long, help: "Only keys with their own policy file.") var requirePolicy = false

    func run() throws {
        let w = try warehouse.open(create: false)
        var params: [String: String] = [:]
        if cross { params["cross"] = "1" }
        if let minDomains { params["min_domains"] = String(minDomains) }
        if requirePolicy { params["require_policy"] = "1" }
        let result = try reporting { try QueryRunner(w).run("domains", parameters: params) }
        print(output.format.render(result[0]), terminator: "")
    }
}

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a bundled query (by name) or a .sql file; read-only unless --write.",
        discussion: "Bundled: \(QueryRunner.bundledNames.joined(separator: ", ")). `rollout query --list` shows each with its description.")
    @OptionGroup var warehouse: WarehouseOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "A bundled query name or a path to a .sql file.") var query: String?
    @Option(name: .long, help: "A named parameter k=v, bound to :k (repeatable).") var param: [String] = []
    @Flag(name: .long, help: "Allow statements that change the warehouse.") var write = false
    @Flag(name: .long, help: "List the bundled queries.") var list = false
    @Flag(name: .long, help: "Print the query's SQL instead of running it.") var show = false

    func validate() throws {
        if query == nil && !list { throw ValidationError("name a query or .sql file, or pass --list") }
        for p in param where !p.contains("=") { throw ValidationError("--param expects k=v, got \(p)") }
    }

    func run() throws {
        if list {
            for name in QueryRunner.bundledNames {
                let sql = try QueryRunner.sql(for: name).sql
                let first = sql.split(separator: "\n").first { $0.hasPrefix("--") }.map { $0.dropFirst(2).trimmingCharacters(in: .whitespaces) } ?? ""
                print("\(name.padding(toLength: 20, withPad: " ", startingAt: 0))  \(first)")
            }
            return
        }
        if show {
            print(try reporting { try QueryRunner.sql(for: query!).sql }, terminator: "")
            return
        }
        var params: [String: String] = [:]
        for p in param {
            let eq = p.firstIndex(of: "=")!
            params[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        let w = try warehouse.open(create: false)
        let results = try reporting { try QueryRunner(w).run(query!, parameters: params, write: write) }
        for r in results { print(output.format.render(r), terminator: "") }
    }
}

struct DB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Where the warehouse is and its schema version.", subcommands: [Path.self, Status.self, Schema.self, Repair.self])

    struct Path: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the warehouse's path.")
        @OptionGroup var warehouse: WarehouseOptions
        func run() {
            print(URL(fileURLWithPath: warehouse.path).standardizedFileURL.path)
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the schema version and storage facts.")
        @OptionGroup var warehouse: WarehouseOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            let s = try reporting { try warehouse.open(create: false).status() }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(s), as: UTF8.self))
                return
            }
            print("path:           \(s.path)")
            print("schema version: \(s.applied.count) (\(s.applied.last ?? "none"))\(s.upToDate ? ", up to date" : ", this binary knows \(s.known.count)")")
            print("migrations:     \(s.applied.joined(separator: ", "))")
            print("checksums:      \(s.checksums == 0 ? "none recorded yet" : "\(s.checksums) recorded, all match this binary's schema files")")
            print("journal mode:   \(s.journalMode)")
            print("sqlite:         \(s.sqliteVersion)")
            print("size:           \(s.bytes) bytes (\(s.pageCount) pages of \(s.pageSize))")
        }
    }
}

extension DB {
    struct Repair: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring a warehouse made by another version of the schema files to this binary's schema, data kept.",
            discussion: """
                For a warehouse whose recorded migration checksums differ from this binary's files (made by a \
                build with an edited migration): tables of another shape are rebuilt with their rows, indexes, \
                views and triggers replaced, counters recounted, the search index emptied for `rollout serve` \
                to rebuild; then today's checksums are recorded and any due migration applied.
                """)
        @OptionGroup var warehouse: WarehouseOptions

        func run() throws {
            let changes = try reporting { try Warehouse.repair(path: warehouse.path) }
            print("\(warehouse.path): " + (changes.isEmpty ? "already in this binary's schema; checksums recorded" : "repaired"))
            for line in changes.lines { print("  \(line)") }
        }
    }

    struct Schema: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the schema this binary creates: every migration, with its comments.")
        func run() {
            for path in BundledFiles.paths(under: "schema") where path.hasSuffix(".sql") {
                print("-- \(path)")
                print(BundledFiles.text(path)!)
            }
        }
    }
}

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check run configs and the model registry.", subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a run config and its model registry; print the resolved config (no secrets).")
        @Option(name: .long, help: "The run config.") var config = "configs/example.yml"
        @Option(name: .long, help: "The model registry (default: the config's models_config_file).") var models: String?

        func run() throws {
            let c = try reporting { try RunConfig.load(file: config, modelsFile: models) }
            print("\(config): ok — \(c.datasets.count) dataset(s), \(c.models.entries.count) model(s) in \(c.modelsConfigFile)")
            for k in c.unknownKeys { print("  note: unknown key \(k) (ignored)") }
            for v in c.unsetEnvironment() { print("  note: ${\(v)} is not set in this environment") }
            print(c.resolvedJSON.jsonText)
        }
    }
}

struct Quickstart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole job on built-in defaults: ./rollout.db, the bundled example, mock models, 3 samples, grade, pass@k.")
    @OptionGroup var warehouse: WarehouseOptions
    @Option(name: .long, help: "Where to write the example files.") var examples = "rollout-example"
    @Option(name: .long, help: "Rollouts per task.") var samples = 3
    @Option(name: .long, help: "Rollouts in flight at once.") var concurrency = 8

    func run() async throws {
        let w = try warehouse.open()
        let report = try reporting { try w.ingestBundledExample(into: examples) }
        print("warehouse: \(URL(fileURLWithPath: warehouse.path).standardizedFileURL.path)")
        print("example files: \(examples)/ (Rollout-framework layout)")
        print(report.summary)
        let registry = try reporting { try ModelRegistry.loadOrBundled(file: "configs/models.yml", isDefault: true) }
        let agent = RunConfig.Role(model: "mock/agent", temperature: 0.7)
        let user = RunConfig.Role(model: "mock/user", temperature: 1.0)
        let single = try reporting { try w.runnableDomains(cross: false, all: true, named: [], minDomains: nil, requirePolicy: false) }
        let cross = try reporting { try w.runnableDomains(cross: true, all: true, named: [], minDomains: nil, requirePolicy: false) }
        var request = RunRequest(runName: "quickstart", jobs: [
            .init(name: "single", settings: .init(name: "single", mode: .dialogue, agent: agent, user: user, maxTurns: 8, maxStepsPerTurn: 6),
                  selection: .domains(single.map(\.key))),
            .init(name: "cross", settings: .init(name: "cross", mode: .dialogue, agent: agent, user: user, maxTurns: 8, maxStepsPerTurn: 6),
                  selection: .domains(cross.map(\.key))),
        ], registry: registry)
        request.samples = samples
        request.concurrency = concurrency
        request.enableMonitor = true
        let plan = try await reportingAsync { try await w.planRun(request) }
        print("\nrun quickstart: \(plan.rolloutCount) rollouts (\(samples) per task) with mock/agent and mock/user, tools from the bundled MCP server"
              + (plan.alreadyCompleted > 0 ? "; \(plan.alreadyCompleted) already completed" : ""))
        let engine = RolloutEngine(plan: plan, warehouse: w)
        let summary = try await reportingAsync { try await engine.run() }
        print(ProgressLine.summary(summary))
        guard summary.ending == .completed else { throw ExitCode(1) }
        let (graded, passed) = try await reportingAsync { try await w.gradeStopReason(run: "quickstart") }
        print("graded \(graded) rollouts with stop-reason (passed: the user ended with ###STOP###): \(passed) passed")
        let ks = Array(Set([1, samples])).sorted()
        let eval = try reporting {
            try w.evaluate(EvalRequest(run: "quickstart", grader: "stop-reason", ks: ks, by: .domain, short: .cap))
        }
        print("")
        print(ResultFormat.table.render(EvalFormatting.rounded(eval.table)), terminator: "")
        print("""

            Next:
              rollout eval --run quickstart --k 1,2,3 --by dataset           # the table above, any k or grouping
              rollout query pass-at-k --param run=quickstart --param k=3   # the same SQL, as a query
              rollout query runs                                           # runs and their counts
              sqlite3 \(warehouse.path) "SELECT role, substr(content, 1, 60) FROM messages WHERE rollout_id = 1 ORDER BY idx"
              rollout serve                                                # the web viewer: http://127.0.0.1:8765/
              rollout run --config configs/example.yml                      # a Rollout-framework config
            """)
    }
}
