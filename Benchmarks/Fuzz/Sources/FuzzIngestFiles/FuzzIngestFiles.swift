// A whole input file through the real ingest commands into a real warehouse: the bytes as a
// queries file, a QA file, a SWE-bench file (lines or array) and a trajectories file of each
// format. A bad file must be rejected with an IngestError, never trap.
import Foundation
import RolloutKit
import FuzzDriver

let directory: String = {
    let d = NSTemporaryDirectory() + "rollout-fuzz-ingest-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}()

let warehouse: Warehouse = {
    let path = directory + "/fuzz.db"
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    do { return try Warehouse.open(path: path) } catch { fatalError("cannot open the warehouse: \(error)") }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let file = directory + "/input.jsonl"
    guard FileManager.default.createFile(atPath: file, contents: Data(bytes: data, count: size)) else {
        fatalError("cannot write \(file)")
    }
    _ = try? warehouse.ingestQueries(file: file, domains: ["airline"], dataset: "queries")
    _ = try? warehouse.ingestQA(file: file, dataset: "qa")
    _ = try? warehouse.ingestSWEBench(file: file, dataset: "swebench")
    for format in TrajectoryFormat.allCases {
        _ = try? warehouse.ingestTrajectories(file: file, run: "fuzz-\(format.rawValue)", format: format)
    }
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
