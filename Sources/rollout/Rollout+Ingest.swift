import ArgumentParser
import Foundation
import RolloutKit

struct IngestFlags: ParsableArguments {
    @Flag(name: .long, help: "Skip bad records (recorded in ingest_errors) instead of aborting with no change.")
    var skipInvalid = false
    @Flag(name: .long, help: "Print the report as JSON.") var json = false

    var options: IngestOptions {
        // A progress line on stderr, only when a person is watching it.
        guard isatty(STDERR_FILENO) != 0 else { return IngestOptions(skipInvalid: skipInvalid) }
        return IngestOptions(skipInvalid: skipInvalid) { n in
            FileHandle.standardError.write(Data("\r  \(n) records read…".utf8))
        }
    }

    func print(_ report: IngestReport) throws {
        if isatty(STDERR_FILENO) != 0 && report.lines >= 65536 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        if json {
            let data = try JSONEncoder().encode(report)
            Swift.print(String(decoding: data, as: UTF8.self))
        } else {
            Swift.print(report.summary)
        }
    }
}

struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load datasets, policies, tools, servers and trajectories into the warehouse.",
        discussion: "Each ingest is one transaction and idempotent: re-ingesting a file adds nothing; a changed record is updated and counted.",
        subcommands: [Dir.self, Queries.self, Policy.self, Tools.self, Server.self, Tau2.self, QA.self,
                      SWEBench.self, RepoStructures.self, Trajectories.self]
    )

    struct Dir: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest a Rollout-framework folder: single_domain/ and cross_domain/ with queries/, policies/, tool_lists/.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The folder.") var path: String

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestDirectory(path, options: flags.options) })
        }
    }

    struct Queries: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest a queries JSONL for a domain (several --domain for a cross-domain combination).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The queries JSONL file.") var file: String
        @Option(name: .long, help: "A domain the tasks belong to (repeat for a combination).") var domain: [String] = []
        @Option(name: .long, help: "Dataset name (default: the file name without .jsonl).") var dataset: String?

        func validate() throws {
            if domain.isEmpty { throw ValidationError("give at least one --domain") }
        }

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestQueries(file: file, domains: domain, dataset: dataset, options: flags.options) })
        }
    }

    struct Policy: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ingest a policy markdown file for a domain or combination.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The policy .md file.") var file: String
        @Option(name: .long, help: "The domain (repeat for a combination).") var domain: [String] = []

        func validate() throws {
            if domain.isEmpty { throw ValidationError("give at least one --domain") }
        }

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestPolicy(file: file, domains: domain, options: flags.options) })
        }
    }

    struct Tools: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest an OpenAI tool list ([{\"type\":\"function\",\"function\":{…}}]) for a server.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The tool list JSON file.") var file: String
        @Option(name: .long, help: "The server the tools belong to.") var server: String
        @Option(name: .long, help: "A domain that uses this server (repeatable).") var domain: [String] = []

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestTools(file: file, server: server, domains: domain, options: flags.options) })
        }
    }

    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register how to launch an MCP tool server over stdio.",
            discussion: "Secrets in --env and --arg must be references (KEY=${KEY}, --api-key=${API_KEY}); they are expanded at launch, never stored. A literal credential is refused.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The server name.") var name: String
        @Option(name: .long, help: "The program to run.") var command: String
        @Option(name: .customLong("arg"), parsing: .unconditionalSingleValue, help: "An argument (repeatable, in order; ${VAR} is expanded at launch).")
        var args: [String] = []
        @Option(name: .long, help: "An environment variable KEY=VALUE (repeatable).") var env: [String] = []
        @Option(name: .long, help: "Working directory for the server.") var cwd: String?
        @Option(name: .long, help: "A domain whose tools this server provides (repeatable).") var domain: [String] = []
        @Option(name: .customLong("session-arg"), help: ArgumentHelp(
            "A tool argument the server keeps per-session state by: NAME or NAME=TEMPLATE.",
            discussion: "Hidden from the agent and set on every call; TEMPLATE may use {session} (required), {task}, {run}, {sample}, {attempt}, {domain}. Default {session}."))
        var sessionArg: String?

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting {
                try w.ingestServer(name: name, command: command, args: args, env: env, cwd: cwd, domains: domain,
                                   sessionArgument: sessionArg)
            })
        }
    }

    struct Tau2: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tau2",
            abstract: "Ingest a τ²-bench domain folder (policy.md, tasks.json, split_tasks.json, agent_tools.json).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The domain folder.") var directory: String
        @Option(name: .long, help: "Domain name (default: the folder name).") var domain: String?
        @Option(name: .long, help: "Dataset name (default: tau2-DOMAIN).") var dataset: String?
        @Option(name: .long, help: "Tool schema file (default: agent_tools.json in the folder).") var tools: String?

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting {
                try w.ingestTau2(directory: directory, domain: domain, dataset: dataset, tools: tools, options: flags.options)
            })
        }
    }

    struct QA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "qa", abstract: "Ingest {\"question\",\"answer\"} lines (DeepResearch-style QA sets).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The JSONL file.") var file: String
        @Option(name: .long, help: "Dataset name.") var dataset: String

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestQA(file: file, dataset: dataset, options: flags.options) })
        }
    }

    struct SWEBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "swebench", abstract: "Ingest SWE-bench instances (JSONL or a JSON array).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The instances file.") var file: String
        @Option(name: .long, help: "Dataset name.") var dataset: String

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestSWEBench(file: file, dataset: dataset, options: flags.options) })
        }
    }

    struct RepoStructures: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "repo-structures", abstract: "Ingest Agentless <instance_id>.json repository structures from a folder.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The folder (or one file).") var directory: String

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting { try w.ingestRepoStructures(directory: directory, options: flags.options) })
        }
    }

    struct Trajectories: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import trajectories as a run (rollout, deepresearch, tau-bench or training format).")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var flags: IngestFlags
        @Argument(help: "The results file.") var file: String
        @Option(name: .customLong("run"), help: "Run name to import into.") var runName: String
        @Option(name: .long, help: "rollout | deepresearch | tau-bench | training") var format: String
        @Option(name: .long, help: "Dataset whose tasks the rollouts answer (default: the run name).") var dataset: String?

        func validate() throws {
            if TrajectoryFormat(rawValue: format) == nil {
                throw ValidationError("unknown --format \(format) (expected \(TrajectoryFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }

        func run() throws {
            let w = try warehouse.open()
            try flags.print(try reporting {
                try w.ingestTrajectories(file: file, run: runName, format: TrajectoryFormat(rawValue: format)!, dataset: dataset,
                                         options: flags.options)
            })
        }
    }
}
