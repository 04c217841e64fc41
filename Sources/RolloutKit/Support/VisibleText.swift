import Foundation

/// Text from the warehouse (model output, tool results, file contents) made safe to show: the
/// characters that would act instead of appearing — terminal escapes (ESC, BEL), other control
/// characters, and the bidirectional overrides and isolates that reorder what is around them
/// (U+202A–U+202E, U+2066–U+2069) — are written as visible markers.
public enum VisibleText {
    /// Whether `s` is a character `visible` rewrites. Line feed and tab are kept everywhere;
    /// carriage return is kept only when `keepCarriageReturn` (it is harmless in HTML).
    public static func needsMarker(_ s: Unicode.Scalar, keepCarriageReturn: Bool = false) -> Bool {
        switch s.value {
        case 0x0A, 0x09: false
        case 0x0D: !keepCarriageReturn
        case 0x00...0x1F, 0x7F, 0x80...0x9F: true
        case 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// Whether any scalar of `s` needs a marker (CR counting only when `carriageReturn`), read
    /// from the UTF-8 bytes: plain text, and text with ordinary non-ASCII such as "—" or "é",
    /// is answered without decoding.
    public static func mayNeedMarker(_ s: String, carriageReturn: Bool = true) -> Bool {
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            switch b {
            case 0x0A, 0x09: continue
            case 0x0D: if carriageReturn { return true }
            case 0x00...0x1F, 0x7F: return true
            case 0xC2:
                // U+0080–U+009F (C1) is C2 80–9F.
                if let c = it.next(), (0x80...0x9F).contains(c) { return true }
            case 0xE2:
                // U+202A–U+202E is E2 80 AA–AE; U+2066–U+2069 is E2 81 A6–A9.
                guard let c = it.next(), let d = it.next() else { return false }
                if c == 0x80 && (0xAA...0xAE).contains(d) { return true }
                if c == 0x81 && (0xA6...0xA9).contains(d) { return true }
            default: continue
            }
        }
        return false
    }

    /// `<U+202E>`: the marker for a character in a web page (escaped there as text).
    public static func codePoint(_ s: Unicode.Scalar) -> String {
        let hex = String(s.value, radix: 16, uppercase: true)
        return "<U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex + ">"
    }

    /// Text for a terminal: ESC as `\e`, BEL as `\a`, backspace, carriage return, vertical tab
    /// and form feed as `\b` `\r` `\v` `\f`, other control characters as `\u{7F}`, and
    /// bidirectional controls as `<U+202E>`. Line feeds and tabs stay.
    public static func terminal(_ text: String) -> String {
        guard mayNeedMarker(text) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        for s in text.unicodeScalars {
            guard needsMarker(s) else { out.unicodeScalars.append(s); continue }
            switch s.value {
            case 0x1B: out += "\\e"
            case 0x07: out += "\\a"
            case 0x08: out += "\\b"
            case 0x0D: out += "\\r"
            case 0x0B: out += "\\v"
            case 0x0C: out += "\\f"
            case 0x202A...0x202E, 0x2066...0x2069: out += codePoint(s)
            default: out += "\\u{" + String(s.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }
}
