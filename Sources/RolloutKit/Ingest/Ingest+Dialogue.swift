import Foundation
import GRDB

/// Tool-name rules of the OpenAI API and the reversible API-safe names we store beside originals.
public enum ToolNames {
    /// True when the OpenAI API accepts the name (`^[a-zA-Z0-9_-]{1,64}$`).
    public static func isAPISafe(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count) else { return false }
        return name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
        }
    }

    /// An API-safe name for `name`: itself when safe; otherwise each other character becomes
    /// '_' and, when that collides with a name in `taken` or exceeds 64 bytes, a hash suffix of
    /// the original keeps it unique. The pair is stored, so the mapping is reversible.
    public static func apiSafe(_ name: String, taken: Set<String>) -> String {
        if isAPISafe(name) && !taken.contains(name) { return name }
        var safe = String(String.UnicodeScalarView(name.unicodeScalars.map { s in
            s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || s == "_" || s == "-") ? s : "_"
        }))
        if safe.isEmpty { safe = "tool" }
        if safe.utf8.count > 64 || taken.contains(safe) || !isAPISafe(safe) {
            let suffix = String(UInt64(bitPattern: Hashing.contentHash(name)), radix: 16)
            safe = String(safe.prefix(64 - suffix.count - 1)) + "_" + suffix
        }
        return safe
    }
}

extension Warehouse {
    /// `rollout ingest queries`: a Rollout-framework queries JSONL for one domain or a
    /// cross-domain combination.
    public func ingestQueries(file: String, domains: [String], dataset: String? = nil,
                              options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "queries", source: file, files: [file], options: options) { session in
            let key: DomainKey
            do { key = try DomainKey(domains) } catch let e as FieldError { throw IngestError(file: file, field: "--domain", e.reason) }
            try Self.ingestQueries(session, file: file, key: key, dataset: dataset ?? Self.stem(file))
        }
    }

    static func stem(_ file: String) -> String {
        URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
    }

    static func ingestQueries(_ session: IngestSession, file: String, key: DomainKey, dataset: String) throws {
        let catalog = Catalog(session: session)
        let domainID = try catalog.domain(key)
        let datasetID = try catalog.dataset(named: dataset, kind: "dialogue", source: file)
        let writer = try TaskWriter(session: session, datasetID: datasetID)
        // The Rollout framework's id for a record without one: md5(first user content + tools JSON).
        let toolsJSON = JSONWriter.pythonSorted.string(.array(try catalog.toolObjects(for: key)))
        try RecordFiles.forEachLine(file, session: session, prepare: { line, raw, value in
            let r = RecordReader(value)
            _ = try r.object()
            var opening: String?
            if let messages = r.child("messages"), !messages.value.isNull {
                for m in try messages.array() {
                    let role = try m.requiredString("role")
                    guard ChatMessage.roles.contains(role) else {
                        throw FieldError(field: m.fieldPath("role"), reason: "unknown role \"\(role)\"")
                    }
                    if role == "user" && opening == nil {
                        opening = try m.requiredString("content")
                    }
                }
            }
            _ = try r.requiredString("user_system_prompt")
            if let info = r.child("task_info"), !info.value.isNull { _ = try info.object() }
            let id: String
            if let given = r.child("id"), !given.value.isNull {
                id = try given.idText()
            } else {
                id = Hashing.md5Hex((opening ?? "") + toolsJSON)
            }
            // The record holds the opening and the prompt where the generated columns look
            // (schema: tasks.opening, tasks.user_prompt); a copy is stored only when the
            // opening is not messages[0].
            // SQLite's json_extract reads the first of repeated keys where we (like Python) take
            // the last, so a record with repeated keys keeps explicit copies.
            let first = value["messages"]?[0]
            let repeated = value.objectValue!.hasRepeatedKeys || first?.objectValue?.hasRepeatedKeys == true
            let inPlace = !repeated && first?["role"] == "user" && first?["content"]?.stringValue == opening
            return TaskWriter.Task(externalID: id, domainID: domainID, opening: inPlace ? nil : opening,
                                   userPrompt: repeated ? value["user_system_prompt"]?.stringValue : nil,
                                   record: .init(raw), file: file, line: line)
        }, write: { _, task in
            try writer.write(task)
        })
    }

    /// `rollout ingest policy`: a domain's (or combination's) policy markdown.
    public func ingestPolicy(file: String, domains: [String], options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "policy", source: file, files: [file], options: options) { session in
            let key: DomainKey
            do { key = try DomainKey(domains) } catch let e as FieldError { throw IngestError(file: file, field: "--domain", e.reason) }
            try Catalog(session: session).setPolicy(key, text: try RecordFiles.readText(file), source: file)
        }
    }

    /// `rollout ingest tools`: an OpenAI tool list for a server, optionally linked to domains.
    public func ingestTools(file: String, server: String, domains: [String] = [],
                            options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "tools", source: file, files: [file], options: options) { session in
            try Self.ingestTools(session, file: file, server: server, domains: domains)
        }
    }

    static func ingestTools(_ session: IngestSession, file: String, server: String, domains: [String]) throws {
        let catalog = Catalog(session: session)
        let serverID = try catalog.server(named: server)
        for d in domains {
            let key: DomainKey
            do { key = try DomainKey([d]) } catch let e as FieldError { throw IngestError(file: file, field: "--domain", e.reason) }
            try catalog.link(domain: try catalog.domain(key), server: serverID)
        }
        let (_, doc) = try RecordFiles.readDocument(file)
        session.report.files += 1
        let tools = try parseToolList(doc, file: file)
        try storeTools(session, tools, serverID: serverID, server: server, file: file)
    }

    /// One tool of a tool list, checked.
    struct ToolSpec {
        var name: String
        var description: String?
        var schema: JSONValue
    }

    /// Validates `[{"type":"function","function":{name, description?, parameters}}]`.
    static func parseToolList(_ doc: JSONValue, file: String) throws -> [ToolSpec] {
        guard case .array(let items) = doc else {
            throw IngestError(file: file, "a tool list must be a JSON array of {\"type\":\"function\",\"function\":{name, parameters}}, found \(doc.typeName)")
        }
        var seen: [String: Int] = [:]
        var out: [ToolSpec] = []
        for (i, item) in items.enumerated() {
            do {
                let r = RecordReader(item, path: "[\(i)]")
                _ = try r.object()
                let type = try r.requiredString("type")
                guard type == "function" else { throw FieldError(field: r.fieldPath("type"), reason: "expected \"function\", found \"\(type)\"") }
                let fn = try r.required("function")
                _ = try fn.object()
                let name = try fn.requiredString("name")
                guard !name.isEmpty else { throw FieldError(field: fn.fieldPath("name"), reason: "empty tool name") }
                let description = try fn.optionalString("description")
                let params = try fn.required("parameters")
                let paramsObject = try params.object()
                if let t = paramsObject["type"], t != .string("object") {
                    throw FieldError(field: params.fieldPath("type"), reason: "parameters must be a JSON Schema of type \"object\"")
                }
                if let first = seen[name] {
                    throw FieldError(field: fn.fieldPath("name"), reason: "tool \"\(name)\" is listed twice (also at [\(first)])")
                }
                seen[name] = i
                out.append(ToolSpec(name: name, description: description, schema: item))
            } catch let e as FieldError {
                throw IngestError(file: file, field: e.field, e.reason)
            }
        }
        if out.isEmpty { throw IngestError(file: file, "empty tool list") }
        return out
    }

    /// Makes the server's tool rows mirror `tools` (inserting, updating, removing).
    static func storeTools(_ session: IngestSession, _ tools: [ToolSpec], serverID: Int64, server: String, file: String) throws {
        let db = session.db
        let existing = try Row.fetchAll(db, sql: "SELECT id, name, api_name, schema, ordinal, updated_at FROM tools WHERE server_id = ?", arguments: [serverID])
        var byName: [String: Row] = [:]
        for row in existing { byName[row["name"]] = row }
        let keep = Set(tools.map(\.name))
        for row in existing where !keep.contains(row["name"] as String) {
            try db.execute(sql: "DELETE FROM tools WHERE id = ?", arguments: [row["id"] as Int64])
            session.report["tools"].removed += 1
        }
        // API names for the whole new list first, so a new tool cannot take a name that an
        // unsafe tool's mapping also wants.
        var taken = Set(tools.map(\.name).filter(ToolNames.isAPISafe))
        var apiNames: [String] = []
        for t in tools {
            if ToolNames.isAPISafe(t.name) {
                apiNames.append(t.name)
            } else {
                let apiName = ToolNames.apiSafe(t.name, taken: taken)
                taken.insert(apiName)
                apiNames.append(apiName)
                session.report.notices.append("\(file): tool \"\(t.name)\" is not a valid OpenAI tool name (^[a-zA-Z0-9_-]{1,64}$); it is offered to models as \"\(apiName)\" and mapped back on every call")
            }
        }
        // Park the old rows' api names and ordinals so reordering and renaming cannot trip the
        // unique constraints while rows are rewritten one by one.
        try db.execute(sql: "UPDATE tools SET api_name = '\u{1}' || id, ordinal = -id WHERE server_id = ?", arguments: [serverID])
        for (ordinal, t) in tools.enumerated() {
            let schema = t.schema.jsonText
            let apiName = apiNames[ordinal]
            if let row = byName[t.name] {
                let unchanged = row["schema"] as String == schema && row["api_name"] as String == apiName
                    && row["ordinal"] as Int == ordinal
                try db.execute(sql: "UPDATE tools SET ordinal = ?, api_name = ?, description = ?, schema = ?, updated_at = ? WHERE id = ?",
                               arguments: [ordinal, apiName, t.description, schema,
                                           unchanged ? row["updated_at"] as String : session.now, row["id"] as Int64])
                session.report.count("tools", unchanged ? .unchanged : .updated)
            } else {
                try db.execute(sql: """
                    INSERT INTO tools(server_id, ordinal, name, api_name, description, schema, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [serverID, ordinal, t.name, apiName, t.description, schema, session.now, session.now])
                session.report.count("tools", .inserted)
            }
        }
    }

    /// `rollout ingest server`: how to launch an MCP server over stdio. `sessionArgument`
    /// (`NAME` or `NAME=TEMPLATE`, see `SessionArgument`) names the tool argument the server
    /// keeps per-session state by, when it does not use `_meta.sessionId`.
    public func ingestServer(name: String, command: String, args: [String] = [], env: [String] = [],
                             cwd: String? = nil, domains: [String] = [], sessionArgument: String? = nil) throws -> IngestReport {
        let session: SessionArgument?
        do {
            session = try sessionArgument.map(SessionArgument.init(parsing:))
        } catch let e as FieldError {
            throw IngestError(file: "--session-arg", field: e.field, e.reason)
        }
        return try ingest(kind: "server", source: name, options: .init()) { s in
            try Self.registerServer(s, name: name, command: command, args: args, env: env, cwd: cwd, domains: domains,
                                    sessionArgument: session)
        }
    }

    /// Inserts or updates a server's launch definition and links it to `domains`, inside an
    /// ingest.
    static func registerServer(_ session: IngestSession, name: String, command: String, args: [String], env: [String],
                               cwd: String?, domains: [String], sessionArgument: SessionArgument? = nil) throws {
        var envObject = JSONObject()
        for (n, pair) in env.enumerated() {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw IngestError(file: "--env #\(n + 1)", field: Secrets.mask(pair), "expected KEY=VALUE")
            }
            let k = String(pair[..<eq]), v = String(pair[pair.index(after: eq)...])
            if let reason = Secrets.literalSecret(key: k, value: v) {
                throw IngestError(file: "--env #\(n + 1)", field: k,
                                  "\(reason); use ${VAR}: --env '\(k)=${\(k)}' with \(k) set in the environment (expanded when the server starts, never stored)")
            }
            envObject[k] = .string(v)
        }
        try refuseLiteralSecrets(arguments: args)
        guard !command.isEmpty else { throw IngestError(file: "--command", "empty command") }
        let catalog = Catalog(session: session)
        let argsText = JSONValue.array(args.map(JSONValue.string)).jsonText
        let envText = JSONValue.object(envObject).jsonText
        let argName = sessionArgument?.name, argTemplate = sessionArgument?.template
        let db = session.db
        if let row = try Row.fetchOne(db, sql: "SELECT id, command, args, env, cwd, session_argument, session_template FROM servers WHERE name = ?",
                                      arguments: [name]) {
            let same = (row["command"] as String?) == command && row["args"] as String == argsText
                && row["env"] as String == envText && (row["cwd"] as String?) == cwd
                && (row["session_argument"] as String?) == argName && (row["session_template"] as String?) == argTemplate
            if same {
                session.report.count("servers", .unchanged)
            } else {
                try db.execute(sql: """
                    UPDATE servers SET command = ?, args = ?, env = ?, cwd = ?, session_argument = ?, session_template = ?, updated_at = ?
                    WHERE id = ?
                    """, arguments: [command, argsText, envText, cwd, argName, argTemplate, session.now, row["id"] as Int64])
                session.report.count("servers", .updated)
            }
        } else {
            try db.execute(sql: """
                INSERT INTO servers(name, command, args, env, cwd, session_argument, session_template, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [name, command, argsText, envText, cwd, argName, argTemplate, session.now, session.now])
            session.report.count("servers", .inserted)
        }
        let serverID = try catalog.server(named: name)
        for d in domains { try catalog.link(domain: try catalog.domain(try DomainKey([d])), server: serverID) }
    }

    /// `rollout ingest dir`: the Rollout framework's layout, `single_domain/` and `cross_domain/`
    /// folders each with `queries/`, `policies/` and `tool_lists/`. Tool lists and policies go
    /// first so records without ids hash with their domain's tools.
    public func ingestDirectory(_ path: String, options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "dir", source: path, folders: [path], options: options) { session in
            try Self.ingestDirectory(session, path: path)
        }
    }

    static func ingestDirectory(_ session: IngestSession, path: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw IngestError(file: path, "not a directory")
        }
        let root = URL(fileURLWithPath: path)
        var sections: [(url: URL, cross: Bool)] = []
        for (name, cross) in [("single_domain", false), ("cross_domain", true)] {
            let u = root.appending(path: name)
            if fm.fileExists(atPath: u.path, isDirectory: &isDir), isDir.boolValue { sections.append((u, cross)) }
        }
        if sections.isEmpty, ["queries", "policies", "tool_lists"].contains(where: { fm.fileExists(atPath: root.appending(path: $0).path) }) {
            sections.append((root, false))
        }
        guard !sections.isEmpty else {
            throw IngestError(file: path, "wrong layout: expected single_domain/ and/or cross_domain/, each with queries/*.jsonl, policies/*.md and tool_lists/*.json")
        }
        func files(_ section: URL, _ sub: String, _ ext: String) throws -> [URL] {
            let dir = section.appending(path: sub)
            guard fm.fileExists(atPath: dir.path) else { return [] }
            let names: [String]
            do { names = try fm.contentsOfDirectory(atPath: dir.path) } catch {
                throw IngestError(file: dir.path, "cannot list the folder: \(error.localizedDescription)")
            }
            return names.filter { $0.hasSuffix("." + ext) && !$0.hasPrefix(".") }.sorted().map { dir.appending(path: $0) }
        }
        // Names of single domains, to split cross-domain file names whose parts contain '_'.
        var known = Set(try String.fetchAll(session.db, sql: "SELECT key FROM domains WHERE size = 1"))
        for s in sections where !s.cross {
            for (sub, ext) in [("queries", "jsonl"), ("policies", "md"), ("tool_lists", "json")] {
                for f in try files(s.url, sub, ext) { known.insert(stem(f.path)) }
            }
        }
        func key(for file: URL, cross: Bool) throws -> DomainKey {
            let name = stem(file.path)
            do {
                return try DomainKey(cross ? splitCombination(name, known: known) : [name])
            } catch let e as FieldError {
                throw IngestError(file: file.path, e.reason)
            }
        }
        let catalog = Catalog(session: session)
        for s in sections {
            for f in try files(s.url, "tool_lists", "json") {
                let server = stem(f.path)
                let domains = known.contains(server) ? [server] : []
                if domains.isEmpty {
                    session.report.notices.append("\(f.path): no domain named \"\(server)\"; link it with `rollout ingest tools \(f.path) --server \(server) --domain NAME`")
                }
                try ingestTools(session, file: f.path, server: server, domains: domains)
            }
        }
        for s in sections {
            for f in try files(s.url, "policies", "md") {
                try catalog.setPolicy(try key(for: f, cross: s.cross), text: try RecordFiles.readText(f.path), source: f.path)
                session.report.files += 1
            }
        }
        var queryFiles = 0
        for s in sections {
            for f in try files(s.url, "queries", "jsonl") {
                try ingestQueries(session, file: f.path, key: try key(for: f, cross: s.cross), dataset: stem(f.path))
                queryFiles += 1
            }
        }
        if queryFiles == 0 {
            throw IngestError(file: path, "wrong layout: no queries/*.jsonl under \(sections.map { $0.url.lastPathComponent }.joined(separator: ", "))")
        }
    }

    /// Splits "A_B_C" into domain names, preferring known names that themselves contain '_'.
    static func splitCombination(_ name: String, known: Set<String>) -> [String] {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        // Fewest pieces that are all known names; else every '_' separates.
        func solve(_ i: Int) -> [String]? {
            if i == parts.count { return [] }
            for j in stride(from: parts.count, to: i, by: -1) {
                let piece = parts[i..<j].joined(separator: "_")
                if known.contains(piece), let rest = solve(j) { return [piece] + rest }
            }
            return nil
        }
        if let names = solve(0), names.count > 1 { return names }
        return parts
    }
}

extension Warehouse {
    /// Refuses a server argument that is a literal credential: `--api-key=sk-…`, `--token X`,
    /// or any argument shaped like one. `${VAR}` in arguments is expanded at launch.
    static func refuseLiteralSecrets(arguments args: [String]) throws {
        func refuse(_ n: Int, _ name: String?, _ reason: String) -> IngestError {
            IngestError(file: "--arg #\(n + 1)", field: name,
                        "\(reason); use ${VAR}: --arg '\(name.map { "\($0)=" } ?? "")${VAR}' with VAR set in the environment (expanded when the server starts, never stored)")
        }
        for (n, arg) in args.enumerated() {
            if arg.hasPrefix("-"), let eq = arg.firstIndex(of: "=") {
                let name = String(arg[..<eq])
                if let reason = Secrets.literalSecret(key: name, value: String(arg[arg.index(after: eq)...])) {
                    throw refuse(n, name, reason)
                }
            } else if arg.hasPrefix("-"), Secrets.looksLikeSecretKey(arg), n + 1 < args.count, !args[n + 1].hasPrefix("-") {
                // `--api-key VALUE`: the next argument is the flag's value.
                if let reason = Secrets.literalSecret(key: arg, value: args[n + 1]) { throw refuse(n + 1, arg, reason) }
            } else if let reason = Secrets.literalSecret(key: nil, value: arg) {
                throw refuse(n, nil, reason)
            }
        }
    }
}
