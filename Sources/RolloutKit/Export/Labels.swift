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

        // Engine runs: what each (job, domain) was given, computed once.
        var jobOf: [Int64: String] = [:]
        if !imported {
            for row in try Row.fetchAll(db, sql: "SELECT task_id, job FROM run_tasks WHERE run_id = ?", arguments: [runID]) {
                jobOf[row["task_id"]] = row["job"]
            }
        }
        var engineParts: [String: (prompt: LabelPart, tools: LabelPart)] = [:]

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
            var domainKey = domainID.flatMap { domainKeys[$0] }
            var prompt: LabelPart
            var tools: LabelPart
            if imported {
                // The trajectory's own system message, else the domain's policy.
                let first = try Row.fetchOne(firstMessage, arguments: [item.id])
                if let first, (first[0] as String) == "system" {
                    prompt = LabelPart(source: "trajectory", promptText: first[1] as String? ?? "")
                } else {
                    prompt = try domainPrompt(domainKey)
                }
                // The tool list the record carried (a training record's `tools`), else the domain's.
                if let text = item.carriedTools, case .array(let carried) = try JSONParser.parse(text) {
                    tools = LabelPart(source: "trajectory", tools: carried)
                } else if let domainKey {
                    tools = try domainTools(domainKey, called: called)
                } else {
                    tools = LabelPart(source: "none")
                }
            } else {
                let job = jobOf[item.taskID] ?? ""
                let jobConfig = config["jobs"]?[job]
                if override == nil, let mcp = jobConfig?["mcp_domain"]?.stringValue, domainIDs[mcp] != nil {
                    domainKey = mcp
                }
                let cacheKey = job + "\u{1F}" + (domainKey ?? "")
                if let cached = engineParts[cacheKey] {
                    (prompt, tools) = cached
                } else {
                    (prompt, tools) = try engineLabel(runID: runID, jobConfig: jobConfig, domainKey: domainKey)
                    engineParts[cacheKey] = (prompt, tools)
                }
            }
            let promptID = try prompt.promptText.map { try intern(prompt: $0) }
            let (toolsetID, names) = try intern(tools: tools.tools)
            if let promptID { promptsUsed.insert(promptID) }
            toolsetsUsed.insert(toolsetID)
            let declared = Set(names)
            let undeclared = called.filter { !declared.contains($0) }
            for n in undeclared { report.undeclaredNames[n, default: 0] += 1 }
            if !undeclared.isEmpty { report.undeclared += 1 }
            for (k, v) in tools.renamed { report.renamed[k] = v }
            report.promptSources[prompt.promptText == nil ? "none" : prompt.source, default: 0] += 1
            report.toolSources[tools.source, default: 0] += 1
            report.rollouts += 1

            let labelDomain = domainKey.flatMap { domainIDs[$0] }
            let renamedText = tools.renamed.isEmpty ? nil
                : JSONValue.object(JSONObject(pairs: tools.renamed.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })).jsonText
            let undeclaredText = undeclared.isEmpty ? nil : JSONValue.array(undeclared.map(JSONValue.string)).jsonText
            let promptSource = prompt.promptText == nil ? "none" : prompt.source
            let values: [DatabaseValue] = [labelDomain.databaseValue, promptID.databaseValue, promptSource.databaseValue,
                                           toolsetID.databaseValue, tools.source.databaseValue, renamedText.databaseValue,
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
