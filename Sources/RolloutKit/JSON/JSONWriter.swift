/// Serializes `JSONValue`s. `compact` is our own output form; `python` reproduces
/// `json.dumps(value, sort_keys=True)` byte for byte (", " and ": " separators, non-ASCII as
/// \uXXXX escapes), which the Rollout framework hashed to make task ids.
public struct JSONWriter: Sendable {
    public enum Style: Sendable { case compact, python }
    public var style: Style
    public var sortKeys: Bool

    public init(style: Style = .compact, sortKeys: Bool = false) {
        self.style = style
        self.sortKeys = sortKeys
    }

    public static let compact = JSONWriter()
    public static let pythonSorted = JSONWriter(style: .python, sortKeys: true)

    public func string(_ value: JSONValue) -> String {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(value, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: (style == .python ? Self.pythonNumber(n) : n).utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { appendSeparator(&out) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            var order = Array(object.keys.indices)
            if sortKeys {
                // Python sorts str keys by code point; duplicate keys were resolved to the last.
                var seen = Set<String>()
                order = order.reversed().filter { seen.insert(object.keys[$0]).inserted }
                order.sort { object.keys[$0].unicodeScalars.lexicographicallyPrecedes(object.keys[$1].unicodeScalars) }
            }
            for (n, i) in order.enumerated() {
                if n > 0 { appendSeparator(&out) }
                writeString(object.keys[i], into: &out)
                out.append(UInt8(ascii: ":"))
                if style == .python { out.append(UInt8(ascii: " ")) }
                write(object.values[i], into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private func appendSeparator(_ out: inout [UInt8]) {
        out.append(UInt8(ascii: ","))
        if style == .python { out.append(UInt8(ascii: " ")) }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private func appendUnicodeEscape(_ unit: UInt16, _ out: inout [UInt8]) {
        out.append(contentsOf: [0x5C, UInt8(ascii: "u"),
                                Self.hex[Int(unit >> 12 & 0xF)], Self.hex[Int(unit >> 8 & 0xF)],
                                Self.hex[Int(unit >> 4 & 0xF)], Self.hex[Int(unit & 0xF)]])
    }

    func writeString(_ s: String, into out: inout [UInt8]) {
        if style == .compact {
            writeStringUTF8(s, into: &out)
            return
        }
        out.append(0x22)
        let asciiOnly = style == .python
        for scalar in s.unicodeScalars {
            let v = scalar.value
            switch v {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0..<0x20: appendUnicodeEscape(UInt16(v), &out)
            case 0x7F where asciiOnly: appendUnicodeEscape(0x7F, &out)
            case 0x20..<0x80: out.append(UInt8(v))
            default:
                if asciiOnly {
                    for unit in String(scalar).utf16 { appendUnicodeEscape(unit, &out) }
                } else {
                    out.append(contentsOf: UTF8.encode(scalar)!)
                }
            }
        }
        out.append(0x22)
    }

    /// The compact form byte by byte over UTF-8 (the same output as the scalar loop: only `"`,
    /// `\\` and control characters are escaped, every other byte is copied), with runs of
    /// plain bytes appended at once.
    private func writeStringUTF8(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var copy = s
        copy.withUTF8 { bytes in
            var runStart = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
                if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
                switch b {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
                case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
                default: appendUnicodeEscape(UInt16(b), &out)
                }
                runStart = i + 1
            }
            if runStart < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count])) }
        }
        out.append(0x22)
    }

    /// Python prints an integer literal as is and a float as its `repr`.
    static func pythonNumber(_ literal: String) -> String {
        let isFloat = literal.contains { $0 == "." || $0 == "e" || $0 == "E" }
        if !isFloat {
            if literal == "-0" { return "0" }
            return literal
        }
        guard let d = Double(literal) else { return literal }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return pythonRepr(d)
    }

    /// Python's float repr: shortest round-trip digits, scientific below 1e-4 and from 1e16.
    static func pythonRepr(_ d: Double) -> String {
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        let magnitude = abs(d)
        var text = "\(d)"
        if magnitude >= 1e16 || magnitude < 1e-4 {
            // Swift may print these in positional form; rebuild "d.ddde+XX" from the digits.
            if !text.contains("e") {
                text = scientific(d)
            }
            // Swift writes e-05 / e+16 already in Python's two-digit form.
            return text.replacingOccurrences(of: ".0e", with: "e")
        }
        if text.contains("e") { text = positional(d) }
        return text
    }

    private static func digitsAndExponent(_ d: Double) -> (digits: String, exponent: Int) {
        // "\(d)" is the shortest round-trip form; normalize to digits and a decimal exponent.
        let text = "\(abs(d))"
        var mantissa = text
        var exp = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = String(text[..<e])
            exp = Int(text[text.index(after: e)...]) ?? 0
        }
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let intPart = String(parts[0])
        let fracPart = parts.count > 1 ? String(parts[1]) : ""
        var digits = intPart + fracPart
        var pointPos = intPart.count + exp
        while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointPos -= 1 }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        return (digits, pointPos - 1)
    }

    private static func scientific(_ d: Double) -> String {
        let (digits, exponent) = digitsAndExponent(d)
        var out = d < 0 ? "-" : ""
        out += String(digits.prefix(1))
        if digits.count > 1 { out += "." + digits.dropFirst() }
        out += exponent < 0 ? "e-" : "e+"
        let e = abs(exponent)
        out += e < 10 ? "0\(e)" : "\(e)"
        return out
    }

    private static func positional(_ d: Double) -> String {
        let (digits, exponent) = digitsAndExponent(d)
        var out = d < 0 ? "-" : ""
        if exponent < 0 {
            out += "0." + String(repeating: "0", count: -exponent - 1) + digits
        } else if exponent + 1 >= digits.count {
            out += digits + String(repeating: "0", count: exponent + 1 - digits.count) + ".0"
        } else {
            let split = digits.index(digits.startIndex, offsetBy: exponent + 1)
            out += digits[..<split] + "." + digits[split...]
        }
        return out
    }

    /// Our own number output: integers without a fraction, others in shortest form.
    public static func formatDouble(_ d: Double) -> String {
        if d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }
}

extension JSONValue {
    /// Compact JSON text with keys in their original order.
    public var jsonText: String { JSONWriter.compact.string(self) }
}
