import Foundation
import GRDB
@testable import RolloutKit
import Synchronization
import Testing

/// The kind of file at `path` (not following a link), or nil when there is none.
func fileKind(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
}

func permissions(_ path: String) -> mode_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
}

/// Keeps opening the write end of a FIFO (without blocking) so that a reader stuck in `open`
/// gets end-of-file instead of hanging the test: code that wrongly opens the FIFO then fails
/// with some other error, and the test fails instead of never ending.
final class FIFOUnblocker: Sendable {
    private let stop = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(_ path: String) {
        let thread = Thread { [self] in
            while !stop.load(ordering: .relaxed) {
                let fd = open(path, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
                usleep(20_000)
            }
            done.signal()
        }
        thread.start()
    }

    func finish() {
        stop.store(true, ordering: .relaxed)
        done.wait()
    }
}

/// Files the tool writes replace only regular files, keep their mode, and leave the old file
/// and the database as they were when refused (issue 14, defect 1).
@Suite("Output targets")
struct OutputTargetTests {
    static let enabled = FileManager.default.isExecutableFile(atPath: CLITests.binary)

    /// A folder with a warehouse holding one imported run (`gpt4o`).
    static func exportFolder() throws -> URL {
        let dir = try CLITests.scratch()
        let r = try CLITests.rollout(["ingest", "trajectories", Fixture.path(ExportHarness.tauFile), "--run", "gpt4o", "--format", "tau-bench"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        return dir
    }

    static func snapshot(_ dir: URL) throws -> [String: [String]] {
        try Warehouse.open(path: dir.appending(path: "rollout.db").path, create: false).snapshot()
    }

    @Test(.enabled(if: enabled, "build the rollout executable first (swift build)"))
    func exportKeepsTheModeOfTheFileItReplaces() throws {
        let dir = try Self.exportFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appending(path: "private.jsonl").path
        try "old\n".write(toFile: out, atomically: false, encoding: .utf8)
        #expect(chmod(out, 0o600) == 0)
        let r = try CLITests.rollout(["export", "--run", "gpt4o", "--format", "rollout", "--out", "private.jsonl"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(permissions(out) == 0o600, "a mode-600 file stays 600")
        #expect(try String(contentsOfFile: out, encoding: .utf8) != "old\n")
        // A new file gets the usual mode, and no temporary file is left beside either.
        let fresh = try CLITests.rollout(["export", "--run", "gpt4o", "--format", "rollout", "--out", "fresh.jsonl"], in: dir)
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(permissions(dir.appending(path: "fresh.jsonl").path).map { $0 & 0o600 } == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }.isEmpty)
    }

    @Test(.enabled(if: enabled, "build the rollout executable first (swift build)"))
    func exportRefusesALinkAFIFOAFolderAndADeviceAndChangesNothing() throws {
        let dir = try Self.exportFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = try Self.snapshot(dir)
        let real = dir.appending(path: "real.jsonl").path
        try "keep me\n".write(toFile: real, atomically: false, encoding: .utf8)
        let link = dir.appending(path: "link.jsonl").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let fifo = dir.appending(path: "fifo.jsonl").path
        #expect(mkfifo(fifo, 0o644) == 0)
        let folder = dir.appending(path: "folder").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)

        let cases: [(String, String)] = [(link, "is a symbolic link (to \(real))"), (fifo, "is a FIFO"),
                                         (folder, "is a folder"), ("/dev/null", "is a character device")]
        for (target, says) in cases {
            let r = try CLITests.rollout(["export", "--run", "gpt4o", "--format", "rollout", "--out", target], in: dir)
            #expect(r.status != 0, "\(target) was accepted")
            #expect(r.stderr.contains("--out \(target)") && r.stderr.contains(says), "\(target): \(r.stderr)")
        }
        // The split files are checked too, before anything is written.
        let shareLink = dir.appending(path: "s.train.jsonl").path
        try FileManager.default.createSymbolicLink(atPath: shareLink, withDestinationPath: real)
        let split = try CLITests.rollout(["export", "--run", "gpt4o", "--format", "rollout", "--out", "s.jsonl", "--split", "train=0.5,val=0.5"], in: dir)
        #expect(split.status != 0 && split.stderr.contains("s.train.jsonl is a symbolic link"), "\(split.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appending(path: "s.val.jsonl").path))

        #expect(fileKind(link) == S_IFLNK && fileKind(fifo) == S_IFIFO && fileKind(folder) == S_IFDIR)
        #expect(fileKind("/dev/null") == S_IFCHR, "/dev/null is still a device")
        #expect(try String(contentsOfFile: real, encoding: .utf8) == "keep me\n", "nothing was written through the link")
        #expect(try Self.snapshot(dir) == before, "a refused export records nothing")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }.isEmpty)
    }

    @Test func batchFilesGoThroughTheSameRules() throws {
        let dir = try TempDir()
        // A replaced file keeps its mode.
        let kept = try dir.write("kept.jsonl", "old\n")
        #expect(chmod(kept, 0o640) == 0)
        _ = try OutputFile.write(kept, lines: ["{}"])
        #expect(permissions(kept) == 0o640)
        #expect(try String(contentsOfFile: kept, encoding: .utf8) == "{}\n")
        // A FIFO, a link and a folder are refused, by name, and left alone.
        let fifo = dir.file("pipe.jsonl")
        #expect(mkfifo(fifo, 0o600) == 0)
        let link = dir.file("link.jsonl")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: kept)
        let folder = try dir.mkdir("folder.jsonl")
        for target in [fifo, link, folder] {
            let e = try #require(throws: OutputFileError.self) { _ = try OutputFile.write(target, lines: ["x"]) }
            #expect(e.description.hasPrefix(target + " is a"), "\(e)")
        }
        #expect(fileKind(fifo) == S_IFIFO && fileKind(link) == S_IFLNK && fileKind(folder) == S_IFDIR)
        #expect(try String(contentsOfFile: kept, encoding: .utf8) == "{}\n")
        // A target that turns into something else while the file is written is refused at the
        // rename, and the temporary file goes away.
        let late = dir.file("late.jsonl")
        let file = try OutputFile(path: late)
        try file.write(line: "x")
        #expect(mkfifo(late, 0o600) == 0)
        #expect(throws: OutputFileError.self) { try file.commit() }
        #expect(fileKind(late) == S_IFIFO)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }.isEmpty)
    }
}

/// `batch run-local` refuses output and errors files that would lose data, before sending
/// anything (issue 14, defect 5). The endpoint is a closed port: a run that got as far as
/// sending would end with failures, not with the refusal the tests expect.
@Suite("run-local targets")
struct RunLocalTargetTests {
    static func input(_ dir: TempDir) throws -> String {
        let w = try Warehouse.inMemory()
        return try smallBatch(w, "t", n: 3, dir: dir).parts[0].path
    }

    static func options(_ input: String) -> LocalRunOptions {
        var o = LocalRunOptions(input: input, endpoint: "http://127.0.0.1:9/v1")
        o.policy = RetryPolicy(maxAttempts: 1, baseDelay: 0.01, maxDelay: 0.01)
        o.concurrency = 1
        return o
    }

    static func refusal(_ o: LocalRunOptions) async -> String? {
        do {
            _ = try await LocalBatchRunner.run(o)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func outputAndErrorsNamingOneFileAreRefused() async throws {
        let dir = try TempDir()
        var o = Self.options(try Self.input(dir))
        o.output = dir.file("same.jsonl")
        o.errors = dir.file("./same.jsonl")
        let e = try #require(await Self.refusal(o))
        #expect(e.contains("--output and --errors name the same file"), "\(e)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("same.jsonl")))
    }

    @Test func theInputAsOutputOrErrorsIsRefusedAlsoThroughALink() async throws {
        let dir = try TempDir()
        let input = try Self.input(dir)
        let before = try Data(contentsOf: URL(fileURLWithPath: input))
        var o = Self.options(input)
        o.output = input
        #expect(try #require(await Self.refusal(o)).contains("is the input file"))
        let hard = dir.file("hard.jsonl")
        #expect(link(input, hard) == 0)
        o.output = hard
        #expect(try #require(await Self.refusal(o)).contains("is the input file"), "a hard link is the same file")
        o.output = nil
        o.errors = input
        #expect(try #require(await Self.refusal(o)).contains("--errors \(input) is the input file"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == before)
    }

    @Test func anExistingFileThatIsNotThisInputsOutputIsRefused() async throws {
        let dir = try TempDir()
        var o = Self.options(try Self.input(dir))
        let notes = try dir.write("notes.txt", "buy milk\ncall Bob\n")
        o.output = notes
        let e = try #require(await Self.refusal(o))
        #expect(e.contains("--output \(notes) already exists and is not run-local output") && e.contains("line 1"), "\(e)")
        #expect(try String(contentsOfFile: notes, encoding: .utf8) == "buy milk\ncall Bob\n")
        // Another batch's results are not this input's either; nor may --errors replace notes.
        let other = try dir.write("other.jsonl", openAIOutputLine("zz", content: "hi") + "\n")
        o.output = other
        #expect(try #require(await Self.refusal(o)).contains("custom_id \"zz\" is not a request of the input"))
        o.output = nil
        o.errors = notes
        #expect(try #require(await Self.refusal(o)).contains("--errors \(notes) already exists"))
        #expect(try String(contentsOfFile: notes, encoding: .utf8) == "buy milk\ncall Bob\n")
        // A FIFO as output is refused before it is opened.
        let fifo = dir.file("pipe.jsonl")
        #expect(mkfifo(fifo, 0o600) == 0)
        o.errors = nil
        o.output = fifo
        #expect(try #require(await Self.refusal(o)).contains("is a FIFO"))
    }

    @Test func theResumableOutputOfTheSameInputIsStillResumed() async throws {
        let dir = try TempDir()
        let o = Self.options(try Self.input(dir))
        // One finished result and one cut short by an interrupted write.
        try (openAIOutputLine("q0", content: "done") + "\n" + #"{"id":"batch_req_x","custom_id":"q1"#)
            .write(toFile: o.outputPath, atomically: false, encoding: .utf8)
        let r = try await LocalBatchRunner.run(o)
        #expect(r.alreadyDone == 1 && r.failed == 2, "q0 is not sent again; the closed port fails the others")
        #expect(try jsonLines(o.outputPath).map { $0["custom_id"] } == ["q0"], "the partial line is cut off")
    }
}

/// Odd input files get clear refusals (issue 14, defect 10).
@Suite("Odd input files")
struct OddInputTests {
    @Test func aFIFOGivenAsAFileIsRefusedWithoutOpeningIt() throws {
        let w = try seededWarehouse(), dir = try TempDir()
        let fifo = dir.file("queries.jsonl")
        #expect(mkfifo(fifo, 0o600) == 0)
        let unblock = FIFOUnblocker(fifo)
        defer { unblock.finish() }
        let e = try expectIngestError(w) { try w.ingestQueries(file: fifo, domains: ["mock"]) }
        #expect(e.file == fifo && e.reason.contains("is a FIFO (named pipe)"), "\(e)")
        let b = try #require(throws: IngestError.self) { _ = try w.ingestBatchResults(files: [fifo], batch: "x") }
        #expect(b.reason.contains("is a FIFO"))
    }

    @Test func aFIFOInsideAnIngestedFolderIsRefusedByName() throws {
        let w = try seededWarehouse(), dir = try TempDir()
        try dir.write("single_domain/queries/mock.jsonl", queryLine(id: "a") + "\n")
        try dir.mkdir("single_domain/policies")
        let fifo = dir.file("single_domain/policies/mock.md")
        #expect(mkfifo(fifo, 0o600) == 0)
        let unblock = FIFOUnblocker(fifo)
        defer { unblock.finish() }
        let e = try expectIngestError(w) { try w.ingestDirectory(dir.path) }
        #expect(e.file == fifo && e.reason.contains("is a FIFO"), "\(e)")

        let structures = try TempDir()
        try FileManager.default.copyItem(atPath: Fixture.path("agentless/psf__requests-2317.json"), toPath: structures.file("psf__requests-2317.json"))
        let pipe = structures.file("django__django-1.json")
        #expect(mkfifo(pipe, 0o600) == 0)
        let unblock2 = FIFOUnblocker(pipe)
        defer { unblock2.finish() }
        let e2 = try expectIngestError(w) { try w.ingestRepoStructures(directory: structures.path) }
        #expect(e2.file == pipe && e2.reason.contains("is a FIFO"), "\(e2)")
    }

    @Test func aLoneSurrogateEscapeIsRefusedWithItsField() throws {
        let w = try seededWarehouse(), dir = try TempDir()
        let good = queryLine(id: "ok")
        let bad = #"{"id":"b","messages":[{"role":"user","content":"cut \ud800 here"}],"user_system_prompt":"p"}"#
        let file = try dir.write("q.jsonl", good + "\n" + bad + "\n")
        let e = try expectIngestError(w) { try w.ingestQueries(file: file, domains: ["mock"]) }
        #expect(e.line == 2 && e.field == "messages[0].content", "\(e)")
        #expect(e.description.hasPrefix("\(file):2: messages[0].content: ") && e.reason.contains("lone \\ud800"), "\(e)")
        // A lone low surrogate, and a high one followed by something else, are refused too.
        for text in [#"x\udc00"#, #"\ud83d\u0041"#] {
            let line = #"{"id":"c","messages":[{"role":"user","content":"ok"}],"user_system_prompt":"\#(text)"}"#
            let f = try dir.write("s.jsonl", line + "\n")
            let s = try expectIngestError(w) { try w.ingestQueries(file: f, domains: ["mock"]) }
            #expect(s.field == "user_system_prompt", "\(s)")
        }
        // A valid pair still decodes, and what the warehouse stores is valid UTF-8.
        let pair = #"{"id":"e","messages":[{"role":"user","content":"x"},{"role":"user","content":"smile \ud83d\ude00"}],"user_system_prompt":"p"}"#
        let ok = try dir.write("ok.jsonl", pair + "\n")
        _ = try w.ingestQueries(file: ok, domains: ["mock"])
        let stored = try #require(try w.rows("SELECT CAST(json_extract(record, '$.messages[1].content') AS BLOB) AS b FROM tasks WHERE external_id = 'e'").first)
        let bytes: [UInt8] = Array((stored["b"] as Data?) ?? Data())
        #expect(String(validating: bytes, as: UTF8.self) == "smile 😀")
        // A repo structure with a lone surrogate (SQLite would take it) is refused as well.
        let structures = try TempDir()
        try structures.write("x__y-1.json", #"{"instance_id":"x__y-1","structure":{"a.py":{"text":["s = '\udfff'"]}}}"#)
        let r = try expectIngestError(w) { try w.ingestRepoStructures(directory: structures.path) }
        #expect(r.field == "structure.a.py.text[0]", "\(r)")
    }

    @Test func theStrictParserNamesThePathAndTheWriterEmitsValidUTF8() throws {
        let text = #"{"a":[1,{"b":"\ud800"}]}"#
        let e = try #require(throws: JSONParseError.self) {
            _ = try Array(text.utf8).withUnsafeBytes { try JSONParser.parse($0, refuseLoneSurrogates: true) }
        }
        #expect(e.field == "a[1].b" && e.offset == 14)
        // Without the flag (answers off the network) the old repair stands.
        #expect(try JSONParser.parse(#""\ud800x""#) == .string("\u{FFFD}x"))
        let value = try Array(#"["\ud83d\ude00 \u00e9 \u2028"]"#.utf8).withUnsafeBytes { try JSONParser.parse($0, refuseLoneSurrogates: true) }
        for bytes in [Array(value.jsonText.utf8), { var b: [UInt8] = []; JSONWriter.compact.write(value, into: &b); return b }()] {
            #expect(String(validating: bytes, as: UTF8.self) != nil)
            #expect(try JSONParser.parse(bytes) == value)
        }
    }

    @Test func anEmptyBatchFileIsRefused() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        try smallBatch(w, "e", n: 2, dir: dir)
        for (name, text) in [("empty.jsonl", ""), ("blank.jsonl", "\n  \n")] {
            let f = try dir.write(name, text)
            let before = try w.snapshot()
            let e = try #require(throws: IngestError.self) { _ = try w.ingestBatchResults(files: [f], batch: "e") }
            #expect(e.file == f && e.reason.hasPrefix("empty file"), "\(e)")
            #expect(try w.snapshot() == before)
        }
    }

    @Test func hiddenRepoStructureFilesAreReported() throws {
        let w = try Warehouse.inMemory(), dir = try TempDir()
        try FileManager.default.copyItem(atPath: Fixture.path("agentless/psf__requests-2317.json"), toPath: dir.file("psf__requests-2317.json"))
        try FileManager.default.copyItem(atPath: Fixture.path("agentless/psf__requests-2317.json"), toPath: dir.file(".psf__requests-2317.json"))
        try dir.write("._psf__requests-2317.json", "\u{0}\u{5}")
        let r = try w.ingestRepoStructures(directory: dir.path)
        #expect(r["repo_structures"].inserted == 1)
        let note = try #require(r.notices.first { $0.contains("hidden") })
        #expect(note.contains("skipped 2 hidden file(s)") && note.contains("._psf__requests-2317.json") && note.contains(".psf__requests-2317.json"), "\(note)")
        #expect(r.summary.contains("note: \(dir.path): skipped 2 hidden file(s)"))
    }
}

/// Agentless finalize with custom ids too long for a file name (issue 14, defect 10).
@Suite("Agentless sample files")
struct AgentlessSampleFileTests {
    static func warehouse(ids: [String], dir: TempDir) throws -> Warehouse {
        let w = try AgentlessFixture.warehouse()
        let taskID = try #require(try w.int("SELECT id FROM tasks WHERE external_id = 'psf__requests-2317'"))
        let options = BatchRequestOptions(provider: .openai, model: "m")
        _ = try w.createBatch(name: "long.repair", options: options, stage: "bugfix-repair", directory: dir.file("batches")) { _, add in
            for (i, id) in ids.enumerated() {
                try add(BatchRequestSpec(customID: id, taskID: Int64(taskID), sample: i, body: options.body(messages: [ChatMessage(role: "user", content: "x")])))
            }
        }
        let out = try dir.write("o.jsonl", ids.map { openAIOutputLine($0, content: AgentlessFixture.goldAnswer) }.joined(separator: "\n"))
        _ = try w.ingestBatchResults(files: [out], batch: "long.repair")
        return w
    }

    @Test func longCustomIDsGetShortUniqueFileNames() throws {
        let dir = try TempDir()
        let long = String(repeating: "x", count: 300)
        let ids = [long + "__pass0", long + "__pass1"]
        let w = try Self.warehouse(ids: ids, dir: dir)
        let results = dir.file("results")
        let fin = try w.agentlessFinalize(AgentlessOptions(pipeline: .bugfix, name: "long", directory: dir.path), outputDir: results)
        #expect(fin.ok == 2)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.file("results/samples")).sorted()
        #expect(names.count == 2 && names.allSatisfy { $0.utf8.count <= SafeFileName.maxBytes && $0.hasSuffix(".jsonl") && $0.contains("~") })
        let read = try names.map { try jsonLines(dir.file("results/samples/" + $0))[0]["custom_id"]?.stringValue ?? "" }
        #expect(Set(read) == Set(ids), "each id has its own file")
        // Names that fit are kept as they were.
        #expect(try SafeFileName.path(in: "/d", id: "a__pass0", suffix: ".jsonl") == "/d/a__pass0.jsonl")
    }

    @Test func aFailedFinalizeLeavesNoSampleFileBehind() throws {
        let dir = try TempDir()
        let w = try Self.warehouse(ids: ["a__pass0", "b__pass1"], dir: dir)
        let results = dir.file("results")
        // The second sample's target is a folder: finalize fails there, after the first.
        try dir.mkdir("results/samples/b__pass1.jsonl")
        let e = try #require(throws: OutputFileError.self) {
            _ = try w.agentlessFinalize(AgentlessOptions(pipeline: .bugfix, name: "long", directory: dir.path), outputDir: results)
        }
        #expect(e.description.contains("b__pass1.jsonl is a directory"), "\(e)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("results/samples")) == ["b__pass1.jsonl"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: results) == ["samples"], "no output file, no temporary file")
        #expect(try w.int("SELECT count(*) FROM agentless_outputs WHERE custom_id IN ('a__pass0', 'b__pass1')") == 0)
    }
}
