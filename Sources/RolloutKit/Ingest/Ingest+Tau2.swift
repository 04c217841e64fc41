import Foundation
import GRDB

extension Warehouse {
    /// `rollout ingest tau2`: a τ²-bench domain folder. Tasks become dialogue tasks whose
    /// user-simulator prompt is built from `user_scenario`; `evaluation_criteria` is kept as the
    /// task's criteria; `split_tasks.json` gives each task its splits.
    public func ingestTau2(directory: String, domain: String? = nil, dataset: String? = nil, tools: String? = nil,
                           options: IngestOptions = .init()) throws -> IngestReport {
        try ingest(kind: "tau2", source: directory, files: tools.map { [$0] } ?? [], folders: [directory], options: options) { session in
            let fm = FileManager.default
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
                throw IngestError(file: directory, "not a directory (expected a τ²-bench domain folder with policy.md and tasks.json)")
            }
            let root = URL(fileURLWithPath: directory)
            func path(_ name: String) -> String { root.appending(path: name).path }
            for required in ["policy.md", "tasks.json"] where !fm.fileExists(atPath: path(required)) {
                throw IngestError(file: directory, "wrong layout: no \(required) (a τ²-bench domain folder has policy.md, tasks.json, split_tasks.json and agent_tools.json)")
            }
            let name = domain ?? root.standardizedFileURL.lastPathComponent
            let key: DomainKey
            do { key = try DomainKey([name]) } catch let e as FieldError { throw IngestError(file: directory, field: "--domain", e.reason) }
            let catalog = Catalog(session: session)
            try catalog.setPolicy(key, text: try RecordFiles.readText(path("policy.md")), source: path("policy.md"))
            session.report.files += 1

            let toolFile = tools ?? ["agent_tools.json", "tools.json"].map(path).first { fm.fileExists(atPath: $0) }
            if let toolFile {
                try Self.ingestTools(session, file: toolFile, server: name, domains: [name])
            } else {
                session.report.notices.append("\(directory): no agent_tools.json; add the domain's tools with `rollout ingest tools FILE --server \(name) --domain \(name)` or an MCP server")
            }

            var splits: [String: [String]] = [:]
            if fm.fileExists(atPath: path("split_tasks.json")) {
                let (_, doc) = try RecordFiles.readDocument(path("split_tasks.json"))
                guard case .object(let object) = doc else {
                    throw IngestError(file: path("split_tasks.json"), "expected an object of split name → [task ids]")
                }
                for (split, ids) in object {
                    guard case .array(let items) = ids else {
                        throw IngestError(file: path("split_tasks.json"), field: split, "expected an array of task ids")
                    }
                    for (i, item) in items.enumerated() {
                        guard let id = item.scalarText else {
                            throw IngestError(file: path("split_tasks.json"), field: "\(split)[\(i)]", "expected a task id")
                        }
                        splits[id, default: []].append(split)
                    }
                }
                session.report.files += 1
            }

            let domainID = try catalog.domain(key)
            let datasetID = try catalog.dataset(named: dataset ?? "tau2-\(name)", kind: "dialogue", source: directory)
            let writer = try TaskWriter(session: session, datasetID: datasetID)
            let tasksFile = path("tasks.json")
            try RecordFiles.forEachArrayElement(tasksFile, session: session) { line, _, value in
                let r = RecordReader(value)
                _ = try r.object()
                let id = try r.required("id").idText()
                let scenario = try r.required("user_scenario")
                let prompt = try Self.tau2UserPrompt(scenario)
                var criteria: String?
                if let c = r.child("evaluation_criteria"), !c.value.isNull {
                    _ = try c.object()
                    criteria = c.value.jsonText
                }
                let taskSplits = splits[id].map { JSONValue.array($0.sorted().map(JSONValue.string)).jsonText }
                try writer.write(.init(externalID: id, domainID: domainID, opening: nil, userPrompt: prompt,
                                       criteria: criteria, splits: taskSplits, record: .init(value.jsonText),
                                       file: tasksFile, line: line))
            }
        }
    }

    /// The user simulator's scenario text from τ²'s `user_scenario` (persona and instructions,
    /// which are a string or a structured object).
    static func tau2UserPrompt(_ scenario: RecordReader) throws -> String {
        if case .string(let s) = scenario.value { return s }
        _ = try scenario.object()
        var parts: [String] = []
        if let persona = try scenario.optionalString("persona"), !persona.isEmpty {
            parts.append("Persona:\n\(persona)")
        }
        let instructions = try scenario.required("instructions")
        switch instructions.value {
        case .string(let s):
            parts.append("Instructions:\n\(s)")
        case .object:
            var lines: [String] = []
            let labels = [("domain", "Domain"), ("reason_for_call", "Reason for call"), ("known_info", "Known info"),
                          ("unknown_info", "Unknown info"), ("task_instructions", "Task instructions")]
            for (k, label) in labels {
                guard let v = instructions.value[k], !v.isNull else { continue }
                let text = v.stringValue ?? v.jsonText
                lines.append(k == "domain" ? "\(label): \(text)" : "\(label):\n\(text)")
            }
            parts.append("Instructions:\n" + lines.joined(separator: "\n"))
        default:
            throw FieldError(field: instructions.path, reason: "expected a string or an object, found \(instructions.value.typeName)")
        }
        return parts.joined(separator: "\n\n")
    }
}
