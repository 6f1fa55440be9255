import Foundation
import Testing
@testable import AgentCore

/// Renders JSON the way the .NET Verify library wrote FeatBit's golden snapshots: unquoted names and strings, every
/// distinct GUID replaced by `Guid_N` in order of first appearance, `null` members and empty arrays omitted,
/// two-space indentation. Member order comes from `order` (JSONValue objects are unordered).
struct VerifyRenderer {
    let order: [String]
    private var guids: [String: Int] = [:]

    init(order: [String]) { self.order = order }

    mutating func render(_ value: JSONValue) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        return out
    }

    private mutating func write(_ value: JSONValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent + 2)
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += String(i)
        case .number(let d): out += String(d)
        case .string(let s):
            if UUID(uuidString: s) != nil, s.count == 36 {
                let n = guids[s.lowercased()] ?? (guids.count + 1)
                guids[s.lowercased()] = n
                out += "Guid_\(n)"
            } else {
                out += s
            }
        case .array(let elements):
            out += "[\n"
            for (index, element) in elements.enumerated() {
                out += pad
                write(element, indent: indent + 2, into: &out)
                out += index == elements.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .object(let members):
            let keys = members.keys
                .filter { key in
                    switch members[key]! {
                    case .null: return false
                    case .array(let a): return !a.isEmpty
                    default: return true
                    }
                }
                .sorted { (order.firstIndex(of: $0) ?? Int.max, $0) < (order.firstIndex(of: $1) ?? Int.max, $1) }
            out += "{\n"
            for (index, key) in keys.enumerated() {
                out += pad + key + ": "
                write(members[key]!, indent: indent + 2, into: &out)
                out += index == keys.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        }
    }
}

@Suite("Client data-sync payload (spec §2.4.2) against FeatBit's golden snapshots")
struct ClientPayloadTests {
    static let envId = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
    static let patchCursor: Int64 = 1674885300000
    static let order = ["messageType", "data", "eventType", "userKeyId", "featureFlags", "id", "variation",
                        "variationType", "variationId", "matchReason", "variationOptions", "value",
                        "sendToExperiment", "timestamp"]

    static func tester() -> EndUser {
        EndUser.parse(Eval.json(#"""
        {"keyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","name":"tester",
         "customizedProperties":[{"name":"email","value":"tester@featbit.com"},{"name":"role","value":"qa"},
                                 {"name":"location","value":"127.0.0.1"}]}
        """#))!
    }

    static func fakeEnvironment() throws -> EnvironmentSnapshot {
        let flagsJSON = try JSONValue.parse(Array(Eval.fixture("featbit-fake-data/flags.json")))
        let segmentsJSON = try JSONValue.parse(Array(Eval.fixture("featbit-fake-data/segments.json")))
        let parsed = try DataSetParser.parseLoosePatch(.object(["featureFlags": flagsJSON, "segments": segmentsJSON]))
        #expect(parsed.refused.isEmpty, "FeatBit's own fake data is valid")
        let flags = parsed.environments.flatMap(\.flags)
        let segments = parsed.environments.flatMap(\.segments)
        return EnvironmentSnapshot(
            envId: envId, secrets: [],
            flags: Dictionary(uniqueKeysWithValues: flags.map { ($0.id, $0) }),
            segments: Dictionary(uniqueKeysWithValues: segments.map { ($0.id, $0) }))
    }

    static func golden(_ name: String) throws -> String {
        var text = String(decoding: try Eval.fixture("featbit-golden/DataSyncTests.DoClientDataSyncAsync_type=\(name).verified.txt"), as: UTF8.self)
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        return text.replacingOccurrences(of: "\r\n", with: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func compareLineByLine(_ rendered: String, _ golden: String) {
        let ours = rendered.split(separator: "\n", omittingEmptySubsequences: false)
        let theirs = golden.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(ours.count == theirs.count)
        for (index, (a, b)) in zip(ours, theirs).enumerated() {
            #expect(a == b, "line \(index + 1)")
        }
    }

    @Test func fullMatchesTheGoldenSnapshot() throws {
        let bytes = ClientPayload.reply(to: 0, user: Self.tester(), in: try Self.fakeEnvironment())
        var renderer = VerifyRenderer(order: Self.order)
        compareLineByLine(renderer.render(try JSONValue.parse(bytes)), try Self.golden("full"))
    }

    @Test func patchMatchesTheGoldenSnapshot() throws {
        let bytes = ClientPayload.reply(to: Self.patchCursor, user: Self.tester(), in: try Self.fakeEnvironment())
        var renderer = VerifyRenderer(order: Self.order)
        compareLineByLine(renderer.render(try JSONValue.parse(bytes)), try Self.golden("patch"))
    }

    /// The same facts, field by field with the real ids (independent of the renderer).
    @Test func fullFieldByField() throws {
        let bytes = ClientPayload.reply(to: 0, user: Self.tester(), in: try Self.fakeEnvironment())
        // member order of the real output follows .NET's
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix(
            #"{"messageType":"data-sync","data":{"eventType":"full","userKeyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","featureFlags":[{"id":"returns-true","variation":"true","variationType":"boolean","variationId":"3da96792-debf-4878-905a-c9b5f9178cd0","matchReason":"default","variationOptions":[{"id":"3da96792-debf-4878-905a-c9b5f9178cd0","value":"true"},{"id":"19cf9fb6-b790-4877-ab96-b5c5e73e0b46","value":"false"}],"sendToExperiment":true,"timestamp":1674871495616},"#))
        let message = try JSONValue.parse(bytes)
        #expect(message["messageType"] == .string("data-sync"))
        let data = try #require(message["data"])
        #expect(data["eventType"] == .string("full"))
        #expect(data["userKeyId"] == .string("3db19c81-e149-4b97-8a0d-79d34531fe59"))
        #expect(data["segments"] == nil)
        let flags = try #require(data["featureFlags"]?.arrayValue)
        let expected: [(key: String, value: String, variationId: String, timestamp: Int64)] = [
            ("returns-true", "true", "3da96792-debf-4878-905a-c9b5f9178cd0", 1674871495616),
            ("return-10p-true", "false", "f7280f87-b277-4cec-9f8f-66e2f890e845", 1674871694804),
            ("individual-targeting", "true", "b74ab5bf-618d-438a-a2f4-ff1f15210809", 1674872452102),
            ("two-custom-rules", "true", "e43f54c0-65f9-46a0-8684-3ad64c1fc933", 1674884975885),
            ("custom-rule-with-segment", "true", "d3e3b90b-9a63-4493-8e2f-25b145e8199d", 1674885485421),
        ]
        #expect(flags.count == expected.count)
        for (flag, want) in zip(flags, expected) {
            #expect(flag["id"] == .string(want.key))
            #expect(flag["variation"] == .string(want.value), "\(want.key)")
            #expect(flag["variationId"] == .string(want.variationId), "\(want.key)")
            #expect(flag["variationType"] == .string("boolean"))
            #expect(flag["matchReason"] == .string("default"), "\(want.key)")
            #expect(flag["sendToExperiment"] == .bool(true))
            #expect(flag["timestamp"] == .integer(want.timestamp))
            let options = try #require(flag["variationOptions"]?.arrayValue)
            #expect(options.count == 2)
            #expect(options.allSatisfy { $0.objectValue?.keys.sorted() == ["id", "value"] })
            #expect(options.map { $0["value"] } == [.string("true"), .string("false")])
            #expect(options.contains { $0["id"] == .string(want.variationId) && $0["value"] == .string(want.value) })
        }
    }

    @Test func patchFieldByField() throws {
        let env = try Self.fakeEnvironment()
        let message = try JSONValue.parse(ClientPayload.reply(to: Self.patchCursor, user: Self.tester(), in: env))
        #expect(message["data"]?["eventType"] == .string("patch"))
        let flags = try #require(message["data"]?["featureFlags"]?.arrayValue)
        #expect(flags.map { $0["id"] } == [.string("custom-rule-with-segment")])
        #expect(flags.first?["variationId"] == .string("d3e3b90b-9a63-4493-8e2f-25b145e8199d"))
        // an empty patch is still a message; the HTTP body is empty instead
        let empty = try JSONValue.parse(ClientPayload.reply(to: 1674885485421, user: Self.tester(), in: env))
        #expect(empty == Eval.json(#"{"messageType":"data-sync","data":{"eventType":"patch","userKeyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","featureFlags":[]}}"#))
        #expect(ClientPayload.latestAllBody(timestamp: 1674885485421, user: Self.tester(), in: env) == [])
        #expect(ClientPayload.latestAllBody(timestamp: Self.patchCursor, user: Self.tester(), in: env)
                == ClientPayload.reply(to: Self.patchCursor, user: Self.tester(), in: env))
        // no environment: an empty full
        let none = try JSONValue.parse(ClientPayload.reply(to: 0, user: Self.tester(), in: nil))
        #expect(none["data"]?["featureFlags"] == .array([]))
    }

    @Test func otherUsersOfTheFakeData() throws {
        let env = try Self.fakeEnvironment()
        func evaluate(_ key: String, _ user: EndUser) throws -> EvaluationResult {
            let item = try #require(env.sortedFlags.first { $0.key == key })
            return Evaluator.evaluate(flag: FlagModel(item: item), user: user, segments: { id in
                env.segments[id].map(SegmentModel.init(item:))
            })
        }
        // individually targeted false users
        let targeted = try evaluate("individual-targeting", Eval.user("false-3"))
        #expect(targeted == EvaluationResult(variationId: "e228dd33-9a0d-43c7-ba94-752fbede1cec", value: "false", matchReason: "targeted", sendToExperiment: true))
        // two-custom-rules, Rule 1: age > 22 and name ends with _qa
        let rule1 = try evaluate("two-custom-rules", Eval.user("u", name: "x_qa", [("age", "23")]))
        #expect(rule1.matchReason == "Rule 1")
        #expect(rule1.value == "true")
        // Rule 2 splits 20/80 on keyId: whatever the split, the reason is the rule name
        let rule2 = try evaluate("two-custom-rules", Eval.user("u", [("country", "gb")]))
        #expect(rule2.matchReason == "Rule 2")
        #expect(rule2.value == (Evaluator.bucket(of: "two-custom-rulesu") <= 0.2 ? "true" : "false"))
        // custom-rule-with-segment, Rule 2 (segment-02: age > 20)
        let seg2 = try evaluate("custom-rule-with-segment", Eval.user("u", [("age", "21")]))
        #expect(seg2 == EvaluationResult(variationId: "4cbc7313-f12b-4eb3-9d50-2711505e58a9", value: "false", matchReason: "Rule 2", sendToExperiment: true))
        // segment-01 included user → Rule 1
        #expect(try evaluate("custom-rule-with-segment", Eval.user("true-1")).matchReason == "Rule 1")
        // segment-01 excluded user with age 21 → skips Rule 1, Rule 2 matches
        #expect(try evaluate("custom-rule-with-segment", Eval.user("false-1", [("age", "21")])).matchReason == "Rule 2")
    }

    @Test func archivedFlagInTheClientPayload() {
        let flag = FlagModel(json: Eval.json(#"""
        {"id":"x","key":"gone","variationType":null,"isArchived":true,"isEnabled":true,
         "variations":[{"id":"a","name":"A","value":"1"}],"updatedAt":"2023-01-28T02:04:55.616Z"}
        """#))
        let result = Evaluator.evaluate(flag: flag, user: Eval.user(), segments: [:])
        let bytes = ClientPayload.dataSync(eventType: .patch, userKeyId: "user-1", evaluated: [(flag, result)])
        #expect(Eval.json(String(decoding: bytes, as: UTF8.self)) == Eval.json(#"""
        {"messageType":"data-sync","data":{"eventType":"patch","userKeyId":"user-1","featureFlags":[
          {"id":"gone","variation":null,"variationType":"string","variationId":null,"matchReason":"flag archived",
           "variationOptions":[{"id":"a","value":"1"}],"sendToExperiment":false,"timestamp":1674871495616}]}}
        """#))
    }

    @Test func specialCharactersAreEscaped() throws {
        let flag = FlagModel(json: Eval.json(#"""
        {"id":"x","key":"k\"ey","variationType":"json","isEnabled":true,"exptIncludeAllTargets":false,
         "variations":[{"id":"a","name":"A","value":"{\"a\":\"b\\n\"}"}],
         "rules":[{"name":"Rule \"1\"\n","conditions":[],"variations":[{"id":"a","rollout":[0,1],"exptRollout":1}]}],
         "updatedAt":"2023-01-28T02:04:55.616Z"}
        """#))
        let bytes = ClientPayload.dataSync(eventType: .full, user: Eval.user("u\"1"), flags: [flag], segments: { _ in nil })
        let flagJSON = try #require(try JSONValue.parse(bytes)["data"]?["featureFlags"]?.arrayValue?.first)
        #expect(flagJSON["id"] == .string("k\"ey"))
        #expect(flagJSON["variation"] == .string("{\"a\":\"b\\n\"}"))
        #expect(flagJSON["matchReason"] == .string("Rule \"1\"\n"))
        #expect(try JSONValue.parse(bytes)["data"]?["userKeyId"] == .string("u\"1"))
    }
}
