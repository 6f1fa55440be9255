import Foundation
import Testing
@testable import AgentCore

/// Spec Appendix A: every secret, GUID and token vector.
@Suite struct SecretCodecTests {
    @Test(arguments: [
        ("gpnOV3wI3kKAO9q9viC0wQWdKZrVAf2U6gAnxl4lSH3w", "ad99d259-1f50-4ed9-a002-7c65e25487df"),
        ("v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w", "8dc61769-5af3-4d9f-8cb3-d7342e24c3eb"),
        ("E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA", "226b9bf8-4af3-4ffa-9b01-162270e4cd40"),
        ("0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA", "226b9bf8-4af3-4ffa-9b01-162270e4cd40"),
    ])
    func secretDecodesToItsEnvironment(secret: String, envId: String) {
        #expect(SecretCodec.envId(fromSecret: secret)?.featbitString == envId)
    }

    @Test(arguments: ["", " ", "random-string", "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQ", "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQAA"])
    func malformedSecretsAreRejected(secret: String) {
        #expect(SecretCodec.envId(fromSecret: secret) == nil)
    }

    @Test func nilAndAllZeroSecretsAreRejected() {
        #expect(SecretCodec.envId(fromSecret: nil) == nil)
        #expect(SecretCodec.envId(fromSecret: String(repeating: "A", count: 44)) == nil)
    }

    @Test func guidCodecRoundTrips() {
        let uuid = UUID(uuidString: "7dfd851b-6256-44b5-a7b6-bca2d126834b")!
        #expect(SecretCodec.encode(uuid) == "G4X9fVZitUSntryi0SaDSw")
        #expect(SecretCodec.decode("G4X9fVZitUSntryi0SaDSw") == uuid)
        let env = UUID(uuidString: "226b9bf8-4af3-4ffa-9b01-162270e4cd40")!
        #expect(SecretCodec.encode(env) == "-JtrIvNK-k-bARYicOTNQA")
    }
}

@Suite struct StreamingTokenTests {
    @Test(arguments: [
        ("QWSBHgpnOV3wI3kKAO9q9viC0wQWQQBDDDQBZWPXDQSdKZrVAf2U6gAnxl4lSH3w", Int64(1666018247603), "gpnOV3wI3kKAO9q9viC0wQWdKZrVAf2U6gAnxl4lSH3w"),
        ("QBPBHv3faJy3RCUO8d-QQBDDDQBZZQQXHPEJiVdN6waRfGjfNan02Ms9c0LiTD6w", Int64(1666018800754), "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w"),
        ("QBPBSv3faJy3RCUO8d-BDDDQBZZQQXHPEJiVdN6waRfGjfNan02Ms9c0LiTD6w", Int64(1666018800754), "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w"),
    ])
    func vectorsDecode(token: String, timestamp: Int64, secret: String) {
        let decoded = StreamingToken.decode(token)
        #expect(decoded == StreamingToken(secret: secret, timestamp: timestamp))
    }

    @Test(arguments: ["", " ", "4chs", "5chars", "QDUBHYWVkLWNiZT", "QQQQS123"])
    func invalidTokensAreRejected(token: String) {
        #expect(StreamingToken.decode(token) == nil)
    }

    @Test func digitDecoding() {
        func n(_ s: String) -> UInt64? { StreamingToken.decodeNumber(ArraySlice(Array(s.utf8)), max: UInt64(Int64.max)) }
        #expect(n("QQQ") == 0)
        #expect(n("QWS") == 23)
        #expect(n("BWZ") == 128)
        #expect(n("WHH") == 255)
        #expect(n("BDDBXZPZPXSDQ") == 1661784847360)
        #expect(n("BWSPHDXZUQ") == 1234567890)
        #expect(n("QA1") == nil)
        // Position and length are bytes: 256 overflows.
        #expect(StreamingToken.decodeNumber(ArraySlice(Array("WHD".utf8)), max: 255) == nil)
    }

    @Test func pythonStyleEncodingMatchesTheSpecExample() {
        let token = StreamingToken.encode(secret: "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w", timestamp: 1666018800754, position: 14)
        #expect(token == "QBPBSv3faJy3RCUO8d-BDDDQBZZQQXHPEJiVdN6waRfGjfNan02Ms9c0LiTD6w")
        #expect(StreamingToken.decode(token)?.timestamp == 1666018800754)
    }

    @Test func aSecretTooShortToBeRealStillEncodesAndIsRefused() {
        for secret in ["", "a", "ab", "abc"] {
            let token = StreamingToken.encode(secret: secret, timestamp: 1666018800754, position: 9)
            #expect(token.utf8.count == 5 + secret.utf8.count + 13)
            #expect(StreamingToken.decode(token) == nil, "no secret of \(secret.count) bytes is valid")
        }
    }
}

@Suite struct TimestampTests {
    @Test(arguments: [
        ("2023-01-28T02:08:14.804Z", Int64(1674871694804)),
        ("2023-01-19T07:49:19.642555Z", Int64(1674114559642)),
        ("2023-01-16T04:01:56.63Z", Int64(1673841716630)),
        ("2023-01-28T02:08:14Z", Int64(1674871694000)),
        ("2023-01-28T03:08:14.804+01:00", Int64(1674871694804)),
        ("1970-01-01T00:00:00Z", Int64(0)),
    ])
    func parsesAndTruncates(text: String, millis: Int64) {
        #expect(FeatBitTimestamp.milliseconds(fromISO8601: text) == millis)
    }

    @Test(arguments: ["", "yesterday", "2023-13-01T00:00:00Z", "2023-01-28T02:08:14.Z", "2023-01-28T02:08:14.804Zjunk", "2023-01-28"])
    func rejectsGarbage(text: String) {
        #expect(FeatBitTimestamp.milliseconds(fromISO8601: text) == nil)
    }

    @Test func formatsISO8601() {
        #expect(FeatBitTimestamp.iso8601(milliseconds: 1674871694804) == "2023-01-28T02:08:14.804Z")
        #expect(FeatBitTimestamp.iso8601(milliseconds: 0) == "1970-01-01T00:00:00.000Z")
    }
}

@Suite struct JSONTests {
    @Test func roundTripsThroughTheWriter() throws {
        let text = #"{"a":[1,2.5,true,null,"x\"y\n"],"b":{"c":-7,"d":0.1},"e":"中文"}"#
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(JSONWriter.bytes(value)) == value)
        #expect(JSONWriter.string(.object(["b": .integer(1), "a": .number(0.1)])) == #"{"a":0.1,"b":1}"#)
    }

    @Test func rejectsNonJSON() {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse("{not json") }
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse("") }
        // RFC 8259 numbers only, finite ones; no lone surrogates; no invalid UTF-8.
        for text in ["01", "1.", ".5", "+1", "-", "1e", "1e400", "-1e400", #""\ud800""#, "[1] [2]"] {
            #expect(throws: JSONValue.ParseError.self, "\(text)") { try JSONValue.parse(text) }
        }
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    /// Only the strict reader decides what is JSON: what Foundation's lenient decoder would take (a trailing comma)
    /// is refused, and the error says where, in words fit for a 400 body or a log line.
    @Test func errorsSayWhereAndWhy() {
        func error(_ text: String) -> String? {
            do {
                _ = try JSONValue.parse(text)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(error("[1,]") == "invalid JSON at line 1, column 4 (byte 3): unexpected character ']'")
        #expect(error(#"{"a":1,}"#) == "invalid JSON at line 1, column 8 (byte 7): unexpected character '}'")
        #expect(error("{\n  \"a\": tru\n}") == "invalid JSON at line 2, column 8 (byte 9): unexpected character 't'")
        #expect(error(#"{"a":"#) == "invalid JSON at line 1, column 6 (byte 5): unexpected end of the document")
        #expect(error("") == "invalid JSON: the document is empty")
        #expect(error("[1] [2]") == "invalid JSON at line 1, column 5 (byte 4): content after the document")
        #expect(error("[1e999]") == "invalid JSON at line 1, column 2 (byte 1): number out of range")
        #expect(error(String(repeating: "[", count: 600)) == "invalid JSON at line 1, column 512 (byte 511): nested deeper than 511 levels")
        #expect(error("\u{1}") == "invalid JSON at line 1, column 1 (byte 0): unexpected byte 0x1")
    }

    /// What Foundation's JSON decoder gave (the parser before this one), kept: data already stored and compared by
    /// its bytes must not change representation.
    @Test func numbersAndRepeatedKeysReadAsTheDecoderReadThem() throws {
        let cases: [(String, JSONValue)] = [
            ("1.0", .integer(1)), ("1e2", .integer(100)), ("1E+2", .integer(100)), ("-0", .integer(0)),
            ("-0.0", .integer(0)), ("0.1e1", .integer(1)), ("1e-400", .integer(0)), ("1.5", .number(1.5)),
            ("2.5e-1", .number(0.25)), ("1e19", .number(1e19)), ("12345678901234567890", .number(12345678901234567890)),
            ("9007199254740993", .integer(9007199254740993)), ("-9223372036854775808", .integer(.min)),
            (#"{"a":1,"a":2}"#, .object(["a": .integer(1)])),
        ]
        for (text, expected) in cases {
            #expect(try JSONValue.parse(text) == expected, "\(text)")
        }
    }
}

@Suite struct HostileInputTests {
    @Test func deeplyNestedJSONIsRejectedWithoutCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(deep) }
        #expect(InboundMessage.parse(Array(deep.utf8)) == .failure(.notJSON))
        if case .success = UpstreamMessage.parse(Array(deep.utf8)) { Issue.record("deep nesting accepted") }
    }
}
