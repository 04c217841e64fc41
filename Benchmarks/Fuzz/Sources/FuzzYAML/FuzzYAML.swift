// The YAML config files: the same bytes as a model registry, a grader catalog and a run
// config. Each must load or throw a ConfigError, never trap.
import Foundation
import RolloutKit
import FuzzDriver

let directory: String = {
    let d = NSTemporaryDirectory() + "rollout-fuzz-yaml-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let file = directory + "/config.yml"
    guard FileManager.default.createFile(atPath: file, contents: Data(bytes: data, count: size)) else {
        fatalError("cannot write \(file)")
    }
    _ = try? ModelRegistry.load(file: file)
    _ = try? GraderCatalog.load(file: file)
    _ = try? RunConfig.load(file: file, modelsFile: file)
    _ = try? RunConfig.load(file: file)
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
