import Dispatch
import Foundation
import NIOCore
import NIOPosix

/// The process entry point. Swift concurrency's jobs run on SwiftNIO's event-loop threads (the
/// ones the HTTP client's connections live on), so a model call's hops between a rollout's
/// task and its connection are queue appends on the same thread instead of cross-thread
/// wake-ups: about a third of the engine's CPU per call went to those hand-offs.
/// `ROLLOUT_EXECUTOR=default` keeps Swift's own thread pool (for comparisons and debugging).
@main
enum Entry {
    static func main() {
        if ProcessInfo.processInfo.environment["ROLLOUT_EXECUTOR"] != "default" {
            _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        Task {
            await Rollout.main()
            exit(0)
        }
        dispatchMain()
    }
}
