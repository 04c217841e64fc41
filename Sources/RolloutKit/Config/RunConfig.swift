import Foundation

/// A run configuration in the Rollout framework's format (`configs/example.yml`).
public struct RunConfig: Sendable {
    public struct Role: Sendable, Equatable {
        public var model: String
        public var temperature: Double?
        public var enableThinking: Bool?
        public var extra: JSONObject
    }

    public struct Dataset: Sendable, Equatable {
        public enum Mode: String, Sendable { case dialogue, task }
        public var name: String
        public var path: String?
        public var outputPath: String?
        public var mcpDomain: String?
        public var tools: String?
        public var agent: Role
        public var user: Role?
        public var maxTurns: Int
        public var maxStepsPerTurn: Int
        public var mode: Mode
        public var samples: Int
        public var extra: JSONObject
    }

    public var file: String
    public var maxWorkers: Int
    public var resume: Bool
    public var enableMonitor: Bool
    public var monitorMaxNoToolTurns: Int
    public var modelsConfigFile: String
    public var datasets: [Dataset]
    public var models: ModelRegistry
    /// Keys we did not recognise (reported, not fatal: the framework's configs carry extras).
    public var unknownKeys: [String]

    static let topKeys: Set<String> = ["max_workers", "resume", "enable_monitor", "monitor_max_no_tool_turns",
                                       "models_config_file", "datasets", "samples"]
    static let datasetKeys: Set<String> = ["path", "output_path", "mcp_domain", "tools", "agent", "user", "max_turns",
                                           "max_steps_per_turn", "mode", "samples"]

    /// Reads and validates a config and the model registry it names.
    public static func load(file: String, modelsFile: String? = nil) throws -> RunConfig {
        let root = try ConfigNode.load(file: file)
        _ = try root.mapping()
        var unknown: [String] = []
        for k in root.keys where !topKeys.contains(k) { unknown.append(k) }
        let configDir = URL(fileURLWithPath: file).deletingLastPathComponent()
        // Relative paths: from the working directory, else beside the config, else from the
        // config folder's parent (configs/example.yml naming configs/models.yml).
        func locate(_ p: String) -> String {
            if p.hasPrefix("/") || FileManager.default.fileExists(atPath: p) { return p }
            for base in [configDir, configDir.deletingLastPathComponent()] {
                let candidate = base.appending(path: p).path
                if FileManager.default.fileExists(atPath: candidate) { return candidate }
            }
            return p
        }
        let modelsPath = try modelsFile ?? root.child("models_config_file")?.string()
            ?? configDir.appending(path: "models.yml").path
        let resolvedModels = locate(modelsPath)
        guard FileManager.default.fileExists(atPath: resolvedModels) else {
            throw (root.child("models_config_file") ?? root).error("model registry \(modelsPath) not found")
        }
        let registry = try ModelRegistry.load(file: resolvedModels)
        let defaultSamples = try root.child("samples")?.int(min: 1) ?? 1
        guard let datasetsNode = root.child("datasets") else { throw root.error("no `datasets:` section") }
        var datasets: [Dataset] = []
        for (name, node) in try datasetsNode.mapping() {
            for k in node.keys where !datasetKeys.contains(k) { unknown.append("\(node.path).\(k)") }
            let modeText = try node.child("mode")?.string() ?? "dialogue"
            let mode: Dataset.Mode
            switch modeText {
            case "dialogue", "multi_turn", "multi-turn": mode = .dialogue
            case "task", "qa", "single_turn": mode = .task
            default: throw node.child("mode")!.error("unknown mode \"\(modeText)\" (expected dialogue or task)")
            }
            func role(_ key: String) throws -> Role? {
                guard let r = node.child(key) else { return nil }
                guard let m = r.child("model") else { throw r.error("no `model:`") }
                let model = try m.string()
                _ = try registry.resolve(model, keyPath: m.path, line: m.line, configFile: file)
                var extra = JSONObject()
                for (k, v) in try r.mapping() where !["model", "temperature", "enable_thinking"].contains(k) { extra[k] = v.json() }
                return Role(model: model, temperature: try r.child("temperature")?.double(),
                            enableThinking: try r.child("enable_thinking")?.bool(), extra: extra)
            }
            guard let agent = try role("agent") else { throw node.error("no `agent:` (agent: {model: provider/name})") }
            let user = try role("user")
            if mode == .dialogue && user == nil {
                throw node.error("dialogue mode needs a user simulator: user: {model: provider/name}")
            }
            var extra = JSONObject()
            for (k, v) in try node.mapping() where !datasetKeys.contains(k) { extra[k] = v.json() }
            datasets.append(Dataset(
                name: name, path: try node.child("path")?.string(), outputPath: try node.child("output_path")?.string(),
                mcpDomain: try node.child("mcp_domain")?.string(), tools: try node.child("tools")?.string(),
                agent: agent, user: user,
                maxTurns: try node.child("max_turns")?.int(min: 1) ?? 10,
                maxStepsPerTurn: try node.child("max_steps_per_turn")?.int(min: 1) ?? 10,
                mode: mode, samples: try node.child("samples")?.int(min: 1) ?? defaultSamples, extra: extra))
        }
        if datasets.isEmpty { throw datasetsNode.error("no datasets") }
        return RunConfig(
            file: file,
            maxWorkers: try root.child("max_workers")?.int(min: 1) ?? 8,
            resume: try root.child("resume")?.bool() ?? true,
            enableMonitor: try root.child("enable_monitor")?.bool() ?? false,
            monitorMaxNoToolTurns: try root.child("monitor_max_no_tool_turns")?.int(min: 1) ?? 3,
            modelsConfigFile: resolvedModels, datasets: datasets, models: registry, unknownKeys: unknown)
    }

    /// The resolved configuration as JSON, with no secrets (key references stay references).
    public var resolvedJSON: JSONValue {
        func roleJSON(_ r: Role) -> JSONValue {
            var o = JSONObject()
            o["model"] = .string(r.model)
            if let t = r.temperature { o["temperature"] = JSONValue(t) }
            if let e = r.enableThinking { o["enable_thinking"] = .bool(e) }
            for (k, v) in r.extra { o[k] = v }
            if let m = models.entry(named: r.model) { o["registry"] = m.publicJSON }
            return .object(o)
        }
        var ds = JSONObject()
        for d in datasets {
            var o = JSONObject()
            if let p = d.path { o["path"] = .string(p) }
            if let p = d.outputPath { o["output_path"] = .string(p) }
            if let p = d.mcpDomain { o["mcp_domain"] = .string(p) }
            if let p = d.tools { o["tools"] = .string(p) }
            o["mode"] = .string(d.mode.rawValue)
            o["agent"] = roleJSON(d.agent)
            if let u = d.user { o["user"] = roleJSON(u) }
            o["max_turns"] = JSONValue(d.maxTurns)
            o["max_steps_per_turn"] = JSONValue(d.maxStepsPerTurn)
            o["samples"] = JSONValue(d.samples)
            for (k, v) in d.extra { o[k] = v }
            ds[d.name] = .object(o)
        }
        return .object([
            "max_workers": JSONValue(maxWorkers), "resume": .bool(resume), "enable_monitor": .bool(enableMonitor),
            "monitor_max_no_tool_turns": JSONValue(monitorMaxNoToolTurns), "datasets": .object(ds),
        ])
    }

    /// Environment variables the config's models refer to that are not set now.
    public func unsetEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let used = Set(datasets.flatMap { [$0.agent.model] + ($0.user.map { [$0.model] } ?? []) })
        var missing = Set<String>()
        for e in models.entries where used.contains(e.name) {
            for text in [e.apiKey, e.apiBase].compactMap({ $0 }) {
                for n in EnvReference.names(in: text) where env[n] == nil { missing.insert(n) }
            }
        }
        return missing.sorted()
    }
}
