import Foundation
import Testing
@testable import AgentCore

/// Flags read back from featbit.db are skimmed (`JSONReader.topLevelStrings`, `DataItem(storedFlag:)`) instead of
/// parsed into a tree: they must accept and refuse exactly what the strict parser (JSONReader) does, and give the same
/// item.
@Suite struct StoredFlagTests {
    static func skim(_ text: String, _ keys: Set<String> = ["id", "k"]) -> [String: String]? {
        Array(text.utf8).withUnsafeBytes { JSONReader.topLevelStrings($0, keys: keys) }
    }

    @Test(arguments: [
        #"{}"#, #" {"id":"a"} "#, #"{"id":"a","id":"b"}"#, #"{"id":1,"k":"x"}"#, #"{"k":"\u00e9\n\"","id":"é"}"#,
        #"{"a":[1,-0,2.5,1e2,1E-3,true,false,null,{"b":[]},"ü"],"id":"x"}"#, #"{"id":"\ud83d\ude00"}"#,
        // Refused by the parser, so by the skim too:
        #"{"id":"a",}"#, #"{"id":"a""#, #"{"id":01}"#, #"{"id":1.}"#, #"{"id":1e999}"#, #"{"id":"\x"}"#,
        #"{"id":"\ud800"}"#, #"{"id":"a"} x"#, #"[1]"#, #""id""#, #"{"a":[1,]}"#, #"{"a":tru}"#, "{\"a\":\"tab\tin\"}",
        #"{"a":-}"#, #"{id:1}"#, #"{"a":{"b":}}"#, "",
    ])
    func acceptsExactlyWhatTheParserAccepts(text: String) {
        // JSONReader, the strict parser behind JSONValue.parse; stored rows are JSONWriter's output.
        let parsed = Array(text.utf8).withUnsafeBytes { JSONReader.parse($0) }
        let skimmed = Self.skim(text)
        let isObject = if case .object = parsed { true } else { false }
        #expect((skimmed != nil) == isObject, "\(text)")
        if let skimmed, let parsed {
            for key in ["id", "k"] { #expect(skimmed[key] == parsed[key]?.stringValue, "\(key) of \(text)") }
        }
    }

    /// The skim reads strings eight bytes at a time: a quote, escape, control character or non-ASCII byte at any
    /// position of a long string must still be seen.
    @Test func longStringsWithASpecialByteAtEveryPosition() {
        let specials: [[UInt8]] = [Array(#"""#.utf8), Array(#"\"#.utf8), Array(#"A"#.utf8), [0x0A], [0x1F], [0x7F],
                                   Array("é".utf8), [0xC3], [0xFF], Array("😀".utf8), [UInt8(ascii: "\"")]]
        for special in specials {
            for position in 0..<24 {
                let text = Array(repeating: UInt8(ascii: "a"), count: position) + special
                    + Array(repeating: UInt8(ascii: "b"), count: 24 - position)
                let document = Array(#"{"id":""#.utf8) + text + Array(#"","k":"tail"}"#.utf8)
                let parsed = document.withUnsafeBytes { JSONReader.parse($0) }
                let skimmed = document.withUnsafeBytes { JSONReader.topLevelStrings($0, keys: ["id", "k"]) }
                #expect((parsed != nil) == (skimmed != nil), "\(special) at \(position)")
                #expect(skimmed?["id"] == parsed?["id"]?.stringValue && skimmed?["k"] == parsed?["k"]?.stringValue)
                // The same string as a value the skim only steps over.
                let skipped = Array(#"{"x":""#.utf8) + text + Array(#"","id":"after"}"#.utf8)
                let parsedSkipped = skipped.withUnsafeBytes { JSONReader.parse($0) }
                let skimmedSkipped = skipped.withUnsafeBytes { JSONReader.topLevelStrings($0, keys: ["id"]) }
                #expect((parsedSkipped != nil) == (skimmedSkipped != nil), "skipped \(special) at \(position)")
                #expect(skimmedSkipped?["id"] == parsedSkipped?["id"]?.stringValue)
            }
        }
    }

    @Test func refusesInvalidUTF8AndDeepNesting() {
        var bytes = Array(#"{"id":"a"#.utf8) + [0xFF] + Array(#""}"#.utf8)
        #expect(bytes.withUnsafeBytes { JSONReader.topLevelStrings($0, keys: ["id"]) } == nil)
        bytes = Array(#"{"a":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: 600) + Array(repeating: UInt8(ascii: "]"), count: 600) + [UInt8(ascii: "}")]
        #expect(bytes.withUnsafeBytes { JSONReader.topLevelStrings($0, keys: ["id"]) } == nil)
    }

    @Test func aStoredFlagIsTheSameItemAsTheParsedOne() throws {
        let flags = try #require(try Fixtures.fakeDataBootstrap()["items"]?.arrayValue?.first?["featureFlags"]?.arrayValue)
        let segments = try #require(try Fixtures.fakeDataBootstrap()["items"]?.arrayValue?.first?["segments"]?.arrayValue)
        #expect(flags.count > 3)
        for json in flags {
            let parsed = try DataItem(kind: .flag, json: json)
            let stored = try DataItem(storedFlag: parsed.encoded)
            #expect(stored.id == parsed.id && stored.envId == parsed.envId && stored.updatedAt == parsed.updatedAt)
            #expect(stored.key == parsed.key && stored.encoded == parsed.encoded && stored.versionHash == parsed.versionHash)
            #expect(stored.flagModel?.variations == parsed.flagModel?.variations)
            for segment in segments {
                let id = try #require(segment["id"]?.stringValue)
                #expect(stored.references(segmentId: id) == parsed.references(segmentId: id))
            }
        }
        // Some fixture flag does use a segment, so the references above were not all false.
        let referencing = try flags.map { try DataItem(kind: .flag, json: $0) }.filter { flag in
            segments.contains { flag.references(segmentId: $0["id"]?.stringValue ?? "") }
        }
        #expect(!referencing.isEmpty)
    }

    @Test func aStoredRowThatIsNotAFlagIsRefusedWithAReason() {
        #expect(throws: DataSetError.self) { try DataItem(storedFlag: Array(#"{"id":"x"}"#.utf8)) }
        #expect(throws: DataSetError.self) { try DataItem(storedFlag: Array("not json".utf8)) }
        #expect(throws: DataSetError.self) {
            try DataItem(storedFlag: Array(#"{"id":"x","envId":"not-a-guid","updatedAt":"2024-01-01T00:00:00Z"}"#.utf8))
        }
    }
}
