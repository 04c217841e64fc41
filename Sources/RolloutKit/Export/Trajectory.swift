import Foundation
import GRDB
import GRDBSQLite

/// A byte range in a `Trajectory`'s arena; a negative count is SQL NULL.
struct Span: Equatable {
    var start: Int32
    var count: Int32

    static let null = Span(start: 0, count: -1)
    var isNull: Bool { count < 0 }
    /// NULL or the empty string.
    var isEmpty: Bool { count <= 0 }
}

/// One rollout's messages and tool calls as read from the warehouse: every text column copied
/// once into one reusable byte arena, so reading a million trajectories allocates almost
/// nothing per message. Export validates and renders straight from these bytes.
struct Trajectory {
    enum Role: UInt8 {
        case system, user, assistant, tool

        init?(_ bytes: UnsafeRawBufferPointer) {
            switch bytes.count {
            case 4 where bytes[0] == UInt8(ascii: "u"): self = .user
            case 4 where bytes[0] == UInt8(ascii: "t"): self = .tool
            case 6: self = .system
            case 9: self = .assistant
            default: return nil
            }
        }

        var name: String {
            switch self {
            case .system: "system"
            case .user: "user"
            case .assistant: "assistant"
            case .tool: "tool"
            }
        }
    }

    struct Message {
        var rowID: Int64
        var role: Role
        var content: Span
        var reasoning: Span
        var toolCallID: Span
        var name: Span
        /// This message's calls are `calls[firstCall ..< firstCall + callCount]`.
        var firstCall: Int
        var callCount: Int
        var callRange: Range<Int> { firstCall ..< firstCall + callCount }
    }

    struct Call {
        var messageRowID: Int64
        var index: Int
        var id: Span
        var name: Span
        var arguments: Span
    }

    var arena: [UInt8] = []
    var messages: [Message] = []
    var calls: [Call] = []
    /// Reused by the reader.
    var scratch: [Int] = []

    init() {
        arena.reserveCapacity(1 << 16)
        messages.reserveCapacity(64)
        calls.reserveCapacity(32)
    }

    mutating func removeAll() {
        arena.removeAll(keepingCapacity: true)
        messages.removeAll(keepingCapacity: true)
        calls.removeAll(keepingCapacity: true)
    }

    /// Copies column `i` of the current row of `stmt` into the arena.
    mutating func take(_ stmt: OpaquePointer, _ i: Int32) -> Span {
        if sqlite3_column_type(stmt, i) == SQLITE_NULL { return .null }
        let p = sqlite3_column_text(stmt, i)
        let n = Int(sqlite3_column_bytes(stmt, i))
        let start = arena.count
        if let p, n > 0 { arena.append(contentsOf: UnsafeBufferPointer(start: p, count: n)) }
        return Span(start: Int32(start), count: Int32(n))
    }

    /// Copies `text` into the arena (for messages that do not come from a row).
    mutating func take(_ text: String?) -> Span {
        guard var text else { return .null }
        let start = arena.count
        text.withUTF8 { arena.append(contentsOf: $0) }
        return Span(start: Int32(start), count: Int32(arena.count - start))
    }

    func withBytes<R>(_ span: Span, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try arena.withUnsafeBytes { all in
            guard span.count > 0 else { return try body(UnsafeRawBufferPointer(start: all.baseAddress, count: 0)) }
            return try body(UnsafeRawBufferPointer(rebasing: all[Int(span.start) ..< Int(span.start + span.count)]))
        }
    }

    func string(_ span: Span) -> String? {
        if span.isNull { return nil }
        return withBytes(span) { String(decoding: $0, as: UTF8.self) }
    }

    func equal(_ a: Span, _ b: Span) -> Bool {
        if a.isNull || b.isNull { return a.isNull && b.isNull }
        if a.count != b.count { return false }
        return arena.withUnsafeBytes { all in
            memcmp(all.baseAddress! + Int(a.start), all.baseAddress! + Int(b.start), Int(a.count)) == 0
        }
    }

    /// Whether the span is exactly `text`.
    func equal(_ a: Span, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { t in
            guard !a.isNull, Int(a.count) == t.count else { return false }
            return withBytes(a) { memcmp($0.baseAddress!, t.baseAddress!, t.count) == 0 }
        }
    }

    var hasSystemMessage: Bool { messages.first?.role == .system }
    var hasReasoning: Bool { messages.contains { $0.reasoning.count > 0 } }
    var userMessages: Int { messages.reduce(0) { $0 + ($1.role == .user ? 1 : 0) } }
}

/// Reads trajectories with two cached statements stepped through SQLite's C API (a million
/// rollouts are two million lookups; GRDB's row decoding would dominate them).
struct TrajectoryReader {
    private let messages: Statement
    private let calls: Statement

    init(_ db: Database) throws {
        messages = try db.cachedStatement(sql: """
            SELECT id, role, content, reasoning_content, tool_call_id, name FROM messages WHERE rollout_id = ? ORDER BY idx
            """)
        calls = try db.cachedStatement(sql: """
            SELECT message_id, idx, call_id, name, arguments FROM tool_calls WHERE rollout_id = ? ORDER BY id
            """)
    }

    /// Fills `t` with rollout `id`'s messages in order, each with its tool calls in order.
    func read(_ id: Int64, into t: inout Trajectory, db: Database) throws {
        t.removeAll()
        let m = messages.sqliteStatement
        sqlite3_reset(m)
        sqlite3_bind_int64(m, 1, id)
        var rc = sqlite3_step(m)
        while rc == SQLITE_ROW {
            let roleText = sqlite3_column_text(m, 1)
            let roleBytes = UnsafeRawBufferPointer(start: roleText, count: Int(sqlite3_column_bytes(m, 1)))
            guard let role = Trajectory.Role(roleBytes) else {
                throw DatabaseError(message: "rollout \(id): a message with role \(String(decoding: roleBytes, as: UTF8.self))")
            }
            let content = t.take(m, 2), reasoning = t.take(m, 3), callID = t.take(m, 4), name = t.take(m, 5)
            t.messages.append(.init(rowID: sqlite3_column_int64(m, 0), role: role, content: content, reasoning: reasoning,
                                    toolCallID: callID, name: name, firstCall: 0, callCount: 0))
            rc = sqlite3_step(m)
        }
        sqlite3_reset(m)
        if rc != SQLITE_DONE { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection))) }

        let c = calls.sqliteStatement
        sqlite3_reset(c)
        sqlite3_bind_int64(c, 1, id)
        rc = sqlite3_step(c)
        while rc == SQLITE_ROW {
            let callID = t.take(c, 2), name = t.take(c, 3), arguments = t.take(c, 4)
            t.calls.append(.init(messageRowID: sqlite3_column_int64(c, 0), index: Int(sqlite3_column_int64(c, 1)),
                                 id: callID, name: name, arguments: arguments))
            rc = sqlite3_step(c)
        }
        sqlite3_reset(c)
        if rc != SQLITE_DONE { throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection))) }
        if !t.calls.isEmpty { attachCalls(&t) }
    }

    /// Orders the calls by (message position, idx) and points each message at its own.
    private func attachCalls(_ t: inout Trajectory) {
        // Rows are written in order, so message ids normally ascend and the calls come sorted.
        var position: [Int] = []
        swap(&position, &t.scratch)
        position.removeAll(keepingCapacity: true)
        t.messages.withUnsafeBufferPointer { msgs in
            var ascending = true
            for i in msgs.indices.dropFirst() where msgs[i - 1].rowID >= msgs[i].rowID { ascending = false; break }
            for call in t.calls {
                if ascending {
                    var lo = 0, hi = msgs.count
                    while lo < hi {
                        let mid = (lo + hi) / 2
                        if msgs[mid].rowID < call.messageRowID { lo = mid + 1 } else { hi = mid }
                    }
                    position.append(lo < msgs.count && msgs[lo].rowID == call.messageRowID ? lo : Int.max)
                } else {
                    position.append(msgs.firstIndex { $0.rowID == call.messageRowID } ?? Int.max)
                }
            }
        }
        var sorted = true
        for j in position.indices.dropFirst() where (position[j - 1], t.calls[j - 1].index) > (position[j], t.calls[j].index) {
            sorted = false
            break
        }
        if !sorted {
            let order = position.indices.sorted { (position[$0], t.calls[$0].index) < (position[$1], t.calls[$1].index) }
            t.calls = order.map { t.calls[$0] }
            position = order.map { position[$0] }
        }
        for (j, k) in position.enumerated() where k != Int.max {
            if t.messages[k].callCount == 0 { t.messages[k].firstCall = j }
            t.messages[k].callCount += 1
        }
        t.scratch = position
    }
}
