import ArgumentParser
import Foundation
import RolloutKit
import RolloutViewer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A local web viewer: runs, tasks, trajectories, scores, search and reviews.",
        discussion: """
            Serves server-side rendered pages (no JavaScript, nothing from the network) over the
            warehouse. It writes nothing but `reviews` rows (the Accept / Reject form) and the
            message search index, which it brings up to date in the background at start.
            Bound to 127.0.0.1 unless --host says otherwise; stop it with Ctrl-C.
            """)
    @OptionGroup var warehouse: WarehouseOptions
    @Option(name: .long, help: "The port to listen on (0: any free port).") var port = 8765
    @Option(name: .long, help: "The address to bind (0.0.0.0: every interface; anyone who can reach it can read the warehouse and post reviews).")
    var host = "127.0.0.1"
    @Flag(name: .long, help: "Do not build or update the message search index (search covers what is already indexed).")
    var noIndex = false
    @Flag(name: .long, help: "Log every request on stderr.") var verbose = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
    }

    func run() async throws {
        let w = try warehouse.open(create: false)
        var options = ViewerOptions()
        options.host = host
        options.port = port
        options.indexSearch = !noIndex
        options.verbose = verbose
        let viewer = Viewer(warehouse: w, options: options)
        do {
            try await viewer.run(handleSignals: true) { host, port in
                let shown = host.contains(":") ? "[\(host)]" : host
                // Written straight to the descriptor: scripts wait for this line on a pipe.
                FileHandle.standardOutput.write(Data("rollout viewer: http://\(shown):\(port)/  (\(w.path ?? "")) — Ctrl-C stops it\n".utf8))
            }
        } catch {
            throw CLIError("cannot serve on \(host):\(port): \(error)")
        }
    }
}
