import Foundation

/// A rendered page: its title and body, with the HTTP status it is served with.
struct Page: Sendable {
    var status: Int = 200
    var title: String
    /// Breadcrumbs after "Runs": (label, link or nil for the current page).
    var crumbs: [(String, Link?)] = []
    var body: Markup
    /// Text for the search box in the header.
    var query: String? = nil
}

enum Layout {
    /// The whole document around a page's body. `footer` carries the render time.
    static func document(_ page: Page, database: String, footer: String) -> String {
        var crumbs: [Markup] = [page.crumbs.isEmpty ? "<span>Runs</span>" : "<a href=\"/\">Runs</a>"]
        for (label, link) in page.crumbs {
            crumbs.append(link.map { "<a href=\"\($0)\">\(label)</a>" } ?? "<span>\(label)</span>")
        }
        let doc: Markup = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(page.title) · rollout</title>
            <link rel="stylesheet" href="/static/viewer.css">
            </head><body>
            <header><a class="brand" href="/">rollout</a>
            <nav class="crumbs">\(Markup.join(crumbs, separator: " › "))</nav>
            <form class="search" method="get" action="/search"><input type="search" name="q" value="\(page.query)" placeholder="Search messages" aria-label="Search messages"><button type="submit">Search</button></form>
            </header>
            <main>
            \(page.body)
            </main>
            <footer><span class="db">\(database)</span> · \(footer)</footer>
            </body></html>

            """
        return doc.html
    }

    /// A table of rows under the column titles `head` (cells are markup; the titles text).
    static func table(_ head: [String], _ rows: [[Markup]], classes: String = "") -> Markup {
        guard !rows.isEmpty else { return "<p class=\"none\">Nothing here.</p>" }
        var h: Markup = "<table class=\"\(classes)\"><thead><tr>"
        for c in head { h += "<th>\(c)</th>" }
        h += "</tr></thead><tbody>"
        for row in rows {
            h += "<tr>"
            for cell in row { h += "<td>\(cell)</td>" }
            h += "</tr>"
        }
        h += "</tbody></table>"
        return h
    }

    /// "Next" (and "First") links of a keyset-paginated list.
    static func pager(first: Link, next: Link?, shown: Int) -> Markup {
        var h: Markup = "<nav class=\"pager\">"
        if first.query.contains(where: { $0.0 == "after" || $0.0 == "before" }) {
            h += "<a href=\"\(first.without("after", "before"))\">« First</a> "
        }
        h += "<span>\(shown) shown</span>"
        if let next { h += " <a rel=\"next\" href=\"\(next)\">Next »</a>" }
        h += "</nav>"
        return h
    }

    /// A `<select>` of a GET filter form; the empty value means "any".
    static func select(_ name: String, _ label: String, _ options: [(value: String, label: String)], selected: String?,
                       any: String? = "any") -> Markup {
        var h: Markup = "<label>\(label) <select name=\"\(name)\">"
        if let any { h += "<option value=\"\">\(any)</option>" }
        for o in options {
            h += o.value == selected ? "<option value=\"\(o.value)\" selected>\(o.label)</option>" : "<option value=\"\(o.value)\">\(o.label)</option>"
        }
        h += "</select></label>"
        return h
    }

    static let css = """
        :root { --fg:#1d2330; --muted:#667085; --line:#e3e6ec; --bg:#fafbfc; --pass:#1a7f37; --fail:#c62828; --warn:#b26a00; --accent:#2453a6; }
        * { box-sizing: border-box; }
        body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
        header { display:flex; gap:1.2em; align-items:center; padding:.6em 1.2em; background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:2; }
        header .brand { font-weight:700; color:var(--fg); text-decoration:none; }
        header .crumbs { flex:1; color:var(--muted); overflow:hidden; white-space:nowrap; text-overflow:ellipsis; }
        header form.search input { width:22em; }
        main { padding:1em 1.2em 3em; max-width:1500px; }
        footer { color:var(--muted); font-size:12px; padding:.5em 1.2em 2em; }
        a { color:var(--accent); }
        h1 { font-size:20px; margin:.2em 0 .6em; } h2 { font-size:16px; margin:1.4em 0 .5em; } h3 { font-size:14px; margin:1em 0 .3em; }
        table { border-collapse:collapse; background:#fff; border:1px solid var(--line); margin:.3em 0 .8em; }
        th, td { padding:.3em .6em; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
        th { background:#f3f5f8; font-weight:600; font-size:12px; }
        td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
        .none, .muted { color:var(--muted); }
        .grid { display:grid; grid-template-columns:minmax(0,1fr) 25em; gap:1.5em; align-items:start; }
        @media (max-width: 1000px) { .grid { grid-template-columns:1fr; } }
        .cards { display:flex; flex-wrap:wrap; gap:1.5em; align-items:flex-start; }
        dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.15em 1em; margin:.3em 0 1em; }
        dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; overflow-wrap:anywhere; }
        form.filters { display:flex; flex-wrap:wrap; gap:.8em; align-items:center; margin:.5em 0 1em; padding:.5em .7em; background:#fff; border:1px solid var(--line); }
        .pager { margin:.6em 0; display:flex; gap:1em; align-items:center; }
        .badge { display:inline-block; padding:0 .45em; border-radius:.6em; font-size:12px; background:#eef1f6; color:var(--fg); }
        .pass { color:var(--pass); } .fail { color:var(--fail); } .undecided { color:var(--warn); }
        .badge.pass { background:#e4f4e8; } .badge.fail { background:#fbe7e7; } .badge.undecided, .badge.flip { background:#fff2d6; color:var(--warn); }
        .samples { display:flex; gap:3px; }
        .cell { display:inline-block; min-width:1.7em; text-align:center; border-radius:3px; text-decoration:none; border:1px solid var(--line); background:#fff; }
        .cell.pass { background:#dff3e4; border-color:#a8d8b4; } .cell.fail { background:#fbe1e1; border-color:#eab0b0; }
        .cell.undecided { background:#fff1cf; } .cell.running, .cell.pending { background:#eef1f6; color:var(--muted); }
        .msg { background:#fff; border:1px solid var(--line); border-left:4px solid #c9ced8; margin:.5em 0; padding:.45em .7em; }
        .msg.user { border-left-color:#5b8def; } .msg.assistant { border-left-color:#1a7f37; } .msg.tool { border-left-color:#8a63d2; background:#fcfbff; }
        .msg.system { border-left-color:#98a2b3; } .msg .who { font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
        .msg .meta { color:var(--muted); font-size:12px; margin-left:.6em; }
        .msg.error { border-left-color:var(--fail); }
        pre { margin:.3em 0; white-space:pre-wrap; overflow-wrap:anywhere; font:12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
        .text { white-space:pre-wrap; overflow-wrap:anywhere; margin:.25em 0; }
        .call { background:#f6f8fa; border:1px solid var(--line); padding:.3em .5em; margin:.35em 0; }
        .call .name { font-weight:600; font-family:ui-monospace, monospace; }
        details > summary { cursor:pointer; color:var(--muted); }
        mark { background:#ffe58a; }
        .review form textarea { width:100%; min-height:4em; }
        .review form input[type=text] { width:100%; }
        .review button { margin-right:.5em; }
        .notice { padding:.4em .7em; background:#e4f4e8; border:1px solid #a8d8b4; margin:.5em 0; }
        .errorbox { padding:.4em .7em; background:#fbe7e7; border:1px solid #eab0b0; margin:.5em 0; }
        table.ledger td, table.ledger th { font-size:12px; padding:.2em .4em; }
        """
}

/// Numbers as the pages print them.
enum Fmt {
    static func int(_ n: Int) -> String {
        let s = String(n.magnitude)
        var out = ""
        for (i, ch) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }

    static func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

    static func percent(_ x: Double?) -> String { x.map { String(format: "%.1f%%", $0 * 100) } ?? "—" }

    static func cost(_ x: Double) -> String { x == 0 ? "$0" : x < 0.01 ? String(format: "$%.4f", x) : String(format: "$%.2f", x) }

    static func ms(_ x: Double?) -> String {
        guard let x else { return "—" }
        return x >= 10_000 ? String(format: "%.1f s", x / 1000) : String(format: "%.0f ms", x)
    }

    /// Seconds between two ISO-8601 timestamps of the warehouse, or nil.
    static func duration(_ from: String?, _ to: String?) -> String? {
        guard let a = from.flatMap(parseTime), let b = to.flatMap(parseTime) else { return nil }
        let s = b - a
        if s < 0 { return nil }
        if s < 60 { return String(format: "%.1f s", s) }
        if s < 3600 { return String(format: "%d min %02d s", Int(s) / 60, Int(s) % 60) }
        return String(format: "%d h %02d min", Int(s) / 3600, Int(s) % 3600 / 60)
    }

    static func parseTime(_ s: String) -> Double? {
        // 2026-11-22T03:24:00.000Z (milliseconds optional)
        let u = Array(s.utf8)
        guard u.count >= 19 else { return nil }
        func num(_ a: Int, _ n: Int) -> Int? {
            var v = 0
            for i in a..<(a + n) {
                guard u[i] >= 48 && u[i] <= 57 else { return nil }
                v = v * 10 + Int(u[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let se = num(17, 2) else { return nil }
        var frac = 0.0
        if u.count >= 23, u[19] == UInt8(ascii: "."), let ms = num(20, 3) { frac = Double(ms) / 1000 }
        // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + se) + frac
    }
}
