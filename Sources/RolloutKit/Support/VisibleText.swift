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

    /// Whether any scalar of `s` needs a marker, scanning bytes (fast for plain ASCII text).
    static func mayNeedMarker(_ s: String) -> Bool {
        for b in s.utf8 where b < 0x20 || b == 0x7F || b == 0xC2 || b == 0xE2 {
            if b == 0x0A || b == 0x09 { continue }
            return true
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
