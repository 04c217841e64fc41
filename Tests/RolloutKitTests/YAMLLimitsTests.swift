import Foundation
import RolloutKit
import Testing

/// Hostile YAML: nested aliases ("billion laughs") and oversized files are refused by every
/// reader of YAML (model registry, run config, grader catalog) before anything walks them.
@Suite("YAML alias and size limits")
struct YAMLLimitsTests {
    /// `levels` anchors, each a list of ten uses of the one before: 10^levels values once
    /// expanded, from a file of well under a kilobyte. The last level is used at the line returned.
    static func aliasBomb(levels: Int, under key: String) -> (text: String, useLine: Int) {
        var lines = ["l0: &l0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]"]
        for i in 1..<levels {
            lines.append("l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]")
        }
        lines.append(key)
        return (lines.joined(separator: "\n") + "\n", lines.count)
    }

    @Test func tenLevelAliasBombInTheModelRegistryIsRefusedWithItsLine() throws {
        let tmp = try TempDir()
        let bomb = Self.aliasBomb(levels: 10, under: "models: {\"openai/x\": {settings: *l9}}")
        #expect(bomb.text.utf8.count < 700)
        let file = try tmp.write("models.yml", bomb.text)
        let error = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(error.line == bomb.useLine)
        #expect(error.description.hasPrefix("\(file):\(bomb.useLine): "))
        #expect(error.description.contains("more than 100000 values once its aliases"))
    }

    @Test func sevenLevelBombNeverBecomesStoredSettings() throws {
        // 10^7 values: before the limit this loaded and became a 33.6 MB models.settings row.
        let tmp = try TempDir()
        let bomb = Self.aliasBomb(levels: 7, under: "models: {\"openai/x\": {settings: *l6}}")
        let file = try tmp.write("models.yml", bomb.text)
        let error = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(error.line == bomb.useLine)
    }

    @Test func runConfigAndGraderCatalogRefuseBombsToo() throws {
        let tmp = try TempDir()
        let config = try tmp.write("run.yml", Self.aliasBomb(levels: 10, under: "max_workers: 1\nextra: *l9").text)
        #expect(throws: ConfigError.self) { try RunConfig.load(file: config) }
        let graders = try tmp.write("graders.yml", Self.aliasBomb(levels: 10, under: "graders: {g: {kind: sql, options: *l9}}").text)
        let error = try #require(throws: ConfigError.self) { try GraderCatalog.load(file: graders) }
        #expect(error.description.contains("aliases"))
    }

    @Test func modestAliasesStillLoad() throws {
        let tmp = try TempDir()
        let file = try tmp.write("models.yml", """
            common: &common {temperature: 0.5, top_p: 0.9}
            models:
              openai/a: {settings: *common}
              openai/b: {settings: *common}
            """)
        let registry = try ModelRegistry.load(file: file)
        #expect(registry.entries.count == 2)
        #expect(registry.entry(named: "openai/b")?.settings["settings"]?.jsonText == #"{"temperature":0.5,"top_p":0.9}"#)
    }

    @Test func filesOverFourMebibytesAreRefusedBeforeParsing() throws {
        let tmp = try TempDir()
        let padding = String(repeating: "# padding line of a config that is far too large\n", count: 90_000)
        let file = try tmp.write("models.yml", padding + "models: {}\n")
        let error = try #require(throws: ConfigError.self) { try ModelRegistry.load(file: file) }
        #expect(error.description.contains("at most 4194304 bytes (4 MiB)"))
    }
}
