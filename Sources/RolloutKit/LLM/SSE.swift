/// One server-sent event: its `event:` name (nil when the stream did not name it) and its
/// `data:` lines joined with "\n", as raw bytes.
public struct SSEEvent: Sendable, Equatable {
    public var event: String?
    public var data: [UInt8]

    public init(event: String? = nil, data: [UInt8]) {
        self.event = event
        self.data = data
    }

    public var text: String { String(decoding: data, as: UTF8.self) }
}

/// Splits a `text/event-stream` into events, per the WHATWG rules that matter for LLM APIs:
/// lines end in LF, CRLF or CR; a blank line ends an event; `data:` lines accumulate (one
/// space after the colon is dropped); lines starting with `:` are comments; `id:` and `retry:`
/// are ignored. Feed bytes as they arrive (`feed` may split anywhere, even inside CRLF), then
/// call `finish()`, which also dispatches an event the stream did not close with a blank line.
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    private var afterCR = false
    private var eventName: String?
    private var data: [UInt8] = []
    private var hasData = false

    public init() {}

    /// Every event of a complete stream.
    public static func events(_ bytes: [UInt8]) -> [SSEEvent] {
        var parser = SSEParser()
        return parser.feed(bytes) + parser.finish()
    }

    /// The events completed by these bytes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        var out: [SSEEvent] = []
        for b in bytes {
            if afterCR {
                afterCR = false
                if b == 0x0A { continue }
            }
            switch b {
            case 0x0A: endLine(into: &out)
            case 0x0D: endLine(into: &out); afterCR = true
            default: line.append(b)
            }
        }
        return out
    }

    /// Ends the stream: an unterminated last line and an undispatched event are delivered.
    public mutating func finish() -> [SSEEvent] {
        var out: [SSEEvent] = []
        if !line.isEmpty { endLine(into: &out) }
        dispatch(into: &out)
        afterCR = false
        return out
    }

    private mutating func endLine(into out: inout [SSEEvent]) {
        defer { line.removeAll(keepingCapacity: true) }
        guard !line.isEmpty else { dispatch(into: &out); return }
        if line[0] == UInt8(ascii: ":") { return }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let field = String(decoding: line[..<(colon ?? line.count)], as: UTF8.self)
        var valueStart = colon.map { $0 + 1 } ?? line.count
        if valueStart < line.count && line[valueStart] == 0x20 { valueStart += 1 }
        let value = line[valueStart...]
        switch field {
        case "data":
            if hasData { data.append(0x0A) }
            data.append(contentsOf: value)
            hasData = true
        case "event":
            eventName = String(decoding: value, as: UTF8.self)
        default:
            break
        }
    }

    private mutating func dispatch(into out: inout [SSEEvent]) {
        if hasData { out.append(SSEEvent(event: eventName, data: data)) }
        data.removeAll(keepingCapacity: true)
        hasData = false
        eventName = nil
    }
}
