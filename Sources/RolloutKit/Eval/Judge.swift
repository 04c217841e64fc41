import Foundation

/// A judge prompt template: text with `{placeholder}`s (`{{` and `}}` are literal braces).
public struct JudgeTemplate: Sendable, Equatable {
    public static let placeholders = ["question", "answer", "reference", "response", "transcript", "criteria", "task_id"]

    enum Piece: Sendable, Equatable { case text(String), field(String) }
    let pieces: [Piece]

    public init(_ template: String) throws(TemplateError) {
        var pieces: [Piece] = []
        var text = ""
        var i = template.startIndex
        while i < template.endIndex {
            let ch = template[i]
            let next = template.index(after: i)
            if ch == "{", next < template.endIndex, template[next] == "{" { text.append("{"); i = template.index(after: next); continue }
            if ch == "}", next < template.endIndex, template[next] == "}" { text.append("}"); i = template.index(after: next); continue }
            if ch == "{" {
                guard let close = template[next...].firstIndex(of: "}") else {
                    throw TemplateError(description: "an unclosed { (write {{ for a literal brace)")
                }
                let name = String(template[next..<close])
                guard Self.placeholders.contains(name) else {
                    throw TemplateError(description: "unknown placeholder {\(name)} (placeholders: \(Self.placeholders.map { "{\($0)}" }.joined(separator: " ")); {{ and }} are literal braces)")
                }
                if !text.isEmpty { pieces.append(.text(text)); text = "" }
                pieces.append(.field(name))
                i = template.index(after: close)
                continue
            }
            if ch == "}" { throw TemplateError(description: "a lone } (write }} for a literal brace)") }
            text.append(ch)
            i = next
        }
        if !text.isEmpty { pieces.append(.text(text)) }
        self.pieces = pieces
    }

    public var fields: Set<String> {
        Set(pieces.compactMap { if case .field(let f) = $0 { return f == "reference" ? "answer" : f }; return nil })
    }

    public func render(_ values: [String: String]) -> String {
        pieces.map { piece in
            switch piece {
            case .text(let t): t
            case .field(let f): values[f == "reference" ? "answer" : f] ?? ""
            }
        }.joined()
    }

    static func defaultPrompt(_ format: JudgeFormat) -> String {
        let head = """
            You are grading a response to a question against the reference answer. The response is correct when it \
            gives the same final answer as the reference; wording, order and extra explanation do not matter, but a \
            response that hedges between several answers or contradicts the reference is incorrect.

            Question: {question}

            Reference answer: {answer}

            Response: {response}


            """
        switch format {
        case .correctIncorrect:
            return head + "Reply with exactly one word: Correct or Incorrect."
        case .abc:
            return head + """
                Grade the response as one of:
                A: CORRECT (it gives the reference answer)
                B: INCORRECT (it gives another answer)
                C: NOT_ATTEMPTED (it gives no answer, or says it does not know)
                Reply with only the letter A, B or C.
                """
        case .yesNo:
            return head + """
                Reply in exactly this form:
                extracted_final_answer: <the final answer in the response, or None>
                reasoning: <why it does or does not match the reference>
                correct: <yes or no>
                """
        case .json:
            return head + #"Reply with only a JSON object: {{"correct": true or false, "reason": "<one sentence>"}}"#
        }
    }

    static let defaultSchema: JSONValue = .object([
        "type": "object",
        "properties": .object(["correct": .object(["type": "boolean"]), "reason": .object(["type": "string"])]),
        "required": .array(["correct"]),
    ])
}

public struct TemplateError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// Reads a judge's reply strictly by the declared format. A reply that fits the format gives
/// a verdict; anything else is unparseable and never counted as correct (a reply merely
/// starting with "a" is not an `A`).
public struct JudgeParser: Sendable {
    public var format: JudgeFormat
    /// correct_incorrect / abc: parse only the last non-empty line.
    public var lastLine: Bool
    public var schema: JSONValue?
    public var field: String
    public var passValues: [String]?

    public init(format: JudgeFormat, lastLine: Bool = false, schema: JSONValue? = nil, field: String = "correct", passValues: [String]? = nil) {
        self.format = format
        self.lastLine = lastLine
        self.schema = schema
        self.field = field
        self.passValues = passValues
    }

    init(_ definition: GraderDefinition) {
        self.init(format: JudgeFormat(rawValue: definition.string("format") ?? "") ?? .correctIncorrect,
                  lastLine: definition.string("answer_line") == "last",
                  schema: definition.options["schema"], field: definition.string("field") ?? "correct",
                  passValues: definition.options["pass_values"]?.arrayValue?.compactMap(\.stringValue))
    }

    /// The verdict for `reply`; passed nil with an explanation starting "unparseable" when the
    /// reply does not fit the format.
    public func parse(_ reply: String?) -> Verdict {
        let text = Self.withoutThinking(reply ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return .undecidable("unparseable judge reply: empty") }
        switch format {
        case .correctIncorrect:
            let word = Self.bareToken(lastLine ? Self.lastLine(text) : text).lowercased()
            switch word {
            case "correct": return Verdict(passed: true, explanation: "judge: Correct")
            case "incorrect": return Verdict(passed: false, explanation: "judge: Incorrect")
            default: return unparseable(text, expected: "Correct or Incorrect")
            }
        case .abc:
            var token = Self.bareToken(lastLine ? Self.lastLine(text) : text)
            if token.hasPrefix("("), token.hasSuffix(")") { token = String(token.dropFirst().dropLast()) }
            else if token.hasSuffix(")") { token = String(token.dropLast()) }
            switch token.uppercased() {
            case "A": return Verdict(passed: true, explanation: "judge: A (correct)")
            case "B": return Verdict(passed: false, explanation: "judge: B (incorrect)")
            case "C": return Verdict(passed: false, explanation: "judge: C (not attempted)")
            default: return unparseable(text, expected: "A, B or C")
            }
        case .yesNo:
            let re = try! NSRegularExpression(pattern: #"^[\s*_`]*correct[\s*_`]*:[\s*_`]*(yes|no)[\s*_`.]*$"#,
                                              options: [.caseInsensitive, .anchorsMatchLines])
            let answers = Set(re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { m in
                Range(m.range(at: 1), in: text).map { text[$0].lowercased() }
            })
            if answers == ["yes"] { return Verdict(passed: true, explanation: "judge: correct: yes") }
            if answers == ["no"] { return Verdict(passed: false, explanation: "judge: correct: no") }
            return unparseable(text, expected: answers.isEmpty ? "a line `correct: yes` or `correct: no`" : "one verdict, found both yes and no")
        case .json:
            return parseJSON(text)
        }
    }

    private func unparseable(_ text: String, expected: String) -> Verdict {
        .undecidable("unparseable judge reply (expected \(expected)): \(TextGrading.quote(text, limit: 200))")
    }

    private func parseJSON(_ text: String) -> Verdict {
        var body = text
        if body.hasPrefix("```") {
            let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
            guard lines.count >= 2, lines.last?.trimmingCharacters(in: .whitespaces) == "```",
                  ["```", "```json"].contains(lines[0].trimmingCharacters(in: .whitespaces).lowercased()) else {
                return unparseable(text, expected: "a JSON object")
            }
            body = lines.dropFirst().dropLast().joined(separator: "\n")
        }
        let value: JSONValue
        do { value = try JSONParser.parse(body) } catch {
            return unparseable(text, expected: "a JSON object; \(error.description)")
        }
        guard case .object = value else { return unparseable(text, expected: "a JSON object, found \(value.typeName)") }
        if let schema, let problem = JSONSchemaCheck.violation(value, schema: schema, path: "$") {
            return unparseable(text, expected: "a reply satisfying the schema; \(problem)")
        }
        guard let verdict = value[field] else { return unparseable(text, expected: "a field \"\(field)\"") }
        switch verdict {
        case .bool(let b):
            return Verdict(passed: b, explanation: "judge: {\"\(field)\": \(b)}" + (value["reason"]?.stringValue.map { " — \($0)" } ?? ""))
        case .string(let s) where passValues != nil:
            let passed = passValues!.contains(s)
            let enumValues = schemaEnum()
            if !passed, let enumValues, !enumValues.contains(s) { return unparseable(text, expected: "\(field) in \(enumValues)") }
            return Verdict(passed: passed, explanation: "judge: {\"\(field)\": \"\(s)\"}")
        default:
            return unparseable(text, expected: "\(field) to be \(passValues == nil ? "true or false" : "one of the declared values")")
        }
    }

    private func schemaEnum() -> [String]? {
        schema?["properties"]?[field]?["enum"]?.arrayValue?.compactMap(\.stringValue)
    }

    /// Removes a leading `<think>…</think>` block (reasoning models that put it in content).
    static func withoutThinking(_ text: String) -> String {
        guard let open = text.range(of: "<think>"), text[..<open.lowerBound].allSatisfy(\.isWhitespace),
              let close = text.range(of: "</think>", range: open.upperBound..<text.endIndex) else { return text }
        return String(text[close.upperBound...])
    }

    static func lastLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(String.init) ?? ""
    }

    /// The text without surrounding whitespace, Markdown emphasis, quotes and one final period.
    static func bareToken(_ text: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let wrappers: Set<Character> = ["*", "_", "`", "\"", "'"]
        while let f = t.first, let l = t.last, t.count >= 2, f == l, wrappers.contains(f) {
            t = String(t.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
        }
        if t.hasSuffix(".") { t = String(t.dropLast()) }
        return t
    }
}

/// The part of JSON Schema a judge reply is checked against: type, properties, required,
/// additionalProperties, enum, const, items, minimum, maximum, minLength, maxLength.
enum JSONSchemaCheck {
    static func violation(_ value: JSONValue, schema: JSONValue, path: String) -> String? {
        guard case .object(let s) = schema else { return nil }
        if let t = s["type"] {
            let types = t.arrayValue?.compactMap(\.stringValue) ?? [t.stringValue].compactMap { $0 }
            if !types.isEmpty && !types.contains(where: { matches(value, type: $0) }) {
                return "\(path) must be \(types.joined(separator: " or ")), found \(value.typeName)"
            }
        }
        if let e = s["enum"]?.arrayValue, !e.contains(where: { equal($0, value) }) {
            return "\(path) must be one of \(JSONValue.array(e).jsonText)"
        }
        if let c = s["const"], !equal(c, value) { return "\(path) must be \(c.jsonText)" }
        if case .object(let o) = value {
            for r in s["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where o[r] == nil {
                return "\(path).\(r) is required"
            }
            let props = s["properties"]?.objectValue
            for (k, v) in o {
                if let ps = props?[k] {
                    if let p = violation(v, schema: ps, path: "\(path).\(k)") { return p }
                } else if let extra = s["additionalProperties"] {
                    if extra == .bool(false) { return "\(path).\(k) is not allowed" }
                    if let p = violation(v, schema: extra, path: "\(path).\(k)") { return p }
                }
            }
        }
        if case .array(let items) = value, let itemSchema = s["items"] {
            for (i, v) in items.enumerated() { if let p = violation(v, schema: itemSchema, path: "\(path)[\(i)]") { return p } }
        }
        if let d = value.doubleValue {
            if let m = s["minimum"]?.doubleValue, d < m { return "\(path) must be ≥ \(JSONWriter.formatDouble(m))" }
            if let m = s["maximum"]?.doubleValue, d > m { return "\(path) must be ≤ \(JSONWriter.formatDouble(m))" }
        }
        if let str = value.stringValue {
            if let m = s["minLength"]?.intValue, str.count < m { return "\(path) must have at least \(m) characters" }
            if let m = s["maxLength"]?.intValue, str.count > m { return "\(path) must have at most \(m) characters" }
        }
        return nil
    }

    static func matches(_ v: JSONValue, type: String) -> Bool {
        switch (type, v) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null), ("number", .number): true
        case ("integer", .number): v.intValue != nil
        default: false
        }
    }

    /// JSON equality with numbers compared by value (1 = 1.0).
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return x == y || (Double(x) != nil && Double(x) == Double(y))
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { k, v in y[k].map { equal(v, $0) } ?? false }
        default: return a == b
        }
    }
}
