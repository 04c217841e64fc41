import Foundation
import GRDB

/// A file an export wrote.
public struct ExportedFile: Sendable, Equatable {
    public var path: String
    public var count: Int
    public var bytes: Int
    public var sha256: String
}

/// Writes a file atomically: into a temporary sibling, renamed over the target when complete,
/// so a reader never sees half a file and a rerun never appends to an old one.
final class AtomicFileWriter {
    let path: String
    private let temporary: String
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var hasher = SHA256()
    private(set) var bytes = 0

    init(path: String) throws {
        self.path = path
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        temporary = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
              let h = FileHandle(forWritingAtPath: temporary) else {
            throw EngineError("cannot write \(path)")
        }
        handle = h
        buffer.reserveCapacity(1 << 20)
    }

    func write(line: String) throws {
        buffer.append(contentsOf: line.utf8)
        buffer.append(0x0A)
        if buffer.count >= 1 << 20 { try drain() }
    }

    private func drain() throws {
        hasher.update(buffer)
        bytes += buffer.count
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, renames into place, and returns the file's sha256.
    func commit() throws -> String {
        try drain()
        try handle.synchronize()
        try handle.close()
        if rename(temporary, path) != 0 {
            throw EngineError("cannot move \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
        return hasher.hexDigest()
    }

    func abandon() {
        try? handle.close()
        unlink(temporary)
    }
}

extension Warehouse {
    /// The messages of a rollout in order, tool calls attached, in the canonical shape.
    func transcript(rollout: Int64, _ db: Database) throws -> [ChatMessage] {
        var calls: [Int64: [ToolCall]] = [:]
        let callRows = try Row.fetchCursor(db, sql: "SELECT message_id, call_id, name, arguments FROM tool_calls WHERE rollout_id = ? ORDER BY message_id, idx",
                                           arguments: [rollout])
        while let row = try callRows.next() {
            calls[row[0], default: []].append(ToolCall(id: row[1], name: row[2], arguments: row[3] ?? "{}"))
        }
        var out: [ChatMessage] = []
        let rows = try Row.fetchCursor(db, sql: """
            SELECT id, role, content, reasoning_content, tool_call_id, name FROM messages WHERE rollout_id = ? ORDER BY idx
            """, arguments: [rollout])
        while let row = try rows.next() {
            out.append(ChatMessage(role: row[1], content: row[2], reasoningContent: row[3], toolCalls: calls[row[0]] ?? [],
                                   toolCallID: row[4], name: row[5]))
        }
        return out
    }

    /// `--output-dir` and the config's `output_path`: one Rollout-framework output JSONL per
    /// job of the run — `paths[job]` when given, else `DIR/<job>.jsonl` when `directory` is
    /// given, else none — one record per task and sample (its latest attempt), streamed from
    /// the warehouse, each file written atomically and recorded in `exports`.
    public func writeRolloutOutputs(run: Int64, directory: String?, paths: [String: String] = [:]) throws -> [ExportedFile] {
        let jobs = try writer.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT job FROM run_tasks WHERE run_id = ? ORDER BY job", arguments: [run])
        }
        var files: [ExportedFile] = []
        for job in jobs {
            let safe = job.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "_")
            guard let path = paths[job] ?? directory.map({ URL(fileURLWithPath: $0).appending(path: safe + ".jsonl").path }) else { continue }
            let out = try AtomicFileWriter(path: path)
            var count = 0
            do {
                try writer.read { db in
                    let rows = try Row.fetchCursor(db, sql: """
                        SELECT r.id, t.external_id, r.sample, r.status, r.stop_reason, r.error, r.turns, r.prediction
                        FROM run_tasks rt JOIN latest_rollouts r ON r.run_id = rt.run_id AND r.task_id = rt.task_id
                        JOIN tasks t ON t.id = r.task_id
                        WHERE rt.run_id = ? AND rt.job = ? AND r.status IN ('completed', 'failed')
                        ORDER BY r.task_id, r.sample
                        """, arguments: [run, job])
                    while let row = try rows.next() {
                        let messages = try self.transcript(rollout: row[0], db)
                        try out.write(line: Self.rolloutRecord(id: row[1], sample: row[2], status: row[3], stopReason: row[4],
                                                               error: row[5], turns: row[6], prediction: row[7],
                                                               messages: messages).jsonText)
                        count += 1
                    }
                }
                let sha = try out.commit()
                files.append(ExportedFile(path: path, count: count, bytes: out.bytes, sha256: sha))
            } catch {
                out.abandon()
                throw error
            }
        }
        let now = Timestamp.now()
        try writer.write { db in
            for f in files {
                try db.execute(sql: """
                    INSERT INTO exports(run_id, format, path, filters, count, bytes, sha256, created_at)
                    VALUES (?, 'rollout', ?, '{}', ?, ?, ?, ?)
                    """, arguments: [run, f.path, f.count, f.bytes, f.sha256, now])
            }
        }
        return files
    }

    /// The Rollout framework's output record for one rollout.
    static func rolloutRecord(id: String, sample: Int, status: String, stopReason: String?, error: String?, turns: Int?,
                              prediction: String?, messages: [ChatMessage]) -> JSONValue {
        var o = JSONObject()
        o["id"] = .string(id)
        o["sample"] = JSONValue(sample)
        o["messages"] = .array(messages.map(\.openAIJSON))
        o["success"] = .bool(status == "completed")
        o["error"] = error.map(JSONValue.string) ?? .null
        o["stopped"] = .bool(stopReason == StopReason.userStop.rawValue)
        o["transferred"] = .bool(stopReason == StopReason.transfer.rawValue)
        o["out_of_scope"] = .bool(stopReason == StopReason.outOfScope.rawValue)
        o["total_turns"] = JSONValue(turns ?? 0)
        let userToken: Set<String> = [StopReason.userStop.rawValue, StopReason.transfer.rawValue, StopReason.outOfScope.rawValue]
        o["stop_reason"] = stopReason.map { userToken.contains($0) ? "user_token" : JSONValue.string($0) } ?? .null
        if stopReason == StopReason.maxTurns.rawValue { o["reached_max_turns"] = true }
        o["has_reasoning"] = .bool(messages.contains { !($0.reasoningContent ?? "").isEmpty })
        if let prediction { o["prediction"] = .string(prediction) }
        return .object(o)
    }
}
