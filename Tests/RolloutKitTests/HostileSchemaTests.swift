import Foundation
import RolloutKit
import Testing

/// A tool server's schema can demand absurd sizes; the mock agent follows it only up to its caps.
@Suite("Schema sampler caps")
struct HostileSchemaTests {
    /// Every value in a sample, nested ones included.
    static func valueCount(_ v: JSONValue) -> Int {
        switch v {
        case .array(let items): 1 + items.reduce(0) { $0 + valueCount($1) }
        case .object(let o): 1 + o.reduce(0) { $0 + valueCount($1.value) }
        default: 1
        }
    }

    @Test func billionCharacterStringIsCappedAtMaxStringLength() throws {
        let schema = try JSONParser.parse(#"{"type":"string","minLength":1000000000}"#)
        let v = SchemaSampler(seed: 1).sample(schema, name: "note")
        #expect(v.stringValue?.count == SchemaSampler.maxStringLength)
    }

    @Test func billionItemArrayIsCappedAtMaxItems() throws {
        let schema = try JSONParser.parse(#"{"type":"array","minItems":1000000000,"items":{"type":"integer"}}"#)
        let v = SchemaSampler(seed: 1).sample(schema)
        #expect(v.arrayValue?.count == SchemaSampler.maxItems)
    }

    @Test func nestedHugeDemandsStayWithinTheTotalCaps() throws {
        // Arrays of arrays of objects, each asking 10^9 items, 10^9 properties and 10^9-character
        // strings: followed literally this is far beyond any memory.
        let schema = try JSONParser.parse(#"""
            {"$defs":{"N":{"type":"object","minProperties":1000000000,
                           "required":["text","more"],
                           "properties":{"text":{"type":"string","minLength":1000000000},
                                         "more":{"type":"array","minItems":1000000000,"items":{"$ref":"#/$defs/N"}}},
                           "additionalProperties":{"type":"string","minLength":1000000000}}},
             "type":"array","minItems":1000000000,"items":{"$ref":"#/$defs/N"}}
            """#)
        let v = SchemaSampler(seed: 3).sample(schema)
        #expect(Self.valueCount(v) <= SchemaSampler.maxValues + 64 * 16)
        let text = v.jsonText
        // Strings hold at most maxTextCharacters in all; keys and punctuation add the rest.
        #expect(text.utf8.count < SchemaSampler.maxTextCharacters + 1_000_000)
        #expect(SchemaSampler(seed: 3).sample(schema) == v, "still deterministic")
    }

    @Test func ordinaryMinimumsAreStillMet() throws {
        let schema = try JSONParser.parse(#"{"type":"object","minProperties":5,"properties":{"tags":{"type":"array","minItems":3,"items":{"type":"string","minLength":40}}},"required":["tags"]}"#)
        let v = SchemaSampler(seed: 2).sample(schema)
        #expect((v.objectValue?.count ?? 0) >= 5)
        let tags = try #require(v["tags"]?.arrayValue)
        #expect(tags.count >= 3)
        #expect(tags.allSatisfy { ($0.stringValue?.count ?? 0) >= 40 })
    }
}
