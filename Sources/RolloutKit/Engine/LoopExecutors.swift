import NIOCore
import NIOPosix

/// Runs a task's jobs on one SwiftNIO event loop: the loop that owns the HTTP connections the
/// task's model calls then prefer (the HTTP client picks the current loop's idle connections
/// first). A rollout bound to one loop hands its requests to its connection and gets the
/// response back without waking another thread.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// One task executor per event loop of the group the HTTP client uses, handed out in turn so
/// rollouts spread over every loop (and so over every core).
struct LoopExecutors: Sendable {
    let executors: [EventLoopTaskExecutor]

    init(group: MultiThreadedEventLoopGroup = .singleton) {
        executors = group.makeIterator().map { EventLoopTaskExecutor($0) }
    }

    func executor(_ n: Int) -> EventLoopTaskExecutor { executors[n % executors.count] }
}
