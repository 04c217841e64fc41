import Foundation
import PackagePlugin

/// Embeds the package's `schema/`, `queries/`, `examples/` and `configs/` folders into the RolloutKit module
/// as generated Swift source, so the SQL files stay the single source of truth and the binary
/// needs nothing beside it at run time.
@main
struct EmbedFilesPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL
        let folders = ["schema", "queries", "examples", "configs"]
        var inputs: [URL] = []
        let fm = FileManager.default
        for folder in folders {
            let dir = root.appending(path: folder)
            guard let walker = fm.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { continue }
            for case let url as URL in walker {
                let values = try? url.resourceValues(forKeys: [.isRegularFileKey])
                if values?.isRegularFile == true, !url.lastPathComponent.hasPrefix(".") { inputs.append(url) }
            }
        }
        inputs.sort { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedFiles.swift")
        var arguments = [output.path(percentEncoded: false), root.path(percentEncoded: false)]
        arguments += inputs.map { $0.path(percentEncoded: false) }
        return [.buildCommand(
            displayName: "Embedding \(inputs.count) files from schema/, queries/, examples/",
            executable: try context.tool(named: "EmbedFiles").url,
            arguments: arguments,
            inputFiles: inputs,
            outputFiles: [output])]
    }
}
