import Testing
@testable import AgentCore

@Suite("Segment membership (spec §5.3.1)")
struct SegmentTests {
    static let s1 = "0779d76b-afc6-4886-ab65-af8c004273ad"
    static let s2 = "556c11b2-f08a-4e10-b0b7-af8e008125b3"

    func inSegment(_ ids: String, _ user: EndUser, _ segments: [SegmentModel]) -> (isIn: Bool, isNotIn: Bool) {
        let byId = Dictionary(uniqueKeysWithValues: segments.map { ($0.id, $0) })
        return (Eval.matches(SegmentCondition.isInSegment, nil, ids, user, segments: byId),
                Eval.matches(SegmentCondition.isNotInSegment, nil, ids, user, segments: byId))
    }

    @Test func includedExcludedAndRules() {
        let segment = Eval.segment(
            id: Self.s1, included: ["true-1", "both"], excluded: ["false-1", "both"],
            rules: [[Eval.condition("age", "LessEqualThan", "22"), Eval.condition("isMember", "IsTrue", "IsTrue")]])
        let list = #"["\#(Self.s1)"]"#
        #expect(inSegment(list, Eval.user("true-1"), [segment]) == (true, false))
        #expect(inSegment(list, Eval.user("false-1", [("age", "20"), ("isMember", "true")]), [segment]) == (false, true))
        #expect(inSegment(list, Eval.user("both"), [segment]) == (false, true))          // excluded wins
        #expect(inSegment(list, Eval.user("u", [("age", "20"), ("isMember", "TRUE")]), [segment]) == (true, false))
        #expect(inSegment(list, Eval.user("u", [("age", "30"), ("isMember", "true")]), [segment]) == (false, true))
        #expect(inSegment(list, Eval.user("u"), [segment]) == (false, true))
    }

    @Test func anyRuleAndAnyListedSegment() {
        let a = Eval.segment(id: Self.s1, rules: [[Eval.condition("age", "BiggerThan", "30")]])
        let b = Eval.segment(id: Self.s2, rules: [[Eval.condition("age", "BiggerThan", "60")],
                                                 [Eval.condition("country", "Equal", "fr")]])
        let both = #"["\#(Self.s1)","\#(Self.s2)"]"#
        #expect(inSegment(both, Eval.user("u", [("age", "40")]), [a, b]) == (true, false))
        #expect(inSegment(both, Eval.user("u", [("country", "fr")]), [a, b]) == (true, false))
        #expect(inSegment(both, Eval.user("u", [("age", "20")]), [a, b]) == (false, true))
    }

    @Test func emptyRuleMatchesEveryoneAndNoRulesNoOne() {
        let everyone = Eval.segment(id: Self.s1, rules: [[]])
        let noOne = Eval.segment(id: Self.s2)
        #expect(inSegment(#"["\#(Self.s1)"]"#, Eval.user("u"), [everyone]) == (true, false))
        #expect(inSegment(#"["\#(Self.s2)"]"#, Eval.user("u"), [noOne]) == (false, true))
    }

    @Test func missingSegmentIsNotAMembership() {
        // documented choice: an unknown segment id is a segment the user is not in (.NET throws)
        let known = Eval.segment(id: Self.s1, included: ["u"])
        #expect(inSegment(#"["\#(Self.s2)"]"#, Eval.user("u"), [known]) == (false, true))
        #expect(inSegment(#"["\#(Self.s2)","\#(Self.s1)"]"#, Eval.user("u"), [known]) == (true, false))
    }

    @Test func emptyAndInvalidLists() {
        let segment = Eval.segment(id: Self.s1, rules: [[]])
        #expect(inSegment("[]", Eval.user("u"), [segment]) == (false, true))            // empty: "not in" is true
        #expect(inSegment("not json", Eval.user("u"), [segment]) == (false, false))     // invalid: non-match
        #expect(inSegment("null", Eval.user("u"), [segment]) == (false, false))
        #expect(inSegment(#"[1]"#, Eval.user("u"), [segment]) == (false, false))
        #expect(inSegment(#"{"a":"b"}"#, Eval.user("u"), [segment]) == (false, false))
        #expect(!Eval.matches(SegmentCondition.isInSegment, nil, nil, Eval.user("u"), segments: [Self.s1: segment]))
        #expect(!Eval.matches(SegmentCondition.isNotInSegment, nil, nil, Eval.user("u"), segments: [Self.s1: segment]))
    }

    @Test func segmentConditionIsRecognisedByPropertyWhateverTheOp() {
        let segment = Eval.segment(id: Self.s1, included: ["u"])
        #expect(Eval.matches(SegmentCondition.isInSegment, "Equal", #"["\#(Self.s1)"]"#, Eval.user("u"),
                             segments: [Self.s1: segment]))
    }

    @Test func segmentRulesOnlyKnowPlainOperators() {
        // a membership condition nested in a segment rule is an ordinary attribute with a null op: never matches
        let inner = Eval.segment(id: Self.s2, included: ["u"])
        let outer = Eval.segment(id: Self.s1, rules: [[Eval.condition(SegmentCondition.isInSegment, nil, #"["\#(Self.s2)"]"#)]])
        #expect(inSegment(#"["\#(Self.s1)"]"#, Eval.user("u"), [outer, inner]) == (false, true))
    }

    @Test func archivedSegmentStillEvaluates() {
        let model = SegmentModel(json: Eval.json(#"""
        {"id":"\#(Self.s1)","included":["u"],"excluded":[],"rules":[],"isArchived":true,"updatedAt":"2023-01-28T05:54:43.583Z"}
        """#))
        #expect(model.isArchived)
        #expect(model.updatedAt == 1674885283583)
        #expect(model.matches(Eval.user("u")))
    }

    @Test func theFakeDataSegments() {
        // segment-01 of the fake data: age ≤ 22, country in [cn,us,es], name ≠ bob, isMember true
        let segment = SegmentModel(json: Eval.json(#"""
        {"id":"0779d76b-afc6-4886-ab65-af8c004273ad","included":["true-6","true-5"],"excluded":["false-1"],
         "rules":[{"id":"r","name":"Rule 1","conditions":[
           {"property":"age","op":"LessEqualThan","value":"22"},
           {"property":"country","op":"IsOneOf","value":"[\"cn\",\"us\",\"es\"]"},
           {"property":"name","op":"NotEqual","value":"bob"},
           {"property":"isMember","op":"IsTrue","value":"IsTrue"}]}],"isArchived":false}
        """#))
        let alice = Eval.user("a", name: "alice", [("age", "22"), ("country", "es"), ("isMember", "True")])
        #expect(segment.matches(alice))
        #expect(!segment.matches(Eval.user("a", name: "bob", [("age", "22"), ("country", "es"), ("isMember", "True")])))
        #expect(!segment.matches(Eval.user("a", name: nil, [("age", "22"), ("country", "es"), ("isMember", "True")])))
        #expect(segment.matches(Eval.user("true-5")))
    }
}
