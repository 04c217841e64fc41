import Foundation
import GRDB
import GRDBSQLite

/// What `rollout label` wrote.
public struct LabelReport: Sendable, Equatable, Codable {
    public var run: String
    /// Latest rollouts of the run, each labeled.
    public var rollouts = 0
    public var inserted = 0
    public var updated = 0
    public var unchanged = 0
    /// Where the system prompts came from: run, trajectory, domain, members, none → rollouts.
    public var promptSources: [String: Int] = [:]
    /// Where the tool lists came from: run, trajectory, domain, none → rollouts.
    public var toolSources: [String: Int] = [:]
    /// Distinct system prompts and tool lists among the labels.
    public var prompts = 0
    public var toolsets = 0
    /// Rollouts that call a tool their list does not declare, and those names → rollouts.
    public var undeclared = 0
    public var undeclaredNames: [String: Int] = [:]
    /// Listed tool name → the name the trajectories called it by, where they differ.
    public var renamed: [String: String] = [:]
    public var domain: String?

    public var summary: String {
        func counts(_ d: [String: Int]) -> String {
            d.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        }
        var lines = ["labeled \(rollouts) rollout\(rollouts == 1 ? "" : "s") of run \(run)\(domain.map { " (domain \($0))" } ?? ""): \(inserted) new, \(updated) changed, \(unchanged) unchanged"]
        lines.append("  system prompt from: \(counts(promptSources)) (\(prompts) distinct)")
        lines.append("  tool list from: \(counts(toolSources)) (\(toolsets) distinct)")
        if !renamed.isEmpty {
            lines.append("  tool names as the trajectories call them: " + renamed.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value)" }.joined(separator: ", "))
        }
        if undeclared > 0 {
            lines.append("  \(undeclared) rollout\(undeclared == 1 ? " calls" : "s call") tools their list does not declare: \(counts(undeclaredNames)) (export drops these; label with --domain, or ingest the tools)")
        }
        return lines.joined(separator: "\n")
    }
}

/// A tool list interned in `label_toolsets`.
private struct ResolvedTools {
    var id: Int64
    var names: Set<String>
    var source: String
    var renamed: [String: String]
    var renamedText: String?
}

/// A label's system prompt or tool list, before it is interned.
private struct LabelPart {
    var source: String
    var promptText: String?
    var tools: [JSONValue] = []
    var renamed: [String: String] = [:]
}

extension Warehouse {
    /// `rollout label --run R`: records for each latest rollout of the run the system prompt and
    /// the tool list it ran with, as rows (`labels`, `label_prompts`, `label_toolsets`). Tool
    /// names are the names the trajectory's tool calls use. Runs made by `rollout run` take
    /// exactly what the engine sent (`run_domains`); imported runs take the trajectory's own
    /// system message and carried tool list, else the domain's (`domain`, or the task's):
    /// its policy — for a combination its own policy, matched as a set of names, else its
    /// domains' policies in turn — and its servers' tools. One transaction; running it again
    /// changes nothing.
    public func label(run: String, domain: String? = nil) throws -> LabelReport {
        try writer.write { db in try Labeler(warehouse: self, db: db, runName: run, domainOverride: domain).run() }
    }

    /// Whether some latest rollout of the run has no label.
    func hasUnlabeledRollouts(runID: Int64, _ db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: """
            SELECT EXISTS (SELECT 1 FROM latest_rollouts r LEFT JOIN labels l ON l.rollout_id = r.id
                           WHERE r.run_id = ? AND l.rollout_id IS NULL)
            """, arguments: [runID]) ?? false
    }

    /// Resolves a domain name as users write it: `A`, `A+B`, `A,B`, or a file stem `B_A`.
    static func resolveDomainKey(_ text: String, _ db: Database) throws -> (id: Int64, key: String) {
        let known = Set(try String.fetchAll(db, sql: "SELECT key FROM domains WHERE size = 1"))
        var names = text.split(whereSeparator: { $0 == "+" || $0 == "," }).map { $0.trimmingCharacters(in: .whitespaces) }
        if names.count == 1 && !known.contains(names[0]) && names[0].contains("_") {
            names = Self.splitCombination(names[0], known: known)
        }
        let key: String
        do { key = try DomainKey(names).key } catch let e as FieldError { throw ExportError("--domain \(text): \(e.reason)") }
        guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM domains WHERE key = ?", arguments: [key]) else {
            let all = try String.fetchAll(db, sql: "SELECT key FROM domains ORDER BY key")
            throw ExportError("--domain \(text): no domain \(key) in the warehouse (domains: \(all.isEmpty ? "none" : all.joined(separator: ", ")))")
        }
        return (id, key)
    }
}

private final class Labeler {
    let warehouse: Warehouse
    let db: Database
    let runName: String
    let domainOverride: String?
    var report: LabelReport

    var promptIDs: [Int64: [(id: Int64, text: String)]] = [:]
    var toolsetIDs: [Int64: [(id: Int64, text: String)]] = [:]
    var domainKeys: [Int64: String] = [:]
    /// What each job and domain of an engine run was given.
    var engineParts: [String: (prompt: LabelPart, tools: LabelPart)] = [:]
    /// Tool lists interned, by where they came from (a million rollouts share a few).
    var resolvedTools: [String: ResolvedTools] = [:]
    var domainIDs: [String: Int64] = [:]

    init(warehouse: Warehouse, db: Database, runName: String, domainOverride: String?) throws {
        self.warehouse = warehouse
        self.db = db
        self.runName = runName
        self.domainOverride = domainOverride
        report = LabelReport(run: runName)
    }

    func run() throws -> LabelReport {
        guard let runRow = try Row.fetchOne(db, sql: "SELECT id, mode, config FROM runs WHERE name = ?", arguments: [runName]) else {
            let names = try String.fetchAll(db, sql: "SELECT name FROM runs ORDER BY id")
            throw ExportError("no run \"\(runName)\" in the warehouse (runs: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
        }
        let runID: Int64 = runRow["id"]
        let imported = (runRow["mode"] as String) == "imported"
        let config = (try? JSONParser.parse(runRow["config"] as String)) ?? .object([:])
        var override: (id: Int64, key: String)?
        if let domainOverride {
            override = try Warehouse.resolveDomainKey(domainOverride, db)
            report.domain = override!.key
        }
        for row in try Row.fetchAll(db, sql: "SELECT id, key FROM domains") {
            domainKeys[row["id"]] = row["key"]
            domainIDs[row["key"]] = row["id"]
        }

        if !imported { return try engineRun(runID: runID, config: config, override: override) }

        let rollouts = try db.makeStatement(sql: """
            SELECT r.id, r.task_id, t.domain_id,
                   CASE json_type(r.metadata, '$.tools') WHEN 'array' THEN json_extract(r.metadata, '$.tools') END
            FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id
            WHERE r.run_id = ? ORDER BY r.task_id, r.sample
            """)
        let firstMessage = try db.makeStatement(sql: "SELECT role, content FROM messages WHERE rollout_id = ? AND idx = 0")
        let callNames = try db.makeStatement(sql: "SELECT DISTINCT name FROM tool_calls WHERE rollout_id = ? ORDER BY name")
        let existing = try db.makeStatement(sql: """
            SELECT domain_id, prompt_id, prompt_source, toolset_id, tools_source, renamed, undeclared FROM labels WHERE rollout_id = ?
            """)
        let upsert = try db.makeStatement(sql: """
            INSERT INTO labels(rollout_id, run_id, domain_id, prompt_id, prompt_source, toolset_id, tools_source, renamed, undeclared, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(rollout_id) DO UPDATE SET run_id = excluded.run_id, domain_id = excluded.domain_id,
                prompt_id = excluded.prompt_id, prompt_source = excluded.prompt_source, toolset_id = excluded.toolset_id,
                tools_source = excluded.tools_source, renamed = excluded.renamed, undeclared = excluded.undeclared,
                created_at = excluded.created_at
            """)
        let now = Timestamp.now()
        struct Item { var id: Int64; var taskID: Int64; var domainID: Int64?; var carriedTools: String? }
        var promptsUsed = Set<Int64>(), toolsetsUsed = Set<Int64>()
        // The cursor reads rollouts and tasks while the loop writes only labels and their parts.
        let cursor = try Row.fetchCursor(rollouts, arguments: [runID])
        while let row = try cursor.next() {
            let item = Item(id: row[0], taskID: row[1], domainID: row[2], carriedTools: row[3])
            let called = try String.fetchAll(callNames, arguments: [item.id])
            let domainID = override?.id ?? item.domainID
            let domainKey = domainID.flatMap { domainKeys[$0] }
            var promptText: String?
            var promptSource: String
            let tools: ResolvedTools
            do {
                // The trajectory's own system message, else the domain's policy.
                let first = try Row.fetchOne(firstMessage, arguments: [item.id])
                if let first, (first[0] as String) == "system" {
                    promptText = first[1] as String? ?? ""
                    promptSource = "trajectory"
                } else {
                    let part = try domainPrompt(domainKey)
                    (promptText, promptSource) = (part.promptText, part.source)
                }
                // The tool list the record carried (a training record's `tools`), else the domain's.
                if let text = item.carriedTools {
                    tools = try resolved("trajectory\u{1F}" + text) {
                        guard case .array(let carried) = try JSONParser.parse(text) else { return LabelPart(source: "none") }
                        return LabelPart(source: "trajectory", tools: carried)
                    }
                } else if let domainKey {
                    tools = try resolved("domain\u{1F}" + domainKey + "\u{1F}" + called.joined(separator: "\u{1F}")) {
                        try domainTools(domainKey, called: called)
                    }
                } else {
                    tools = try resolved("none") { LabelPart(source: "none") }
                }
            }
            let promptID = try promptText.map { try intern(prompt: $0) }
            if promptText == nil { promptSource = "none" }
            if let promptID { promptsUsed.insert(promptID) }
            toolsetsUsed.insert(tools.id)
            let undeclared = called.filter { !tools.names.contains($0) }
            for n in undeclared { report.undeclaredNames[n, default: 0] += 1 }
            if !undeclared.isEmpty { report.undeclared += 1 }
            for (k, v) in tools.renamed { report.renamed[k] = v }
            report.promptSources[promptSource, default: 0] += 1
            report.toolSources[tools.source, default: 0] += 1
            report.rollouts += 1

            let labelDomain = domainKey.flatMap { domainIDs[$0] }
            let undeclaredText = undeclared.isEmpty ? nil : JSONValue.array(undeclared.map(JSONValue.string)).jsonText
            let values: [DatabaseValue] = [labelDomain.databaseValue, promptID.databaseValue, promptSource.databaseValue,
                                           tools.id.databaseValue, tools.source.databaseValue, tools.renamedText.databaseValue,
                                           undeclaredText.databaseValue]
            if let old = try Row.fetchOne(existing, arguments: [item.id]) {
                if (0..<7).allSatisfy({ old[$0] as DatabaseValue == values[$0] }) {
                    report.unchanged += 1
                    continue
                }
                report.updated += 1
            } else {
                report.inserted += 1
            }
            try upsert.execute(arguments: StatementArguments([item.id.databaseValue, runID.databaseValue] + values + [now.databaseValue]))
        }
        // Prompts and tool lists no label points at any more.
        try db.execute(sql: "DELETE FROM label_prompts WHERE id NOT IN (SELECT prompt_id FROM labels WHERE prompt_id IS NOT NULL)")
        try db.execute(sql: "DELETE FROM label_toolsets WHERE id NOT IN (SELECT toolset_id FROM labels)")
        report.prompts = promptsUsed.count
        report.toolsets = toolsetsUsed.count
        return report
    }

    /// A run made by the engine: every rollout of one job and domain got the same prompt and
    /// tools, so each such group is labeled by one INSERT … SELECT (a million rollouts in a
    /// few statements); only the undeclared call names differ per rollout, found in SQL.
    func engineRun(runID: Int64, config: JSONValue, override: (id: Int64, key: String)?) throws -> LabelReport {
        let now = Timestamp.now()
        let groups = try Row.fetchAll(db, sql: """
            SELECT coalesce(rt.job, '') AS job, t.domain_id, count(*) AS n, count(l.rollout_id) AS labeled
            FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id
            LEFT JOIN run_tasks rt ON rt.run_id = r.run_id AND rt.task_id = r.task_id
            LEFT JOIN labels l ON l.rollout_id = r.id
            WHERE r.run_id = ? GROUP BY 1, 2 ORDER BY 1, 2
            """, arguments: [runID])
        let upsert = try db.makeStatement(sql: """
            INSERT INTO labels(rollout_id, run_id, domain_id, prompt_id, prompt_source, toolset_id, tools_source, renamed, undeclared, created_at)
            SELECT r.id, r.run_id, :domain, :prompt, :prompt_source, :toolset, :tools_source, NULL,
                   (SELECT nullif(json_group_array(name), '[]') FROM (
                        SELECT DISTINCT c.name FROM tool_calls c WHERE c.rollout_id = r.id
                        AND c.name NOT IN (SELECT value FROM json_each(:names)) ORDER BY c.name)),
                   :now
            FROM latest_rollouts r JOIN tasks t ON t.id = r.task_id
            LEFT JOIN run_tasks rt ON rt.run_id = r.run_id AND rt.task_id = r.task_id
            WHERE r.run_id = :run AND coalesce(rt.job, '') = :job AND t.domain_id IS :task_domain
            ON CONFLICT(rollout_id) DO UPDATE SET run_id = excluded.run_id, domain_id = excluded.domain_id,
                prompt_id = excluded.prompt_id, prompt_source = excluded.prompt_source, toolset_id = excluded.toolset_id,
                tools_source = excluded.tools_source, renamed = excluded.renamed, undeclared = excluded.undeclared,
                created_at = excluded.created_at
            WHERE (labels.run_id, labels.domain_id, labels.prompt_id, labels.prompt_source, labels.toolset_id,
                   labels.tools_source, labels.renamed, labels.undeclared)
                  IS NOT (excluded.run_id, excluded.domain_id, excluded.prompt_id, excluded.prompt_source, excluded.toolset_id,
                          excluded.tools_source, excluded.renamed, excluded.undeclared)
            """)
        var promptsUsed = Set<Int64>(), toolsetsUsed = Set<Int64>()
        for g in groups {
            let job: String = g["job"]
            let taskDomain: Int64? = g["domain_id"]
            let n: Int = g["n"], labeled: Int = g["labeled"]
            let jobConfig = config["jobs"]?[job]
            var domainKey = (override?.id ?? taskDomain).flatMap { domainKeys[$0] }
            if override == nil, let mcp = jobConfig?["mcp_domain"]?.stringValue, domainIDs[mcp] != nil { domainKey = mcp }
            let cacheKey = job + "\u{1F}" + (domainKey ?? "")
            if engineParts[cacheKey] == nil {
                engineParts[cacheKey] = try engineLabel(runID: runID, jobConfig: jobConfig, domainKey: domainKey)
            }
            let (p, t) = engineParts[cacheKey]!
            let tools = try resolved("run\u{1F}" + cacheKey) { t }
            let promptID = try p.promptText.map { try intern(prompt: $0) }
            let promptSource = p.promptText == nil ? "none" : p.source
            if let promptID { promptsUsed.insert(promptID) }
            toolsetsUsed.insert(tools.id)
            try upsert.execute(arguments: [
                "domain": domainKey.flatMap { domainIDs[$0] }, "prompt": promptID, "prompt_source": promptSource,
                "toolset": tools.id, "tools_source": tools.source,
                "names": JSONValue.array(tools.names.sorted().map(JSONValue.string)).jsonText,
                "now": now, "run": runID, "job": job, "task_domain": taskDomain,
            ])
            // Inserted rows are the ones that had no label; the other changes are updates.
            let changed = db.changesCount
            report.inserted += n - labeled
            report.updated += changed - (n - labeled)
            report.unchanged += labeled - (changed - (n - labeled))
            report.rollouts += n
            report.promptSources[promptSource, default: 0] += n
            report.toolSources[tools.source, default: 0] += n
            for (k, v) in tools.renamed { report.renamed[k] = v }
        }
        for row in try Row.fetchAll(db, sql: """
            SELECT u.value AS name, count(*) AS n FROM labels l, json_each(l.undeclared) u WHERE l.run_id = ? GROUP BY u.value
            """, arguments: [runID]) {
            report.undeclaredNames[row["name"]] = row["n"]
        }
        report.undeclared = try Int.fetchOne(db, sql: "SELECT count(*) FROM labels WHERE run_id = ? AND undeclared IS NOT NULL",
                                             arguments: [runID]) ?? 0
        try db.execute(sql: "DELETE FROM label_prompts WHERE id NOT IN (SELECT prompt_id FROM labels WHERE prompt_id IS NOT NULL)")
        try db.execute(sql: "DELETE FROM label_toolsets WHERE id NOT IN (SELECT toolset_id FROM labels)")
        report.prompts = promptsUsed.count
        report.toolsets = toolsetsUsed.count
        return report
    }

    /// What the engine sent for a job and domain: the run's recorded policy and tools, the
    /// task-mode prompt of its config.
    func engineLabel(runID: Int64, jobConfig: JSONValue?, domainKey: String?) throws -> (LabelPart, LabelPart) {
        var policy: String?
        var tools: [JSONValue] = []
        var recorded = false
        if let domainKey, let id = domainIDs[domainKey],
           let row = try Row.fetchOne(db, sql: "SELECT policy, tools FROM run_domains WHERE run_id = ? AND domain_id = ?", arguments: [runID, id]) {
            recorded = true
            policy = row["policy"]
            tools = (try JSONParser.parse(row["tools"] as String)).arrayValue ?? []
        }
        var prompt = policy
        if jobConfig?["mode"]?.stringValue == "task" {
            prompt = jobConfig?["system_prompt"]?.stringValue ?? policy ?? RolloutRun.defaultTaskPrompt
        }
        // No domain: the run gave no tools, which is what the rollout ran with.
        return (LabelPart(source: "run", promptText: prompt),
                LabelPart(source: recorded || domainKey == nil ? "run" : "none", tools: tools))
    }

    /// A domain's system prompt: its own policy, else (a combination) its domains' policies.
    func domainPrompt(_ key: String?) throws -> LabelPart {
        guard let key else { return LabelPart(source: "none") }
        if let own = try String.fetchOne(db, sql: "SELECT policy FROM domains WHERE key = ?", arguments: [key]), !own.isEmpty {
            return LabelPart(source: "domain", promptText: own)
        }
        guard key.contains("+") else { return LabelPart(source: "none") }
        let parts = try key.split(separator: "+").compactMap { m in
            try String.fetchOne(db, sql: "SELECT policy FROM domains WHERE key = ?", arguments: [String(m)])
        }.filter { !$0.isEmpty }
        return parts.isEmpty ? LabelPart(source: "none") : LabelPart(source: "members", promptText: parts.joined(separator: "\n\n"))
    }

    /// A domain's tools under the names `called` uses for them: a tool is matched by its API
    /// name, its original name, or a call name that ends in `.name` / `_name` (the namespaced
    /// `sap.get_x` of the Rollout framework); an uncalled tool of a server whose other tools
    /// were called with a prefix gets the same prefix.
    func domainTools(_ key: String, called: [String]) throws -> LabelPart {
        let set = try warehouse.toolset(domainKey: key, db)
        if set.specifications.isEmpty { return LabelPart(source: "none") }
        let calledSet = Set(called)
        var used: [String: String] = [:]           // api name → name used
        var prefixes: [String: String] = [:]       // server → prefix incl. separator
        var claimed = Set<String>()
        for spec in set.specifications {
            let original = set.routes[spec.name]?.name ?? spec.name
            if calledSet.contains(spec.name) { used[spec.name] = spec.name; claimed.insert(spec.name); continue }
            if calledSet.contains(original) { used[spec.name] = original; claimed.insert(original); continue }
            for c in called where !claimed.contains(c) {
                for base in Set([original, spec.name]) {
                    for sep in [".", "_", "-", "/"] where c.hasSuffix(sep + base) && c.count > base.count + 1 {
                        used[spec.name] = c
                        claimed.insert(c)
                        if let server = set.routes[spec.name]?.server { prefixes[server] = String(c.dropLast(base.count)) }
                        break
                    }
                    if used[spec.name] != nil { break }
                }
                if used[spec.name] != nil { break }
            }
        }
        var tools: [JSONValue] = []
        var renamed: [String: String] = [:]
        for spec in set.specifications {
            let original = set.routes[spec.name]?.name ?? spec.name
            var name = used[spec.name] ?? spec.name
            if used[spec.name] == nil, let server = set.routes[spec.name]?.server, let prefix = prefixes[server] {
                name = prefix + original
            }
            if name != spec.name { renamed[spec.name] = name }
            var f = JSONObject()
            f["name"] = .string(name)
            if let d = spec.description { f["description"] = .string(d) }
            f["parameters"] = spec.parameters
            tools.append(.object(["type": "function", "function": .object(f)]))
        }
        return LabelPart(source: "domain", tools: tools, renamed: renamed)
    }

    /// The interned tool list for `key`, made by `make` the first time.
    func resolved(_ key: String, _ make: () throws -> LabelPart) throws -> ResolvedTools {
        if let r = resolvedTools[key] { return r }
        let part = try make()
        let (id, names) = try intern(tools: part.tools)
        let renamedText = part.renamed.isEmpty ? nil
            : JSONValue.object(JSONObject(pairs: part.renamed.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })).jsonText
        let r = ResolvedTools(id: id, names: Set(names), source: part.source, renamed: part.renamed, renamedText: renamedText)
        resolvedTools[key] = r
        return r
    }

    func intern(prompt text: String) throws -> Int64 {
        let h = Hashing.contentHash(text)
        if let hit = promptIDs[h]?.first(where: { $0.text == text }) { return hit.id }
        let sha = Hashing.sha256Hex(text)
        let id: Int64
        if let existing = try Int64.fetchOne(db, sql: "SELECT id FROM label_prompts WHERE sha256 = ?", arguments: [sha]) {
            id = existing
        } else {
            try db.execute(sql: "INSERT INTO label_prompts(sha256, text) VALUES (?, ?)", arguments: [sha, text])
            id = db.lastInsertedRowID
        }
        promptIDs[h, default: []].append((id, text))
        return id
    }

    func intern(tools: [JSONValue]) throws -> (Int64, [String]) {
        let text = JSONValue.array(tools).jsonText
        let names = tools.map { $0["function"]?["name"]?.stringValue ?? $0["name"]?.stringValue ?? "" }
        let h = Hashing.contentHash(text)
        if let hit = toolsetIDs[h]?.first(where: { $0.text == text }) { return (hit.id, names) }
        let sha = Hashing.sha256Hex(text)
        let id: Int64
        if let existing = try Int64.fetchOne(db, sql: "SELECT id FROM label_toolsets WHERE sha256 = ?", arguments: [sha]) {
            id = existing
        } else {
            try db.execute(sql: "INSERT INTO label_toolsets(sha256, tools, names, count) VALUES (?, ?, ?, ?)",
                           arguments: [sha, text, JSONValue.array(names.map(JSONValue.string)).jsonText, names.count])
            id = db.lastInsertedRowID
        }
        toolsetIDs[h, default: []].append((id, text))
        return (id, names)
    }
}
