import Foundation

/// One registered model: `provider/name` → how to call it. `apiKey` is the reference as
/// written (`${OPENAI_API_KEY}`); it is expanded only when a request is made.
public struct ModelEntry: Sendable, Equatable {
    public enum Provider: String, Sendable, CaseIterable { case openai, anthropic, mock }

    public var name: String
    public var provider: Provider
    public var apiBase: String?
    public var apiKey: String?
    public var mode: String?
    public var priceInput: Double?
    public var priceOutput: Double?
    public var priceCached: Double?
    /// Every other key, passed through to the provider layer (e.g. reasoning history policy).
    public var settings: JSONObject

    /// The entry as stored in the `models` table and in run configs: no key, only whether one
    /// is referenced.
    public var publicJSON: JSONValue {
        var o = JSONObject()
        o["provider"] = .string(provider.rawValue)
        if let apiBase { o["api_base"] = .string(apiBase) }
        if let apiKey { o["api_key"] = .string(EnvReference.isReference(apiKey) ? apiKey : "<literal>") }
        if let mode { o["mode"] = .string(mode) }
        var price = JSONObject()
        if let priceInput { price["input"] = JSONValue(priceInput) }
        if let priceOutput { price["output"] = JSONValue(priceOutput) }
        if let priceCached { price["cached"] = JSONValue(priceCached) }
        if !price.isEmpty { o["price"] = .object(price) }
        for (k, v) in settings { o[k] = v }
        return .object(o)
    }
}

/// The model registry (`configs/models.yml`): names `provider/name` mapped to entries. The
/// mapping may sit at the top level or under a `models:` key.
public struct ModelRegistry: Sendable {
    public var file: String
    public var entries: [ModelEntry]

    /// Values accepted as a literal `api_key` because they are placeholders local servers want.
    static let placeholderKeys: Set<String> = ["", "EMPTY", "empty", "none", "None", "dummy", "sk-no-key-required"]

    public init(file: String, entries: [ModelEntry]) {
        self.file = file
        self.entries = entries
    }

    public static func load(file: String) throws -> ModelRegistry {
        var root = try ConfigNode.load(file: file)
        if let models = root.child("models") { root = models }
        var entries: [ModelEntry] = []
        for (name, node) in try root.mapping() {
            guard name.contains("/"), !name.hasPrefix("/"), !name.hasSuffix("/") else {
                throw node.error("model names are provider/name (e.g. openai/gpt-4o)")
            }
            let providerText = try node.child("provider")?.string() ?? String(name.split(separator: "/")[0])
            guard let provider = ModelEntry.Provider(rawValue: providerText) else {
                throw (node.child("provider") ?? node).error("unknown provider \"\(providerText)\" (expected \(ModelEntry.Provider.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var entry = ModelEntry(name: name, provider: provider, settings: JSONObject())
            if let base = node.child("api_base") {
                let text = try base.string()
                guard text.hasPrefix("http://") || text.hasPrefix("https://") || EnvReference.isReference(text) else {
                    throw base.error("expected an http(s) URL, found \"\(text)\"")
                }
                entry.apiBase = text
            }
            if provider != .mock && entry.apiBase == nil {
                entry.apiBase = provider == .openai ? "https://api.openai.com/v1" : "https://api.anthropic.com"
            }
            if let key = node.child("api_key") {
                let text = try key.string()
                if !EnvReference.isReference(text) && !placeholderKeys.contains(text) {
                    throw key.error("a literal API key; keys belong in the environment: write api_key: ${\(provider == .anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY")}")
                }
                entry.apiKey = text
            }
            try refuseLiteralSecrets(in: node, provider: provider)
            entry.mode = try node.child("mode")?.string()
            if let price = node.child("price") {
                entry.priceInput = try price.child("input")?.double()
                entry.priceOutput = try price.child("output")?.double()
                entry.priceCached = try price.child("cached")?.double()
                // mapping(), not child(k): child is nil for a key with no value (`bogus:`).
                for (k, v) in (try? price.mapping()) ?? [] where !["input", "output", "cached"].contains(k) {
                    throw v.error("unknown price key (expected input, output, cached: USD per 1M tokens)")
                }
            }
            for (k, v) in try node.mapping() where !["provider", "api_base", "api_key", "mode", "price"].contains(k) {
                entry.settings[k] = v.json()
            }
            if let timeout = node.child("read_timeout") {
                // Read once per call from `settings`; checked here so a typo fails at load, not mid-run.
                guard let seconds = try? timeout.double(), seconds > 0, seconds <= 86_400 else {
                    throw timeout.error("read_timeout is the seconds to wait with no data from the server: a number above 0 and at most 86400 (e.g. 120)")
                }
            }
            entries.append(entry)
        }
        return ModelRegistry(file: file, entries: entries)
    }

    public func entry(named name: String) -> ModelEntry? { entries.first { $0.name == name } }

    /// `file` when it exists; otherwise, for the default path, the registry bundled with the
    /// binary (the mock models and commented examples), so `rollout chat mock/agent …` works in
    /// any folder.
    public static func loadOrBundled(file: String, isDefault: Bool) throws -> ModelRegistry {
        if FileManager.default.fileExists(atPath: file) || !isDefault { return try load(file: file) }
        let bundled = FileManager.default.temporaryDirectory.appending(path: "rollout-bundled-models-\(getpid()).yml")
        try BundledFiles.data("configs/models.yml")!.write(to: bundled)
        defer { try? FileManager.default.removeItem(at: bundled) }
        var registry = try load(file: bundled.path)
        registry.file = "(bundled configs/models.yml)"
        return registry
    }

    /// The entry for `name`, or an error listing what is registered.
    public func resolve(_ name: String, keyPath: String, line: Int? = nil, configFile: String? = nil) throws -> ModelEntry {
        if let e = entry(named: name) { return e }
        throw ConfigError(file: configFile ?? file, line: line, keyPath: keyPath,
                          reason: "unknown model \"\(name)\"; registered in \(file): \(entries.map(\.name).joined(separator: ", "))")
    }
}
