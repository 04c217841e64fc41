import Foundation
import GRDB
import RolloutKit

/// A request for a page: the connection (one read transaction for the whole page), the
/// path's ids and the URL's query.
struct PageRequest {
    let db: Database
    let query: FormValues
    /// The server's form token (review forms carry it back).
    let formToken: String
    /// The reviewer name the browser last used (cookie), for the review form.
    let reviewer: String?

    func int(_ name: String) throws -> Int64? {
        guard let v = query[name] else { return nil }
        guard let n = Int64(v) else { throw PageError(400, "\(name) must be an integer, not \"\(v)\"") }
        return n
    }
}

/// A page that cannot be rendered: a status and a message for the user.
struct PageError: Error {
    let status: Int
    let message: String
    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// How many rows a list shows per page.
let pageSize = 50

/// A run's row.
struct RunInfo {
    let id: Int64
    let name: String
    let mode: String
    let status: String
    let agentModel: String?
    let userModel: String?
    let source: String?
    let config: String
    let configHash: String?
    let createdAt: String
    let startedAt: String?
    let finishedAt: String?

    init(_ row: Row) {
        id = row["id"]
        name = row["name"]
        mode = row["mode"]
        status = row["status"]
        agentModel = row["agent_model"]
        userModel = row["user_model"]
        source = row["source"]
        config = row["config"] ?? "{}"
        configHash = row["config_hash"]
        createdAt = row["created_at"]
        startedAt = row["started_at"]
        finishedAt = row["finished_at"]
    }

    static let columns = "id, name, mode, status, agent_model, user_model, source, config, config_hash, created_at, started_at, finished_at"

    static func load(_ db: Database, id: Int64) throws -> RunInfo {
        guard let row = try Row.fetchOne(db, sql: "SELECT \(columns) FROM runs WHERE id = ?", arguments: [id]) else {
            throw PageError(404, "no run with id \(id)")
        }
        return RunInfo(row)
    }

    var link: Link { Link("/runs/\(id)") }
}

/// Which grader's verdicts a page shows: the `grader` (and `version`) of the URL, else the
/// run's stop-reason grades, else its first grader; nil when the run has no grades.
struct GraderChoice {
    let name: String
    let version: Int
    /// Every (grader, version) with grades in the run.
    let available: [(name: String, version: Int)]

    static func resolve(_ req: PageRequest, runID: Int64) throws -> GraderChoice? {
        // The graders table is small; one index probe per version says whether the run has grades.
        let all = try Row.fetchAll(req.db, sql: """
            SELECT name, version FROM graders g
            WHERE EXISTS (SELECT 1 FROM grade_counts gc WHERE gc.grader = g.name AND gc.grader_version = g.version AND gc.run_id = ?)
            ORDER BY name, version
            """, arguments: [runID]).map { (name: $0["name"] as String, version: $0["version"] as Int) }
        guard !all.isEmpty else {
            if let g = req.query["grader"] { throw PageError(404, "this run has no grades by \"\(g)\"") }
            return nil
        }
        let wanted = req.query["grader"]
        let name = wanted ?? (all.contains { $0.name == "stop-reason" } ? "stop-reason" : all[0].name)
        let versions = all.filter { $0.name == name }.map(\.version)
        guard let latest = versions.max() else {
            throw PageError(404, "this run has no grades by \"\(name)\" (graded by: \(Set(all.map(\.name)).sorted().joined(separator: ", ")))")
        }
        var version = latest
        if let v = try req.int("version") {
            guard versions.contains(Int(v)) else { throw PageError(404, "this run has no grades by \(name) version \(v)") }
            version = Int(v)
        }
        return GraderChoice(name: name, version: version, available: all)
    }

    /// Links to the same page under each available grader.
    func switcher(_ base: Link) -> Markup {
        guard available.count > 1 else { return "<span class=\"badge\">grader: \(name) v\(version)</span>" }
        var parts: [Markup] = []
        for g in available {
            let label = "\(g.name) v\(g.version)"
            if g.name == name && g.version == version {
                parts.append("<strong>\(label)</strong>")
            } else {
                parts.append("<a href=\"\(base.with("grader", g.name).with("version", String(g.version)).without("after"))\">\(label)</a>")
            }
        }
        return "<span class=\"muted\">grader:</span> \(Markup.join(parts, separator: " · "))"
    }
}

/// A verdict as a badge: passed 1 / 0 / NULL, or no grade at all.
func verdictBadge(_ passed: Int?, graded: Bool) -> Markup {
    guard graded else { return "<span class=\"muted\">—</span>" }
    switch passed {
    case 1: return "<span class=\"badge pass\">pass</span>"
    case 0: return "<span class=\"badge fail\">fail</span>"
    default: return "<span class=\"badge undecided\">undecided</span>"
    }
}

func statusBadge(_ status: String) -> Markup {
    let cls = status == "completed" ? "pass" : status == "failed" ? "fail" : status == "interrupted" ? "undecided" : ""
    return "<span class=\"badge \(cls)\">\(status)</span>"
}

func reviewBadge(_ verdict: String?) -> Markup {
    switch verdict {
    case "accepted": "<span class=\"badge pass\">accepted</span>"
    case "rejected": "<span class=\"badge fail\">rejected</span>"
    default: "<span class=\"muted\">—</span>"
    }
}

/// JSON text indented for reading; text that is not JSON comes back as it is.
func prettyJSON(_ text: String) -> String {
    guard let value = try? JSONParser.parse(text) else { return text }
    var out = ""
    writePretty(value, indent: 0, into: &out)
    return out
}

private func writePretty(_ value: JSONValue, indent: Int, into out: inout String) {
    let pad = String(repeating: "  ", count: indent + 1), close = String(repeating: "  ", count: indent)
    switch value {
    case .array(let items) where !items.isEmpty:
        out += "[\n"
        for (i, item) in items.enumerated() {
            out += pad
            writePretty(item, indent: indent + 1, into: &out)
            out += i + 1 < items.count ? ",\n" : "\n"
        }
        out += close + "]"
    case .object(let object) where !object.isEmpty:
        out += "{\n"
        var i = 0
        for (key, item) in object {
            out += pad + JSONValue.string(key).jsonText + ": "
            writePretty(item, indent: indent + 1, into: &out)
            i += 1
            out += i < object.count ? ",\n" : "\n"
        }
        out += close + "}"
    default:
        out += value.jsonText
    }
}

/// The first `limit` characters of a text on one line, for previews.
func preview(_ text: String?, _ limit: Int = 120) -> String {
    guard let text else { return "" }
    let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
    return line.count > limit ? String(line.prefix(limit)) + "…" : (line.count < text.count ? line + " …" : line)
}
