import Foundation

/// Produces a JSON value that is valid for a JSON Schema, deterministically from a seed: the same
/// schema and seed always give the same value (no randomness from the process, no network).
/// The mock model uses it to write tool-call arguments.
///
/// Supported keywords:
/// - `type` (a name or a list of names; the first non-null one is used), or a type inferred from
///   the other keywords (`properties` → object, `items` → array, `minLength`/`format` → string,
///   `minimum` → number; an empty schema gives a string);
/// - `const` (returned as is), `default` (returned when it is not null and fits the declared type,
///   `enum` and simple bounds), `enum` (one of its values, picked by seed, preferring values of
///   the declared type);
/// - objects: every `required` property, each optional one of `properties` included by a seeded
///   coin flip, `minProperties`/`maxProperties`, `additionalProperties` (a map-like object with only
///   `additionalProperties: {schema}` gets one `key_1` entry; `false` adds nothing);
/// - strings: `minLength`/`maxLength` (padded with `x` or cut), `format` (`date` → `2024-03-14`,
///   `date-time` → `2024-03-14T10:30:00Z`, `time`, `email`, `uuid`, `uri`, `hostname`, `ipv4`,
///   `ipv6`, `duration`); otherwise a plausible text from the property name: `user_id` → `user_17`,
///   names containing `date` → a date, `email` → an address, `first_name`/`last_name`/`zip`/`city`/
///   `state`/`country`/`address1`/`phone`/`expression`, anything else `<words of the name> <n>`.
///   `pattern` is not honoured;
/// - numbers and integers: `minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum` (numbers, or
///   the draft-4 booleans), `multipleOf`; without bounds a value in 1…100 (1…10 for names like
///   `limit`, `count`, `quantity`);
/// - arrays: `items` (a schema, or a list as in draft 4), `prefixItems`, `minItems`/`maxItems`
///   (1 or 2 items by seed within them), `uniqueItems`;
/// - `anyOf`/`oneOf`: the first option that is not `{"type":"null"}`, merged with the keywords
///   beside it (`title`, `default`, …); `allOf`: all parts merged (properties joined, `required`
///   united, the tighter of each bound);
/// - `$ref` to `#`, `#/$defs/…`, `#/definitions/…` or any JSON pointer into the root schema, merged
///   with the keywords beside it; other references count as an empty schema.
///
/// Recursion: from `maxDepth` nesting levels down (default 6) only required properties and
/// `minItems` items are produced and a nullable choice (`anyOf` with a null option, a type list
/// with `null`) takes null, so recursive schemas end; a schema that still does not end is cut at
/// `maxDepth + 8` levels with an empty object or array.
///
/// Size: a tool's schema comes from its server, which may be hostile or broken, so demands are
/// capped rather than followed: a string is padded to at most `maxStringLength` characters, an
/// array gets at most `maxItems` items and an object at most `maxItems` extra keys for
/// `minProperties`; one sample holds at most `maxValues` values and `maxTextCharacters`
/// characters of string in all, after which strings are empty and objects and arrays empty or
/// short. Past a cap the value no longer meets the schema's minimums (the server rejects the
/// call, as it would any bad call), but it is produced in bounded time and memory.
public struct SchemaSampler: Sendable {
    /// The longest string produced, whatever `minLength` asks.
    public static let maxStringLength = 4_096
    /// The most items in an array, and extra keys added for `minProperties`.
    public static let maxItems = 64
    /// The most values (of any type, nested or not) in one sample.
    public static let maxValues = 10_000
    /// The most characters of string, summed over the whole sample.
    public static let maxTextCharacters = 256 * 1_024

    public var seed: UInt64
    public var maxDepth: Int

    public init(seed: UInt64 = 0, maxDepth: Int = 6) {
        self.seed = seed
        self.maxDepth = maxDepth
    }

    /// A value valid for `schema`. `name` is the property the value is for (it shapes plausible
    /// strings); without one, the schema's `title` is used.
    public func sample(_ schema: JSONValue, name: String? = nil) -> JSONValue {
        var run = SamplerRun(root: schema, rng: MockSplitMix(seed: seed), maxDepth: maxDepth)
        return run.value(schema, name: name, depth: 0)
    }
}

/// SplitMix64: a small, fast, well-mixed generator; the same seed gives the same sequence everywhere.
struct MockSplitMix: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 0 ..< n (0 when n <= 0).
    mutating func int(_ n: Int) -> Int {
        n <= 0 ? 0 : Int(next() % UInt64(n))
    }

    mutating func int(in range: ClosedRange<Int>) -> Int {
        let width = UInt64(bitPattern: Int64(range.upperBound) &- Int64(range.lowerBound)) &+ 1
        if width == 0 { return Int(truncatingIfNeeded: next()) }
        return range.lowerBound &+ Int(truncatingIfNeeded: next() % width)
    }

    mutating func bool() -> Bool { next() & 1 == 0 }

    /// Uniform in [0, 1).
    mutating func fraction() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

private struct SamplerRun {
    let root: JSONValue
    var rng: MockSplitMix
    let maxDepth: Int
    var hardLimit: Int { maxDepth + 8 }
    /// Values and string characters produced so far, against the sampler's caps.
    var values = 0
    var textCharacters = 0
    var exhausted: Bool { values >= SchemaSampler.maxValues || textCharacters >= SchemaSampler.maxTextCharacters }

    init(root: JSONValue, rng: MockSplitMix, maxDepth: Int) {
        self.root = root
        self.rng = rng
        self.maxDepth = max(0, maxDepth)
    }

    // MARK: Resolving $ref, allOf, anyOf and oneOf into one flat schema

    /// The schema with `$ref`, `allOf`, `anyOf` and `oneOf` folded in; nil for the `false` schema.
    func effective(_ schema: JSONValue, depth: Int, hops: Int = 0) -> JSONObject? {
        switch schema {
        case .bool(let allowed): return allowed ? JSONObject() : nil
        case .object(var o):
            if hops > 12 { return JSONObject() }
            if let ref = o["$ref"]?.stringValue {
                o["$ref"] = nil
                let target = resolve(ref).flatMap { effective($0, depth: depth, hops: hops + 1) } ?? JSONObject()
                o = Self.merge(target, o)
            }
            if let parts = o["allOf"]?.arrayValue {
                o["allOf"] = nil
                for part in parts {
                    guard let p = effective(part, depth: depth, hops: hops + 1) else { return nil }
                    o = Self.merge(o, p)
                }
            }
            for key in ["anyOf", "oneOf"] {
                guard let options = o[key]?.arrayValue else { continue }
                o[key] = nil
                // Resolved one at a time, stopping at the first fit, so cyclic options stay linear.
                var value: JSONObject?
                var null: JSONObject?
                for option in options {
                    guard let r = effective(option, depth: depth, hops: hops + 1) else { continue }
                    if Self.isNullOnly(r) {
                        if null == nil { null = r }
                        if depth >= maxDepth { break }
                    } else if value == nil {
                        value = r
                        if depth < maxDepth { break }
                    }
                }
                guard let chosen = depth >= maxDepth ? (null ?? value) : (value ?? null) else { return nil }
                o = Self.merge(o, chosen)
            }
            return o
        default:
            return JSONObject()
        }
    }

    /// A `#…` JSON pointer into the root schema.
    func resolve(_ ref: String) -> JSONValue? {
        guard ref.hasPrefix("#") else { return nil }
        var pointer = ref.dropFirst()
        if pointer.isEmpty { return root }
        guard pointer.hasPrefix("/") else { return nil }
        pointer = pointer.dropFirst()
        var node = root
        for raw in pointer.split(separator: "/", omittingEmptySubsequences: false) {
            let token = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            if let next = node[token] {
                node = next
            } else if let index = Int(token), let next = node[index] {
                node = next
            } else {
                return nil
            }
        }
        return node
    }

    static func isNullOnly(_ o: JSONObject) -> Bool {
        if let t = o["type"] {
            if t.stringValue == "null" { return true }
            if let list = t.arrayValue, list == [.string("null")] { return true }
            return false
        }
        if let c = o["const"], c.isNull { return true }
        if let e = o["enum"]?.arrayValue, !e.isEmpty, e.allSatisfy(\.isNull) { return true }
        return false
    }

    /// `b` folded into `a` as `allOf` would: properties joined, `required` united, the tighter
    /// bound kept, types and enums intersected; any other keyword of `b` wins.
    static func merge(_ a: JSONObject, _ b: JSONObject) -> JSONObject {
        var out = a
        for (key, value) in b {
            guard let old = out[key] else { out[key] = value; continue }
            switch key {
            case "properties":
                guard var props = old.objectValue, let more = value.objectValue else { out[key] = value; continue }
                for (name, schema) in more {
                    if let existing = props[name] {
                        props[name] = .object(["allOf": .array([existing, schema])])
                    } else {
                        props[name] = schema
                    }
                }
                out[key] = .object(props)
            case "required":
                var names = old.arrayValue ?? []
                for n in value.arrayValue ?? [] where !names.contains(n) { names.append(n) }
                out[key] = .array(names)
            case "minimum", "minLength", "minItems", "minProperties":
                if let x = old.doubleValue, let y = value.doubleValue { out[key] = x >= y ? old : value } else { out[key] = value }
            case "maximum", "maxLength", "maxItems", "maxProperties":
                if let x = old.doubleValue, let y = value.doubleValue { out[key] = x <= y ? old : value } else { out[key] = value }
            case "exclusiveMinimum":
                if let x = old.doubleValue, let y = value.doubleValue { out[key] = x >= y ? old : value } else { out[key] = value }
            case "exclusiveMaximum":
                if let x = old.doubleValue, let y = value.doubleValue { out[key] = x <= y ? old : value } else { out[key] = value }
            case "type":
                let left = typeNames(old), right = typeNames(value)
                var both: [String] = []
                for t in left {
                    if right.contains(t) { both.append(t) } else if t == "number" && right.contains("integer") { both.append("integer") } else if t == "integer" && right.contains("number") { both.append("integer") }
                }
                if both.isEmpty { out[key] = value } else { out[key] = both.count == 1 ? .string(both[0]) : .array(both.map(JSONValue.string)) }
            case "enum":
                if let x = old.arrayValue, let y = value.arrayValue {
                    let both = x.filter { y.contains($0) }
                    out[key] = .array(both.isEmpty ? y : both)
                } else {
                    out[key] = value
                }
            case "items":
                if old.objectValue != nil, value.objectValue != nil {
                    out[key] = .object(["allOf": .array([old, value])])
                } else {
                    out[key] = value
                }
            case "additionalProperties":
                out[key] = old == .bool(false) ? old : value
            default:
                out[key] = value
            }
        }
        return out
    }

    static func typeNames(_ t: JSONValue?) -> [String] {
        switch t {
        case .string(let s)?: [s]
        case .array(let list)?: list.compactMap(\.stringValue)
        default: []
        }
    }

    // MARK: Values

    mutating func value(_ schema: JSONValue, name: String?, depth: Int) -> JSONValue {
        guard let s = effective(schema, depth: depth) else { return .null }
        let name = name ?? s["title"]?.stringValue.map(Self.snakeCase)
        if let c = s["const"] { return c }
        let declared = Self.typeNames(s["type"])
        if let d = s["default"], !d.isNull, fits(d, s, declared) { return d }
        if let options = s["enum"]?.arrayValue, !options.isEmpty {
            let fitting = declared.isEmpty ? options : options.filter { Self.matches($0, declared) }
            let pool = fitting.isEmpty ? options : fitting
            return pool[rng.int(pool.count)]
        }
        let types = declared.isEmpty ? [Self.inferredType(s)] : declared
        let nonNull = types.filter { $0 != "null" }
        let type = (nonNull.isEmpty || (depth >= maxDepth && types.contains("null"))) ? "null" : nonNull[0]
        values += 1
        if depth >= hardLimit || exhausted {
            switch type {
            case "object": return .object(JSONObject())
            case "array": return .array([])
            default: break
            }
        }
        switch type {
        case "object": return object(s, name: name, depth: depth)
        case "array": return array(s, name: name, depth: depth)
        case "string": return .string(string(s, name: name))
        case "integer": return integer(s, name: name)
        case "number": return number(s, name: name)
        case "boolean": return .bool(rng.bool())
        case "null": return .null
        default: return .string(string(s, name: name))
        }
    }

    static func inferredType(_ s: JSONObject) -> String {
        let has = { (keys: [String]) in keys.contains { s[$0] != nil } }
        if has(["properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties"]) { return "object" }
        if has(["items", "prefixItems", "minItems", "maxItems", "uniqueItems"]) { return "array" }
        if has(["minLength", "maxLength", "pattern", "format"]) { return "string" }
        if has(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]) { return "number" }
        return "string"
    }

    static func matches(_ v: JSONValue, _ types: [String]) -> Bool {
        types.contains { t in
            switch (t, v) {
            case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): true
            case ("integer", .number(let n)): Double(n).map { $0 == $0.rounded() } ?? false
            default: false
            }
        }
    }

    /// Whether a `default` can be returned as is: the declared type and the simple bounds hold.
    func fits(_ d: JSONValue, _ s: JSONObject, _ types: [String]) -> Bool {
        if !types.isEmpty && !Self.matches(d, types) { return false }
        if let options = s["enum"]?.arrayValue, !options.contains(d) { return false }
        switch d {
        case .string(let text):
            if let lo = Self.int(s["minLength"]), text.count < lo { return false }
            if let hi = Self.int(s["maxLength"]), text.count > hi { return false }
        case .number(let n):
            guard let x = Double(n) else { return false }
            let b = Self.bounds(s)
            if let lo = b.lo, b.loExclusive ? x <= lo : x < lo { return false }
            if let hi = b.hi, b.hiExclusive ? x >= hi : x > hi { return false }
        case .array(let items):
            if let lo = Self.int(s["minItems"]), items.count < lo { return false }
            if let hi = Self.int(s["maxItems"]), items.count > hi { return false }
        case .object(let o):
            for key in s["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where o[key] == nil { return false }
        default:
            break
        }
        return true
    }

    static func int(_ v: JSONValue?) -> Int? {
        guard let d = v?.doubleValue, d.isFinite, abs(d) < 1e15 else { return nil }
        return Int(d)
    }

    // MARK: Objects and arrays

    mutating func object(_ s: JSONObject, name: String?, depth: Int) -> JSONValue {
        let props = s["properties"]?.objectValue ?? JSONObject()
        let required = s["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let extra = s["additionalProperties"]
        let extraAllowed = extra != .bool(false)
        let limited = depth >= maxDepth
        var out = JSONObject()
        for (key, sub) in props {
            let include = required.contains(key) || (!limited && rng.bool())
            if include { out[key] = value(sub, name: key, depth: depth + 1) }
        }
        for key in required where out[key] == nil {
            out[key] = value(Self.extraSchema(extra), name: key, depth: depth + 1)
        }
        let minimum = min(Self.int(s["minProperties"]) ?? 0, out.count + SchemaSampler.maxItems)
        for (key, sub) in props where out.count < minimum && out[key] == nil && !exhausted {
            out[key] = value(sub, name: key, depth: depth + 1)
        }
        var n = 1
        while out.count < minimum && extraAllowed && n < 10_000 && !exhausted {
            let key = "key_\(n)"
            if out[key] == nil { out[key] = value(Self.extraSchema(extra), name: nil, depth: depth + 1) }
            n += 1
        }
        if props.isEmpty, out.isEmpty, !limited, extra?.objectValue != nil {
            out["key_1"] = value(Self.extraSchema(extra), name: nil, depth: depth + 1)
        }
        if let maximum = Self.int(s["maxProperties"]) {
            for key in out.keys.reversed() where out.count > maximum && !required.contains(key) { out[key] = nil }
        }
        return .object(out)
    }

    static func extraSchema(_ extra: JSONValue?) -> JSONValue {
        if let extra, extra.objectValue != nil { return extra }
        return .object(JSONObject())
    }

    mutating func array(_ s: JSONObject, name: String?, depth: Int) -> JSONValue {
        let minimum = min(max(0, Self.int(s["minItems"]) ?? 0), SchemaSampler.maxItems)
        let maximum = Self.int(s["maxItems"])
        var count = depth >= maxDepth ? minimum : max(minimum, 1 + rng.int(2))
        if let maximum { count = max(minimum, min(count, maximum)) }
        let prefix: [JSONValue] = s["prefixItems"]?.arrayValue ?? s["items"]?.arrayValue ?? []
        var rest: JSONValue = .object(JSONObject())
        if s["prefixItems"] != nil, let items = s["items"] {
            rest = items
        } else if let items = s["items"], items.arrayValue == nil {
            rest = items
        } else if let additional = s["additionalItems"] {
            rest = additional
        }
        if rest == .bool(false) { count = min(count, prefix.count) }
        let itemName = name.map(Self.singular)
        let unique = s["uniqueItems"]?.boolValue == true
        var out: [JSONValue] = []
        for i in 0..<count where !exhausted {
            let schema = i < prefix.count ? prefix[i] : rest
            var item = value(schema, name: itemName, depth: depth + 1)
            var tries = 0
            while unique && out.contains(item) && tries < 16 {
                item = value(schema, name: itemName, depth: depth + 1)
                tries += 1
            }
            if unique && out.contains(item) { break }
            out.append(item)
        }
        return .array(out)
    }

    // MARK: Numbers

    struct Bounds {
        var lo: Double?
        var loExclusive = false
        var hi: Double?
        var hiExclusive = false
    }

    static func bounds(_ s: JSONObject) -> Bounds {
        var b = Bounds()
        b.lo = s["minimum"]?.doubleValue
        b.hi = s["maximum"]?.doubleValue
        switch s["exclusiveMinimum"] {
        case .bool(true)?: b.loExclusive = b.lo != nil
        case .number?:
            if let x = s["exclusiveMinimum"]?.doubleValue, b.lo == nil || x >= b.lo! { b.lo = x; b.loExclusive = true }
        default: break
        }
        switch s["exclusiveMaximum"] {
        case .bool(true)?: b.hiExclusive = b.hi != nil
        case .number?:
            if let x = s["exclusiveMaximum"]?.doubleValue, b.hi == nil || x <= b.hi! { b.hi = x; b.hiExclusive = true }
        default: break
        }
        return b
    }

    /// The range used when the schema leaves a side open.
    static func defaultRange(_ name: String?) -> ClosedRange<Int> {
        let n = (name ?? "").lowercased()
        if ["limit", "count", "quantity", "page", "size", "number", "num", "top", "k"].contains(where: { n == $0 || n.hasSuffix("_" + $0) || n.hasPrefix($0 + "_") }) { return 1...10 }
        if n.contains("year") { return 2020...2025 }
        if n.contains("age") { return 18...80 }
        return 1...100
    }

    mutating func integer(_ s: JSONObject, name: String?) -> JSONValue {
        let b = Self.bounds(s)
        let cap = 1e15
        var lo: Int? = b.lo.map { Int(max(-cap, min(cap, b.loExclusive ? ($0.rounded(.down) + 1) : $0.rounded(.up)))) }
        var hi: Int? = b.hi.map { Int(max(-cap, min(cap, b.hiExclusive ? ($0.rounded(.up) - 1) : $0.rounded(.down)))) }
        let preferred = Self.defaultRange(name)
        switch (lo, hi) {
        case (nil, nil): lo = preferred.lowerBound; hi = preferred.upperBound
        case (let l?, nil): hi = preferred.contains(l) ? preferred.upperBound : l + (preferred.upperBound - preferred.lowerBound)
        case (nil, let h?): lo = preferred.contains(h) ? preferred.lowerBound : h - (preferred.upperBound - preferred.lowerBound)
        default: break
        }
        let low = lo!, high = hi!
        if low > high { return JSONValue(low) }
        if let m = s["multipleOf"]?.doubleValue, m > 0, m == m.rounded(), m < cap {
            let step = Int(m)
            let first = Int((Double(low) / m).rounded(.up)) * step
            let last = Int((Double(high) / m).rounded(.down)) * step
            if first > last { return JSONValue(first) }
            return JSONValue(first + rng.int(in: 0...((last - first) / step)) * step)
        }
        return JSONValue(rng.int(in: low...high))
    }

    mutating func number(_ s: JSONObject, name: String?) -> JSONValue {
        let b = Self.bounds(s)
        let preferred = Self.defaultRange(name)
        let pLo = Double(preferred.lowerBound), pHi = Double(preferred.upperBound)
        var lo = b.lo ?? pLo, hi = b.hi ?? pHi
        if b.lo == nil, let h = b.hi, !(pLo...pHi).contains(h) { lo = h - (pHi - pLo) }
        if b.hi == nil, let l = b.lo, !(pLo...pHi).contains(l) { hi = l + (pHi - pLo) }
        if b.lo == nil, lo >= hi { lo = hi - (pHi - pLo) }
        if b.hi == nil, hi <= lo { hi = lo + (pHi - pLo) }
        if lo > hi { return JSONValue(lo) }
        if let m = s["multipleOf"]?.doubleValue, m > 0 {
            let first = (lo / m).rounded(.up), last = (hi / m).rounded(.down)
            var k = first
            if last > first, last - first < 1e12 { k = first + Double(rng.int(in: 0...Int(last - first))) }
            if b.loExclusive, k * m <= lo { k += 1 }
            if b.hiExclusive, k * m >= hi { k -= 1 }
            return JSONValue(k * m)
        }
        var x = ((lo + (hi - lo) * rng.fraction()) * 100).rounded() / 100
        x = min(max(x, lo), hi)
        if (b.loExclusive && x <= lo) || (b.hiExclusive && x >= hi) { x = lo + (hi - lo) / 2 }
        return JSONValue(x)
    }

    // MARK: Strings

    mutating func string(_ s: JSONObject, name: String?) -> String {
        var text: String
        if let format = s["format"]?.stringValue {
            text = formatted(format, name: name)
        } else {
            text = plausible(name)
        }
        let room = max(0, min(SchemaSampler.maxStringLength, SchemaSampler.maxTextCharacters - textCharacters))
        if let lo = Self.int(s["minLength"]), text.count < lo {
            text += String(repeating: "x", count: max(0, min(lo, room) - text.count))
        }
        if let hi = Self.int(s["maxLength"]), text.count > max(0, hi) {
            text = String(text.prefix(max(0, hi)))
        }
        if text.count > room { text = String(text.prefix(room)) }
        textCharacters += text.count
        return text
    }

    static func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    mutating func date() -> String {
        "2024-\(Self.two(rng.int(in: 1...12)))-\(Self.two(rng.int(in: 1...28)))"
    }

    mutating func time(seconds: Bool) -> String {
        let t = "\(Self.two(rng.int(in: 8...18))):\(Self.two(rng.int(4) * 15))"
        return seconds ? t + ":00" : t
    }

    mutating func hex(_ digits: Int) -> String {
        var out = ""
        let alphabet = Array("0123456789abcdef")
        for _ in 0..<digits { out.append(alphabet[rng.int(16)]) }
        return out
    }

    mutating func formatted(_ format: String, name: String?) -> String {
        switch format {
        case "date": return date()
        case "date-time": return date() + "T" + time(seconds: true) + "Z"
        case "time": return time(seconds: true) + "Z"
        case "email", "idn-email": return "user\(rng.int(in: 1...999))@example.com"
        case "uuid":
            let variant = Array("89ab")[rng.int(4)]
            return "\(hex(8))-\(hex(4))-4\(hex(3))-\(variant)\(hex(3))-\(hex(12))"
        case "uri", "url", "iri", "uri-reference", "iri-reference":
            return "https://example.com/\(Self.stem(name ?? "item"))/\(rng.int(in: 1...999))"
        case "hostname", "idn-hostname": return "host\(rng.int(in: 1...99)).example.com"
        case "ipv4": return "192.0.2.\(rng.int(in: 1...254))"
        case "ipv6": return "2001:db8::\(hex(4))"
        case "duration": return "PT\(rng.int(in: 1...59))M"
        default: return plausible(name)
        }
    }

    static let firstNames = ["Alex", "Maria", "Wei", "Priya", "John", "Fatima", "Lucas", "Yuki"]
    static let lastNames = ["Doe", "Garcia", "Chen", "Patel", "Smith", "Khan", "Silva", "Tanaka"]
    static let cities = ["San Francisco", "Austin", "Chicago", "Seattle", "Boston", "Denver"]
    static let states = ["CA", "TX", "IL", "WA", "MA", "CO"]
    static let streets = ["Main St", "Oak Ave", "Pine Rd", "Elm St", "Cedar Ln"]

    /// A string shaped by the property name (`user_id` → `user_17`).
    mutating func plausible(_ rawName: String?) -> String {
        guard let rawName, !rawName.isEmpty else { return "value \(rng.int(in: 1...999))" }
        let name = Self.snakeCase(rawName)
        let n = rng.int(in: 1...999)
        let words = name.split(separator: "_").map(String.init)
        let last = words.last ?? name
        if name.contains("email") { return "\(Self.firstNames[n % Self.firstNames.count].lowercased())\(n)@example.com" }
        if name.contains("datetime") || name.contains("timestamp") || last == "at" { return date() + "T" + time(seconds: true) + "Z" }
        let notDates: Set<String> = ["update", "updates", "candidate", "candidates", "validate", "mandate"]
        if words.contains(where: { ($0.hasSuffix("date") || $0 == "dates") && !notDates.contains($0) }) || last == "day" { return date() }
        if last == "time" || name == "time" { return time(seconds: false) }
        if name == "first_name" || name == "firstname" || name == "given_name" { return Self.firstNames[n % Self.firstNames.count] }
        if name == "last_name" || name == "lastname" || name == "surname" || name == "family_name" { return Self.lastNames[n % Self.lastNames.count] }
        if ["name", "full_name", "customer_name", "user_name", "person_name"].contains(name) {
            return "\(Self.firstNames[n % Self.firstNames.count]) \(Self.lastNames[(n / 8) % Self.lastNames.count])"
        }
        if name == "username" || name == "login" { return "\(Self.firstNames[n % Self.firstNames.count].lowercased())\(n)" }
        if last == "id" || last == "ids" || name == "id" {
            let stem = words.count > 1 ? words.dropLast().joined(separator: "_") : "id"
            return "\(stem)_\(n)"
        }
        if name.contains("zip") || name.contains("postal") || name.contains("postcode") { return String(10000 + (n * 89) % 90000) }
        if name.contains("phone") || name.contains("mobile") { return "555-01\(Self.two(n % 100))" }
        if name.contains("city") || name == "town" { return Self.cities[n % Self.cities.count] }
        if name == "state" || name == "province" || name == "region" { return Self.states[n % Self.states.count] }
        if name.contains("country") { return "USA" }
        if name == "address2" || name == "address_line2" || name == "address_line_2" { return "Apt \(n % 50 + 1)" }
        if name.contains("address") || name.contains("street") { return "\(n) \(Self.streets[n % Self.streets.count])" }
        if name.contains("url") || name.contains("link") || name.contains("website") { return "https://example.com/\(n)" }
        if name == "expression" || name == "formula" { return "\(n % 50 + 1) + \(n % 7 + 1)" }
        if name.contains("currency") { return "USD" }
        if name.contains("language") || name == "locale" { return "en" }
        if name.contains("color") || name.contains("colour") { return ["red", "blue", "green", "black"][n % 4] }
        return "\(words.joined(separator: " ")) \(n)"
    }

    /// `User Id` / `userId` / `user-id` → `user_id`.
    static func snakeCase(_ text: String) -> String {
        var out = ""
        var previousLower = false
        for ch in text {
            if ch.isUppercase {
                if previousLower { out.append("_") }
                out += ch.lowercased()
                previousLower = false
            } else if ch == " " || ch == "-" || ch == "." {
                if !out.hasSuffix("_") && !out.isEmpty { out.append("_") }
                previousLower = false
            } else {
                out.append(ch)
                previousLower = ch.isLowercase || ch.isNumber
            }
        }
        return out
    }

    /// `item_ids` → `item_id`, `addresses` → `address`, `categories` → `category`.
    static func singular(_ name: String) -> String {
        if name.hasSuffix("ies") && name.count > 4 { return String(name.dropLast(3)) + "y" }
        if name.hasSuffix("sses") || name.hasSuffix("xes") { return String(name.dropLast(2)) }
        if name.hasSuffix("s") && !name.hasSuffix("ss") && name.count > 2 { return String(name.dropLast()) }
        return name
    }

    static func stem(_ name: String) -> String {
        let s = snakeCase(name)
        return s.hasSuffix("_id") ? String(s.dropLast(3)) : s
    }
}
