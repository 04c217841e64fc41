import Foundation
import GRDB
import RolloutKit
import Testing

/// Several processes on one warehouse (issue 14): two `rollout run` processes on one run share
/// its rollouts and never run a sample twice; a killed one's rollouts are taken over; readers
/// work while an ingest writes, and a second writer waits for the first.
@Suite("Concurrency", .serialized, .enabled(if: EngineHarness.binaryBuilt, "build the rollout executable first"))
struct ConcurrencyTests {
    typealias Server = ReliabilityTests.MockServerProcess

    static func stderr(_ pipe: Pipe) -> String {
        String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// The invariants of a finished run `r` of 13 tasks × `samples`: every sample has exactly
    /// one completed attempt and it is the latest; nothing is left pending or running.
    static func expectEverySampleCompletedOnce(_ w: Warehouse, samples: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let n = 13 * samples
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'completed'") == n,
                sourceLocation: sourceLocation)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM (SELECT task_id, sample FROM rollouts WHERE status = 'completed'
                                  GROUP BY task_id, sample HAVING count(*) > 1)
            """) == 0, "no sample completed twice", sourceLocation: sourceLocation)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM latest_rollouts WHERE status = 'completed'") == n,
                sourceLocation: sourceLocation)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status IN ('running', 'pending')") == 0,
                sourceLocation: sourceLocation)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM messages WHERE rollout_id NOT IN (SELECT id FROM rollouts)") == 0,
                sourceLocation: sourceLocation)
        #expect(try w.string("SELECT status FROM runs WHERE name = 'r'") == "completed", sourceLocation: sourceLocation)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM run_workers WHERE finished_at IS NULL") == 0,
                "every worker left the run", sourceLocation: sourceLocation)
    }

    @Test func twoRunProcessesOnOneRunShareItsRolloutsAndRunEachSampleOnce() throws {
        // ~10 model calls of 200 ms per rollout, 13 × 12 rollouts at 8 at a time per process:
        // long enough (tens of seconds alone) that the second process joins well before the end.
        let server = try Server(["--latency-ms", "200"])
        let (dir, w) = try ReliabilityTests.setUp(port: server.port)
        let args = ReliabilityTests.runArgs + ["--samples", "12", "--concurrency", "8"]
        let (first, firstErr) = try ReliabilityTests.start(args, in: dir)
        // The second starts once the first has claimed rollouts (it is then mid-run).
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'running'")) ?? 0) > 0
        }
        let (second, secondErr) = try ReliabilityTests.start(args, in: dir)
        let secondText = Self.stderr(secondErr)
        second.waitUntilExit()
        let firstText = Self.stderr(firstErr)
        first.waitUntilExit()
        #expect(first.terminationStatus == 0, "\(firstText)")
        #expect(second.terminationStatus == 0, "\(secondText)")
        #expect(secondText.contains("joining 1 other process on this run (pid \(first.processIdentifier) on "), "\(secondText)")
        try Self.expectEverySampleCompletedOnce(w, samples: 12)
        // Both did part of the work, and nothing was interrupted to make room for the second.
        #expect(try EngineHarness.int(w, "SELECT count(DISTINCT worker) FROM rollouts WHERE status = 'completed'") == 2)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'interrupted'") == 0)
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM run_workers") == 2)
        // The one that left first said the run goes on without it.
        let leftFirst = firstText.contains("stays running") ? firstText : secondText
        #expect(leftFirst.contains("counts are this process's; run r stays running"), "\(firstText)\n---\n\(secondText)")
    }

    @Test func aKilledWorkersRolloutsAreTakenOverAndEachSampleStillRunsOnce() throws {
        let server = try Server(["--latency-ms", "200"])
        let (dir, w) = try ReliabilityTests.setUp(port: server.port)
        let args = ReliabilityTests.runArgs + ["--samples", "12", "--concurrency", "8", "--quiet"]
        let (victim, _) = try ReliabilityTests.start(args, in: dir)
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'running'")) ?? 0) > 0
        }
        let (survivor, survivorErr) = try ReliabilityTests.start(args, in: dir)
        // Kill the first once it has completed some rollouts and holds others (claimed, running).
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, """
                SELECT count(*) FROM rollouts r JOIN run_workers k ON k.id = r.worker
                WHERE k.pid = ? AND r.status = 'completed'
                """, [victim.processIdentifier])) ?? 0) >= 3
        }
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        let held = try EngineHarness.int(w, """
            SELECT count(*) FROM rollouts r JOIN run_workers k ON k.id = r.worker WHERE k.pid = ? AND r.status = 'running'
            """, [victim.processIdentifier])
        #expect(held > 0, "the killed process held running rollouts")
        let text = Self.stderr(survivorErr)
        survivor.waitUntilExit()
        #expect(survivor.terminationStatus == 0, "\(text)")
        // The survivor took the killed one's rollouts over (interrupted, each re-attempted)
        // and finished the run.
        try Self.expectEverySampleCompletedOnce(w, samples: 12)
        #expect(try EngineHarness.int(w, """
            SELECT count(*) FROM rollouts r JOIN run_workers k ON k.id = r.worker WHERE k.pid = ? AND r.status = 'interrupted'
            """, [victim.processIdentifier]) == held)
        // Resuming finds nothing left to do.
        let (again, againErr) = try ReliabilityTests.start(ReliabilityTests.runArgs + ["--samples", "12"], in: dir)
        let againText = Self.stderr(againErr)
        again.waitUntilExit()
        #expect(again.terminationStatus == 0, "\(againText)")
        #expect(againText.contains("0 rollouts to run, \(13 * 12) already completed"), "\(againText)")
    }

    @Test func aWorkerStoppedBySIGINTHandsItsRolloutsToTheOtherOne() throws {
        let server = try Server(["--latency-ms", "200"])
        let (dir, w) = try ReliabilityTests.setUp(port: server.port)
        let args = ReliabilityTests.runArgs + ["--samples", "12", "--concurrency", "8"]
        let (stopped, stoppedErr) = try ReliabilityTests.start(args, in: dir)
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'running'")) ?? 0) > 0
        }
        let (other, otherErr) = try ReliabilityTests.start(args, in: dir)
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(DISTINCT worker) FROM rollouts WHERE status = 'running'")) ?? 0) >= 2
        }
        kill(stopped.processIdentifier, SIGINT)
        let stoppedText = Self.stderr(stoppedErr)
        stopped.waitUntilExit()
        #expect(stopped.terminationStatus == 130, "\(stoppedText)")
        // It left the run to the other process instead of marking it interrupted.
        #expect(stoppedText.contains("run r stays running"), "\(stoppedText)")
        let otherText = Self.stderr(otherErr)
        other.waitUntilExit()
        #expect(other.terminationStatus == 0, "\(otherText)")
        try Self.expectEverySampleCompletedOnce(w, samples: 12)
    }

    @Test func killedWorkersLeaveTheirRolloutsToTheNextRunOfTheCommand() throws {
        let server = try Server(["--latency-ms", "200"])
        let (dir, w) = try ReliabilityTests.setUp(port: server.port)
        let args = ReliabilityTests.runArgs + ["--samples", "8", "--concurrency", "8", "--quiet"]
        let (a, _) = try ReliabilityTests.start(args, in: dir)
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'running'")) ?? 0) > 0
        }
        let (b, _) = try ReliabilityTests.start(args, in: dir)
        ReliabilityTests.poll(every: 50, for: 60) {
            ((try? EngineHarness.int(w, "SELECT count(DISTINCT worker) FROM rollouts WHERE status = 'running'")) ?? 0) >= 2
        }
        kill(a.processIdentifier, SIGKILL)
        kill(b.processIdentifier, SIGKILL)
        a.waitUntilExit()
        b.waitUntilExit()
        #expect(try EngineHarness.int(w, "SELECT count(*) FROM rollouts WHERE status = 'running'") > 0)
        #expect(try w.string("SELECT status FROM runs WHERE name = 'r'") == "running")
        let (resume, err) = try ReliabilityTests.start(args, in: dir)
        let text = Self.stderr(err)
        resume.waitUntilExit()
        #expect(resume.terminationStatus == 0, "\(text)")
        try Self.expectEverySampleCompletedOnce(w, samples: 8)
    }

    // MARK: Readers and writers during an ingest

    /// A queries file of `count` records of ~2 KB.
    static func bigQueries(_ dir: TempDir, name: String, count: Int) throws -> String {
        let padding = String(repeating: "The customer describes the problem at length. ", count: 40)
        var text = ""
        text.reserveCapacity(count * 2200)
        for i in 0..<count {
            text += queryLine(id: "\(name)-\(i)", opening: "Hello \(i)", prompt: "You are a user who needs help with: \(i). \(padding)")
            text += "\n"
        }
        return try dir.write("\(name).jsonl", text)
    }

    /// True while another connection holds the write lock of the database at `path`.
    static func writeLocked(_ path: String) -> Bool {
        var config = Configuration()
        config.busyMode = .immediateError
        guard let queue = try? DatabaseQueue(path: path, configuration: config) else { return false }
        defer { try? queue.close() }
        do {
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                try db.execute(sql: "ROLLBACK")
            }
            return false
        } catch {
            return true
        }
    }

    /// Starts `rollout ingest queries FILE` into `dir/rollout.db` and waits until it holds the
    /// write lock (its one transaction).
    static func startIngest(_ file: String, dataset: String, in dir: TempDir) throws -> (Process, Pipe) {
        let started = try ReliabilityTests.start(["ingest", "queries", file, "--domain", "Big", "--dataset", dataset], in: dir)
        ReliabilityTests.poll(every: 10, for: 60) { writeLocked(dir.file("rollout.db")) || !started.0.isRunning }
        return started
    }

    @Test func readersWorkWhileAnIngestWrites() async throws {
        let dir = try TempDir()
        let w = try Warehouse.open(path: dir.file("rollout.db"))
        _ = try w.ingestQueries(file: try Self.bigQueries(dir, name: "small", count: 10), domains: ["Big"], dataset: "small")
        // Big enough that the reads below end long before it does, even on a fast machine.
        let file = try Self.bigQueries(dir, name: "big", count: 150_000)
        let (ingest, ingestErr) = try Self.startIngest(file, dataset: "big", in: dir)
        #expect(ingest.isRunning && Self.writeLocked(dir.file("rollout.db")), "the ingest is writing")
        // The CLI's readers, and a GRDB read in this process, while it writes: they see the
        // warehouse as it was before the ingest.
        let stats = try CLITests.rollout(["stats"], in: dir.url)
        #expect(stats.status == 0, "\(stats.stderr)")
        let query = try CLITests.rollout(["query", "tasks-by-dataset", "--csv"], in: dir.url)
        #expect(query.status == 0, "\(query.stderr)")
        #expect(query.stdout.contains("small") && !query.stdout.contains("big,"), "\(query.stdout)")
        let reader = try Warehouse.open(path: dir.file("rollout.db"), create: false)
        #expect(try reader.int("SELECT count(*) FROM tasks") == 10)
        #expect(ingest.isRunning, "the reads ran while the ingest was still writing")
        let text = Self.stderr(ingestErr)
        ingest.waitUntilExit()
        #expect(ingest.terminationStatus == 0, "\(text)")
        #expect(try reader.int("SELECT count(*) FROM tasks") == 150_010)
        #expect(try reader.string("PRAGMA journal_mode") == "wal")
    }

    @Test func anIngestWaitsForAnotherWriterAndSaysWhatItWaitsFor() throws {
        let dir = try TempDir()
        _ = try Warehouse.open(path: dir.file("rollout.db"))
        let small = try Self.bigQueries(dir, name: "small", count: 10)
        // Another process's long write: this test process holds the write lock for 3 s (a
        // real first ingest is over too soon on a fast machine, or past the timeout on a slow one).
        let holder = try DatabaseQueue(path: dir.file("rollout.db"))
        let hold = Thread {
            try? holder.inTransaction(.immediate) { _ in
                sleep(3)
                return .commit
            }
        }
        hold.start()
        ReliabilityTests.poll(every: 10, for: 10) { Self.writeLocked(dir.file("rollout.db")) }
        let second = try CLITests.rollout(["ingest", "queries", small, "--domain", "Big", "--dataset", "small"], in: dir.url)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("waiting for another writer on rollout.db (held by pid \(getpid()): "), "\(second.stderr)")
        let w = try Warehouse.open(path: dir.file("rollout.db"), create: false)
        #expect(try w.int("SELECT count(*) FROM tasks") == 10)
    }
}
