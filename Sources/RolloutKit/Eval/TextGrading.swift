import Foundation

/// A grader's verdict on one rollout: `passed` nil means undecidable.
public struct Verdict: Sendable, Equatable {
    public var passed: Bool?
    public var value: Double?
    public var explanation: String

    public init(passed: Bool?, value: Double? = nil, explanation: String) {
        self.passed = passed
        self.value = value ?? passed.map { $0 ? 1 : 0 }
        self.explanation = explanation
    }

    static func undecidable(_ why: String) -> Verdict { Verdict(passed: nil, explanation: why) }
}

/// The answer-matching graders: exact, normalized, contains, regex, numeric.
public enum TextGrading {
    /// SQuAD-style normalization, Unicode-aware: NFKC, lower case, punctuation and symbols
    /// removed, the English articles a / an / the dropped, whitespace runs collapsed.
    public static func normalize(_ text: String) -> String {
        tokens(text).joined(separator: " ")
    }

    static let articles: Set<String> = ["a", "an", "the"]

    static func tokens(_ text: String) -> [String] {
        let folded = text.precomposedStringWithCompatibilityMapping.lowercased()
        var kept = String.UnicodeScalarView()
        for scalar in folded.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
                 .finalPunctuation, .otherPunctuation, .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
                continue
            default:
                kept.append(scalar)
            }
        }
        return String(kept).split(whereSeparator: { $0.isWhitespace }).map(String.init).filter { !articles.contains($0) }
    }

    static func quote(_ s: String, limit: Int = 120) -> String {
        let flat = s.split(whereSeparator: { $0.isNewline }).joined(separator: " ")
        let cut = flat.count > limit ? String(flat.prefix(limit)) + "…" : flat
        return "\"" + cut + "\""
    }

    public static func exact(response: String, reference: String, caseSensitive: Bool = true) -> Verdict {
        var a = response.trimmingCharacters(in: .whitespacesAndNewlines)
        var b = reference.trimmingCharacters(in: .whitespacesAndNewlines)
        if !caseSensitive { a = a.lowercased(); b = b.lowercased() }
        return Verdict(passed: a == b, explanation: a == b ? "equals the reference" : "\(quote(a)) ≠ reference \(quote(b))")
    }

    public static func normalized(response: String, reference: String) -> Verdict {
        let a = normalize(response), b = normalize(reference)
        if b.isEmpty { return .undecidable("the reference is empty after normalization") }
        return Verdict(passed: a == b, explanation: a == b ? "equal after normalization: \(quote(b))" : "normalized \(quote(a)) ≠ \(quote(b))")
    }

    public static func contains(response: String, reference: String, normalize: Bool = true) -> Verdict {
        if !normalize {
            if reference.isEmpty { return .undecidable("the reference is empty") }
            let found = response.contains(reference)
            return Verdict(passed: found, explanation: found ? "contains \(quote(reference))" : "does not contain \(quote(reference))")
        }
        let needle = tokens(reference), hay = tokens(response)
        if needle.isEmpty { return .undecidable("the reference is empty after normalization") }
        var found = false
        if hay.count >= needle.count {
            for start in 0...(hay.count - needle.count) where hay[start..<start + needle.count].elementsEqual(needle) {
                found = true
                break
            }
        }
        let shown = quote(needle.joined(separator: " "))
        return Verdict(passed: found, explanation: found ? "contains \(shown) as whole words" : "does not contain \(shown)")
    }

    /// The pattern with `{answer}` replaced by the escaped reference, compiled with `flags`.
    static func regex(_ pattern: String, flags: String, answer: String) throws -> NSRegularExpression {
        var options: NSRegularExpression.Options = []
        for f in flags {
            switch f {
            case "i": options.insert(.caseInsensitive)
            case "s": options.insert(.dotMatchesLineSeparators)
            case "m": options.insert(.anchorsMatchLines)
            case "x": options.insert(.allowCommentsAndWhitespace)
            default: throw TextGradingError("unknown regex flag \"\(f)\" (flags: i, s, m, x)")
            }
        }
        let filled = pattern.replacingOccurrences(of: "{answer}", with: NSRegularExpression.escapedPattern(for: answer))
        do { return try NSRegularExpression(pattern: filled, options: options) } catch {
            throw TextGradingError("not a valid regular expression: \(pattern)")
        }
    }

    public static func regex(response: String, reference: String?, pattern: String, flags: String) -> Verdict {
        if pattern.contains("{answer}") && (reference ?? "").isEmpty {
            return .undecidable("the pattern uses {answer} and the task has no reference answer")
        }
        guard let re = try? regex(pattern, flags: flags, answer: reference ?? "") else {
            return .undecidable("the pattern does not compile with this reference")
        }
        let range = NSRange(response.startIndex..., in: response)
        guard let m = re.firstMatch(in: response, range: range), let r = Range(m.range, in: response) else {
            return Verdict(passed: false, explanation: "no match for /\(pattern)/")
        }
        return Verdict(passed: true, explanation: "matched \(quote(String(response[r])))")
    }

    /// Numbers written in text: `-1,234.5`, `3e8`, `.5`; thousands separators dropped. A digit
    /// run inside a word (`v2`, `3rd`) or a dotted sequence (`1.2.3`) is not a number.
    public static func numbers(in text: String) -> [Double] {
        let re = try! NSRegularExpression(pattern: #"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w]|\.\d)|(?<![\w.])[-+−]?\.\d+(?![\w]|\.\d)"#)
        return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { m in
            guard let r = Range(m.range, in: text) else { return nil }
            return Double(text[r].replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "−", with: "-"))
        }
    }

    public static func numeric(response: String, reference: String, tolerance: Double, relative: Double, pick: String) -> Verdict {
        let wanted = numbers(in: reference)
        guard wanted.count == 1, let target = wanted.first else {
            return .undecidable(wanted.isEmpty ? "the reference \(quote(reference)) has no number" : "the reference \(quote(reference)) has \(wanted.count) numbers")
        }
        let found = numbers(in: response)
        let got: Double
        switch pick {
        case "first":
            guard let f = found.first else { return Verdict(passed: false, explanation: "no number in the response") }
            got = f
        case "only":
            guard found.count == 1 else {
                return found.isEmpty ? Verdict(passed: false, explanation: "no number in the response")
                    : .undecidable("the response has \(found.count) numbers (pick: only)")
            }
            got = found[0]
        default:
            guard let l = found.last else { return Verdict(passed: false, explanation: "no number in the response") }
            got = l
        }
        let allowed = max(tolerance, relative * abs(target))
        let diff = abs(got - target)
        let ok = diff <= allowed
        return Verdict(passed: ok, explanation: "\(JSONWriter.formatDouble(got)) vs reference \(JSONWriter.formatDouble(target)): |Δ| = \(JSONWriter.formatDouble(diff)) \(ok ? "≤" : ">") \(JSONWriter.formatDouble(allowed))")
    }
}

struct TextGradingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
