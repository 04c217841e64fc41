import Foundation
import GRDB

extension RunConfig.Role {
    public init(model: String, temperature: Double? = nil, enableThinking: Bool? = nil) {
        self.init(model: model, temperature: temperature, enableThinking: enableThinking, extra: [:])
    }
}

extension RunConfig.Dataset {
    /// Settings for a job chosen on the command line (no config file).
    public init(name: String, mode: Mode, agent: RunConfig.Role, user: RunConfig.Role?, maxTurns: Int = 10,
                maxStepsPerTurn: Int = 10, samples: Int = 1, mcpDomain: String? = nil) {
        self.init(name: name, path: nil, outputPath: nil, mcpDomain: mcpDomain, tools: nil, agent: agent, user: user,
                  maxTurns: maxTurns, maxStepsPerTurn: maxStepsPerTurn, mode: mode, samples: samples, extra: [:])
    }
}

extension RunRequest {
    /// The jobs of a run config: one per dataset (or only the named ones).
    public init(config: RunConfig, runName: String, only: [String] = []) throws {
        var datasets = config.datasets
        if !only.isEmpty {
            let unknown = only.filter { n in !datasets.contains { $0.name == n } }
            if !unknown.isEmpty {
                throw EngineError("\(config.file) has no dataset \(unknown.joined(separator: ", ")); it has \(datasets.map(\.name).joined(separator: ", "))")
            }
            datasets = datasets.filter { only.contains($0.name) }
        }
        self.init(runName: runName, jobs: datasets.map { Job(name: $0.name, settings: $0, selection: .dataset($0.name)) },
                  registry: config.models)
        enableMonitor = config.enableMonitor
        monitorMaxNoToolTurns = config.monitorMaxNoToolTurns
        concurrency = config.maxWorkers
        if let file = config.datasets.first(where: { $0.extra["user_guidelines"] != nil })?.extra["user_guidelines"]?.stringValue {
            userGuidelines = try String(contentsOfFile: file, encoding: .utf8)
        }
    }
}

extension Warehouse {
    /// Ingests what a run config's datasets point at (queries or QA files, tool lists), so
    /// `rollout run --config` works on a fresh warehouse. Unchanged files change nothing. All
    /// files go in one transaction: a broken one leaves the warehouse as it was.
    public func ingestConfigDatasets(_ config: RunConfig, only: [String] = []) throws -> [IngestReport] {
        var steps: [IngestStep] = []
        for d in config.datasets where only.isEmpty || only.contains(d.name) {
            let domain = d.mcpDomain ?? d.name
            if let tools = d.tools {
                guard FileManager.default.fileExists(atPath: tools) else {
                    throw EngineError("\(config.file): datasets.\(d.name).tools: \(tools) not found")
                }
                steps.append(IngestStep(kind: "tools", source: tools) { session in
                    try Self.ingestTools(session, file: tools, server: domain, domains: [domain])
                })
            }
            if let path = d.path {
                guard FileManager.default.fileExists(atPath: path) else {
                    throw EngineError("\(config.file): datasets.\(d.name).path: \(path) not found")
                }
                switch d.mode {
                case .dialogue:
                    steps.append(IngestStep(kind: "queries", source: path) { session in
                        let key: DomainKey
                        do { key = try DomainKey([domain]) } catch let e as FieldError { throw IngestError(file: path, field: "mcp_domain", e.reason) }
                        try Self.ingestQueries(session, file: path, key: key, dataset: d.name)
                    })
                case .task:
                    steps.append(IngestStep(kind: "qa", source: path) { session in
                        try Self.ingestQA(session, file: path, dataset: d.name)
                    })
                }
            }
        }
        // A FIFO or device among them is refused before the transaction holds the lock.
        try RecordFiles.checkInputs(files: config.datasets.filter { only.isEmpty || only.contains($0.name) }
            .flatMap { [$0.tools, $0.path].compactMap { $0 } })
        return steps.isEmpty ? [] : try ingestTogether(steps, options: IngestOptions())
    }

    /// Domain keys for `rollout run single|cross`: the named ones, or with `all` every key
    /// (single domains, or combinations of at least `minDomains`) that has tasks.
    public func runnableDomains(cross: Bool, all: Bool, named: [String], minDomains: Int?, requirePolicy: Bool) throws -> [DomainListing] {
        var params: [String: String] = [:]
        if cross { params["cross"] = "1" }
        if let minDomains { params["min_domains"] = String(minDomains) }
        if requirePolicy { params["require_policy"] = "1" }
        let result = try QueryRunner(self).run("domains", parameters: params)[0]
        func int(_ v: QueryValue) -> Int { if case .integer(let i) = v { return Int(i) }; return 0 }
        var listings: [DomainListing] = result.rows.compactMap { row in
            guard case .text(let key) = row[0] else { return nil }
            let size = int(row[1])
            guard cross ? size > 1 : size == 1 else { return nil }
            return DomainListing(key: key, members: size, policy: row[2].text, tools: int(row[3]), tasks: int(row[4]), toolNames: [])
        }
        if !all {
            var wanted: [String] = []
            for name in named {
                let key: String
                do { key = try DomainKey(name.split(whereSeparator: { $0 == "+" || $0 == "," }).map(String.init)).key } catch {
                    throw EngineError("bad domain \"\(name)\": \(error)")
                }
                wanted.append(key)
            }
            if cross && named.count > 1 && !named.contains(where: { $0.contains("+") }) {
                // `run cross --domains A B`: the combinations made of those domains only.
                let set = Set(named)
                listings = listings.filter { Set($0.key.split(separator: "+").map(String.init)).isSubset(of: set) }
            } else {
                let missing = wanted.filter { w in !listings.contains { $0.key == w } }
                if !missing.isEmpty {
                    throw EngineError("no \(cross ? "combination" : "domain") \(missing.joined(separator: ", ")) with the filters given; see `rollout domains`")
                }
                listings = listings.filter { wanted.contains($0.key) }
            }
        }
        listings = listings.filter { $0.tasks > 0 }
        try writer.read { db in
            for i in listings.indices {
                listings[i].toolNames = try self.toolset(domainKey: listings[i].key, db).specifications.map(\.name)
            }
        }
        return listings
    }
}

/// A domain or combination as `rollout run single|cross --list` shows it.
public struct DomainListing: Sendable, Equatable {
    public var key: String
    public var members: Int
    /// `own`, `members` (a combination whose members all have one) or `missing`.
    public var policy: String
    public var tools: Int
    public var tasks: Int
    public var toolNames: [String]
}
