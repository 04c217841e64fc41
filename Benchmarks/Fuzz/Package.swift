// swift-tools-version:6.1
// libFuzzer targets over RolloutKit's parsers and decoders (issue 14). Not part of the root
// package or CI: `Benchmarks/fuzz.sh` builds this with `-sanitize=fuzzer` and runs it.
import Foundation
import PackageDescription

// A path dependency's package identity is its folder's name, which is whatever the checkout
// is called (`rollout`, `main`, a worktree name), so it is read from this file's location.
let rootName = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../..").standardized.lastPathComponent

let fuzzTargets = [
    "FuzzJSON", "FuzzOpenAI", "FuzzAnthropic", "FuzzSSE", "FuzzEditBlocks", "FuzzYAML",
    "FuzzTrajectories", "FuzzBatchLine", "FuzzIngestFiles",
]

let package = Package(
    name: "RolloutFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "../..")],
    targets: [.target(name: "FuzzDriver", path: "Sources/FuzzDriver")] + fuzzTargets.map { name in
        .executableTarget(
            name: name,
            dependencies: ["FuzzDriver", .product(name: "RolloutKit", package: rootName)],
            path: "Sources/\(name)"
        )
    },
    swiftLanguageModes: [.v6]
)
