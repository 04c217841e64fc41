import Yams

extension ModelRegistry {
    /// Refuses a model entry that would put a credential in the registry file or the `models`
    /// table: a literal `api_key` (placeholders such as `EMPTY` aside), a literal default in
    /// `${VAR:-…}` for a credential, a password in `api_base` (`http://user:pw@host`), a literal
    /// `Authorization` / `x-api-key` in extra headers, and any value shaped like a credential
    /// under any other key. The error names file:line:key and says to use `${VAR}`.
    static func refuseLiteralSecrets(in entry: ConfigNode, provider: ModelEntry.Provider) throws {
        let keyVariable = provider == .anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY"
        func walk(_ node: ConfigNode, key: String) throws {
            switch node.node {
            case .mapping:
                for (k, child) in try node.mapping() { try walk(child, key: k) }
            case .sequence(let items):
                for item in items { try walk(ConfigNode(node: item, path: node.path, file: node.file), key: key) }
            case .scalar(let s):
                // Numbers and switches are no secrets; a quoted scalar is text whatever it holds.
                if s.style == .plain, Double(s.string) != nil || ["true", "false", "yes", "no", "on", "off"].contains(s.string) { return }
                guard let reason = Secrets.literalSecret(key: key, value: s.string) else { return }
                let fix = key == "api_key"
                    ? "write api_key: ${\(keyVariable)}"
                    : Secrets.looksLikeSecretKey(key) ? "write \(key): ${VAR} (a header may keep its scheme: Bearer ${VAR})"
                    : "put the secret in the environment and write ${VAR} where it goes"
                throw node.error("\(reason); use ${VAR}: \(fix), with VAR set in the environment (expanded only when a request is made)")
            case .alias:
                return
            }
        }
        try walk(entry, key: "")
    }
}
