import Synchronization

/// Keeping credentials out of everything the tool shows or stores.
///
/// Two halves. *Refusing*: a credential may only reach configs and the database as a `${VAR}`
/// reference; `literalSecret(key:value:)` says why a value is a literal one (by the key's name
/// or the value's shape). *Masking*: every secret actually in use this process (an API key, a
/// `${VAR}` expanded into an MCP server's environment or arguments) is registered, and
/// `mask(_:)` replaces registered values and credential-shaped text (`sk-…`, `Bearer …`,
/// `Authorization: …`, `scheme://user:pw@`, `ghp_…`, …) with `[redacted]` wherever text from
/// a peer (a model server's error, an MCP server's stderr) is shown or stored.
public enum Secrets {
    /// What replaces a secret.
    public static let redacted = "[redacted]"

    /// Values accepted as literals because local servers want a placeholder, not a key. They
    /// are never registered nor refused.
    public static let placeholders: Set<String> = [
        "", "EMPTY", "empty", "Empty", "none", "None", "NONE", "null", "dummy", "DUMMY", "not-needed",
        "no-key", "nokey", "sk-no-key-required",
    ]

    /// The shortest value that is registered for masking. Shorter values (`hunter2`, `1`,
    /// `us`) would mask ordinary words in every message; keys and tokens are far longer.
    public static let minimumRegisteredLength = 8

    // MARK: - The registry of secrets in use

    /// The registered values as UTF-8, longest first.
    private static let registry = Mutex<[[UInt8]]>([])
    /// Lets `mask` skip the lock entirely while nothing is registered (every mock-only run).
    private static let anyRegistered = Atomic<Bool>(false)

    /// Registers a secret in use so `mask` hides it from now on. Placeholders, values shorter
    /// than `minimumRegisteredLength` and values that are plainly not secret (a file path, an
    /// http(s) URL without a password or query, anything without a letter: a number, a date, a
    /// version) are ignored; a URL's password is registered
    /// on its own.
    public static func register(_ value: String?) {
        guard let value else { return }
        if let password = urlPassword(value) { add(password) }
        guard value.count >= minimumRegisteredLength, !placeholders.contains(value), !isPlainlyNotSecret(value) else { return }
        add(value)
    }

    /// Registers the value of each `${VAR}` substituted into `text`, unless `VAR` is a standard
    /// process variable (`PATH`, `HOME`, …) whose value is no secret.
    static func registerSubstitutions(of text: String, environment: [String: String]) {
        for name in EnvReference.names(in: text) where !ordinaryVariables.contains(name) && !name.hasPrefix("LC_") {
            register(environment[name])
        }
    }

    private static func add(_ value: String) {
        guard value.count >= minimumRegisteredLength, !placeholders.contains(value) else { return }
        let bytes = Array(value.utf8)
        registry.withLock { values in
            guard !values.contains(bytes) else { return }
            values.append(bytes)
            // Longest first, so a secret that contains another is masked whole.
            values.sort { $0.count > $1.count }
        }
        anyRegistered.store(true, ordering: .releasing)
    }

    /// Process variables that hold no secret; a server env that passes them on is common.
    static let ordinaryVariables: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PWD",
        "ROLLOUT_STATE_DIR", "PYTHONPATH", "VIRTUAL_ENV", "NODE_PATH", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
        "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
    ]

    private static func isPlainlyNotSecret(_ value: String) -> Bool {
        if value.hasPrefix("/") || value.hasPrefix("./") || value.hasPrefix("../") || value.hasPrefix("~/") { return true }
        // Numbers, dates, versions, times, ports: a key or password has letters.
        if !value.contains(where: \.isLetter) { return true }
        if (value.hasPrefix("http://") || value.hasPrefix("https://")) && !value.contains("@") && !value.contains("?") { return true }
        return false
    }

    /// The password in `scheme://user:password@host…`, when there is one.
    static func urlPassword(_ text: String) -> String? {
        guard let scheme = text.range(of: "://") else { return nil }
        let rest = text[scheme.upperBound...]
        let authority = rest.prefix { !"/?#".contains($0) }
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return nil }
        let password = String(authority[authority.index(after: colon)..<at])
        return password.isEmpty || password.hasPrefix("${") ? nil : password
    }

    // MARK: - Masking

    /// `text` with every registered secret and every credential-shaped token replaced by
    /// `[redacted]`. For errors and any other text from a peer that is shown or stored.
    public static func mask(_ text: String) -> String {
        maskShapes(maskRegistered(text))
    }

    /// An optional twin of `mask`, for columns that may be NULL.
    public static func mask(_ text: String?) -> String? { text.map { mask($0) } }

    /// Every string in a JSON value (an error body from a peer) masked.
    public static func mask(json value: JSONValue) -> JSONValue {
        switch value {
        case .string(let s): .string(mask(s))
        case .array(let items): .array(items.map { mask(json: $0) })
        case .object(let o): .object(JSONObject(pairs: o.map { ($0.0, mask(json: $0.1)) }))
        default: value
        }
    }

    /// `text` with only the registered secrets replaced: cheap enough for every tool result
    /// (nothing is scanned while nothing is registered), and it never alters text that merely
    /// looks like a credential (code, docs) in what becomes training data.
    public static func maskRegistered(_ text: String) -> String {
        guard anyRegistered.load(ordering: .acquiring) else { return text }
        let values = registry.withLock { $0 }
        var copy = text
        // Bytes, not Characters: a plain byte search is what keeps this cheap on every tool
        // result, and UTF-8 never matches a needle in the middle of another character.
        let masked: String? = copy.withUTF8 { s in
            var spans: [Range<Int>] = []
            for v in values {
                guard let first = v.first, v.count <= s.count else { continue }
                v.withUnsafeBufferPointer { n in
                    var i = 0
                    let last = s.count - n.count
                    while i <= last {
                        if s[i] == first {
                            var k = 1
                            while k < n.count && s[i + k] == n[k] { k += 1 }
                            if k == n.count {
                                spans.append(i..<(i + n.count))
                                i += n.count
                                continue
                            }
                        }
                        i += 1
                    }
                }
            }
            guard !spans.isEmpty else { return nil }
            spans.sort { $0.lowerBound < $1.lowerBound }
            var out: [UInt8] = []
            out.reserveCapacity(s.count)
            var i = 0
            for span in spans where span.upperBound > i {
                if span.lowerBound >= i { out += s[i..<span.lowerBound]; out += redacted.utf8 }
                i = span.upperBound
            }
            out += s[i...]
            return String(decoding: out, as: UTF8.self)
        }
        return masked ?? text
    }

    /// `text` with credential-shaped tokens replaced (see `Shape`); the registry is not used.
    public static func maskShapes(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard let found = Scanner(bytes).scan(), !found.spans.isEmpty else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        for span in found.spans {
            out += bytes[i..<span.lowerBound]
            out += Array(redacted.utf8)
            i = span.upperBound
        }
        out += bytes[i...]
        return String(decoding: out, as: UTF8.self)
    }

    /// What kind of credential `text` holds by its shape alone, for messages; nil when none.
    public static func shape(in text: String) -> String? {
        Scanner(Array(text.utf8)).scan()?.firstKind
    }

    // MARK: - Refusing literals

    /// Whether a key (an environment variable, a header, a config key, a command-line flag)
    /// names a credential: one of its words is KEY, TOKEN, SECRET, PASS, PASSWORD, PAT,
    /// COOKIE, AUTH, CREDENTIAL(S)… (`OPENAI_API_KEY`, `x-api-key`, `GITHUB_PAT`,
    /// `SESSION_COOKIE`, `Authorization`), unless a word says it points at one
    /// (`TOKEN_FILE`, `API_KEY_ENV`, `AUTH_MODE`).
    public static func looksLikeSecretKey(_ key: String) -> Bool {
        let words = words(of: key)
        guard words.contains(where: isSecretWord) else { return false }
        return !words.contains { pointerWords.contains($0) }
    }

    private static let secretWords: Set<String> = [
        "KEY", "APIKEY", "TOKEN", "SECRET", "PASS", "PASSWD", "PASSWORD", "PASSPHRASE", "PAT", "COOKIE", "COOKIES",
        "AUTH", "AUTHORIZATION", "CREDENTIAL", "CREDENTIALS", "PW", "BEARER",
    ]
    private static let pointerWords: Set<String> = [
        "FILE", "FILES", "PATH", "DIR", "ENV", "VAR", "NAME", "TYPE", "MODE", "METHOD", "URL", "ENDPOINT", "HEADER",
        "ENABLED", "DISABLED", "REQUIRED", "ID", "COUNT", "LIMIT", "MAX", "MIN", "LENGTH", "SIZE", "STYLE", "FORMAT",
    ]

    private static func isSecretWord(_ word: String) -> Bool {
        secretWords.contains(word)
            || ["APIKEY", "ACCESSKEY", "SECRETKEY", "PRIVATEKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD"].contains { word.hasSuffix($0) }
    }

    /// `OPENAI_API_KEY` → OPENAI, API, KEY; `apiKey` → API, KEY; `x-api-key` → X, API, KEY.
    static func words(of key: String) -> [String] {
        var words: [String] = []
        var current = ""
        var previousLower = false
        for c in key {
            if !(c.isLetter || c.isNumber) {
                if !current.isEmpty { words.append(current.uppercased()) }
                current = ""
                previousLower = false
                continue
            }
            if c.isUppercase && previousLower {
                words.append(current.uppercased())
                current = ""
            }
            current.append(c)
            previousLower = c.isLowercase || c.isNumber
        }
        if !current.isEmpty { words.append(current.uppercased()) }
        return words
    }

    /// Why `value` (set for `key`, when it has one) is a literal credential, or nil when it may
    /// be stored: a placeholder, a `${VAR}` reference (around literal text that is not itself
    /// a credential, as in `Bearer ${TOKEN}`), or — for a key that is not a secret's —
    /// anything not shaped like a credential. A reference's default (`${VAR:-default}`) counts
    /// as a literal. The reason never quotes the value.
    public static func literalSecret(key: String?, value: String) -> String? {
        if placeholders.contains(value) { return nil }
        let secretKey = key.map(looksLikeSecretKey) ?? false
        for fallback in EnvReference.fallbacks(in: value) where !placeholders.contains(fallback) {
            if secretKey { return "the default in ${…:-…} is a literal secret; drop the default" }
            if let kind = shape(in: fallback) { return "the default in ${…:-…} is \(kind); drop the default" }
        }
        let literal = EnvReference.removingReferences(value)
        if let kind = shape(in: literal) { return "holds \(kind)" }
        if secretKey && !EnvReference.isReference(value) && !isHarmlessLiteral(value) {
            return "a literal value for a key that names a credential"
        }
        return nil
    }

    /// Literals a credential-named key may hold: switches and file paths (`NO_AUTH=1`,
    /// `GOOGLE_APPLICATION_CREDENTIALS=/etc/creds.json`).
    private static func isHarmlessLiteral(_ value: String) -> Bool {
        ["0", "1", "true", "false", "yes", "no", "on", "off", "TRUE", "FALSE", "True", "False"].contains(value)
            || value.hasPrefix("/") || value.hasPrefix("./") || value.hasPrefix("../") || value.hasPrefix("~/")
    }

    // MARK: - The shape scanner

    /// One pass over the bytes: a byte that can start no pattern is skipped after one table
    /// lookup, so text without credentials costs little more than reading it.
    private struct Scanner {
        let s: [UInt8]
        init(_ bytes: [UInt8]) { s = bytes }

        struct Found {
            var spans: [Range<Int>] = []
            var firstKind: String?
        }

        enum Rule {
            /// A key with a known prefix: `prefix` kept, the body masked when it has at least
            /// `minimum` characters of `body`.
            case prefixed(minimum: Int, body: BodyChars)
            /// An auth scheme followed by its credential (`Bearer …`, `Basic …`).
            case scheme
            /// A header or parameter name followed by `:` or `=` and its value.
            case named
            /// `://user:password@`.
            case userinfo
        }

        enum BodyChars { case alnum, alnumDash, upperDigits }

        struct Pattern {
            let bytes: [UInt8]
            let caseInsensitive: Bool
            let rule: Rule
            let kind: String
        }

        static let patterns: [Pattern] = {
            func p(_ text: String, _ rule: Rule, _ kind: String, ci: Bool = false) -> Pattern {
                Pattern(bytes: Array((ci ? text.lowercased() : text).utf8), caseInsensitive: ci, rule: rule, kind: kind)
            }
            let key = "a key of a well-known shape"
            return [
                p("github_pat_", .prefixed(minimum: 20, body: .alnumDash), key + " (github_pat_…)"),
                p("sk-", .prefixed(minimum: 8, body: .alnumDash), key + " (sk-…)"),
                p("sk_", .prefixed(minimum: 8, body: .alnumDash), key + " (sk_…)"),
                p("ghp_", .prefixed(minimum: 20, body: .alnum), key + " (ghp_…)"),
                p("gho_", .prefixed(minimum: 20, body: .alnum), key + " (gho_…)"),
                p("ghu_", .prefixed(minimum: 20, body: .alnum), key + " (ghu_…)"),
                p("ghs_", .prefixed(minimum: 20, body: .alnum), key + " (ghs_…)"),
                p("ghr_", .prefixed(minimum: 20, body: .alnum), key + " (ghr_…)"),
                p("glpat-", .prefixed(minimum: 16, body: .alnumDash), key + " (glpat-…)"),
                p("xoxb-", .prefixed(minimum: 10, body: .alnumDash), key + " (xoxb-…)"),
                p("xoxp-", .prefixed(minimum: 10, body: .alnumDash), key + " (xoxp-…)"),
                p("xoxa-", .prefixed(minimum: 10, body: .alnumDash), key + " (xoxa-…)"),
                p("xoxs-", .prefixed(minimum: 10, body: .alnumDash), key + " (xoxs-…)"),
                p("xapp-", .prefixed(minimum: 10, body: .alnumDash), key + " (xapp-…)"),
                p("hf_", .prefixed(minimum: 20, body: .alnum), key + " (hf_…)"),
                p("AKIA", .prefixed(minimum: 16, body: .upperDigits), key + " (AKIA…)"),
                p("ASIA", .prefixed(minimum: 16, body: .upperDigits), key + " (ASIA…)"),
                p("AIza", .prefixed(minimum: 30, body: .alnumDash), key + " (AIza…)"),
                p("bearer ", .scheme, "a Bearer credential", ci: true),
                p("basic ", .scheme, "a Basic credential", ci: true),
                p("authorization", .named, "an Authorization value", ci: true),
                p("x-api-key", .named, "an API key value", ci: true),
                p("api-key", .named, "an API key value", ci: true),
                p("api_key", .named, "an API key value", ci: true),
                p("apikey", .named, "an API key value", ci: true),
                p("access_token", .named, "an access token", ci: true),
                p("://", .userinfo, "a URL with a user and password before its host"),
            ]
        }()

        /// Authorization schemes kept in front of a masked credential.
        static let schemes: Set<String> = ["bearer", "basic", "token", "digest", "apikey", "key", "dsn"]

        /// For each byte, the patterns that may start with it.
        static let starts: [[Int]] = {
            var table = [[Int]](repeating: [], count: 256)
            for (n, p) in patterns.enumerated() {
                let b = p.bytes[0]
                table[Int(b)].append(n)
                if p.caseInsensitive, b >= 0x61 && b <= 0x7A { table[Int(b - 0x20)].append(n) }
            }
            return table
        }()

        /// Whether any pattern starts with a byte: the one test most bytes get.
        static let startsAny: [Bool] = starts.map { !$0.isEmpty }

        func scan() -> Found? {
            var found = Found()
            var i = 0
            let table = Self.starts
            let any = Self.startsAny
            while i < s.count {
                if !any[Int(s[i])] { i += 1; continue }
                let candidates = table[Int(s[i])]
                var advanced = false
                for n in candidates {
                    let p = Self.patterns[n]
                    guard matches(p, at: i) else { continue }
                    if let (span, resume) = apply(p, at: i) {
                        if found.firstKind == nil { found.firstKind = p.kind }
                        if let last = found.spans.last, last.upperBound > span.lowerBound {
                            found.spans[found.spans.count - 1] = last.lowerBound..<max(last.upperBound, span.upperBound)
                        } else {
                            found.spans.append(span)
                        }
                        i = resume
                        advanced = true
                        break
                    }
                }
                if !advanced { i += 1 }
            }
            return found.spans.isEmpty ? nil : found
        }

        private func matches(_ p: Pattern, at i: Int) -> Bool {
            guard i + p.bytes.count <= s.count else { return false }
            for (k, b) in p.bytes.enumerated() {
                var c = s[i + k]
                if p.caseInsensitive, c >= 0x41 && c <= 0x5A { c |= 0x20 }
                if c != b { return false }
            }
            return true
        }

        private func isWordByte(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }

        private func isBody(_ c: UInt8, _ chars: BodyChars) -> Bool {
            let digit = c >= 0x30 && c <= 0x39, upper = c >= 0x41 && c <= 0x5A, lower = c >= 0x61 && c <= 0x7A
            switch chars {
            case .alnum: return digit || upper || lower
            case .alnumDash: return digit || upper || lower || c == 0x2D || c == 0x5F
            case .upperDigits: return digit || upper
            }
        }

        /// A credential token after a scheme or a name: base64, base64url and JWT characters.
        private func isTokenByte(_ c: UInt8) -> Bool {
            isWordByte(c) || c == 0x2E || c == 0x7E || c == 0x2B || c == 0x2F || c == 0x3D
        }

        /// The span to mask and where scanning resumes, or nil when the match is not a secret.
        private func apply(_ p: Pattern, at i: Int) -> (Range<Int>, Int)? {
            let after = i + p.bytes.count
            switch p.rule {
            case .prefixed(let minimum, let chars):
                guard i == 0 || !isWordByte(s[i - 1]) else { return nil }
                var j = after
                while j < s.count, isBody(s[j], chars) { j += 1 }
                guard j - after >= minimum else { return nil }
                return (after..<j, j)
            case .scheme:
                guard i == 0 || !isWordByte(s[i - 1]) else { return nil }
                var j = after
                while j < s.count, s[j] == 0x20 { j += 1 }
                let start = j
                while j < s.count, isTokenByte(s[j]) { j += 1 }
                guard looksLikeCredential(start..<j) else { return nil }
                return (start..<j, j)
            case .named:
                guard i == 0 || !isWordByte(s[i - 1]) || s[i - 1] == 0x2D || s[i - 1] == 0x5F else { return nil }
                // The name may be quoted (`"Authorization": "…"`); a separator is required.
                var j = after
                var separated = false
                while j < s.count, [0x22, 0x27, 0x20, 0x3A, 0x3D].contains(s[j]) {
                    if s[j] == 0x3A || s[j] == 0x3D { separated = true }
                    j += 1
                }
                guard separated, j < s.count, s[j] != 0x24, s[j] != 0x3C else { return nil }  // `${VAR}`, `<literal>`
                // An auth scheme (`Bearer`, `Token`) stays; the credential after it goes.
                var k = j
                while k < s.count, (s[k] >= 0x41 && s[k] <= 0x5A) || (s[k] >= 0x61 && s[k] <= 0x7A) { k += 1 }
                if k < s.count, s[k] == 0x20, Self.schemes.contains(String(decoding: s[j..<k], as: UTF8.self).lowercased()) {
                    k += 1
                    while k < s.count, s[k] == 0x20 { k += 1 }
                    j = k
                }
                let start = j
                while j < s.count, isTokenByte(s[j]) || s[j] == 0x3A { j += 1 }
                // Prose after a name ("API_KEY: the default …") is no credential.
                guard looksLikeCredential(start..<j) else { return nil }
                return (start..<j, j)
            case .userinfo:
                var j = after
                var colon: Int?
                while j < s.count {
                    let c = s[j]
                    if c == 0x40 { break }  // @
                    if [0x2F, 0x3F, 0x23, 0x20, 0x22, 0x27, 0x3C, 0x3E, 0x0A, 0x0D, 0x09].contains(c) { return nil }
                    if c == 0x3A && colon == nil { colon = j }
                    j += 1
                }
                guard j < s.count, let colon, j > colon + 1, s[colon + 1] != 0x24 else { return nil }
                return (colon + 1..<j, j)
            }
        }

        /// A scheme's token is a credential when it is long and not a plain word: prose such
        /// as "Basic authentication" is left alone.
        private func looksLikeCredential(_ r: Range<Int>) -> Bool {
            guard r.count >= 8 else { return false }
            if r.count >= 20 { return true }
            return s[r].contains { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x3D || $0 == 0x2B || $0 == 0x2F || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
        }
    }
}
