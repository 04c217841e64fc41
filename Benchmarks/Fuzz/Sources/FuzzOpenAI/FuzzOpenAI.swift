// An OpenAI-compatible chat completion body, as a server (or anything pretending to be one)
// sends it: decoded as a success and as an error status.
import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? OpenAICodec.decode(body, status: 200)
    _ = try? OpenAICodec.decode(body, status: 400)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
