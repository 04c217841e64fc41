import Foundation

/// Reads record files (JSON Lines, JSON arrays, JSON documents) with the checks every format
/// shares: readable file, not empty, UTF-8, well-formed JSON, truncated last lines.
enum RecordFiles {
    /// Reads a JSON Lines file in two stages: a second thread reads, parses and `prepare`s each
    /// non-blank line (pure work: checks and field extraction), while the calling thread
    /// `write`s the prepared records in file order. Ingest is bound by SQLite's single writer,
    /// so parsing on the other core hides most of its cost. Errors keep file order: bad lines
    /// reach `session.reject` exactly where a one-thread loop would have met them.
    static func forEachLine<P: Sendable>(
        _ file: String, session: IngestSession, savepoint: Bool = false,
        prepare: @escaping @Sendable (_ line: Int, _ raw: RawRecord, _ value: JSONValue) throws -> P,
        write: (_ line: Int, _ prepared: P) throws -> Void
    ) throws {
        try checkRegularFile(file)
        session.report.files += 1
        let channel = BatchChannel<LineItem<P>>(capacity: 16)
        let reader = Thread {
            var batch: [LineItem<P>] = []
            batch.reserveCapacity(256)
            do {
                let lines = try LineReader(path: file).forEachLine { line in
                    if channel.isCancelled { throw CancellationError() }
                    if line.bytes.isBlank { return }
                    batch.append(Self.prepareLine(line, file: file, prepare))
                    if batch.count == 256 {
                        channel.send(batch)
                        batch.removeAll(keepingCapacity: true)
                    }
                }
                batch.append(.end(lines: lines))
            } catch is CancellationError {
                return
            } catch {
                batch.append(.readFailed("\(error)"))
            }
            channel.send(batch)
        }
        reader.stackSize = 8 << 20 // deep JSON recursion
        reader.start()
        defer { channel.cancel() }
        var records = 0
        while let batch = channel.receive() {
            for item in batch {
                switch item {
                case .prepared(let line, let p):
                    records += 1
                    if records % 65536 == 0 { session.options.progress?(records) }
                    try session.record(file: file, line: line, savepoint: savepoint) { try write(line, p) }
                case .failed(let error):
                    records += 1
                    try session.reject(error)
                case .end(let lines):
                    session.report.lines += lines
                    if records == 0 {
                        throw IngestError(file: file, "empty file: no records (an ingest needs at least one)")
                    }
                    return
                case .readFailed(let message):
                    throw IngestError(file: file, message)
                }
            }
        }
    }

    private static func prepareLine<P>(_ line: LineReader.Line, file: String,
                                       _ prepare: (Int, RawRecord, JSONValue) throws -> P) -> LineItem<P> {
        // The parser checks UTF-8 as it goes, so a parsed line is valid text.
        switch JSONParser.result(line.bytes, refuseLoneSurrogates: true) {
        case .failure(let error):
            let note = line.terminated ? "" : " (the last line has no newline: is the file truncated?)"
            return .failed(IngestError(file: file, line: line.number, field: error.field, error.description + note))
        case .success(let value):
            do {
                return .prepared(line.number, try prepare(line.number, RawRecord(bytes: line.bytes), value))
            } catch let e as FieldError {
                return .failed(IngestError(file: file, line: line.number, field: e.field, e.reason))
            } catch let e as IngestError {
                return .failed(e)
            } catch {
                return .failed(IngestError(file: file, line: line.number, "\(error)"))
            }
        }
    }

    /// Calls `body` with each element of a top-level JSON array, streamed so the whole file
    /// is never held; `line` is where the element starts.
    static func forEachArrayElement(_ file: String, session: IngestSession, savepoint: Bool = false,
                                    _ body: (_ line: Int, _ raw: RawRecord, _ value: JSONValue) throws -> Void) throws {
        try checkRegularFile(file)
        session.report.files += 1
        var splitter = JSONArraySplitter()
        var count = 0
        let handle = try FileHandleReader(path: file)
        defer { handle.close() }
        while let chunk = try handle.next() {
            try chunk.withUnsafeBytes { bytes in
                try splitter.feed(bytes, file: file) { line, element in
                    count += 1
                    try element.withUnsafeBytes { raw in
                        let value: JSONValue
                        switch JSONParser.result(raw, refuseLoneSurrogates: true) {
                        case .success(let v): value = v
                        case .failure(let error):
                            let errLine = line + raw.prefix(error.offset).filter { $0 == 0x0A }.count
                            try session.reject(IngestError(file: file, line: errLine, field: error.field.map { "[\(count - 1)]" + ($0.hasPrefix("[") ? "" : ".") + $0 },
                                                           "array element \(count - 1): \(error.description)"))
                            return
                        }
                        try session.record(file: file, line: line, savepoint: savepoint) { try body(line, RawRecord(bytes: raw), value) }
                    }
                }
            }
        }
        try splitter.finish(file: file)
        session.report.lines += splitter.line
        if count == 0 { throw IngestError(file: file, "empty array: no records") }
    }

    /// Reads a whole (small) JSON document.
    static func readDocument(_ file: String) throws -> (text: String, value: JSONValue) {
        try checkRegularFile(file)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw IngestError(file: file, "cannot read the file")
        }
        if data.isEmpty { throw IngestError(file: file, "empty file") }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> (text: String, value: JSONValue) in
            guard let text = String(validating: raw, as: UTF8.self) else {
                let offset = raw.firstInvalidUTF8Offset() ?? 0
                throw IngestError(file: file, line: lineOf(offset, in: raw), "not valid UTF-8; re-encode the file as UTF-8")
            }
            switch JSONParser.result(raw, refuseLoneSurrogates: true) {
            case .success(let value): return (text, value)
            case .failure(let error): throw IngestError(file: file, line: lineOf(error.offset, in: raw), field: error.field, error.description)
            }
        }
    }

    /// Reads a whole text file (a policy) as UTF-8.
    static func readText(_ file: String) throws -> String {
        try checkRegularFile(file)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw IngestError(file: file, "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            let offset = data.withUnsafeBytes { $0.firstInvalidUTF8Offset() } ?? 0
            let line = data.withUnsafeBytes { lineOf(offset, in: $0) }
            throw IngestError(file: file, line: line, "not valid UTF-8; re-encode the file as UTF-8")
        }
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw IngestError(file: file, "empty file")
        }
        return text
    }

    /// True when the text has a `\\u` escape of a UTF-16 surrogate (D800-DFFF): a fast scan
    /// that sends only such texts on to the strict parser.
    static func mayHoldSurrogateEscape(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard raw.count >= 6, let base = raw.baseAddress else { return false }
        var i = 0
        while i + 5 < raw.count {
            guard let hit = memchr(base + i, 0x5C, raw.count - i - 5) else { return false }
            let j = base.distance(to: UnsafeRawPointer(hit))
            if raw[j + 1] == UInt8(ascii: "u"), raw[j + 2] | 0x20 == UInt8(ascii: "d") {
                let c = raw[j + 3] | 0x20
                if (c >= UInt8(ascii: "8") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) { return true }
            }
            i = j + 2  // past "\\x": an escaped backslash is never the start of another escape
        }
        return false
    }

    static func lineOf(_ offset: Int, in raw: UnsafeRawBufferPointer) -> Int {
        1 + raw.prefix(min(offset, raw.count)).filter { $0 == 0x0A }.count
    }

    /// Refuses an input that is not a regular file (or a link to one) before it is opened:
    /// opening a FIFO blocks until something writes to it — inside the ingest's transaction,
    /// holding the warehouse's write lock — and a device or socket is no record file either.
    static func checkRegularFile(_ file: String) throws {
        var st = stat()
        guard stat(file, &st) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw IngestError(file: file, "no such file") }
            throw IngestError(file: file, "cannot read the file: \(String(cString: strerror(code)))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw IngestError(file: file, "is a directory, expected a file")
        case S_IFIFO: throw IngestError(file: file, "is a FIFO (named pipe), not a regular file; ingest reads files only: save the data to a file first")
        case S_IFCHR, S_IFBLK: throw IngestError(file: file, "is a device, not a regular file; ingest reads files only")
        case S_IFSOCK: throw IngestError(file: file, "is a socket, not a regular file; ingest reads files only")
        default: throw IngestError(file: file, "is not a regular file; ingest reads files only")
        }
        guard access(file, R_OK) == 0 else {
            throw IngestError(file: file, "cannot read the file (permission denied)")
        }
    }

    /// True when the (regular) file holds anything but whitespace.
    static func hasContent(_ file: String) throws -> Bool {
        let reader = try FileHandleReader(path: file, chunkSize: 1 << 16)
        defer { reader.close() }
        while let chunk = try reader.next() {
            if chunk.contains(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }) { return true }
        }
        return false
    }

    /// The inputs of one ingest, checked before its write transaction opens: each file with
    /// `checkRegularFile`; each folder's entries (down to `depth` levels) that are not regular
    /// files or folders are refused by name — a FIFO among them would hang the ingest.
    static func checkInputs(files: [String] = [], folders: [String] = [], depth: Int = 3) throws {
        // A missing file is the command's to explain, in its own order of checks.
        for f in files where FileManager.default.fileExists(atPath: f) { try checkRegularFile(f) }
        func walk(_ dir: String, _ level: Int) throws {
            guard level <= depth, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names.sorted() {
                let path = (dir as NSString).appendingPathComponent(name)
                var st = stat()
                guard stat(path, &st) == 0 else { continue }  // a dangling link is never read
                switch st.st_mode & S_IFMT {
                case S_IFREG: continue
                case S_IFDIR: try walk(path, level + 1)
                default: try checkRegularFile(path)
                }
            }
        }
        for d in folders {
            // A missing folder, or a regular file given as one, is the command's to explain.
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: d, isDirectory: &isDir) else { continue }
            if isDir.boolValue { try walk(d, 1) } else { try checkRegularFile(d) }
        }
    }
}

/// What the reading thread hands the writing thread.
enum LineItem<P: Sendable>: Sendable {
    case prepared(Int, P)
    case failed(IngestError)
    case end(lines: Int)
    case readFailed(String)
}

/// A bounded, blocking FIFO of batches between two threads.
/// `@unchecked Sendable`: every stored property is read and written only with `condition` held.
final class BatchChannel<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [[T]] = []
    private var head = 0
    private var cancelled = false
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var isCancelled: Bool {
        condition.lock(); defer { condition.unlock() }
        return cancelled
    }

    /// Blocks while full; drops the batch once the receiver has gone.
    func send(_ batch: [T]) {
        condition.lock(); defer { condition.unlock() }
        while queue.count - head >= capacity && !cancelled { condition.wait() }
        if cancelled { return }
        queue.append(batch)
        condition.broadcast()
    }

    /// The next batch, or nil once cancelled.
    func receive() -> [T]? {
        condition.lock(); defer { condition.unlock() }
        while queue.count == head && !cancelled { condition.wait() }
        if queue.count == head { return nil }
        let batch = queue[head]
        queue[head] = []  // the receiver owns it now; keep no second reference until compaction
        head += 1
        if head > 64 { queue.removeFirst(head); head = 0 }
        condition.broadcast()
        return batch
    }

    /// Wakes and stops both sides (the receiver is done or gave up).
    func cancel() {
        condition.lock(); defer { condition.unlock() }
        cancelled = true
        condition.broadcast()
    }
}

/// The source text of one record, as read. Only valid inside the callback that receives it;
/// it has passed the JSON parser, so it is valid UTF-8.
struct RawRecord {
    let bytes: UnsafeRawBufferPointer
    /// True when the text spans several lines (a pretty-printed array element).
    var isMultiline: Bool { bytes.contains(0x0A) }
}

/// Reads a file in 4 MiB chunks.
final class FileHandleReader {
    private let fd: Int32
    private let path: String
    private var buffer: [UInt8]

    init(path: String, chunkSize: Int = 4 << 20) throws {
        self.path = path
        fd = try FileError.openRegular(path)
        buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    func next() throws -> ArraySlice<UInt8>? {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 { throw FileError.cannotRead(path, errno: errno) }
        return n == 0 ? nil : buffer[0..<n]
    }

    func close() { _ = Foundation.close(fd) }
}

/// Splits a streamed top-level JSON array into its elements' bytes, tracking line numbers.
/// It only finds boundaries (strings, escapes, nesting); each element is then parsed strictly.
struct JSONArraySplitter {
    private enum State { case start, beforeElement, inElement, afterElement, done }
    private var state = State.start
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var element: [UInt8] = []
    private var elementLine = 0
    private(set) var line = 1
    private var sawElement = false
    private var offset = 0

    mutating func feed(_ bytes: UnsafeRawBufferPointer, file: String,
                       _ emit: (_ line: Int, _ element: [UInt8]) throws -> Void) throws {
        for b in bytes {
            defer {
                offset += 1
                if b == 0x0A { line += 1 }
            }
            switch state {
            case .start:
                if offset < 3 && [0xEF, 0xBB, 0xBF][offset] == b { continue } // UTF-8 BOM
                if isSpace(b) { continue }
                guard b == UInt8(ascii: "[") else {
                    throw IngestError(file: file, line: line, "expected a JSON array ('['), found '\(Character(Unicode.Scalar(b)))'")
                }
                state = .beforeElement
            case .beforeElement:
                if isSpace(b) { continue }
                if b == UInt8(ascii: "]") {
                    if sawElement { throw IngestError(file: file, line: line, "a trailing ',' before ']' (not valid JSON)") }
                    state = .done
                    continue
                }
                sawElement = true
                state = .inElement
                elementLine = line
                element.removeAll(keepingCapacity: true)
                try consume(b, file: file, emit)
            case .inElement:
                try consume(b, file: file, emit)
            case .afterElement:
                if isSpace(b) { continue }
                if b == UInt8(ascii: ",") { state = .beforeElement; continue }
                if b == UInt8(ascii: "]") { state = .done; continue }
                throw IngestError(file: file, line: line, "expected ',' or ']' between array elements")
            case .done:
                if !isSpace(b) { throw IngestError(file: file, line: line, "unexpected text after the closing ']'") }
            }
        }
    }

    private mutating func consume(_ b: UInt8, file: String, _ emit: (Int, [UInt8]) throws -> Void) throws {
        if inString {
            element.append(b)
            if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
            return
        }
        switch b {
        case UInt8(ascii: "\""): inString = true; element.append(b)
        case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; element.append(b)
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            if depth == 0 {
                // The array closes right after a scalar element.
                guard b == UInt8(ascii: "]") else { throw IngestError(file: file, line: line, "unbalanced '}'") }
                try emit(elementLine, element)
                element.removeAll(keepingCapacity: true)
                state = .done
                return
            }
            depth -= 1
            element.append(b)
            if depth == 0 {
                try emit(elementLine, element)
                element.removeAll(keepingCapacity: true)
                state = .afterElement
            }
        case UInt8(ascii: ","):
            if depth == 0 {
                try emit(elementLine, element)
                element.removeAll(keepingCapacity: true)
                state = .beforeElement
            } else {
                element.append(b)
            }
        default:
            element.append(b)
        }
    }

    func finish(file: String) throws {
        switch state {
        case .done: return
        case .start: throw IngestError(file: file, "empty file")
        default: throw IngestError(file: file, line: line, "the JSON array is not closed (truncated file?)")
        }
    }

    private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
}
