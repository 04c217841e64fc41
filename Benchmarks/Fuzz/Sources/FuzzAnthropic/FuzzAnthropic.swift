// An Anthropic Messages API body: decoded as a success and as an error status.
import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? AnthropicCodec.decode(body, status: 200)
    _ = try? AnthropicCodec.decode(body, status: 529)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
