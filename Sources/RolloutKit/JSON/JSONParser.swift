/// Where and why a JSON text failed to parse. `offset` is a byte offset into the text.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    /// The path of the value the error is in (`messages[0].content`), when it was worked out:
    /// for errors inside a well-formed text, such as a lone surrogate escape.
    public var field: String? = nil
    public var description: String {
        reason == Self.invalidUTF8 ? "not valid UTF-8 (byte \(offset + 1)); re-encode the file as UTF-8"
            : field != nil ? "at byte \(offset + 1): \(reason)"  // well-formed JSON, bad content
            : "malformed JSON at byte \(offset + 1): \(reason)"
    }
    static let invalidUTF8 = "invalid UTF-8"
}

/// A strict RFC 8259 parser over UTF-8 bytes. The input must already be valid UTF-8
/// (callers check that once per line, where the error can name the line).
public struct JSONParser: ~Copyable {
    private let bytes: UnsafeRawBufferPointer
    private var pos = 0
    private var depth = 0
    private let refuseLoneSurrogates: Bool
    private static let maxDepth = 512

    private init(_ bytes: UnsafeRawBufferPointer, refuseLoneSurrogates: Bool) {
        self.bytes = bytes
        self.refuseLoneSurrogates = refuseLoneSurrogates
    }

    /// Parses one JSON value that must fill `bytes` (surrounding whitespace allowed). A lone
    /// surrogate escape (`"\ud800"`) becomes U+FFFD, or with `refuseLoneSurrogates` (record
    /// files, whose text is stored as read) fails with the field it is in.
    public static func parse(_ bytes: UnsafeRawBufferPointer, refuseLoneSurrogates: Bool = false) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes, refuseLoneSurrogates: refuseLoneSurrogates)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.pos != bytes.count {
            throw JSONParseError(offset: parser.pos, reason: "unexpected text after the JSON value")
        }
        return value
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var copy = text
        return try copy.withUTF8 { buffer in result(UnsafeRawBufferPointer(buffer)) }.get()
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBytes { result($0) }.get()
    }

    /// `parse` as a `Result`, for callers inside closures that cannot carry a typed throw.
    public static func result(_ bytes: UnsafeRawBufferPointer, refuseLoneSurrogates: Bool = false) -> Result<JSONValue, JSONParseError> {
        do { return .success(try parse(bytes, refuseLoneSurrogates: refuseLoneSurrogates)) } catch { return .failure(error) }
    }

    private func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: pos, reason: reason) }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos += 1
            default: return
            }
        }
    }

    private func describeHere() -> String {
        guard pos < bytes.count else { return "end of text" }
        let b = bytes[pos]
        if b >= 0x20 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        if b >= 0x80 { return "non-ASCII byte 0x\(String(b, radix: 16)) outside a string" }
        return "byte 0x\(String(b, radix: 16))"
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard pos < bytes.count else { throw fail("unexpected end of text (truncated record?)") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail("expected a value, found \(describeHere())")
        }
    }

    private mutating func expectWord(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard pos + count <= bytes.count else { throw fail("unexpected end of text (truncated record?)") }
        let start = word.utf8Start
        for i in 0..<count where bytes[pos + i] != start[i] {
            throw fail("expected a value, found \(describeHere())")
        }
        pos += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maxDepth { throw fail("nested deeper than \(Self.maxDepth) levels") }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        pos += 1
        var object = JSONObject()
        skipWhitespace()
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            depth -= 1
            return .object(object)
        }
        while true {
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of text inside an object (truncated record?)") }
            guard bytes[pos] == UInt8(ascii: "\"") else { throw fail("expected a quoted key, found \(describeHere())") }
            let key = try parseString()
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of text inside an object (truncated record?)") }
            guard bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(key)\", found \(describeHere())") }
            pos += 1
            skipWhitespace()
            let value = try parseValue()
            object.appendRaw(key, value)
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of text inside an object (truncated record?)") }
            switch bytes[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "}"):
                pos += 1
                depth -= 1
                return .object(object)
            default: throw fail("expected ',' or '}' in an object, found \(describeHere())")
            }
        }
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard pos < bytes.count else { throw fail("unexpected end of text inside an array (truncated record?)") }
            switch bytes[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "]"):
                pos += 1
                depth -= 1
                return .array(items)
            default: throw fail("expected ',' or ']' in an array, found \(describeHere())")
            }
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> String {
        let start = pos
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("invalid number") }
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < bytes.count && isDigit(bytes[pos]) { throw fail("invalid number: leading zero") }
        } else {
            while pos < bytes.count && isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count && bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("invalid number: no digit after '.'") }
            while pos < bytes.count && isDigit(bytes[pos]) { pos += 1 }
        }
        if pos < bytes.count && (bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E")) {
            pos += 1
            if pos < bytes.count && (bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-")) { pos += 1 }
            guard pos < bytes.count, isDigit(bytes[pos]) else { throw fail("invalid number: no digit in exponent") }
            while pos < bytes.count && isDigit(bytes[pos]) { pos += 1 }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    /// True when any of the 8 bytes is '"', '\\', a control character or non-ASCII (SWAR).
    @inline(__always)
    private static func hasSpecialByte(_ v: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = v ^ (ones &* 0x22)
        let backslash = v ^ (ones &* 0x5C)
        let zeroQuote = (quote &- ones) & ~quote & highs
        let zeroBackslash = (backslash &- ones) & ~backslash & highs
        let control = (v &- ones &* 0x20) & ~v & highs
        return (zeroQuote | zeroBackslash | control | (v & highs)) != 0
    }

    private func makeString(_ start: Int, _ end: Int, ascii: Bool) throws(JSONParseError) -> String {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        if ascii { return String(decoding: slice, as: UTF8.self) }
        guard let s = String(validating: slice, as: UTF8.self) else {
            let bad = slice.firstInvalidUTF8Offset() ?? 0
            throw JSONParseError(offset: start + bad, reason: JSONParseError.invalidUTF8)
        }
        return s
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        pos += 1
        let start = pos
        var ascii = true
        // Fast path: no escapes. Skip 8 plain bytes at a time.
        let count = bytes.count
        let base = bytes.baseAddress!
        while pos < count {
            if pos + 8 <= count && !Self.hasSpecialByte(base.loadUnaligned(fromByteOffset: pos, as: UInt64.self)) {
                pos += 8
                continue
            }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let s = try makeString(start, pos, ascii: ascii)
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw fail("control character 0x\(String(b, radix: 16)) inside a string (must be escaped)") }
            if b >= 0x80 { ascii = false }
            pos += 1
        }
        guard pos < bytes.count else { throw fail("unterminated string (truncated record?)") }
        var out = [UInt8]()
        out.reserveCapacity(pos - start + 16)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while pos < count {
            // Copy the run of plain bytes up to the next quote, backslash or control byte.
            let run = pos
            while pos + 8 <= count && !Self.hasSpecialByte(base.loadUnaligned(fromByteOffset: pos, as: UInt64.self)) {
                pos += 8
            }
            while pos < count {
                let c = bytes[pos]
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 { break }
                pos += 1
            }
            if pos > run { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[run..<pos])) }
            guard pos < count else { break }
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw JSONParseError(offset: start, reason: JSONParseError.invalidUTF8)
                }
                return s
            }
            if b < 0x20 { throw fail("control character 0x\(String(b, radix: 16)) inside a string (must be escaped)") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                pos += 1
                continue
            }
            pos += 1
            guard pos < bytes.count else { break }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let escape = pos - 2
                var scalar = try hex4()
                // UTF-16 surrogates are only valid as a high-low pair (one character above
                // U+FFFF). A lone one is no character: it becomes U+FFFD, or, for a record file
                // whose text is stored as read (SQLite's JSON functions would turn the escape
                // into invalid UTF-8 in the warehouse), an error where it stands.
                if (0xD800...0xDBFF).contains(scalar) {
                    // A high surrogate: pair it with the low one that should follow.
                    if pos + 1 < bytes.count && bytes[pos] == UInt8(ascii: "\\") && bytes[pos + 1] == UInt8(ascii: "u") {
                        let save = pos
                        pos += 2
                        let low = try hex4()
                        if (0xDC00...0xDFFF).contains(low) {
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            if refuseLoneSurrogates { throw loneSurrogate(scalar, at: escape) }
                            pos = save
                            scalar = 0xFFFD
                        }
                    } else {
                        if refuseLoneSurrogates { throw loneSurrogate(scalar, at: escape) }
                        scalar = 0xFFFD
                    }
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    if refuseLoneSurrogates { throw loneSurrogate(scalar, at: escape) }
                    scalar = 0xFFFD
                }
                let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: UTF8.encode(unicode)!)
            default:
                pos -= 1
                throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))' in a string")
            }
        }
        throw fail("unterminated string (truncated record?)")
    }

    private func loneSurrogate(_ scalar: UInt32, at offset: Int) -> JSONParseError {
        let hex = String(scalar, radix: 16)
        let kind = scalar < 0xDC00 ? "high surrogate without the low one after it" : "low surrogate without a high one before it"
        return JSONParseError(offset: offset,
                              reason: "a lone \\u\(hex) escape (a UTF-16 \(kind)) is not a character; fix the text that produced it (a string cut in the middle of an emoji?)",
                              field: Self.path(to: offset, in: bytes))
    }

    /// The path (`messages[1].content`, `[3].name`) of the value at `offset` of a text that is
    /// well formed up to there. Only for error messages: it rescans the text from the start.
    static func path(to offset: Int, in bytes: UnsafeRawBufferPointer) -> String? {
        enum Frame { case object(String?), array(Int) }
        var stack: [Frame] = []
        var expectingKey = false
        var i = 0
        let end = min(offset, bytes.count)
        scan: while i < end {
            switch bytes[i] {
            case UInt8(ascii: "{"): stack.append(.object(nil)); expectingKey = true
            case UInt8(ascii: "["): stack.append(.array(0)); expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"): if !stack.isEmpty { stack.removeLast() }
            case UInt8(ascii: ","):
                switch stack.last {
                case .array(let n)?: stack[stack.count - 1] = .array(n + 1)
                case .object?: expectingKey = true
                case nil: break
                }
            case UInt8(ascii: "\""):
                var j = i + 1
                while j < bytes.count && bytes[j] != UInt8(ascii: "\"") { j += bytes[j] == UInt8(ascii: "\\") ? 2 : 1 }
                if j >= end { break scan }  // the offset is inside this string
                if expectingKey, case .object? = stack.last {
                    let raw = UnsafeRawBufferPointer(rebasing: bytes[i...j])
                    let key = (try? JSONParser.parse(raw))?.stringValue ?? String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
                    stack[stack.count - 1] = .object(key)
                    expectingKey = false
                }
                i = j
            default: break
            }
            i += 1
        }
        var path = ""
        for frame in stack {
            switch frame {
            case .object(let key?): path += path.isEmpty ? key : "." + key
            case .object(nil): break
            case .array(let n): path += "[\(n)]"
            }
        }
        return path.isEmpty ? nil : path
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[pos]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}
