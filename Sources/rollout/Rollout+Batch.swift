import ArgumentParser
import Foundation
import RolloutKit

/// Model and sampling options shared by the commands that write requests.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "The Batch API the requests are written for: openai or anthropic.") var provider = "openai"
    @Option(name: .long, help: "The model name written into each request body.") var model: String?
    @Option(name: .long, help: "Sampling temperature.") var temperature: Double?
    @Option(name: .long, help: "Nucleus sampling top_p.") var topP: Double?
    @Option(name: .long, help: "Most tokens to generate (Anthropic requires one; default 4096 there).") var maxTokens: Int?
    @Flag(name: .long, help: "Ask the model to think (see --thinking-style).") var enableThinking = false
    @Option(name: .long, help: "Thinking token budget.") var thinkingBudget: Int?
    @Option(name: .long, help: "How an OpenAI-compatible server is told to think: chat_template_kwargs (vLLM/SGLang), reasoning_effort, fields (top-level enable_thinking + thinking_budget), none.")
    var thinkingStyle = "chat_template_kwargs"

    var batchProvider: BatchProvider {
        get throws {
            guard let p = BatchProvider(rawValue: provider) else { throw ValidationError("--provider is openai or anthropic, not \(provider)") }
            return p
        }
    }

    func options(defaultModel: String? = nil) throws -> BatchRequestOptions? {
        guard let m = model ?? defaultModel else { return nil }
        guard let style = BatchThinkingStyle(rawValue: thinkingStyle) else {
            throw ValidationError("--thinking-style is one of \(BatchThinkingStyle.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return BatchRequestOptions(provider: try batchProvider, model: m, temperature: temperature, topP: topP, maxTokens: maxTokens,
                                   enableThinking: enableThinking, thinkingBudget: thinkingBudget, thinkingStyle: style)
    }

    /// Whether any sampling option was given (a later stage otherwise reuses the earlier one's).
    var anyGiven: Bool { model != nil || temperature != nil || topP != nil || maxTokens != nil || enableThinking || thinkingBudget != nil }
}

func parseRange(_ text: String?) throws -> IDRange? {
    guard let text else { return nil }
    do { return try IDRange(parsing: text) } catch { throw ValidationError("\(error)") }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Where a submitted batch's provider is: --api-base, else what the batch recorded, else the
/// provider's public endpoint; the key from --api-key-env (default OPENAI_API_KEY /
/// ANTHROPIC_API_KEY).
struct RemoteOptions: ParsableArguments {
    @Option(name: .long, help: "The provider's base URL (OpenAI: …/v1; Anthropic: https://api.anthropic.com).") var apiBase: String?
    @Option(name: .long, help: "The environment variable holding the API key (default OPENAI_API_KEY or ANTHROPIC_API_KEY).") var apiKeyEnv: String?

    func endpoint(for name: String, warehouse: Warehouse) throws -> BatchEndpoint {
        let rows = try warehouse.batchParts(name)
        guard let first = rows.first else { throw CLIError("no batch named \(name) (see: rollout batch list)") }
        let provider = BatchProvider(rawValue: first.provider) ?? .openai
        var e = BatchEndpoint.standard(provider)
        if let recorded = first.apiBase { e.apiBase = recorded }
        if let apiBase { e = BatchEndpoint(provider: provider, apiBase: apiBase, apiKey: e.apiKey) }
        if let apiKeyEnv { e.apiKey = ProcessInfo.processInfo.environment[apiKeyEnv] }
        return e
    }
}

struct BatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Batch API request files as rows: create, submit, poll, fetch, ingest, cancel, or run them on your own server.",
        subcommands: [Create.self, List.self, Ingest.self, Submit.self, Status.self, Fetch.self, Cancel.self, RunLocal.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write request files (split at the provider's limits) and their batch_requests rows.",
            discussion: """
                From a query: rollout batch create --name qa1 --from-sql "SELECT external_id AS custom_id, opening AS prompt FROM tasks" --model gpt-4o-mini
                From an Agentless stage: rollout batch create --name lite.loc --stage bugfix-localize --model gpt-4o --passk 4
                The query's columns: custom_id (or task_id), then body (a whole request body), messages (JSON array) or prompt (+ system); optional sample, temperature.
                """)
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var sampling: SamplingOptions
        @Option(name: .long, help: "The batch's name.") var name: String
        @Option(name: .long, help: "An Agentless stage: bugfix-localize, testwrite-localize, bugfix-repair, testwrite-repair.") var stage: String?
        @Option(name: .long, help: "A read-only SQL query, or a .sql file, giving the requests.") var fromSql: String?
        @Option(name: .long, help: "For a -repair stage: the localize batch whose answers it reads.") var from: String?
        @Option(name: .long, help: "SWE-bench dataset (localize stages; default: the only one).") var dataset: String?
        @Option(name: .long, help: "Only these instances (localize stages; repeatable).") var instance: [String] = []
        @Option(name: .long, help: "Samples per prompt: custom ids {id}__pass{i} when > 1.") var passk = 1
        @Option(name: .long, help: "Positions FROM:TO of the sorted custom ids (e.g. 0:500).") var range: String?
        @Flag(name: .long, help: "Replace \\r\\n by \\n in problem statements.") var convertCrlf = false
        @Option(name: .long, help: "Folder for the request files.") var outputDir = "batches"
        @Option(name: .long, help: "Requests per part (default: the provider's limit).") var maxRequests: Int?
        @Option(name: .long, help: "Bytes per part (default: the provider's limit).") var maxBytes: Int?
        @Flag(name: .long, help: "Drop an existing batch of this name even if it was submitted or has results.") var replace = false
        @Flag(name: .long, help: "Print the report as JSON.") var json = false

        func validate() throws {
            if (stage == nil) == (fromSql == nil) { throw ValidationError("give one of --stage and --from-sql") }
            if passk < 1 { throw ValidationError("--passk must be at least 1") }
        }

        func run() throws {
            let w = try warehouse.open()
            let provider = try sampling.batchProvider
            var limits: BatchLimits?
            if maxRequests != nil || maxBytes != nil {
                limits = BatchLimits(maxRequests: maxRequests ?? provider.limits.maxRequests, maxBytes: maxBytes ?? provider.limits.maxBytes)
            }
            let r = try parseRange(range)
            let report: BatchCreateReport
            if let fromSql {
                guard let options = try sampling.options() else { throw ValidationError("--from-sql needs --model") }
                let sql = fromSql.hasSuffix(".sql") ? try String(contentsOfFile: fromSql, encoding: .utf8) : fromSql
                report = try reporting {
                    try w.createBatch(name: name, fromSQL: BatchQuerySource(sql: sql, passk: passk, range: r), options: options,
                                      directory: outputDir, limits: limits, replace: replace)
                }
            } else {
                let parts = stage!.split(separator: "-").map(String.init)
                guard parts.count == 2, let pipeline = AgentlessPipeline(rawValue: parts[0]), ["localize", "repair"].contains(parts[1]) else {
                    throw ValidationError("--stage is one of bugfix-localize, testwrite-localize, bugfix-repair, testwrite-repair")
                }
                var o = AgentlessOptions(pipeline: pipeline, name: name, directory: outputDir)
                o.dataset = dataset
                o.instances = instance
                o.passk = passk
                o.range = r
                o.convertCRLF = convertCrlf
                o.limits = limits
                o.replace = replace
                if parts[1] == "localize" {
                    o.localizeBatchName = name
                    guard let options = try sampling.options() else { throw ValidationError("--stage \(stage!) needs --model") }
                    o.request = options
                    report = try reporting { try w.agentlessLocalize(o) }
                } else {
                    guard let from else { throw ValidationError("--stage \(stage!) needs --from LOCALIZE_BATCH") }
                    o.localizeBatchName = from
                    o.repairBatchName = name
                    o.request = sampling.anyGiven ? try sampling.options() : nil
                    let stageReport = try reporting { try w.agentlessRepair(o) }
                    printError(stageReport.summary.components(separatedBy: "\n").first ?? "")
                    report = stageReport.batch!
                }
            }
            if json { try printJSON(report) } else { print(report.summary) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The batches in the warehouse: parts, status, requests and results.")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let w = try warehouse.open(create: false)
            for r in try reporting({ try QueryRunner(w).run("batches") }) { print(output.format.render(r), terminator: "") }
        }
    }

    struct Ingest: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest Batch API output and error files (OpenAI or Anthropic) into batch_results and llm_calls.",
            discussion: "Example: rollout batch ingest batch_abc_output.jsonl --errors batch_abc_error.jsonl --batch lite.localize")
        @OptionGroup var warehouse: WarehouseOptions
        @Argument(help: "Output (or results) files.") var files: [String] = []
        @Option(name: .long, help: "Error files (repeatable).") var errors: [String] = []
        @Option(name: .long, help: "The batch (default: found from the files' custom ids).") var batch: String?
        @Flag(name: .long, help: "Print the report as JSON.") var json = false

        func validate() throws { if files.isEmpty && errors.isEmpty { throw ValidationError("name at least one file") } }

        func run() throws {
            let w = try warehouse.open()
            let report = try reporting { try w.ingestBatchResults(files: files + errors, batch: batch) }
            if json { try printJSON(report) } else { print(report.summary) }
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload each part not yet submitted and start its batch (OpenAI Files + Batches, Anthropic Message Batches).",
            discussion: "Example: OPENAI_API_KEY=… rollout batch submit lite.localize")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The batch.") var name: String
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let w = try warehouse.open()
            let endpoint = try reporting { try remote.endpoint(for: name, warehouse: w) }
            let client = BatchClient(warehouse: w)
            let result = await Result.capture { try await client.submit(name, endpoint: endpoint) }
            try await client.shutdown()
            try printStatus(try reporting { try result.get() }, json: json)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the provider how each part is doing (validating → in_progress → finalizing → completed …) and record it.",
            discussion: "Example: rollout batch status lite.localize --wait --interval 60")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The batch.") var name: String
        @Flag(name: .long, help: "Poll until every part has ended.") var wait = false
        @Option(name: .long, help: "Seconds between polls with --wait.") var interval = 30.0
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let w = try warehouse.open()
            let endpoint = try reporting { try remote.endpoint(for: name, warehouse: w) }
            let client = BatchClient(warehouse: w)
            let quiet = json
            let result = await Result.capture {
                wait ? try await client.wait(name, endpoint: endpoint, interval: .milliseconds(Int64(interval * 1000))) { rows in
                    if !quiet { printError(rows.map { "part \($0.part): \($0.status)" }.joined(separator: ", ")) }
                } : try await client.refresh(name, endpoint: endpoint)
            }
            try await client.shutdown()
            try printStatus(try reporting { try result.get() }, json: json)
        }
    }

    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download the output and error files of every part that has ended and ingest them.",
            discussion: "Example: rollout batch fetch lite.localize --output-dir batches")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The batch.") var name: String
        @Option(name: .long, help: "Folder for the downloaded files.") var outputDir = "batches"
        @Flag(name: .long, help: "Only download; do not ingest.") var noIngest = false
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let w = try warehouse.open()
            let endpoint = try reporting { try remote.endpoint(for: name, warehouse: w) }
            let client = BatchClient(warehouse: w)
            let result = await Result.capture { try await client.fetch(name, endpoint: endpoint, directory: outputDir, ingest: !noIngest) }
            try await client.shutdown()
            let (files, report) = try reporting { try result.get() }
            if json {
                try printJSON(report)
                return
            }
            if files.isEmpty { print("nothing to fetch: no part of \(name) has ended (see: rollout batch status \(name))") }
            for f in files { print("downloaded \(f)") }
            if let report { print(report.summary) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask the provider to cancel every part that has not ended.",
                                                        discussion: "Example: rollout batch cancel lite.localize")
        @OptionGroup var warehouse: WarehouseOptions
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The batch.") var name: String
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let w = try warehouse.open()
            let endpoint = try reporting { try remote.endpoint(for: name, warehouse: w) }
            let client = BatchClient(warehouse: w)
            let result = await Result.capture { try await client.cancel(name, endpoint: endpoint) }
            try await client.shutdown()
            try printStatus(try reporting { try result.get() }, json: json)
        }
    }

    struct RunLocal: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run-local",
            abstract: "Run a batch request file against your own OpenAI-compatible (or Anthropic-compatible) server; writes the provider's output format; resumable.",
            discussion: "Example: rollout batch run-local batches/lite.localize.part0.jsonl --endpoint http://gpu-box:8000/v1 --concurrency 256 --model Qwen/Qwen3-8B")
        @Argument(help: "The request file.") var file: String
        @Option(name: .long, help: "Base URL: http://host:port/v1 (OpenAI-compatible) or http://host:port (Anthropic-compatible).") var endpoint: String
        @Option(name: .long, help: "Requests in flight.") var concurrency = 64
        @Option(name: .long, help: "Output file (default: FILE without .jsonl + .output.jsonl); an existing one must be this input's run-local output, which is resumed.") var output: String?
        @Option(name: .long, help: "Errors file (default: … .errors.jsonl); never the input or the output file.") var errors: String?
        @Option(name: .long, help: "Replace every request's model.") var model: String?
        @Option(name: .long, help: "The environment variable holding the server's API key, if it wants one.") var apiKeyEnv: String?
        @Option(name: .long, help: "Positions FROM:TO of the sorted custom ids.") var range: String?
        @Option(name: .long, help: "Attempts per request.") var maxAttempts = 5
        @Flag(name: .long, help: "Print the report as JSON.") var json = false

        func validate() throws { if concurrency < 1 { throw ValidationError("--concurrency must be at least 1") } }

        func run() async throws {
            var o = LocalRunOptions(input: file, endpoint: endpoint)
            o.output = output
            o.errors = errors
            o.concurrency = concurrency
            o.model = model
            o.range = try parseRange(range)
            o.apiKey = apiKeyEnv.flatMap { ProcessInfo.processInfo.environment[$0] }
            o.policy.maxAttempts = maxAttempts
            let tty = isatty(STDERR_FILENO) != 0
            var progress: (@Sendable (Int, Int) -> Void)?
            if tty {
                progress = { (done: Int, total: Int) -> Void in
                    if done % 50 == 0 || done == total { printProgress("\r  \(done)/\(total) requests") }
                }
            }
            let options = o
            let report = try await reportingAsync { [progress] in try await LocalBatchRunner.run(options, progress: progress) }
            if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            if json { try printJSON(report) } else { print(report.summary) }
            if report.failed > 0 { throw ExitCode(3) }
        }
    }
}

func printStatus(_ rows: [BatchPartStatus], json: Bool) throws {
    if json {
        try printJSON(rows)
        return
    }
    print("name  part  provider  status  remote_id  requests  completed  failed")
    for r in rows {
        print([r.name, String(r.part), r.provider, r.status, r.remoteID ?? "-", String(r.requests),
               r.completed.map(String.init) ?? "-", r.failed.map(String.init) ?? "-"].joined(separator: "  "))
        if let m = r.message { print("  \(m)") }
    }
}

extension Result where Failure == any Error {
    /// The outcome of an async body, so a client can be shut down before an error is thrown.
    static func capture(_ body: () async throws -> Success) async -> Result {
        do { return .success(try await body()) } catch { return .failure(error) }
    }
}

func printProgress(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}
