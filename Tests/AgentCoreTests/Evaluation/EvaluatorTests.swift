import Testing
@testable import AgentCore

@Suite("Evaluation order, reasons, rollout (spec §5.1, §5.4)")
struct EvaluatorTests {
    static let tester = EndUser(keyId: "3db19c81-e149-4b97-8a0d-79d34531fe59", name: "tester", properties: [
        ("email", "tester@featbit.com"), ("role", "qa"), ("location", "127.0.0.1"),
    ])!

    /// A boolean flag; the pieces given as JSON fragments.
    static func flag(key: String = "flag-a", archived: Bool = false, enabled: Bool = true, exptAll: Bool = true,
                     targets: String = "[]", rules: String = "[]",
                     fallthrough defaultRule: String = #"{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"v-true","rollout":[0,1],"exptRollout":1}]}"#
    ) -> FlagModel {
        FlagModel(json: Eval.json(#"""
        {"id":"id-\#(key)","key":"\#(key)","variationType":"boolean","isArchived":\#(archived),"isEnabled":\#(enabled),
         "disabledVariationId":"v-false","exptIncludeAllTargets":\#(exptAll),
         "variations":[{"id":"v-true","name":"True","value":"true"},{"id":"v-false","name":"False","value":"false"}],
         "targetUsers":\#(targets),"rules":\#(rules),"fallthrough":\#(defaultRule),"tags":[],
         "updatedAt":"2023-01-28T02:08:14.804Z"}
        """#))
    }

    static let targets = #"[{"keyIds":["a","b"],"variationId":"v-false"},{"keyIds":["b","c"],"variationId":"v-true"}]"#
    static let rules = #"""
    [{"id":"r1","name":"Rule 1","dispatchKey":null,"includedInExpt":false,
      "conditions":[{"property":"role","op":"Equal","value":"qa"}],
      "variations":[{"id":"v-false","rollout":[0,1],"exptRollout":1}]},
     {"id":"r2","name":"Rule 2","dispatchKey":null,"includedInExpt":false,
      "conditions":[{"property":"role","op":"NotEqual","value":"nobody"}],
      "variations":[{"id":"v-true","rollout":[0,1],"exptRollout":1}]}]
    """#

    @Test func archivedComesFirst() {
        let flag = Self.flag(archived: true, enabled: false, targets: Self.targets)
        let result = Evaluator.evaluate(flag: flag, user: Eval.user("a"), segments: [:])
        #expect(result == EvaluationResult(variationId: nil, value: nil, matchReason: "flag archived", sendToExperiment: false))
    }

    @Test func disabledServesTheDisabledVariation() {
        let flag = Self.flag(enabled: false, targets: Self.targets, rules: Self.rules)
        let result = Evaluator.evaluate(flag: flag, user: Eval.user("c", [("role", "qa")]), segments: [:])
        #expect(result == EvaluationResult(variationId: "v-false", value: "false", matchReason: "flag disabled", sendToExperiment: false))
    }

    @Test func targetingInOrderBeforeRules() {
        let flag = Self.flag(exptAll: true, targets: Self.targets, rules: Self.rules)
        let b = Evaluator.evaluate(flag: flag, user: Eval.user("b", [("role", "qa")]), segments: [:])
        #expect(b == EvaluationResult(variationId: "v-false", value: "false", matchReason: "targeted", sendToExperiment: true))
        let c = Evaluator.evaluate(flag: flag, user: Eval.user("c"), segments: [:])
        #expect(c == EvaluationResult(variationId: "v-true", value: "true", matchReason: "targeted", sendToExperiment: true))
        // keyIds are compared ordinally
        #expect(Evaluator.evaluate(flag: flag, user: Eval.user("C"), segments: [:]).matchReason == "Rule 2")
        // targeted: sendToExperiment is exptIncludeAllTargets
        let notAll = Self.flag(exptAll: false, targets: Self.targets)
        #expect(Evaluator.evaluate(flag: notAll, user: Eval.user("a"), segments: [:]).sendToExperiment == false)
    }

    @Test func firstMatchingRuleNamesTheReason() {
        let flag = Self.flag(rules: Self.rules)
        let qa = Evaluator.evaluate(flag: flag, user: Eval.user("x", [("role", "qa")]), segments: [:])
        #expect(qa.matchReason == "Rule 1")
        #expect(qa.variationId == "v-false")
        let dev = Evaluator.evaluate(flag: flag, user: Eval.user("x", [("role", "dev")]), segments: [:])
        #expect(dev.matchReason == "Rule 2")
        #expect(dev.value == "true")
    }

    @Test func fallthroughIsDefault() {
        let flag = Self.flag(rules: #"[{"id":"r","name":"Only qa","dispatchKey":null,"includedInExpt":false,"conditions":[{"property":"role","op":"Equal","value":"qa"}],"variations":[{"id":"v-false","rollout":[0,1],"exptRollout":1}]}]"#)
        let result = Evaluator.evaluate(flag: flag, user: Eval.user("x"), segments: [:])
        #expect(result == EvaluationResult(variationId: "v-true", value: "true", matchReason: "default", sendToExperiment: true))
    }

    @Test func workedExampleReturn10pTrue() {
        // spec §5.4: bucket("return-10p-true" + keyId) = 0.618… → the [0.1, 1] entry → "false"
        let flag = Self.flag(key: "return-10p-true", fallthrough: #"""
        {"dispatchKey":"keyId","includedInExpt":true,"variations":[
          {"id":"v-true","rollout":[0,0.1],"exptRollout":1},{"id":"v-false","rollout":[0.1,1],"exptRollout":1}]}
        """#)
        let result = Evaluator.evaluate(flag: flag, user: Self.tester, segments: [:])
        #expect(result == EvaluationResult(variationId: "v-false", value: "false", matchReason: "default", sendToExperiment: true))
    }

    static func split(_ at: Double, dispatchKey: String = "null") -> String {
        #"{"dispatchKey":\#(dispatchKey),"includedInExpt":true,"variations":[{"id":"v-true","rollout":[0,\#(at)],"exptRollout":1},{"id":"v-false","rollout":[\#(at),1],"exptRollout":1}]}"#
    }

    @Test func dispatchKeyIsFlagKeyPlusKeyIdByDefault() {
        // bucket("my-flag" + "user-1") = 0.3866…
        let user = Eval.user("user-1")
        #expect(Evaluator.evaluate(flag: Self.flag(key: "my-flag", fallthrough: Self.split(0.38)), user: user, segments: [:]).value == "false")
        #expect(Evaluator.evaluate(flag: Self.flag(key: "my-flag", fallthrough: Self.split(0.39)), user: user, segments: [:]).value == "true")
        // blank dispatchKey → keyId as well
        #expect(Evaluator.evaluate(flag: Self.flag(key: "my-flag", fallthrough: Self.split(0.39, dispatchKey: #""  ""#)), user: user, segments: [:]).value == "true")
    }

    @Test func dispatchKeyOnACustomAttribute() {
        // bucket("test" + "-value") = 0.1465…, whatever the keyId
        let user = Eval.user("zzz", [("suffix", "-value")])
        #expect(Evaluator.evaluate(flag: Self.flag(key: "test", fallthrough: Self.split(0.14, dispatchKey: #""suffix""#)), user: user, segments: [:]).value == "false")
        #expect(Evaluator.evaluate(flag: Self.flag(key: "test", fallthrough: Self.split(0.15, dispatchKey: #""suffix""#)), user: user, segments: [:]).value == "true")
        // the same through a rule's dispatchKey
        let rules = #"[{"id":"r","name":"Split","dispatchKey":"suffix","includedInExpt":false,"conditions":[],"variations":[{"id":"v-true","rollout":[0,0.15],"exptRollout":1},{"id":"v-false","rollout":[0.15,1],"exptRollout":1}]}]"#
        let viaRule = Evaluator.evaluate(flag: Self.flag(key: "test", rules: rules), user: user, segments: [:])
        #expect(viaRule.matchReason == "Split")
        #expect(viaRule.value == "true")
        // an absent attribute contributes "": the key is the flag key alone
        let bucketOfKeyAlone = Evaluator.bucket(of: "test")
        let absent = Evaluator.evaluate(flag: Self.flag(key: "test", fallthrough: Self.split(bucketOfKeyAlone, dispatchKey: #""suffix""#)),
                                        user: Eval.user("zzz"), segments: [:])
        #expect(absent.value == "true")  // closed interval: the bucket itself is in [0, b]
        // a null name contributes ""
        let nameless = Evaluator.evaluate(flag: Self.flag(key: "test", fallthrough: Self.split(bucketOfKeyAlone, dispatchKey: #""name""#)),
                                          user: Eval.user("zzz", name: nil), segments: [:])
        #expect(nameless.value == "true")
    }

    @Test func noRangeContainsTheBucketGivesTheEmptyVariation() {
        let flag = Self.flag(key: "return-10p-true", exptAll: false, fallthrough: #"{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"v-true","rollout":[0,0.1],"exptRollout":1}]}"#)
        let result = Evaluator.evaluate(flag: flag, user: Self.tester, segments: [:])
        #expect(result == EvaluationResult(variationId: "", value: "", matchReason: "default", sendToExperiment: false))
        let noOne = Self.flag(fallthrough: #"{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"v-true","rollout":[0,0],"exptRollout":1}]}"#)
        #expect(Evaluator.evaluate(flag: noOne, user: Self.tester, segments: [:]).variationId == "")
    }

    @Test func malformedDataNeverFails() {
        let odd = FlagModel(json: Eval.json(#"""
        {"key":"odd","isEnabled":true,"variations":[{"id":"a","value":"A"},{"value":"orphan"}],
         "targetUsers":[{"keyIds":["t",5,null]}],
         "rules":[{"name":"bad rollout","conditions":[],"variations":[{"id":"a","rollout":[0]},{"id":"a","rollout":"x"},{"id":"a","rollout":[0,"1"]}]}],
         "fallthrough":null}
        """#))
        #expect(odd.variations == [FlagVariation(id: "a", value: "A")])
        #expect(odd.variationType == nil)
        #expect(Evaluator.evaluate(flag: odd, user: Eval.user("t"), segments: [:])
                == EvaluationResult(variationId: "", value: "", matchReason: "targeted", sendToExperiment: false))
        #expect(Evaluator.evaluate(flag: odd, user: Eval.user("u"), segments: [:])
                == EvaluationResult(variationId: "", value: "", matchReason: "bad rollout", sendToExperiment: false))
        // not even an object
        let nothing = FlagModel(json: .string("flag"))
        #expect(Evaluator.evaluate(flag: nothing, user: Eval.user("u"), segments: [:]).matchReason == "flag disabled")
        // an unknown variation id resolves to the empty variation
        let unknown = Self.flag(fallthrough: #"{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"nope","rollout":[0,1],"exptRollout":1}]}"#)
        #expect(Evaluator.evaluate(flag: unknown, user: Eval.user("u"), segments: [:]).variationId == "")
    }

    @Test func segmentRuleInAFlag() {
        let segmentId = "0779d76b-afc6-4886-ab65-af8c004273ad"
        let rules = #"[{"id":"r","name":"In seg","dispatchKey":null,"includedInExpt":false,"conditions":[{"property":"User is in segment","op":null,"value":"[\"\#(segmentId)\"]"}],"variations":[{"id":"v-false","rollout":[0,1],"exptRollout":1}]}]"#
        let flag = Self.flag(rules: rules)
        let segment = Eval.segment(id: segmentId, included: ["member"])
        #expect(Evaluator.evaluate(flag: flag, user: Eval.user("member"), segments: [segmentId: segment]).matchReason == "In seg")
        #expect(Evaluator.evaluate(flag: flag, user: Eval.user("other"), segments: [segmentId: segment]).matchReason == "default")
        #expect(Evaluator.evaluate(flag: flag, user: Eval.user("member"), segments: [:]).matchReason == "default")
        #expect(flag.referencedSegmentIds == [segmentId])
    }
}

@Suite("sendToExperiment (spec §5.5)")
struct SendToExperimentTests {
    static func flag(exptAll: Bool, includedInExpt: Bool, exptRollout: Double, rollout: String = "[0.1,1]") -> FlagModel {
        EvaluatorTests.flag(key: "return-10p-true", exptAll: exptAll, fallthrough: #"""
        {"dispatchKey":"keyId","includedInExpt":\#(includedInExpt),"variations":[
          {"id":"v-true","rollout":[0,0.1],"exptRollout":\#(exptRollout)},
          {"id":"v-false","rollout":\#(rollout),"exptRollout":\#(exptRollout)}]}
        """#)
    }

    func send(_ flag: FlagModel) -> Bool {
        Evaluator.evaluate(flag: flag, user: EvaluatorTests.tester, segments: [:]).sendToExperiment
    }

    @Test func exptIncludeAllTargetsWins() {
        #expect(send(Self.flag(exptAll: true, includedInExpt: false, exptRollout: 0)))
    }

    @Test func ruleNotInExperiment() {
        #expect(!send(Self.flag(exptAll: false, includedInExpt: false, exptRollout: 1)))
    }

    @Test func zeroExptRollout() {
        #expect(!send(Self.flag(exptAll: false, includedInExpt: true, exptRollout: 0)))
    }

    @Test func fullExperimentRollout() {
        // upper = min(1 / 0.9, 1) = 1 → everyone
        #expect(send(Self.flag(exptAll: false, includedInExpt: true, exptRollout: 1)))
    }

    @Test func partialExperimentRolloutUsesTheExptKey() {
        // bucket("expt" + dispatchKey) = 0.10480…; width of the selected [0.1, 1] entry = 0.9
        #expect(!send(Self.flag(exptAll: false, includedInExpt: true, exptRollout: 0.09)))  // upper 0.1
        #expect(send(Self.flag(exptAll: false, includedInExpt: true, exptRollout: 0.1)))    // upper 0.111…
    }

    @Test func noSelectedEntryMeansZeroWidth() {
        let flag = EvaluatorTests.flag(key: "return-10p-true", exptAll: false, fallthrough: #"{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"v-true","rollout":[0,0.1],"exptRollout":1}]}"#)
        #expect(!send(flag))
    }

    @Test func disabledAndArchivedNeverSend() {
        #expect(!send(EvaluatorTests.flag(enabled: false, exptAll: true)))
        #expect(!send(EvaluatorTests.flag(archived: true, exptAll: true)))
    }

    @Test func ruleMatchUsesTheRulesIncludedInExpt() {
        let rules = #"[{"id":"r","name":"R","dispatchKey":null,"includedInExpt":false,"conditions":[],"variations":[{"id":"v-true","rollout":[0,1],"exptRollout":1}]}]"#
        #expect(!send(EvaluatorTests.flag(exptAll: false, rules: rules)))
        let inExpt = rules.replacingOccurrences(of: #""includedInExpt":false"#, with: #""includedInExpt":true"#)
        #expect(send(EvaluatorTests.flag(exptAll: false, rules: inExpt)))
    }
}
