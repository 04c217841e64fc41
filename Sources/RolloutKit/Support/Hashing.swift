import Crypto
import Foundation

/// Hash functions the warehouse needs: MD5 (RFC 1321) and FNV-1a written from their
/// specifications, SHA-256 from swift-crypto.
public enum Hashing {
    /// FNV-1a over 64-bit words (bytes for the tail), with a final avalanche: a fast change
    /// detector for records, not a security property. Stable across versions: stored hashes
    /// are compared with it.
    public static func contentHash(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let prime: UInt64 = 0x0000_0100_0000_01B3
        var i = 0
        if let base = bytes.baseAddress {
            while i + 8 <= bytes.count {
                h ^= UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                h = (h &* prime) ^ (h >> 29)
                i += 8
            }
        }
        while i < bytes.count {
            h ^= UInt64(bytes[i])
            h = h &* prime
            i += 1
        }
        h ^= UInt64(bytes.count)
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return Int64(bitPattern: h)
    }

    public static func contentHash(_ string: String) -> Int64 {
        var s = string
        return s.withUTF8 { contentHash(UnsafeRawBufferPointer($0)) }
    }

    public static func md5Hex(_ string: String) -> String { hex(MD5.digest(Array(string.utf8))) }
    public static func sha256Hex(_ string: String) -> String { sha256Hex(Array(string.utf8)) }
    public static func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256().finalizing(bytes)) }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// MD5 (RFC 1321). Used only to reproduce the Rollout framework's task ids.
enum MD5 {
    private static let shifts: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                           5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                                           4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                           6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    private static let table: [UInt32] = (0..<64).map { i in
        UInt32(truncatingIfNeeded: Int64(abs(sin(Double(i + 1))) * 4_294_967_296.0))
    }

    static func digest(_ message: [UInt8]) -> [UInt8] {
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in 0..<8 { data.append(UInt8(truncatingIfNeeded: bitLength >> (8 * UInt64(i)))) }
        var a0: UInt32 = 0x6745_2301, b0: UInt32 = 0xefcd_ab89, c0: UInt32 = 0x98ba_dcfe, d0: UInt32 = 0x1032_5476
        var m = [UInt32](repeating: 0, count: 16)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                m[i] = UInt32(data[j]) | UInt32(data[j + 1]) << 8 | UInt32(data[j + 2]) << 16 | UInt32(data[j + 3]) << 24
            }
            var a = a0, b = b0, c = c0, d = d0
            for i in 0..<64 {
                var f: UInt32
                let g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) % 16
                case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) % 16
                default: f = c ^ (b | ~d); g = (7 * i) % 16
                }
                f = f &+ a &+ table[i] &+ m[g]
                a = d; d = c; c = b
                b = b &+ ((f << shifts[i]) | (f >> (32 - shifts[i])))
            }
            a0 = a0 &+ a; b0 = b0 &+ b; c0 = c0 &+ c; d0 = d0 &+ d
        }
        var out = [UInt8]()
        for v in [a0, b0, c0, d0] { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
        return out
    }
}

/// SHA-256, incremental, for export checksums and config hashes: swift-crypto's (BoringSSL,
/// which uses the CPU's SHA instructions; exports hash gigabytes, at about 1 GB/s instead of
/// the ~150 MB/s a portable implementation reaches).
public struct SHA256: Sendable {
    private var hasher = Crypto.SHA256()

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public func finalizing(_ bytes: [UInt8] = []) -> [UInt8] {
        var copy = hasher
        bytes.withUnsafeBytes { copy.update(bufferPointer: $0) }
        return Array(copy.finalize())
    }

    public func hexDigest() -> String { Hashing.hex(finalizing()) }
}
