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

    /// `sdk-handshake`: a token whose secret holds "\r\n" decoded (decode counts bytes) but did not encode back
    /// (encode counted Characters, and "\r\n" is one). Now both count bytes.
    @Test func aTokenWithCRLFInItsSecretEncodesBackToItself() throws {
        let input = "QWQBS6\r\n\0\0\0\0\0\0KUW0OK38cBXQQQQQQQUQBQWSEQVZ4aW15QQ0yfCi98Oh2eAQ"
        let token = try #require(StreamingToken.decode(input))
        #expect(token.secret.utf8.count == 44 && token.secret.contains("\r\n"))
        for position in [2, 7, 20] {
            #expect(StreamingToken.decode(StreamingToken.encode(secret: token.secret, timestamp: token.timestamp,
                                                                 position: position)) == token, "position \(position)")
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
