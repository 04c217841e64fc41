import Foundation
import RolloutKit

/// HTML whose interpolated strings are escaped unless they are `Markup` themselves, so text
/// from the warehouse (model output, tool results, run names: all untrusted) can only ever
/// reach a page as text. Literals are the page's own markup.
struct Markup: ExpressibleByStringInterpolation, Sendable {
    private(set) var html: String

    init(raw html: String) { self.html = html }
    init(stringLiteral value: String) { html = value }
    init(stringInterpolation: StringInterpolation) { html = stringInterpolation.html }

    static let empty = Markup(raw: "")

    mutating func append(_ other: Markup) { html += other.html }
    static func += (lhs: inout Markup, rhs: Markup) { lhs.html += rhs.html }
    static func + (lhs: Markup, rhs: Markup) -> Markup { Markup(raw: lhs.html + rhs.html) }

    /// Joins pieces of markup.
    static func join(_ parts: [Markup], separator: Markup = .empty) -> Markup {
        var out = ""
        for (i, p) in parts.enumerated() {
            if i > 0 { out += separator.html }
            out += p.html
        }
        return Markup(raw: out)
    }

    struct StringInterpolation: StringInterpolationProtocol {
        var html = ""
        init(literalCapacity: Int, interpolationCount: Int) { html.reserveCapacity(literalCapacity + 16 * interpolationCount) }
        mutating func appendLiteral(_ literal: String) { html += literal }
        mutating func appendInterpolation(_ text: String) { html += escapeHTML(text) }
        mutating func appendInterpolation(_ text: Substring) { html += escapeHTML(String(text)) }
        mutating func appendInterpolation(_ text: String?) { if let text { html += escapeHTML(text) } }
        mutating func appendInterpolation(_ markup: Markup) { html += markup.html }
        mutating func appendInterpolation(_ markup: Markup?) { if let markup { html += markup.html } }
        mutating func appendInterpolation(_ parts: [Markup]) { for p in parts { html += p.html } }
        mutating func appendInterpolation<T: BinaryInteger>(_ n: T) { html += String(n) }
        mutating func appendInterpolation(_ link: Link) { html += escapeHTML(link.href) }
    }
}

/// Escapes the five characters that matter in HTML text and in quoted attribute values, and
/// writes control characters and bidirectional overrides and isolates as visible `<U+202E>`
/// markers (see `VisibleText`): text from the warehouse must neither reorder the page around
/// it nor hide in it. Line feeds, tabs and carriage returns stay (they are only whitespace here).
func escapeHTML(_ s: String) -> String {
    var needs = false
    for b in s.utf8 where b == 0x26 || b == 0x3C || b == 0x3E || b == 0x22 || b == 0x27 {
        needs = true
        break
    }
    guard needs || VisibleText.mayNeedMarker(s, carriageReturn: false) else { return s }
    var out = ""
    out.reserveCapacity(s.utf8.count + 16)
    for ch in s.unicodeScalars {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default:
            if VisibleText.needsMarker(ch, keepCarriageReturn: true) {
                out += VisibleText.codePoint(ch).replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            } else {
                out.unicodeScalars.append(ch)
            }
        }
    }
    return out
}

/// A link inside the viewer: a path and query parameters, percent-encoded when written, so
/// the page's state (filters, grader, page position) is all in the URL and can be shared.
struct Link: Sendable, Equatable {
    var path: String
    var query: [(String, String)]

    init(_ path: String, _ query: [(String, String?)] = []) {
        self.path = path
        self.query = query.compactMap { k, v in v.flatMap { $0.isEmpty ? nil : (k, $0) } }
    }

    static func == (a: Link, b: Link) -> Bool { a.href == b.href }

    /// This link with `name` set to `value` (nil or empty: removed).
    func with(_ name: String, _ value: String?) -> Link {
        var l = self
        l.query.removeAll { $0.0 == name }
        if let value, !value.isEmpty { l.query.append((name, value)) }
        return l
    }

    func without(_ names: String...) -> Link {
        var l = self
        l.query.removeAll { names.contains($0.0) }
        return l
    }

    var href: String {
        guard !query.isEmpty else { return path }
        return path + "?" + query.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }
}

/// RFC 3986 unreserved characters stay; everything else is %XX of its UTF-8 bytes.
func percentEncode(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            out.unicodeScalars.append("%")
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
            out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
        }
    }
    return out
}

/// A decoded `application/x-www-form-urlencoded` string: a URL's query or a form's body.
struct FormValues: Sendable {
    private(set) var pairs: [(String, String)] = []

    init(_ encoded: String?) {
        guard let encoded, !encoded.isEmpty else { return }
        for part in encoded.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = Self.decode(kv[0])
            let value = kv.count > 1 ? Self.decode(kv[1]) : ""
            pairs.append((key, value))
        }
    }

    /// The first value of `name`, trimmed; nil when absent or empty.
    subscript(name: String) -> String? {
        guard let v = pairs.first(where: { $0.0 == name })?.1.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else {
            return nil
        }
        return v
    }

    /// The first value of `name` untrimmed (a note keeps its line breaks), or nil.
    func raw(_ name: String) -> String? { pairs.first(where: { $0.0 == name })?.1 }

    /// `+` is a space and `%XX` a byte; bytes that are not UTF-8 become U+FFFD.
    static func decode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "+") {
                bytes.append(0x20)
            } else if b == UInt8(ascii: "%"), it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) {
                bytes.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
