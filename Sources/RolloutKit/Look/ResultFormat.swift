import Foundation

/// Output formats for tables, in the vocabulary of sqlite-utils: an aligned table for people,
/// `--json` (one array), `--nl` (one JSON object a line), `--csv`.
public enum ResultFormat: String, Sendable, CaseIterable {
    case table, json, nl, csv

    public func render(_ result: QueryResult) -> String {
        switch self {
        case .table: return Self.table(result)
        case .json:
            let rows = result.rows.map { row in JSONValue.object(JSONObject(pairs: zip(result.columns, row.map(\.json)).map { ($0, $1) })) }
            return JSONValue.array(rows).jsonText + "\n"
        case .nl:
            return result.rows.map { row in
                JSONValue.object(JSONObject(pairs: zip(result.columns, row.map(\.json)).map { ($0, $1) })).jsonText + "\n"
            }.joined()
        case .csv:
            var out = result.columns.map(Self.csvField).joined(separator: ",") + "\r\n"
            for row in result.rows { out += row.map { Self.csvField($0.text) }.joined(separator: ",") + "\r\n" }
            return out
        }
    }

    static func csvField(_ s: String) -> String {
        if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return s
    }

    /// An aligned text table; long or multi-line cells are shortened (use --json for all of it).
    static func table(_ result: QueryResult, maxWidth: Int = 60) -> String {
        func cell(_ v: QueryValue) -> String {
            var s = v == .null ? "" : v.text
            // Data can hold terminal escapes and bidi overrides: shown as markers, never acted on.
            s = VisibleText.terminal(s.replacingOccurrences(of: "\n", with: "⏎ "))
            if s.count > maxWidth { s = String(s.prefix(maxWidth - 1)) + "…" }
            return s
        }
        let cells = result.rows.map { $0.map(cell) }
        let columns = result.columns.map(VisibleText.terminal)
        var widths = columns.map(\.count)
        for row in cells { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        let numeric = result.columns.indices.map { i in
            result.rows.allSatisfy { r in if case .text = r[i] { return false }; return true }
        }
        func line(_ values: [String]) -> String {
            values.enumerated().map { i, v in
                let pad = String(repeating: " ", count: widths[i] - v.count)
                return numeric[i] ? pad + v : v + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(columns), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += cells.map(line)
        if result.rows.isEmpty { out.append("(no rows)") }
        return out.joined(separator: "\n") + "\n"
    }
}
