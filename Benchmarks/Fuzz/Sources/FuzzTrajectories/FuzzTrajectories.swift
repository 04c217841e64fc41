// One trajectory record (a JSON Lines line or a τ-bench array element), read as each format
// `rollout ingest trajectories` takes: rollout, training, DeepResearch, τ-bench.
@testable import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let value = try? JSONParser.parse(UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    _ = try? Warehouse.parseRolloutRecord(value)
    _ = try? Warehouse.parseTrainingRecord(value)
    _ = try? Warehouse.parseDeepResearchRecord(value)
    _ = try? Warehouse.parseTauBenchRecord(value)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
