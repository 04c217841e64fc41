import Foundation

/// ISO-8601 UTC timestamps with milliseconds, the one time format in the warehouse.
public enum Timestamp {
    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return format(seconds: Int(ts.tv_sec), millis: Int(ts.tv_nsec / 1_000_000))
    }

    public static func format(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        let whole = seconds.rounded(.down)
        return format(seconds: Int(whole), millis: Int((seconds - whole) * 1000))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time, written digit by digit (no format parsing:
    /// the engine stamps every row it writes).
    static func format(seconds: Int, millis: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(unsafeUninitializedCapacity: 24) { out in
            func put(_ value: Int, _ digits: Int, at offset: Int) {
                var v = value
                for i in stride(from: offset + digits - 1, through: offset, by: -1) {
                    out[i] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
                    v /= 10
                }
            }
            put(Int(parts.tm_year) + 1900, 4, at: 0)
            out[4] = UInt8(ascii: "-")
            put(Int(parts.tm_mon) + 1, 2, at: 5)
            out[7] = UInt8(ascii: "-")
            put(Int(parts.tm_mday), 2, at: 8)
            out[10] = UInt8(ascii: "T")
            put(Int(parts.tm_hour), 2, at: 11)
            out[13] = UInt8(ascii: ":")
            put(Int(parts.tm_min), 2, at: 14)
            out[16] = UInt8(ascii: ":")
            put(Int(parts.tm_sec), 2, at: 17)
            out[19] = UInt8(ascii: ".")
            put(min(max(millis, 0), 999), 3, at: 20)
            out[23] = UInt8(ascii: "Z")
            return 24
        }
    }
}
