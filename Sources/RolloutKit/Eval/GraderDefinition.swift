import Foundation

/// The built-in grader kinds. Each writes `grades` rows; what a verdict means is in `summary`.
public enum GraderKind: String, Sendable, CaseIterable {
    case exact, normalized, contains, regex, numeric
    case llmJudge = "llm-judge"
    case stopReason = "stop-reason"
    case sql, tau2, reward

    /// Revision of the built-in implementation. Bump it when a fix changes verdicts: the
    /// definition changes, so the next `rollout grade` adds a grader version and keeps the old.
    var revision: Int { 1 }

    /// One line for `rollout grade --list`.
    public var summary: String {
        switch self {
        case .exact: "the response equals the reference answer (surrounding whitespace ignored)"
        case .normalized: "equal after normalizing: case, punctuation, articles (a, an, the), whitespace"
        case .contains: "the reference appears in the response (normalized, as whole words)"
        case .regex: "the response matches `pattern` ({answer} stands for the escaped reference)"
        case .numeric: "the number in the response is within `tolerance` (absolute) or `relative` of the reference"
        case .llmJudge: "a judge model's verdict, parsed strictly by the declared `format`; unparseable → undecidable"
        case .stopReason: "the rollout completed with one of `passing` (default: user_stop, answer)"
        case .sql: "a SQL `expression` over the rollout r and its task t: true, false or NULL (undecidable)"
        case .tau2: "τ-bench / τ²-bench criteria decidable from the trajectory: actions and communicate_info, per component"
        case .reward: "the rollout's stored reward ≥ `threshold` (default 1.0)"
        }
    }

    /// One line per option for `rollout grade --list`: name, default, what it does.
    public var optionHelp: [String] {
        options.map { o in
            var line = o.key
            if o.required { line += " (required)" } else if let d = o.defaultValue {
                let text = d.stringValue ?? d.jsonText
                line += " = \(text.isEmpty ? "\"\"" : text)"
            }
            if let allowed = o.allowed { line += " [\(allowed.joined(separator: "|"))]" }
            return line + ": " + o.help
        }
    }

    /// The options this kind accepts, with their defaults.
    var options: [GraderOption] {
        let reference = GraderOption("reference", .string, default: "answer",
                                     help: "answer (the task's reference), criteria:$.json.path or record:$.json.path")
        let response = GraderOption("response", .string, default: "auto", allowed: ["auto", "prediction", "last_message"],
                                    help: "auto = the rollout's prediction, else its last assistant message")
        switch self {
        case .exact:
            return [reference, response, GraderOption("case_sensitive", .bool, default: true, help: "compare case")]
        case .normalized:
            return [reference, response]
        case .contains:
            return [reference, response,
                    GraderOption("normalize", .bool, default: true, help: "normalize both and match whole words (false: raw substring)")]
        case .regex:
            return [reference, response,
                    GraderOption("pattern", .string, required: true, help: "ICU regular expression; {answer} = the escaped reference"),
                    GraderOption("flags", .string, default: "", help: "i (ignore case), s (. matches newlines), m (^ $ per line), x")]
        case .numeric:
            return [reference, response,
                    GraderOption("tolerance", .number, default: JSONValue(1e-6), help: "absolute tolerance"),
                    GraderOption("relative", .number, default: JSONValue(0.0), help: "relative tolerance (fraction of |reference|)"),
                    GraderOption("pick", .string, default: "last", allowed: ["first", "last", "only"],
                                 help: "which number of the response counts (only: exactly one number, else undecidable)")]
        case .llmJudge:
            return [reference, response,
                    GraderOption("model", .string, required: true, help: "the judge: a model registry name (or --judge-model)"),
                    GraderOption("format", .string, default: .string(JudgeFormat.correctIncorrect.rawValue),
                                 allowed: JudgeFormat.allCases.map(\.rawValue), help: "how the reply is parsed"),
                    GraderOption("prompt", .string, help: "the template; placeholders {question} {answer} {response} {transcript} {criteria} {task_id}"),
                    GraderOption("system", .string, help: "a system prompt for the judge"),
                    GraderOption("schema", .json, help: "format json: the JSON Schema the reply must satisfy"),
                    GraderOption("field", .string, default: "correct", help: "format json: the verdict field"),
                    GraderOption("pass_values", .stringList, help: "format json: string verdicts that pass (the others listed in the schema's enum fail)"),
                    GraderOption("answer_line", .string, default: "whole", allowed: ["whole", "last"],
                                 help: "correct_incorrect / abc: parse the whole reply, or only its last non-empty line"),
                    GraderOption("temperature", .number, default: JSONValue(0.0), help: "sampling temperature"),
                    GraderOption("max_tokens", .integer, help: "most tokens the judge may write")]
        case .stopReason:
            return [GraderOption("passing", .stringList, default: .array([.string("answer"), .string("user_stop")]),
                                 help: "stop reasons that pass")]
        case .sql:
            return [GraderOption("expression", .string, required: true, help: "SQL over r (latest_rollouts row), t (tasks row), ru (runs row)"),
                    GraderOption("explanation", .string, help: "a SQL expression for the explanation text")]
        case .tau2:
            return []
        case .reward:
            return [GraderOption("threshold", .number, default: JSONValue(1.0), help: "passed when reward ≥ threshold")]
        }
    }
}

/// The reply formats an LLM judge can be asked for.
public enum JudgeFormat: String, Sendable, CaseIterable {
    /// `Correct` or `Incorrect`.
    case correctIncorrect = "correct_incorrect"
    /// `A` (correct), `B` (incorrect) or `C` (not attempted), as SimpleQA's grader.
    case abc
    /// A line `correct: yes` or `correct: no`, as BrowseComp's grader.
    case yesNo = "yes_no"
    /// A JSON object satisfying the declared schema; the verdict is its `field`.
    case json
}

/// One option of a grader kind.
struct GraderOption: Sendable {
    enum ValueType: Sendable { case string, number, integer, bool, stringList, json }
    var key: String
    var type: ValueType
    var defaultValue: JSONValue?
    var required: Bool
    var allowed: [String]?
    var help: String

    init(_ key: String, _ type: ValueType, default defaultValue: JSONValue? = nil, required: Bool = false,
         allowed: [String]? = nil, help: String) {
        self.key = key
        self.type = type
        self.defaultValue = defaultValue
        self.required = required
        self.allowed = allowed
        self.help = help
    }

    /// The value in canonical form (numbers as doubles, lists sorted where order means nothing).
    func canonical(_ value: JSONValue, place: String) throws(ConfigError) -> JSONValue {
        func fail(_ reason: String) -> ConfigError { ConfigError(file: place, line: nil, keyPath: key, reason: reason) }
        switch type {
        case .string:
            guard let s = value.scalarText, value.stringValue != nil || value.doubleValue != nil else {
                throw fail("expected text, found \(value.typeName)")
            }
            if let allowed, !allowed.contains(s) {
                throw fail("expected one of \(allowed.joined(separator: ", ")), found \"\(s)\"")
            }
            return .string(s)
        case .number:
            let d: Double? = value.doubleValue ?? value.stringValue.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard let d, d.isFinite else { throw fail("expected a number, found \(value.jsonText)") }
            guard d >= 0 || key == "threshold" else { throw fail("must be at least 0, found \(value.jsonText)") }
            return JSONValue(d)
        case .integer:
            let d: Double? = value.doubleValue ?? value.stringValue.flatMap { Double($0) }
            guard let d, d == d.rounded(), d >= 1, d < 1e9 else { throw fail("expected a positive integer, found \(value.jsonText)") }
            return JSONValue(Int(d))
        case .bool:
            if let b = value.boolValue { return .bool(b) }
            if let s = value.stringValue?.lowercased(), ["true", "false", "yes", "no"].contains(s) {
                return .bool(s == "true" || s == "yes")
            }
            throw fail("expected true or false, found \(value.jsonText)")
        case .stringList:
            var items: [String]
            switch value {
            case .array(let a):
                items = try a.map { v throws(ConfigError) in
                    guard let s = v.scalarText, v.stringValue != nil || v.doubleValue != nil else { throw fail("expected a list of text values") }
                    return s
                }
            case .string(let s):
                items = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            default:
                throw fail("expected a list of text values, found \(value.typeName)")
            }
            if items.isEmpty { throw fail("expected at least one value") }
            items = Array(Set(items)).sorted()
            return .array(items.map(JSONValue.string))
        case .json:
            if case .string(let s) = value {
                do { return try JSONParser.parse(s) } catch { throw fail("not valid JSON: \(error.description)") }
            }
            return value
        }
    }
}

/// A grader as it is applied: its name (what `grades.grader` holds), kind and every option
/// that decides a verdict, defaults filled in. Two definitions are the same version exactly
/// when their canonical JSON is equal.
public struct GraderDefinition: Sendable, Equatable {
    public var name: String
    public var kind: GraderKind
    /// Effective options, canonical values, defaults included.
    public var options: JSONObject
    /// The options as written, before defaults (command-line options are applied on top of these).
    public var given: JSONObject

    /// Builds a definition from options as written (config or command line), checking each;
    /// `place` names where they came from for errors.
    public init(name: String? = nil, kind: GraderKind, options given: JSONObject, place: String = "grader") throws(ConfigError) {
        self.kind = kind
        self.name = name ?? kind.rawValue
        self.given = JSONObject(pairs: given.filter { !$0.value.isNull }.map { ($0.key, $0.value) })
        let specs = kind.options
        var options = JSONObject()
        for (key, value) in given where !value.isNull {
            guard let spec = specs.first(where: { $0.key == key }) else {
                let known = specs.map(\.key)
                throw ConfigError(file: place, line: nil, keyPath: key,
                                  reason: "not an option of the \(kind.rawValue) grader (\(known.isEmpty ? "it takes none" : "options: " + known.joined(separator: ", ")))")
            }
            options[key] = try spec.canonical(value, place: place)
        }
        for spec in specs where options[spec.key] == nil {
            if let d = spec.defaultValue { options[spec.key] = try spec.canonical(d, place: place) }
            else if spec.required {
                throw ConfigError(file: place, line: nil, keyPath: spec.key, reason: "required by the \(kind.rawValue) grader (\(spec.help))")
            }
        }
        if let reference = options["reference"]?.stringValue { try Self.checkReference(reference, place: place) }
        if kind == .llmJudge {
            let format = JudgeFormat(rawValue: options["format"]?.stringValue ?? "") ?? .correctIncorrect
            if options["prompt"] == nil { options["prompt"] = .string(JudgeTemplate.defaultPrompt(format)) }
            if format == .json && options["schema"] == nil { options["schema"] = JudgeTemplate.defaultSchema }
            do { _ = try JudgeTemplate(options["prompt"]!.stringValue!) } catch {
                throw ConfigError(file: place, line: nil, keyPath: "prompt", reason: error.description)
            }
            if format == .json {
                let field = options["field"]!.stringValue!
                guard options["schema"]?["properties"]?[field] != nil else {
                    throw ConfigError(file: place, line: nil, keyPath: "schema", reason: "declares no property \"\(field)\" (the verdict field; set `field`)")
                }
            }
        }
        if kind == .regex {
            do { _ = try TextGrading.regex(options["pattern"]!.stringValue!, flags: options["flags"]!.stringValue!, answer: "x") } catch {
                throw ConfigError(file: place, line: nil, keyPath: "pattern", reason: "\(error)")
            }
        }
        if kind == .sql, (options["expression"]?.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ConfigError(file: place, line: nil, keyPath: "expression", reason: "empty")
        }
        self.options = options
    }

    static func checkReference(_ reference: String, place: String) throws(ConfigError) {
        if reference == "answer" { return }
        for prefix in ["criteria:", "record:"] where reference.hasPrefix(prefix) {
            if reference.dropFirst(prefix.count).hasPrefix("$") { return }
        }
        throw ConfigError(file: place, line: nil, keyPath: "reference",
                          reason: "expected answer, criteria:$.path or record:$.path, found \"\(reference)\"")
    }

    /// The canonical JSON (sorted keys) stored in `graders.definition`.
    public var canonicalJSON: String {
        var o = options
        o["kind"] = .string(kind.rawValue)
        o["rev"] = JSONValue(kind.revision)
        return JSONWriter(style: .compact, sortKeys: true).string(.object(o))
    }

    func string(_ key: String) -> String? { options[key]?.stringValue }
    func double(_ key: String) -> Double? { options[key]?.doubleValue }
    func bool(_ key: String) -> Bool? { options[key]?.boolValue }
}

/// Grader definitions by name from a YAML file (`configs/graders.yml`):
///
/// ```yaml
/// graders:
///   judge-browsecomp:
///     kind: llm-judge        # default: the name, when it is a kind
///     model: mock/judge
///     format: yes_no
///     prompt: |
///       ...{question} ... {answer} ... {response}
/// ```
public struct GraderCatalog: Sendable {
    public var file: String
    public var definitions: [GraderDefinition]

    public init(file: String, definitions: [GraderDefinition]) {
        self.file = file
        self.definitions = definitions
    }

    public static func load(file: String) throws -> GraderCatalog {
        var root = try ConfigNode.load(file: file)
        if let g = root.child("graders") { root = g }
        var out: [GraderDefinition] = []
        for (name, node) in try root.mapping() {
            guard !name.isEmpty, !name.contains(where: { $0.isWhitespace }) else { throw node.error("a grader name without spaces") }
            let kindText = try node.child("kind")?.string() ?? name
            guard let kind = GraderKind(rawValue: kindText) else {
                throw (node.child("kind") ?? node).error("unknown grader kind \"\(kindText)\" (kinds: \(GraderKind.allCases.map(\.rawValue).joined(separator: ", "))); add `kind:`")
            }
            var options = JSONObject()
            for (key, child) in try node.mapping() where key != "kind" { options[key] = child.json() }
            do {
                out.append(try GraderDefinition(name: name, kind: kind, options: options, place: file))
            } catch {
                let line = node.child(error.keyPath)?.line ?? node.line
                throw ConfigError(file: file, line: line, keyPath: "graders.\(name).\(error.keyPath)", reason: error.reason)
            }
        }
        return GraderCatalog(file: file, definitions: out)
    }

    /// `file` when it exists; for the default path without a file, the catalog bundled with
    /// the binary.
    public static func loadOrBundled(file: String, isDefault: Bool) throws -> GraderCatalog {
        if FileManager.default.fileExists(atPath: file) || !isDefault { return try load(file: file) }
        guard let data = BundledFiles.data("configs/graders.yml") else { return GraderCatalog(file: "(none)", definitions: []) }
        let bundled = FileManager.default.temporaryDirectory.appending(path: "rollout-bundled-graders-\(getpid()).yml")
        try data.write(to: bundled)
        defer { try? FileManager.default.removeItem(at: bundled) }
        let name = "(bundled configs/graders.yml)"
        do {
            var catalog = try load(file: bundled.path)
            catalog.file = name
            return catalog
        } catch let e as ConfigError {
            throw ConfigError(file: name, line: e.line, keyPath: e.keyPath, reason: e.reason)
        }
    }

    public func definition(named name: String) -> GraderDefinition? { definitions.first { $0.name == name } }

    /// The grader `name` from this catalog, else the built-in kind of that name, with
    /// `overrides` (command-line options) applied on top; stored as `storeAs` when given.
    public func resolve(_ name: String, overrides: JSONObject = [:], storeAs: String? = nil) throws -> GraderDefinition {
        if let base = definition(named: name) {
            var options = base.given
            for (k, v) in overrides { options[k] = v }
            return try GraderDefinition(name: storeAs ?? base.name, kind: base.kind, options: options, place: "\(file): graders.\(name) with command-line options")
        }
        guard let kind = GraderKind(rawValue: name) else {
            let names = definitions.map(\.name)
            throw ConfigError(file: file, line: nil, keyPath: "--grader",
                              reason: "no grader named \"\(name)\"; built-in kinds: \(GraderKind.allCases.map(\.rawValue).joined(separator: ", "))"
                                  + (names.isEmpty ? "" : "; defined here: \(names.joined(separator: ", "))"))
        }
        return try GraderDefinition(name: storeAs ?? name, kind: kind, options: overrides, place: "command line")
    }
}
