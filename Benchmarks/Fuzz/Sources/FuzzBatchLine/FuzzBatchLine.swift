// One line of a batch output or error file (OpenAI or Anthropic), as `rollout batch ingest`
// reads it.
@testable import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let value = try? JSONParser.parse(UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    if let line = try? BatchResultLine(value) { _ = line.contentHash }
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
