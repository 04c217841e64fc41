import Foundation
import RolloutKit
import Testing

@Suite("JSON parser")
struct JSONParserTests {
    @Test func compactTextRoundTripsByteForByte() throws {
        let text = #"{"z":1,"a":[true,false,null,"x",{"k":-0.5e+10}],"m":{},"n":[],"s":"café \"q\" \\ \n\t\u0001 😀","u":12345678901234567890}"#
        let value = try JSONParser.parse(text)
        #expect(value.jsonText == text)
        // Parsing our own output gives the same value again.
        #expect(try JSONParser.parse(value.jsonText) == value)
    }

    @Test func whitespaceIsDroppedButNothingElseChanges() throws {
        let value = try JSONParser.parse(" \n{ \"b\" : [ 1 , 2.50 ] ,\r\n \"a\" : { } }\t")
        #expect(value.jsonText == #"{"b":[1,2.50],"a":{}}"#)
    }

    @Test func objectKeysKeepSourceOrder() throws {
        let value = try JSONParser.parse(#"{"b":1,"a":2,"c":3,"0":4}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a", "c", "0"])
        #expect(object.values == [.number("1"), .number("2"), .number("3"), .number("4")])
    }

    @Test func duplicateKeysResolveToTheLastValue() throws {
        let value = try JSONParser.parse(#"{"a":1,"b":2,"a":3}"#)
        #expect(value["a"] == .number("3"))
        #expect(value["b"] == .number("2"))
        // As read, the record keeps both (it is stored exactly); Python-sorted output resolves to the last,
        // like json.dumps(json.loads(text), sort_keys=True) == '{"a": 3, "b": 2}'.
        #expect(value.jsonText == #"{"a":1,"b":2,"a":3}"#)
        #expect(JSONWriter.pythonSorted.string(value) == #"{"a": 3, "b": 2}"#)
    }

    @Test func numbersAreKeptAsLiterals() throws {
        let value = try JSONParser.parse("[1.0, 1e5, 1E+05, -0, 0.1000, 12345678901234567890123, -2.5e-3]")
        #expect(value.arrayValue == [.number("1.0"), .number("1e5"), .number("1E+05"), .number("-0"), .number("0.1000"),
                                     .number("12345678901234567890123"), .number("-2.5e-3")])
        #expect(value.jsonText == "[1.0,1e5,1E+05,-0,0.1000,12345678901234567890123,-2.5e-3]")
        #expect(value[4]?.doubleValue == 0.1)
    }

    @Test func escapesAreDecoded() throws {
        let value = try JSONParser.parse(#""\u00e9\n\t\"\\\/\b\f\r\u0041""#)
        #expect(value == .string("é\n\t\"\\/\u{8}\u{C}\rA"))
    }

    @Test func surrogatePairsBecomeOneScalar() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONParser.parse(#""\uD834\uDD1E!""#) == .string("𝄞!"))
    }

    @Test func loneSurrogatesBecomeReplacementCharacters() throws {
        #expect(try JSONParser.parse(#""\ud800x""#) == .string("\u{FFFD}x"))
        #expect(try JSONParser.parse(#""\udc00""#) == .string("\u{FFFD}"))
        // A high surrogate followed by an escape that is not a low surrogate keeps that escape.
        #expect(try JSONParser.parse(#""\ud83d\u0041""#) == .string("\u{FFFD}A"))
    }

    @Test(arguments: [
        (#"{"a": tru}"#, 6, "expected a value"),
        ("[1, 2,]", 6, "expected a value"),
        (#"{"a":1} x"#, 8, "unexpected text after the JSON value"),
        (#""abc"#, 4, "unterminated string"),
        ("01", 1, "leading zero"),
        ("\"a\u{1}b\"", 2, "control character"),
        ("", 0, "unexpected end of text"),
        (#"{"a" 1}"#, 5, "expected ':'"),
        ("[1 2]", 3, "expected ',' or ']'"),
        ("1.", 2, "no digit after '.'"),
        ("-", 1, "invalid number"),
        (#"{"a":[1,2"#, 9, "truncated"),
    ])
    func errorsCarryTheByteOffset(text: String, offset: Int, reason: String) throws {
        let error = try #require(throws: JSONParseError.self) { try JSONParser.parse(text) }
        #expect(error.offset == offset)
        #expect(error.reason.contains(reason), "reason was: \(error.reason)")
        #expect(error.description.hasPrefix("malformed JSON at byte \(offset + 1): "))
    }

    @Test func invalidEscapeIsRejected() throws {
        let error = try #require(throws: JSONParseError.self) { try JSONParser.parse(#""a\qb""#) }
        #expect(error.reason.contains("invalid escape '\\q'"))
        #expect(error.offset == 3)
    }

    @Test func deepNestingIsRefusedInsteadOfCrashing() throws {
        let text = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        let error = try #require(throws: JSONParseError.self) { try JSONParser.parse(text) }
        #expect(error.reason.contains("nested deeper than 512"))
        let ok = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect(throws: Never.self) { try JSONParser.parse(ok) }
    }
}

@Suite("JSON writer")
struct JSONWriterTests {
    // Expected strings are Python 3's json.dumps(json.loads(text), sort_keys=True), computed with python3.

    @Test func pythonSortedMatchesPythonForNumbers() throws {
        let value = try JSONParser.parse("""
            {"b": 1, "a": [1e-05, 1e16, 0.1, 100, -0.0, 1.5e300, 123456789012345678901234567890, 2.5e-7, 1e22, 12345.678, 0.0001, 1e15, 9007199254740993]}
            """)
        #expect(JSONWriter.pythonSorted.string(value) ==
            #"{"a": [1e-05, 1e+16, 0.1, 100, -0.0, 1.5e+300, 123456789012345678901234567890, 2.5e-07, 1e+22, 12345.678, 0.0001, 1000000000000000.0, 9007199254740993], "b": 1}"#)
    }

    @Test func pythonSortedMatchesPythonForStrings() throws {
        let value = try JSONParser.parse(#"{"é": "café\u00a0ü", "z": "\u0000\u001f\u007f\n\t\"\\/", "emoji": "😀", "A": null, "t": true, "f": false}"#)
        #expect(JSONWriter.pythonSorted.string(value) ==
            #"{"A": null, "emoji": "\ud83d\ude00", "f": false, "t": true, "z": "\u0000\u001f\u007f\n\t\"\\/", "\u00e9": "caf\u00e9\u00a0\u00fc"}"#)
    }

    @Test func pythonSortedSortsNestedKeysAndEscapesNonBMP() throws {
        let value = try JSONParser.parse(#"[{"k": {"y": 2, "x": 1}}, "𝄞\u2028"]"#)
        #expect(JSONWriter.pythonSorted.string(value) == #"[{"k": {"x": 1, "y": 2}}, "\ud834\udd1e\u2028"]"#)
    }

    @Test func pythonSortedOrdersKeysByCodePointNotUTF16() throws {
        let value = try JSONParser.parse(#"{"😀": 1, "\uffff": 2, "\ue000": 3, "a": 0}"#)
        #expect(JSONWriter.pythonSorted.string(value) == #"{"a": 0, "\ue000": 3, "\uffff": 2, "\ud83d\ude00": 1}"#)
    }

    @Test(arguments: [
        ("1E5", "100000.0"), ("1e+2", "100.0"), ("-1.0", "-1.0"), ("0.5e1", "5.0"), ("1.0", "1.0"),
        ("100.0", "100.0"), ("3.14159", "3.14159"), ("1e-4", "0.0001"), ("1e-7", "1e-07"), ("2e16", "2e+16"),
        ("9999999999999998.0", "9999999999999998.0"), ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("5e-324", "5e-324"), ("0.000123", "0.000123"), ("123e-2", "1.23"), ("-0", "0"), ("42", "42"),
    ])
    func pythonSortedNumberMatchesPythonRepr(literal: String, python: String) throws {
        let value = try JSONParser.parse(literal)
        #expect(JSONWriter.pythonSorted.string(value) == python)
    }

    @Test func compactWriterKeepsNonASCIIAndEscapesControls() {
        let value = JSONValue.object(["k": .string("é\u{0}\u{1f}\u{7f}😀\n"), "n": JSONValue(2.5), "i": JSONValue(3)])
        #expect(value.jsonText == "{\"k\":\"é\\u0000\\u001f\u{7f}😀\\n\",\"n\":2.5,\"i\":3}")
    }
}

@Suite("Hashing")
struct HashingTests {
    // Expected digests from Python's hashlib.
    static let thousand = String(repeating: "a", count: 1000)

    @Test(arguments: [
        ("", "d41d8cd98f00b204e9800998ecf8427e", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (thousand, "cabe45dcc9ae5b66ba86600cca6b8ba8", "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
        ("The quick brown fox jumps over the lazy dog", "9e107d9d372bb6826bd81d3542a419d6",
         "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"),
        ("é😀", "62b3afe3b01f6f80152b567d9b216cde", "1184d1f608158eea09d297565575892231550c403aaa913008d867a97cfd5c76"),
    ])
    func md5AndSHA256MatchHashlib(input: String, md5: String, sha256: String) {
        #expect(Hashing.md5Hex(input) == md5)
        #expect(Hashing.sha256Hex(input) == sha256)
    }

    @Test(arguments: [
        (55, "ef1772b6dff9a122358552954ad0df65", "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"),
        (56, "3b0c8ac703f828b04c6c197006d17218", "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"),
        (63, "b06521f39153d618550606be297466d5", "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"),
        (64, "014842d480b571495a4a0363793f7367", "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"),
        (65, "c743a45e0d2e6a95cb859adae0248435", "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"),
        (119, "8a7bd0732ed6a28ce75f6dabc90e1613", "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"),
        (120, "5f61c0ccad4cac44c75ff505e1f1e537", "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"),
    ])
    func paddingBoundariesMatchHashlib(length: Int, md5: String, sha256: String) {
        let input = String(repeating: "a", count: length)
        #expect(Hashing.md5Hex(input) == md5)
        #expect(Hashing.sha256Hex(input) == sha256)
    }

    @Test func incrementalSHA256EqualsOneShot() {
        let bytes = Array(Self.thousand.utf8)
        for step in [1, 7, 63, 64, 65, 999] {
            var h = SHA256()
            var i = 0
            while i < bytes.count {
                h.update(Array(bytes[i..<min(i + step, bytes.count)]))
                i += step
            }
            #expect(h.hexDigest() == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3", "step \(step)")
        }
    }

    /// `contentHash` is compared with hashes stored by earlier versions, so its values are pinned.
    /// Expected values from an independent Python port of the documented algorithm (FNV-1a over
    /// little-endian 64-bit words, bytes for the tail, length mixed in, murmur-style avalanche).
    @Test(arguments: [
        ("", -1_388_729_422_223_754_158), ("a", -1_381_724_693_890_386_252), ("foobar", 7_278_078_248_861_389_075),
        ("12345678", 5_914_341_185_554_280_837), ("123456789", 6_431_507_330_427_591_863),
        ("0123456789abcdef", 5_312_997_983_374_816_917), ("0123456789abcdefg", 6_736_837_970_823_832_100),
        ("Grüß dich 😀 — café", -3_332_200_049_374_502_651),
    ] as [(String, Int64)])
    func contentHashIsStable(input: String, expected: Int64) {
        #expect(Hashing.contentHash(input) == expected)
        let bytes = Array(input.utf8)
        #expect(bytes.withUnsafeBytes { Hashing.contentHash($0) } == expected, "bytes and String overloads agree")
    }

    @Test func contentHashNoticesEveryOneByteChange() {
        for length in 0...40 {
            let base = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let h = base.withUnsafeBytes { Hashing.contentHash($0) }
            for i in 0..<length {
                var changed = base
                changed[i] ^= 0x01
                #expect(changed.withUnsafeBytes { Hashing.contentHash($0) } != h, "length \(length), byte \(i)")
            }
            let longer = base + [0]
            #expect(longer.withUnsafeBytes { Hashing.contentHash($0) } != h, "a trailing zero byte changes the hash (length \(length))")
        }
    }
}
