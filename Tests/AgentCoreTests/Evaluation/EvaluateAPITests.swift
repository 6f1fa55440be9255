import Testing
@testable import AgentCore

@Suite("POST /api/public/featureflag/evaluate (spec §6.8)")
struct EvaluateAPITests {
    static let user = #"{"keyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","name":"tester","customizedProperties":[]}"#

    /// The fake data with tags added to two flags.
    static func environment() throws -> EnvironmentSnapshot {
        let base = try ClientPayloadTests.fakeEnvironment()
        var flags: [String: DataItem] = [:]
        for item in base.flags.values {
            guard case .object(var members) = item.json else { continue }
            switch item.key {
            case "returns-true": members["tags"] = .array([.string("web"), .string("mobile")])
            case "return-10p-true": members["tags"] = .array([.string("web")])
            default: break
            }
            flags[item.id] = try DataItem(kind: .flag, json: .object(members))
        }
        return EnvironmentSnapshot(envId: base.envId, secrets: [], flags: flags, segments: base.segments)
    }

    func keys(_ body: String) throws -> [String] {
        let result = EvaluateAPI.answer(bodyBytes: Array(body.utf8), in: try Self.environment())
        guard case .success(let bytes) = result else {
            Issue.record("unexpected failure \(result)")
            return []
        }
        return try JSONValue.parse(bytes).arrayValue?.compactMap { $0["key"]?.stringValue } ?? []
    }

    @Test func answersTheSpecExample() throws {
        let body = #"{"user":\#(Self.user),"filter":{"tagFilterMode":"and","tags":["web"],"keys":["return-10p-true"],"timestamp":0}}"#
        let result = EvaluateAPI.answer(bodyBytes: Array(body.utf8), in: try Self.environment())
        let bytes = try result.get()
        #expect(try JSONValue.parse(bytes) == Eval.json(#"""
        [{"key":"return-10p-true","variation":{"id":"f7280f87-b277-4cec-9f8f-66e2f890e845","type":"boolean","value":"false","matchReason":"default","sendToExperiment":true}}]
        """#))
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix(#"[{"key":"return-10p-true","variation":{"id":"f7280f87-b277-4cec-9f8f-66e2f890e845","type":"boolean","value":"false","matchReason":"default","sendToExperiment":true}}"#))
    }

    @Test func filters() throws {
        let all = ["returns-true", "return-10p-true", "individual-targeting", "two-custom-rules", "custom-rule-with-segment"]
        #expect(try keys(#"{"user":\#(Self.user)}"#) == all)
        #expect(try keys(#"{"user":\#(Self.user),"filter":null}"#) == all)
        #expect(try keys(#"{"user":\#(Self.user),"filter":{}}"#) == all)
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tags":[],"keys":[]}}"#) == all)
        // and (default): every listed tag
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tags":["web","mobile"]}}"#) == ["returns-true"])
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":"and","tags":["web"]}}"#) == ["returns-true", "return-10p-true"])
        // or: any listed tag
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":"or","tags":["mobile","nope"]}}"#) == ["returns-true"])
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":"and","tags":["mobile","nope"]}}"#) == [])
        // null or blank mode: tags ignored
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":null,"tags":["nope"]}}"#) == all)
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":" ","tags":["nope"]}}"#) == all)
        // keys
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"keys":["two-custom-rules","missing","returns-true"]}}"#) == ["returns-true", "two-custom-rules"])
        // timestamp: strictly newer
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"timestamp":1674885300000}}"#) == ["custom-rule-with-segment"])
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"timestamp":1674885485421}}"#) == [])
        // case-insensitive member names
        #expect(try keys(#"{"User":\#(Self.user),"Filter":{"TagFilterMode":"or","Tags":["mobile"]}}"#) == ["returns-true"])

        // Repeated tags count once ("and"), and long lists (sets, not scans) keep their meaning.
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tags":["web","web","web"]}}"#) == ["returns-true", "return-10p-true"])
        let manyKeys = (0..<5_000).map { "\"k\($0)\"" }.joined(separator: ",")
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"keys":[\#(manyKeys),"two-custom-rules"]}}"#) == ["two-custom-rules"])
        let manyTags = (0..<5_000).map { "\"t\($0)\"" }.joined(separator: ",")
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tagFilterMode":"or","tags":[\#(manyTags),"mobile"]}}"#) == ["returns-true"])
        #expect(try keys(#"{"user":\#(Self.user),"filter":{"tags":[\#(manyTags),"web"]}}"#) == [])
    }

    @Test("400 answers", arguments: [
        (#"{}"#, "A valid user is required."),
        (#"{"user":null}"#, "A valid user is required."),
        (#"{"user":{"keyId":"  "}}"#, "A valid user is required."),
        (#"{"user":{"keyId":"u","customizedProperties":[{"name":"a","value":1}]}}"#, "A valid user is required."),
        (#"{"user":{"keyId":"u"},"filter":{"tagFilterMode":"AND"}}"#, "Invalid tag filter mode: AND. Valid values are 'and' or 'or'."),
        (#"{"user":{"keyId":"u"},"filter":{"tagFilterMode":"any","tags":[]}}"#, "Invalid tag filter mode: any. Valid values are 'and' or 'or'."),
        // the user is checked before the mode
        (#"{"user":{"keyId":""},"filter":{"tagFilterMode":"xor"}}"#, "A valid user is required."),
    ])
    func badRequests(body: String, text: String) throws {
        let result = EvaluateAPI.answer(bodyBytes: Array(body.utf8), in: try Self.environment())
        guard case .failure(let failure) = result else {
            Issue.record("expected a failure")
            return
        }
        #expect(failure.text == text)
    }

    @Test func malformedBodies() throws {
        for body in ["not json", "[]", #"{"user":{"keyId":"u"},"filter":[]}"#, #"{"user":{"keyId":"u"},"filter":{"tags":"web"}}"#,
                     #"{"user":{"keyId":"u"},"filter":{"keys":[1]}}"#, #"{"user":{"keyId":"u"},"filter":{"timestamp":"1"}}"#,
                     #"{"user":{"keyId":"u"},"filter":{"timestamp":1.5}}"#, #"{"user":{"keyId":"u"},"filter":{"tagFilterMode":1}}"#] {
            let result = EvaluateAPI.answer(bodyBytes: Array(body.utf8), in: nil)
            guard case .failure(.malformedBody) = result else {
                Issue.record("expected malformedBody for \(body), got \(result)")
                continue
            }
        }
    }

    @Test func noEnvironmentIsAnEmptyList() throws {
        let result = EvaluateAPI.answer(body: Eval.json(#"{"user":{"keyId":"u"}}"#), in: nil)
        #expect(try result.get() == Array("[]".utf8))
    }
}
