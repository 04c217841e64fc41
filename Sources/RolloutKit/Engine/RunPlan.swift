import Foundation
import GRDB

/// What to run: the jobs (a config's datasets, or a CLI selection of domains or a QA set),
/// their settings, and how. Built by the CLI, turned into rows by `Warehouse.planRun`.
public struct RunRequest: Sendable {
    public struct Job: Sendable {
        public enum Selection: Sendable, Equatable {
            /// Every task of the dataset with this name.
            case dataset(String)
            /// Every dialogue task of these domain keys (`Library`, `CityTransit+Library`).
            case domains([String])
        }

        /// The name the job's settings are stored under in the run's config.
        public var name: String
        public var settings: RunConfig.Dataset
        public var selection: Selection

        public init(name: String, settings: RunConfig.Dataset, selection: Selection) {
            self.name = name
            self.settings = settings
            self.selection = selection
        }
    }

    public var runName: String
    public var jobs: [Job]
    public var registry: ModelRegistry
    public var enableMonitor = false
    public var monitorMaxNoToolTurns = 3
    /// Rollouts in flight at once.
    public var concurrency = 8
    /// Samples per task (overrides the jobs' `samples`).
    public var samples: Int?
    /// At most this many tasks per job (the first by id).
    public var limit: Int?
    /// Only these tasks (external ids).
    public var taskIDs: [String] = []
    /// Run only the share `index` of `count` (0-based), split by task.
    public var shard: (index: Int, count: Int)?
    /// Continue the run of this name (default); false starts a new run, renaming when taken.
    public var resume = true
    /// Continue a run although its configuration changed.
    public var force = false
    /// Attempts per sample: a failed one is retried until this many have failed.
    public var maxAttempts = 3
    /// The user simulator's guidelines (default: `UserSimulator.defaultGuidelines`).
    public var userGuidelines: String?

    public init(runName: String, jobs: [Job], registry: ModelRegistry) {
        self.runName = runName
        self.jobs = jobs
        self.registry = registry
    }

    /// The configuration stored in the run row: every setting that shapes a rollout, no
    /// secrets, no operational knobs (concurrency, limits, shards, samples).
    func configJSON(domains: [String: String]) -> JSONValue {
        var jobsJSON = JSONObject()
        for job in jobs {
            var o = JSONObject()
            let d = job.settings
            switch job.selection {
            case .dataset(let name): o["dataset"] = .string(name)
            case .domains(let keys): o["domains"] = .array(keys.map(JSONValue.string))
            }
            o["mode"] = .string(d.mode.rawValue)
            o["agent"] = roleJSON(d.agent)
            if let u = d.user { o["user"] = roleJSON(u) }
            o["max_turns"] = JSONValue(d.maxTurns)
            o["max_steps_per_turn"] = JSONValue(d.maxStepsPerTurn)
            if let p = d.mcpDomain { o["mcp_domain"] = .string(p) }
            for (k, v) in d.extra { o[k] = v }
            jobsJSON[job.name] = .object(o)
        }
        var root = JSONObject()
        root["jobs"] = .object(jobsJSON)
        root["enable_monitor"] = .bool(enableMonitor)
        root["monitor_max_no_tool_turns"] = JSONValue(monitorMaxNoToolTurns)
        root["user_guidelines_sha256"] = .string(Hashing.sha256Hex(userGuidelines ?? UserSimulator.defaultGuidelines))
        root["domains"] = .object(JSONObject(pairs: domains.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
        return .object(root)
    }

    private func roleJSON(_ r: RunConfig.Role) -> JSONValue {
        var o = JSONObject()
        o["model"] = .string(r.model)
        if let t = r.temperature { o["temperature"] = JSONValue(t) }
        if let e = r.enableThinking { o["enable_thinking"] = .bool(e) }
        for (k, v) in r.extra { o[k] = v }
        if let m = registry.entry(named: r.model) { o["registry"] = m.publicJSON }
        return .object(o)
    }
}

/// One rollout to run: a claimed row.
struct WorkItem: Sendable {
    var rolloutID: Int64
    var taskID: Int64
    var sample: Int
    var attempt: Int
    var job: Int
    /// The domain whose policy and tools the agent gets (nil: none).
    var domainKey: String?
}

/// A run made ready: its row, this process's worker on it, the rollouts waiting to be claimed,
/// and what each domain offers.
public struct RunPlan: Sendable {
    public var runID: Int64
    public var runName: String
    public var request: RunRequest
    /// This process's worker on the run (`run_workers.id`).
    public var workerID: Int64
    /// Per task of this process's selection: its job and domain.
    var routes: [Int64: TaskRoute]
    /// Whether the run has tasks outside this process's selection (--limit, --task, --shard):
    /// then it claims only rollouts of its own tasks.
    var claimsFiltered: Bool
    var domains: [String: DomainSetup]
    /// Pending rollouts of the selection when planned: new samples, re-attempts of interrupted
    /// and failed ones. Any worker of the run may claim them.
    public var rolloutCount: Int
    /// Samples already completed, not run again.
    public var alreadyCompleted: Int
    /// Samples whose failed attempts reached `maxAttempts`; not run again.
    public var givenUp: Int
    /// Samples another live process is running now.
    public var runningElsewhere: Int
    /// The other processes working on the run when it was planned.
    public var otherWorkers: [String]
    /// Tasks per job, after --limit, --task and --shard.
    public var tasksPerJob: [String: Int]
    /// Whether an existing run is continued.
    public var resumed: Bool
}

/// Which job a task belongs to and whose domain's policy and tools its rollouts get.
struct TaskRoute: Sendable {
    var job: Int
    var domainKey: String?
}

/// The system prompt and tools of one domain in a run.
struct DomainSetup: Sendable {
    var policy: String?
    var toolset: Toolset
    var hash: String
}

extension Warehouse {
    /// Creates or continues the run: checks its configuration, records the tasks, samples,
    /// policies and tool lists it uses, registers this process as a worker of the run, and
    /// makes a pending row for every sample still to run (new samples, and interrupted or
    /// failed ones within the attempt limit). Rollouts another live process is running are
    /// left to it; those of a process that is gone are interrupted and re-attempted.
    public func planRun(_ request: RunRequest) async throws -> RunPlan {
        guard !request.jobs.isEmpty else { throw EngineError("nothing to run: no datasets or domains selected") }
        // Which domain each job's tasks get their policy and tools from.
        let selected = try await writer.read { db in try Self.selectTasks(request, db) }
        let domainKeys = Set(selected.flatMap { $0.tasks.compactMap(\.domainKey) }).sorted()
        // Servers with a command but no stored tools: ask them (tools/list) and store the list.
        let missing = try await writer.read { db in
            try Set(domainKeys.flatMap { try self.serversWithoutTools(domainKey: $0, db) }).sorted()
        }
        for server in missing { _ = try await syncTools(server: server) }
        let domains: [String: DomainSetup] = try await writer.read { db in
            var domains: [String: DomainSetup] = [:]
            for key in domainKeys {
                let policy = try self.policy(domainKey: key, db)
                let toolset = try self.toolset(domainKey: key, db)
                let hash = Hashing.sha256Hex((policy ?? "") + "\u{0}" + toolset.json.jsonText)
                domains[key] = DomainSetup(policy: policy, toolset: toolset, hash: hash)
            }
            return domains
        }
        let config = request.configJSON(domains: domains.mapValues(\.hash))
        let configHash = Hashing.sha256Hex(config.jsonText)
        let domainsForWrite = domains
        return try await writer.write { db in
            let now = Timestamp.now()
            var name = request.runName
            var runID: Int64
            var resumed = false
            if let row = try Row.fetchOne(db, sql: "SELECT id, config_hash, mode FROM runs WHERE name = ?", arguments: [name]) {
                if request.resume {
                    let mode: String = row["mode"]
                    guard mode == "dialogue" || mode == "task" else {
                        throw EngineError("run \(name) holds \(mode) rollouts; pick another name with --run")
                    }
                    runID = row["id"]
                    if (row["config_hash"] as String?) != configHash {
                        guard request.force else {
                            throw EngineError("run \(name) was started with a different configuration (models, prompts, tools or limits changed); pass --force to continue it with this one, or --run NEW to start another run")
                        }
                        try db.execute(sql: "UPDATE runs SET config = ?, config_hash = ? WHERE id = ?",
                                       arguments: [config.jsonText, configHash, runID])
                    }
                    resumed = true
                } else {
                    var n = 2
                    while try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE name = ?", arguments: ["\(request.runName)-\(n)"]) == true { n += 1 }
                    name = "\(request.runName)-\(n)"
                    runID = try Self.insertRun(db, name: name, request: request, config: config, hash: configHash, now: now)
                }
            } else {
                runID = try Self.insertRun(db, name: name, request: request, config: config, hash: configHash, now: now)
            }
            try db.execute(sql: "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?), finished_at = NULL WHERE id = ?",
                           arguments: [now, runID])
            for (key, setup) in domainsForWrite {
                guard let domainID = try Int64.fetchOne(db, sql: "SELECT id FROM domains WHERE key = ?", arguments: [key]) else { continue }
                try db.execute(sql: """
                    INSERT INTO run_domains(run_id, domain_id, policy, tools, routes, hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(run_id, domain_id) DO UPDATE SET policy = excluded.policy, tools = excluded.tools,
                        routes = excluded.routes, hash = excluded.hash WHERE run_domains.hash IS NOT excluded.hash
                    """, arguments: [runID, domainID, setup.policy, setup.toolset.json.jsonText, setup.toolset.routesJSON.jsonText,
                                     setup.hash, now])
            }
            // The plan: tasks and samples; a later call can only raise a task's samples.
            let upsert = try db.makeStatement(sql: """
                INSERT INTO run_tasks(run_id, task_id, job, samples) VALUES (?, ?, ?, ?)
                ON CONFLICT(run_id, task_id) DO UPDATE SET samples = max(samples, excluded.samples), job = excluded.job
                """)
            for (j, sel) in selected.enumerated() {
                let samples = request.samples ?? request.jobs[j].settings.samples
                for t in sel.tasks { try upsert.execute(arguments: [runID, t.id, request.jobs[j].name, samples]) }
            }
            // Workers that are gone leave their running rollouts to be re-attempted; this one joins.
            let others = try RunWorkers.reap(db, runID: runID, exclude: nil, now: now)
            let workerID = try RunWorkers.register(db, runID: runID, now: now)
            // Existing attempts, per (task, sample): the latest one's id, attempt and status,
            // and how many failed.
            var latest: [Int64: [Int: (id: Int64, attempt: Int, status: String, failed: Int)]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, task_id, sample, attempt, status FROM rollouts WHERE run_id = ? ORDER BY task_id, sample, attempt",
                                        arguments: [runID]) {
                let status: String = row["status"]
                let previous = latest[row["task_id"]]?[row["sample"]]
                latest[row["task_id"], default: [:]][row["sample"]] = (row["id"], row["attempt"], status,
                                                                       (previous?.failed ?? 0) + (status == "failed" ? 1 : 0))
            }
            let insert = try db.makeStatement(sql: """
                INSERT INTO rollouts(run_id, task_id, sample, attempt, status) VALUES (?, ?, ?, ?, 'pending')
                """)
            var routes: [Int64: TaskRoute] = [:]
            var pending = 0, completed = 0, givenUp = 0, elsewhere = 0
            for (j, sel) in selected.enumerated() {
                for t in sel.tasks {
                    routes[t.id] = TaskRoute(job: j, domainKey: t.domainKey)
                    let samples = try Int.fetchOne(db, sql: "SELECT samples FROM run_tasks WHERE run_id = ? AND task_id = ?",
                                                   arguments: [runID, t.id]) ?? 1
                    for sample in 0..<samples {
                        var next = 0
                        if let last = latest[t.id]?[sample] {
                            switch last.status {
                            case "completed":
                                completed += 1
                                continue
                            case "pending":
                                pending += 1
                                continue
                            case "running":
                                // Its worker is live (reap interrupted the others'): left to it.
                                elsewhere += 1
                                continue
                            case "failed" where last.failed >= request.maxAttempts:
                                givenUp += 1
                                continue
                            default: // interrupted, or failed within the attempt limit
                                break
                            }
                            next = last.attempt + 1
                        }
                        try insert.execute(arguments: [runID, t.id, sample, next])
                        pending += 1
                    }
                }
            }
            let planned = try Int.fetchOne(db, sql: "SELECT count(*) FROM run_tasks WHERE run_id = ?", arguments: [runID]) ?? 0
            let filtered = planned > routes.count
            if filtered { try Self.makeClaimable(db, worker: workerID, tasks: routes.keys) }
            var perJob: [String: Int] = [:]
            for (j, sel) in selected.enumerated() { perJob[request.jobs[j].name, default: 0] += sel.tasks.count }
            return RunPlan(runID: runID, runName: name, request: request, workerID: workerID, routes: routes,
                           claimsFiltered: filtered, domains: domainsForWrite, rolloutCount: pending,
                           alreadyCompleted: completed, givenUp: givenUp, runningElsewhere: elsewhere,
                           otherWorkers: others.map(\.description), tasksPerJob: perJob, resumed: resumed)
        }
    }

    /// Records the tasks whose rollouts `worker` may claim, in a temporary table of the
    /// connection that claims (the process's writer).
    static func makeClaimable(_ db: Database, worker: Int64, tasks: some Sequence<Int64>) throws {
        try db.execute(sql: """
            CREATE TEMP TABLE IF NOT EXISTS claimable(worker INTEGER NOT NULL, task_id INTEGER NOT NULL,
                                                      PRIMARY KEY (worker, task_id)) WITHOUT ROWID
            """)
        let add = try db.makeStatement(sql: "INSERT OR IGNORE INTO temp.claimable(worker, task_id) VALUES (?, ?)")
        for id in tasks { try add.execute(arguments: [worker, id]) }
    }

    private static func insertRun(_ db: Database, name: String, request: RunRequest, config: JSONValue, hash: String, now: String) throws -> Int64 {
        let mode = request.jobs.allSatisfy { $0.settings.mode == .task } ? "task" : "dialogue"
        try db.execute(sql: """
            INSERT INTO runs(name, mode, config, config_hash, agent_model, user_model, source, status, created_at)
            VALUES (?, ?, ?, ?, ?, ?, 'engine', 'pending', ?)
            """, arguments: [name, mode, config.jsonText, hash, request.jobs.first?.settings.agent.model,
                             request.jobs.first { $0.settings.user != nil }?.settings.user?.model, now])
        return db.lastInsertedRowID
    }

    struct SelectedTask: Sendable {
        var id: Int64
        var externalID: String
        var domainKey: String?
    }

    /// The tasks of each job, in id order, after --task, --limit and --shard.
    static func selectTasks(_ request: RunRequest, _ db: Database) throws -> [(job: Int, tasks: [SelectedTask])] {
        var out: [(Int, [SelectedTask])] = []
        for (j, job) in request.jobs.enumerated() {
            var rows: [Row]
            switch job.selection {
            case .dataset(let name):
                guard try Bool.fetchOne(db, sql: "SELECT 1 FROM datasets WHERE name = ?", arguments: [name]) == true else {
                    let known = try String.fetchAll(db, sql: "SELECT name FROM datasets ORDER BY name")
                    throw EngineError("no dataset \"\(name)\" in the warehouse (ingest it first, or give `path:` in the config); datasets: \(known.isEmpty ? "none" : known.joined(separator: ", "))")
                }
                rows = try Row.fetchAll(db, sql: """
                    SELECT t.id, t.external_id, d.key FROM tasks t JOIN datasets ds ON ds.id = t.dataset_id
                    LEFT JOIN domains d ON d.id = t.domain_id WHERE ds.name = ? ORDER BY t.id
                    """, arguments: [name])
            case .domains(let keys):
                rows = try Row.fetchAll(db, sql: """
                    SELECT t.id, t.external_id, d.key FROM tasks t JOIN domains d ON d.id = t.domain_id
                    JOIN datasets ds ON ds.id = t.dataset_id
                    WHERE ds.kind = 'dialogue' AND d.key IN (\(keys.map { _ in "?" }.joined(separator: ",")))
                    ORDER BY t.id
                    """, arguments: StatementArguments(keys))
            }
            var tasks = rows.map { SelectedTask(id: $0[0], externalID: $0[1], domainKey: job.settings.mcpDomain ?? $0[2]) }
            if !request.taskIDs.isEmpty {
                let wanted = Set(request.taskIDs)
                tasks = tasks.filter { wanted.contains($0.externalID) }
            }
            if let shard = request.shard {
                tasks = tasks.filter { Self.shard(of: $0.externalID, count: shard.count) == shard.index }
            }
            if let limit = request.limit { tasks = Array(tasks.prefix(limit)) }
            out.append((j, tasks))
        }
        if !request.taskIDs.isEmpty && out.allSatisfy({ $0.1.isEmpty }) {
            throw EngineError("none of the tasks \(request.taskIDs.joined(separator: ", ")) is in the selected datasets or domains")
        }
        return out
    }

    /// The shard a task belongs to: a stable hash of its external id (the same on every
    /// machine and in every version), so N machines split the work without talking.
    public static func shard(of externalID: String, count: Int) -> Int {
        Int(UInt64(bitPattern: Hashing.contentHash("shard|" + externalID)) % UInt64(count))
    }
}
