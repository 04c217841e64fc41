import Foundation

/// Reads a file line by line in large chunks without loading it whole. Each line is handed to
/// the body as bytes (without its "\n" or "\r\n") with its 1-based number; memory stays at the
/// chunk size plus the longest line.
public struct LineReader {
    public let path: String
    public var chunkSize = 4 << 20

    public init(path: String) { self.path = path }

    /// Information about the line being handed out.
    public struct Line {
        public let number: Int
        public let bytes: UnsafeRawBufferPointer
        /// False for a last line that is not followed by a newline.
        public let terminated: Bool
    }

    /// Calls `body` for each line; returns the number of lines read.
    @discardableResult
    public func forEachLine(_ body: (Line) throws -> Void) throws -> Int {
        let fd = try FileError.openRegular(path)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var filled = 0
        var lineNumber = 0
        var eof = false
        while true {
            if !eof {
                if filled == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
                let n = buffer.withUnsafeMutableBytes { raw in
                    read(fd, raw.baseAddress! + filled, raw.count - filled)
                }
                if n < 0 { throw FileError.cannotRead(path, errno: errno) }
                if n == 0 { eof = true } else { filled += n }
            }
            var consumed = 0
            try buffer.withUnsafeBytes { raw in
                while consumed < filled {
                    let rest = UnsafeRawBufferPointer(rebasing: raw[consumed..<filled])
                    guard let nl = memchr(rest.baseAddress!, 0x0A, rest.count) else { break }
                    let length = rest.baseAddress!.distance(to: UnsafeRawPointer(nl))
                    var end = length
                    if end > 0 && rest[end - 1] == 0x0D { end -= 1 }
                    lineNumber += 1
                    try body(Line(number: lineNumber, bytes: UnsafeRawBufferPointer(rebasing: rest[0..<end]), terminated: true))
                    consumed += length + 1
                }
                if eof && consumed < filled {
                    var end = filled
                    if raw[end - 1] == 0x0D { end -= 1 }
                    lineNumber += 1
                    try body(Line(number: lineNumber, bytes: UnsafeRawBufferPointer(rebasing: raw[consumed..<end]), terminated: false))
                    consumed = filled
                }
            }
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    let remaining = filled - consumed
                    if remaining > 0 { memmove(raw.baseAddress!, raw.baseAddress! + consumed, remaining) }
                }
                filled -= consumed
            }
            if eof && filled == 0 { return lineNumber }
        }
    }
}

/// A file that could not be opened or read.
public enum FileError: Error, CustomStringConvertible {
    case cannotOpen(String, errno: Int32)
    case cannotRead(String, errno: Int32)
    case notRegular(String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let e): "\(path): cannot open: \(String(cString: strerror(e)))"
        case .cannotRead(let path, let e): "\(path): cannot read: \(String(cString: strerror(e)))"
        case .notRegular(let path): "\(path): not a regular file (a FIFO, a device or a socket); only files are read"
        }
    }

    /// Opens `path` for reading, refusing anything but a regular file without waiting: a FIFO
    /// is opened non-blocking (a plain open would wait for a writer), checked, and closed.
    static func openRegular(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotOpen(path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileError.notRegular(path)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }
}

extension UnsafeRawBufferPointer {
    /// True when every byte is space, tab, CR or LF.
    var isBlank: Bool {
        for b in self where b != 0x20 && b != 0x09 && b != 0x0D && b != 0x0A { return false }
        return true
    }

    /// The byte offset of the first invalid UTF-8 sequence, or nil when the bytes are valid.
    func firstInvalidUTF8Offset() -> Int? {
        var i = 0
        while i < count {
            let b = self[i]
            if b < 0x80 { i += 1; continue }
            let need: Int
            var minScalar: UInt32
            var scalar: UInt32
            switch b {
            case 0xC2...0xDF: need = 1; scalar = UInt32(b & 0x1F); minScalar = 0x80
            case 0xE0...0xEF: need = 2; scalar = UInt32(b & 0x0F); minScalar = 0x800
            case 0xF0...0xF4: need = 3; scalar = UInt32(b & 0x07); minScalar = 0x10000
            default: return i
            }
            if i + need >= count { return i }
            for j in 1...need {
                let c = self[i + j]
                guard c & 0xC0 == 0x80 else { return i }
                scalar = scalar << 6 | UInt32(c & 0x3F)
            }
            if scalar < minScalar || scalar > 0x10FFFF || (0xD800...0xDFFF).contains(scalar) { return i }
            i += need + 1
        }
        return nil
    }
}
