import Foundation

/// Files of `schema/`, `queries/` and `examples/` carried inside the binary.
public enum BundledFiles {
    /// Package-relative paths, sorted.
    public static var paths: [String] { EmbeddedFiles.base64.keys.sorted() }

    public static func data(_ path: String) -> Data? {
        EmbeddedFiles.base64[path].flatMap { Data(base64Encoded: $0) }
    }

    public static func text(_ path: String) -> String? {
        data(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Paths directly or indirectly under `folder` ("schema", "queries", "examples/...").
    public static func paths(under folder: String) -> [String] {
        let prefix = folder.hasSuffix("/") ? folder : folder + "/"
        return paths.filter { $0.hasPrefix(prefix) }
    }

    /// Writes every bundled file under `folder` into `destination`, keeping relative paths.
    public static func extract(_ folder: String, to destination: URL) throws {
        let prefix = folder.hasSuffix("/") ? folder : folder + "/"
        for path in paths(under: folder) {
            let target = destination.appending(path: String(path.dropFirst(prefix.count)))
            try OutputTarget.write(Array(data(path)!), to: target.path)
        }
    }
}
