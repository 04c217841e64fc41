// A server-sent event stream: the events must not depend on how the bytes were split into
// reads, and the OpenAI stream decoder must take any stream without trapping.
import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = SSEParser.events(bytes)
    // The same bytes in reads of 1, 2, 3, … bytes (a cut between CR and LF included).
    var parser = SSEParser()
    var pieces: [SSEEvent] = []
    var start = 0
    var step = 1
    while start < bytes.count {
        let end = min(bytes.count, start + step)
        pieces += parser.feed(bytes[start..<end])
        start = end
        step += 1
    }
    pieces += parser.finish()
    if pieces != whole {
        fatalError("SSE events differ when the stream is read in pieces: \(whole.count) whole, \(pieces.count) in pieces")
    }
    _ = try? OpenAICodec.decodeStream(bytes)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
