import Foundation

/// The file formats `rollout export` writes.
public enum ExportFormat: String, Sendable, CaseIterable {
    /// The Rollout framework's training record (its `add_key` step):
    /// `{"messages":[{role, content, reasoning_content, tool_calls, tool_call_id}], "id", "data_source", "use_cot", "tools"}`.
    case training
    /// The Rollout framework's output record (`rollout run --output-dir` writes the same).
    case rollout
    /// OpenAI fine-tuning chat JSONL: `{"messages", "tools"}`.
    case openAIFT = "openai-ft"
    /// ShareGPT (LLaMA-Factory): `conversations` of human / gpt / function_call / observation, `system`, `tools` (a string).
    case sharegpt
    /// Preference pairs: a passed and a failed sample of one task, `{"prompt", "chosen", "rejected", "tools"}`.
    case dpo
    /// DeepResearch results, one `iter{k}.jsonl` per sample: `{question, answer, rollout_id, messages, prediction, termination}`.
    case deepresearch

    /// Whether a record carries the tool list (and so declares the tools its calls use).
    var carriesTools: Bool {
        switch self {
        case .training, .openAIFT, .sharegpt, .dpo: true
        case .rollout, .deepresearch: false
        }
    }

    /// Whether the records need the labels (system prompt, tools).
    var needsLabels: Bool { self != .rollout }
}

/// A `--split train=0.9,val=0.1`: named shares that add up to 1.
public struct SplitSpec: Sendable, Equatable {
    public struct Share: Sendable, Equatable {
        public var name: String
        public var fraction: Double
    }

    /// What is kept together: every sample of a task in one split (no leakage between train and
    /// validation), or each rollout on its own.
    public enum Unit: String, Sendable, CaseIterable { case task, rollout }

    public var shares: [Share]
    public var seed: UInt64
    public var unit: Unit

    public init(shares: [Share], seed: UInt64 = 0, unit: Unit = .task) {
        self.shares = shares
        self.seed = seed
        self.unit = unit
    }

    /// Parses `name=fraction,name=fraction`; fractions must be positive and add up to 1.
    public init(parsing text: String, seed: UInt64 = 0, unit: Unit = .task) throws {
        var shares: [Share] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pieces.count == 2, !pieces[0].isEmpty else {
                throw ExportError("--split: \"\(part)\" is not NAME=FRACTION (e.g. train=0.9,val=0.1)")
            }
            guard pieces[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw ExportError("--split: name \"\(pieces[0])\" may hold only letters, digits, _ and - (it becomes part of a file name)")
            }
            guard let f = Double(pieces[1]), f > 0, f <= 1 else {
                throw ExportError("--split: \(pieces[0])=\(pieces[1]): the fraction must be a number in (0, 1]")
            }
            if shares.contains(where: { $0.name == pieces[0] }) { throw ExportError("--split: \(pieces[0]) named twice") }
            shares.append(Share(name: pieces[0], fraction: f))
        }
        let total = shares.reduce(0) { $0 + $1.fraction }
        guard abs(total - 1) < 1e-9 else {
            throw ExportError("--split: the fractions add up to \(JSONWriter.formatDouble(total)), not 1")
        }
        self.init(shares: shares, seed: seed, unit: unit)
    }

    /// The share of `key`: a hash of the seed and the key mapped to [0, 1), so a record's split
    /// depends on nothing but the two (not on the order, the other records or the filters).
    func share(of key: String) -> String {
        let h = UInt64(bitPattern: Hashing.contentHash("split|\(seed)|\(key)"))
        let u = Double(h >> 11) / Double(UInt64(1) << 53)
        var cumulative = 0.0
        for s in shares {
            cumulative += s.fraction
            if u < cumulative { return s.name }
        }
        return shares[shares.count - 1].name
    }

    var json: JSONValue {
        .object(["shares": .object(JSONObject(pairs: shares.map { ($0.name, JSONValue($0.fraction)) })),
                 "seed": .number(String(seed)), "by": .string(unit.rawValue)])
    }
}

/// Which rollouts a review filter keeps: those whose latest review says accepted / rejected, or
/// those nobody reviewed.
public enum ReviewFilter: String, Sendable, CaseIterable {
    case accepted, rejected, unreviewed
}

/// What to export and how (`rollout export`).
public struct ExportOptions: Sendable {
    public var run: String
    public var format: ExportFormat
    /// The output file (a folder for `deepresearch`).
    public var out: String
    /// An SQL condition over `r` (the rollout, latest attempt), `t` (its task), `ds` (dataset),
    /// `d` (the task's domain) and `l` (its label).
    public var whereSQL: String?
    /// Keep rollouts that `grader` passed (its latest version).
    public var passedOnly = false
    public var grader: String?
    public var stopReasons: [String] = []
    public var minToolCalls: Int?
    /// Keep rollouts by their latest review in `rollout serve`: accepted, rejected or unreviewed.
    public var review: ReviewFilter?
    public var dedupe = false
    public var split: SplitSpec?
    /// `data_source` of training records.
    public var dataSource = "agent"
    /// Keep reasoning (`use_cot: true`; ShareGPT `<think>` blocks; DPO `reasoning_content`).
    public var useCoT = false
    /// Write each tool's `function.parameters` as a JSON string.
    public var stringifyParameters = false
    /// Export failed rollouts too (their `success: false` / `"[Failed]"` records).
    public var includeFailed = false
    /// Write records that fail validation anyway (still reported).
    public var keepInvalid = false
    /// Only the tasks the run planned under this job (`--output-dir` writes one file per job).
    var job: String?
    /// The run by id (the engine knows it), instead of by name.
    var runID: Int64?
    /// Label rollouts that have no label first (default), or refuse.
    public var labelMissing = true

    public init(run: String, format: ExportFormat, out: String) {
        self.run = run
        self.format = format
        self.out = out
    }

    /// Checks that the options make sense together, before the database is touched.
    public func check() throws {
        if format == .dpo && passedOnly {
            throw ExportError("--format dpo pairs passed with failed samples; drop --passed-only")
        }
        if format == .openAIFT && useCoT {
            throw ExportError("--use-cot: OpenAI fine-tuning records have no field for reasoning; use --format training or sharegpt")
        }
        if let n = minToolCalls, n < 0 { throw ExportError("--min-tool-calls must be 0 or more") }
        for s in stopReasons + [grader ?? "", dataSource, whereSQL ?? ""] where s.contains("\u{0}") {
            throw ExportError("an option holds a NUL character")
        }
        if dataSource.isEmpty { throw ExportError("--data-source must not be empty") }
    }

    /// The options as recorded in `exports.filters`.
    func filtersJSON(grader resolved: String?) -> JSONValue {
        var o = JSONObject()
        o["run"] = .string(run)
        if let job { o["job"] = .string(job) }
        o["status"] = .array((includeFailed ? ["completed", "failed"] : ["completed"]).map(JSONValue.string))
        if let whereSQL { o["where"] = .string(whereSQL) }
        if passedOnly { o["passed_only"] = true }
        if let resolved { o["grader"] = .string(resolved) }
        if !stopReasons.isEmpty { o["stop_reasons"] = .array(stopReasons.map(JSONValue.string)) }
        if let minToolCalls { o["min_tool_calls"] = JSONValue(minToolCalls) }
        if let review { o["review"] = .string(review.rawValue) }
        if dedupe { o["dedupe"] = true }
        if let split { o["split"] = split.json }
        if format == .training { o["data_source"] = .string(dataSource) }
        if useCoT { o["use_cot"] = true }
        if stringifyParameters { o["stringify_parameters"] = true }
        if keepInvalid { o["keep_invalid"] = true }
        return .object(o)
    }
}

/// An export that cannot be done as asked, said for the user.
public struct ExportError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
