import AgentCore
import Testing

/// Inputs scripts/fuzz found that broke an invariant, each kept as the test of its fix.
@Suite struct FuzzRegressionTests {
    /// `json`: JSONReader refused this document (invalid UTF-8 and control characters in a string), and
    /// `JSONValue.parse` then returned what Foundation's decoder made of it, so the same bytes were JSON on one path
    /// and not on another. Now only JSONReader decides.
    @Test func jsonValueParseRefusesWhatJSONReaderRefuses() {
        let inputs: [[UInt8]] = [
            Array(#"{"id":"a","id":""#.utf8) + [0xFF, 0xFF, 0xFF, 0x01, 0x00] + Array(#""}"#.utf8),
            Array(#"{"a":""#.utf8) + [0x01] + Array(#""}"#.utf8),
            Array(#"[""#.utf8) + [0xC3, 0x28] + Array(#""]"#.utf8),
            Array(repeating: UInt8(ascii: "["), count: 600) + Array(repeating: UInt8(ascii: "]"), count: 600),
        ]
        for input in inputs {
            #expect(input.withUnsafeBytes { JSONReader.parse($0) } == nil)
            #expect((try? JSONValue.parse(input)) == nil, "accepted \(input)")
        }
    }

    /// The error still says where and why, in words.
    @Test func parseErrorsStillExplain() {
        do {
            _ = try JSONValue.parse(Array("{\"a\":".utf8))
            Issue.record("parsed a truncated document")
        } catch {
            #expect(!error.description.isEmpty)
        }
    }
}
