import Foundation
@testable import AgentCore

/// Shared builders for the evaluation tests.
enum Eval {
    static func json(_ text: String) -> JSONValue {
        do { return try JSONValue.parse(text) } catch { fatalError("bad test JSON: \(error) in \(text)") }
    }

    static func user(_ keyId: String = "user-1", name: String? = "User 1", _ properties: [(String, String?)] = []) -> EndUser {
        EndUser(keyId: keyId, name: name, properties: properties)!
    }

    /// JSON text of a condition; `value: nil` writes `null`.
    static func condition(_ property: String, _ op: String?, _ value: String?) -> String {
        let opText = op.map { JSONWriter.string(.string($0)) } ?? "null"
        let valueText = value.map { JSONWriter.string(.string($0)) } ?? "null"
        return #"{"property":\#(JSONWriter.string(.string(property))),"op":\#(opText),"value":\#(valueText)}"#
    }

    /// A flag with one rule "R" holding `conditions` (→ variation "on") and a fallthrough to "off".
    static func ruleFlag(conditions: [String], key: String = "flag-a") -> FlagModel {
        FlagModel(json: json(#"""
        {"id":"f1","key":"\#(key)","variationType":"string","isEnabled":true,"isArchived":false,
         "disabledVariationId":"off","exptIncludeAllTargets":false,"targetUsers":[],
         "variations":[{"id":"on","name":"On","value":"ON"},{"id":"off","name":"Off","value":"OFF"}],
         "rules":[{"id":"r1","name":"R","dispatchKey":null,"includedInExpt":false,
                   "conditions":[\#(conditions.joined(separator: ","))],
                   "variations":[{"id":"on","rollout":[0,1],"exptRollout":1}]}],
         "fallthrough":{"dispatchKey":null,"includedInExpt":false,
                        "variations":[{"id":"off","rollout":[0,1],"exptRollout":1}]},
         "tags":[],"updatedAt":"2023-01-28T02:04:55.616Z"}
        """#))
    }

    /// Whether a single condition matches `user`, observed through a full evaluation.
    static func matches(_ property: String, _ op: String?, _ value: String?, _ user: EndUser,
                        segments: [String: SegmentModel] = [:]) -> Bool {
        let flag = ruleFlag(conditions: [condition(property, op, value)])
        let result = Evaluator.evaluate(flag: flag, user: user, segments: segments)
        return result.matchReason == "R"
    }

    static func segment(id: String, included: [String] = [], excluded: [String] = [], rules: [[String]] = []) -> SegmentModel {
        let rulesText = rules.enumerated().map { index, conditions in
            #"{"id":"sr\#(index)","name":"Rule \#(index + 1)","conditions":[\#(conditions.joined(separator: ","))]}"#
        }.joined(separator: ",")
        return SegmentModel(json: json(#"""
        {"id":"\#(id)","envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","name":"s",
         "included":\#(JSONWriter.string(.array(included.map(JSONValue.string)))),
         "excluded":\#(JSONWriter.string(.array(excluded.map(JSONValue.string)))),
         "rules":[\#(rulesText)],"isArchived":false,"updatedAt":"2023-01-28T05:54:43.583Z"}
        """#))
    }

    /// `/work/shared/fixtures/<relative>`, found from this file's location (package root's sibling `shared`).
    static func fixtureURL(_ relative: String, filePath: String = #filePath) -> URL {
        var url = URL(fileURLWithPath: filePath)
        // .../<package>/Tests/AgentCoreTests/Evaluation/EvaluationSupport.swift → .../<package>
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("../shared/fixtures").appendingPathComponent(relative).standardizedFileURL
    }

    static func fixture(_ relative: String) throws -> Data {
        try Data(contentsOf: fixtureURL(relative))
    }
}
