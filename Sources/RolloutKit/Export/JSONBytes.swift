/// Appends JSON text to a byte buffer directly, without building `JSONValue`s: the export's hot
/// path writes gigabytes, so strings are escaped from the bytes SQLite hands over. Output is
/// compact and byte-identical to Python's `json.dumps(v, ensure_ascii=False,
/// separators=(",", ":"))` for the same values.
struct JSONBytes {
    var out: [UInt8] = []

    init(capacity: Int = 1 << 16) { out.reserveCapacity(capacity) }

    @inline(__always) mutating func byte(_ b: UInt8) { out.append(b) }

    /// Raw JSON text (punctuation, keys, pre-rendered values).
    @inline(__always) mutating func raw(_ s: StaticString) {
        out.append(contentsOf: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    mutating func raw(_ bytes: [UInt8]) { out.append(contentsOf: bytes) }

    mutating func raw(_ bytes: UnsafeRawBufferPointer) { out.append(contentsOf: bytes) }

    mutating func null() { raw("null") }

    mutating func bool(_ b: Bool) { if b { raw("true") } else { raw("false") } }

    mutating func int(_ v: Int) {
        if v >= 0 && v < 10 { out.append(0x30 + UInt8(v)); return }
        out.append(contentsOf: String(v).utf8)
    }

    /// A number as Python's `json.dumps` writes a float.
    mutating func double(_ d: Double) {
        guard d.isFinite else { null(); return }
        out.append(contentsOf: JSONWriter.pythonRepr(d).utf8)
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { string(UnsafeRawBufferPointer($0)) }
    }

    mutating func string(_ s: String?) {
        if let s { string(s) } else { null() }
    }

    /// A JSON string of UTF-8 `bytes`: runs that need no escape are copied whole.
    mutating func string(_ bytes: UnsafeRawBufferPointer) {
        out.append(0x22)
        escape(bytes)
        out.append(0x22)
    }

    /// The escaped body of a JSON string (no quotes), for text built from several pieces.
    mutating func escape(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = bytes.count
        var start = 0
        var i = 0
        while i < n {
            // Eight bytes at a time while none needs an escape (control, quote, backslash).
            while i + 8 <= n {
                let x = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
                let control = (x &- ones &* 0x20) & ~x & highs
                let q = x ^ (ones &* 0x22), bs = x ^ (ones &* 0x5C)
                let special = control | ((q &- ones) & ~q & highs) | ((bs &- ones) & ~bs & highs)
                if special != 0 { break }
                i += 8
            }
            guard i < n else { break }
            let b = base[i]
            if b >= 0x20 && b != 0x22 && b != 0x5C { i += 1; continue }
            if i > start { out.append(contentsOf: UnsafeBufferPointer(start: base + start, count: i - start)) }
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            default:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, Self.hex[Int(b >> 4)], Self.hex[Int(b & 0xF)]])
            }
            i += 1
            start = i
        }
        if n > start { out.append(contentsOf: UnsafeBufferPointer(start: base + start, count: n - start)) }
    }

    mutating func escape(_ s: String) {
        var s = s
        s.withUTF8 { escape(UnsafeRawBufferPointer($0)) }
    }

    /// A `JSONValue`, compact, keys in their order.
    mutating func value(_ v: JSONValue) { JSONWriter.compact.write(v, into: &out) }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)
}
