import Testing
@testable import AgentCore

/// One row: attribute value of the user (`nil` = attribute absent), operator, condition value (`nil` = JSON null),
/// expected match.
struct OperatorCase: CustomTestStringConvertible, Sendable {
    let attribute: String?
    let op: String
    let value: String?
    let expected: Bool
    init(_ attribute: String?, _ op: String, _ value: String?, _ expected: Bool) {
        (self.attribute, self.op, self.value, self.expected) = (attribute, op, value, expected)
    }
    var testDescription: String { "\(attribute.map { "\"\($0)\"" } ?? "absent") \(op) \(value.map { "\"\($0)\"" } ?? "null") → \(expected)" }

    func run() -> Bool {
        let user = Eval.user("k", name: "n", attribute.map { [("attr", $0)] } ?? [("other", "x")])
        return Eval.matches("attr", op, value, user)
    }
}

@Suite("Condition operators (spec §5.3, .NET semantics)")
struct OperatorTests {
    @Test("numeric", arguments: [
        OperatorCase("21", "LessThan", "22", true),
        OperatorCase("22", "LessThan", "22", false),
        OperatorCase("22", "LessEqualThan", "22", true),
        OperatorCase("22.0", "LessEqualThan", "22", true),
        OperatorCase("23", "LessEqualThan", "22", false),
        OperatorCase("23", "BiggerThan", "22", true),
        OperatorCase("22", "BiggerThan", "22", false),
        OperatorCase("22", "BiggerEqualThan", "22", true),
        OperatorCase("21.999", "BiggerEqualThan", "22", false),
        OperatorCase(" 21 ", "LessThan", "22", true),
        OperatorCase("1,000", "BiggerThan", "999", true),
        OperatorCase("1e3", "BiggerEqualThan", "1000", true),
        OperatorCase("-5", "LessThan", "-4.5", true),
        OperatorCase("-0", "BiggerEqualThan", "0", true),
        OperatorCase("Infinity", "BiggerThan", "1e308", true),
        OperatorCase("1e400", "BiggerThan", "1e308", true),
        OperatorCase("abc", "LessThan", "22", false),
        OperatorCase("abc", "BiggerEqualThan", "-1e308", false),
        OperatorCase("NaN", "LessThan", "22", false),
        OperatorCase("NaN", "BiggerEqualThan", "22", false),
        OperatorCase("5", "LessThan", "NaN", false),
        OperatorCase("5", "LessThan", "abc", false),
        OperatorCase("inf", "BiggerThan", "1", false),
        OperatorCase("0x10", "BiggerThan", "1", false),
        OperatorCase(nil, "LessThan", "22", false),
        OperatorCase(nil, "BiggerThan", "-22", false),
        OperatorCase("", "LessThan", "22", false),
        OperatorCase("5", "LessThan", nil, false),
    ])
    func numeric(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test("equality", arguments: [
        OperatorCase("us", "Equal", "us", true),
        OperatorCase("US", "Equal", "us", false),
        OperatorCase("us", "NotEqual", "us", false),
        OperatorCase("cn", "NotEqual", "us", true),
        OperatorCase(nil, "Equal", "us", false),
        OperatorCase(nil, "NotEqual", "us", true),   // absent attribute is "" under .NET
        OperatorCase(nil, "Equal", "", true),
        OperatorCase("\u{E9}", "Equal", "e\u{301}", false),   // ordinal, not canonical equivalence
        OperatorCase("\u{E9}", "NotEqual", "e\u{301}", true),
        OperatorCase("x", "Equal", nil, false),
        OperatorCase("x", "NotEqual", nil, false),    // null condition value never matches
    ])
    func equality(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test("contains / starts / ends", arguments: [
        OperatorCase("hello world", "Contains", "lo w", true),
        OperatorCase("hello world", "Contains", "Lo W", false),
        OperatorCase("hello", "Contains", "", true),
        OperatorCase("hello", "NotContain", "xyz", true),
        OperatorCase("hello", "NotContain", "ell", false),
        OperatorCase(nil, "Contains", "a", false),
        OperatorCase(nil, "NotContain", "a", true),
        OperatorCase("cafe\u{301}", "Contains", "caf\u{E9}", false),
        OperatorCase("bob_qa", "EndsWith", "_qa", true),
        OperatorCase("bob_qa", "EndsWith", "_QA", false),
        OperatorCase("bob_qa", "StartsWith", "bob", true),
        OperatorCase("bob_qa", "StartsWith", "qa", false),
        OperatorCase("ab", "StartsWith", "abc", false),
        OperatorCase(nil, "StartsWith", "a", false),
        OperatorCase(nil, "EndsWith", "a", false),
        OperatorCase(nil, "StartsWith", "", true),
        OperatorCase("aaab", "Contains", "aab", true),
        OperatorCase("日本語テキスト", "Contains", "語テ", true),
    ])
    func substrings(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test("regex", arguments: [
        OperatorCase("abc123", "MatchRegex", #"\d+"#, true),          // unanchored search
        OperatorCase("abc123", "MatchRegex", #"^\d+$"#, false),
        OperatorCase("abc123", "NotMatchRegex", #"^\d+$"#, true),
        OperatorCase("abc123", "NotMatchRegex", #"\d"#, false),
        OperatorCase("user@featbit.com", "MatchRegex", #"@featbit\.com$"#, true),
        OperatorCase("ABC", "MatchRegex", "abc", false),               // case-sensitive by default
        OperatorCase(nil, "MatchRegex", "x", false),
        OperatorCase(nil, "NotMatchRegex", "x", true),
        OperatorCase(nil, "MatchRegex", "^$", true),                   // absent attribute is ""
        OperatorCase("abc", "MatchRegex", "[", false),                 // invalid pattern: non-match…
        OperatorCase("abc", "NotMatchRegex", "[", false),              // …for the negation too
        OperatorCase("abc", "MatchRegex", "(?<", false),
    ])
    func regex(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    /// A search that would take seconds (an SDK-sent value of 60,000 letters against an unanchored pattern) is cut
    /// off and matches neither way, like an invalid pattern; a match near the end of a long value is still found.
    @Test func aRegexSearchThatRunsTooLongMatchesNeitherWay() {
        let long = String(repeating: "a", count: 60_000)
        #expect(OperatorCase(long, "MatchRegex", #"[a-z]+@corp\.com"#, false).run() == false)
        #expect(OperatorCase(long, "NotMatchRegex", #"[a-z]+@corp\.com"#, false).run() == false)
        #expect(OperatorCase(String(long.prefix(2_000)) + "@corp.com", "MatchRegex", #"[a-z]+@corp\.com$"#, true).run() == true)
    }

    @Test("lists", arguments: [
        OperatorCase("us", "IsOneOf", #"["cn","us","jp"]"#, true),
        OperatorCase("US", "IsOneOf", #"["cn","us","jp"]"#, false),
        OperatorCase("de", "IsOneOf", #"["cn","us","jp"]"#, false),
        OperatorCase("de", "NotOneOf", #"["cn","us","jp"]"#, true),
        OperatorCase("us", "NotOneOf", #"["cn","us","jp"]"#, false),
        OperatorCase(nil, "IsOneOf", #"["cn"]"#, false),
        OperatorCase(nil, "NotOneOf", #"["cn"]"#, true),
        OperatorCase(nil, "IsOneOf", #"["", "cn"]"#, true),
        OperatorCase("x", "IsOneOf", "[]", false),
        OperatorCase("x", "NotOneOf", "[]", true),
        OperatorCase("x", "IsOneOf", #"["x", null]"#, true),
        OperatorCase("x", "IsOneOf", "null", false),                   // list deserialises to null
        OperatorCase("x", "NotOneOf", "null", true),
        OperatorCase("cn", "IsOneOf", "cn,us", false),                 // invalid JSON: non-match…
        OperatorCase("de", "NotOneOf", "cn,us", false),                // …for the negation too
        OperatorCase("1", "IsOneOf", "[1,2]", false),                  // not a list of strings
        OperatorCase("1", "NotOneOf", "[1,2]", false),
        OperatorCase("a", "IsOneOf", #"{"a":1}"#, false),
        OperatorCase("a", "IsOneOf", "", false),
        OperatorCase("k9", "IsOneOf", #"["k0","k1","k2","k3","k4","k5","k6","k7","k8","k9","k10"]"#, true),
        OperatorCase("K9", "IsOneOf", #"["k0","k1","k2","k3","k4","k5","k6","k7","k8","k9","k10"]"#, false),
        OperatorCase("\u{E9}", "IsOneOf", #"["a","b","c","d","e","f","g","h","i","e\u0301"]"#, false),
    ])
    func lists(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test("booleans", arguments: [
        OperatorCase("true", "IsTrue", "IsTrue", true),
        OperatorCase("TRUE", "IsTrue", "IsTrue", true),
        OperatorCase("True", "IsTrue", "whatever", true),
        OperatorCase("yes", "IsTrue", "IsTrue", false),
        OperatorCase("1", "IsTrue", "IsTrue", false),
        OperatorCase(" true", "IsTrue", "IsTrue", false),
        OperatorCase("false", "IsTrue", "IsTrue", false),
        OperatorCase(nil, "IsTrue", "IsTrue", false),
        OperatorCase("FaLsE", "IsFalse", "IsFalse", true),
        OperatorCase("true", "IsFalse", "IsFalse", false),
        OperatorCase(nil, "IsFalse", "IsFalse", false),
        OperatorCase("true", "IsTrue", nil, false),                    // null condition value
    ])
    func booleans(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test("unknown operators", arguments: [
        OperatorCase("x", "Foo", "x", false),
        OperatorCase("x", "equal", "x", false),                        // op names are case-sensitive
        OperatorCase(nil, "NotExists", "x", false),
    ])
    func unknown(_ c: OperatorCase) { #expect(c.run() == c.expected) }

    @Test func nullOpOnPlainPropertyNeverMatches() {
        #expect(!Eval.matches("attr", nil, "x", Eval.user("k", [("attr", "x")])))
    }

    @Test func builtInAttributes() {
        let user = Eval.user("key-1", name: "bob_qa")
        #expect(Eval.matches("keyId", "Equal", "key-1", user))
        #expect(Eval.matches("name", "EndsWith", "_qa", user))
        // a null name is a null user value: even the negative operators are false
        let anonymous = Eval.user("key-1", name: nil)
        #expect(!Eval.matches("name", "NotEqual", "bob", anonymous))
        #expect(!Eval.matches("name", "NotContain", "b", anonymous))
        #expect(!Eval.matches("name", "NotOneOf", #"["bob"]"#, anonymous))
        // a blank property reads as ""
        #expect(Eval.matches("", "Equal", "", user))
        #expect(Eval.matches(" ", "NotEqual", "x", user))
    }

    @Test func allConditionsOfARuleMustMatch() {
        let user = Eval.user("k", name: "n", [("age", "25"), ("country", "us")])
        let both = Eval.ruleFlag(conditions: [
            Eval.condition("age", "BiggerThan", "22"), Eval.condition("country", "IsOneOf", #"["us"]"#),
        ])
        #expect(Evaluator.evaluate(flag: both, user: user, segments: [:]).matchReason == "R")
        let oneFails = Eval.ruleFlag(conditions: [
            Eval.condition("age", "BiggerThan", "22"), Eval.condition("country", "IsOneOf", #"["cn"]"#),
        ])
        #expect(Evaluator.evaluate(flag: oneFails, user: user, segments: [:]).matchReason == "default")
        let empty = Eval.ruleFlag(conditions: [])
        #expect(Evaluator.evaluate(flag: empty, user: user, segments: [:]).matchReason == "R")
    }
}

@Suite("Shared models across threads")
struct ConcurrentEvaluationTests {
    @Test func oneRegexModelEvaluatedConcurrently() async {
        // NSRegularExpression is shared by every evaluation of a FlagModel; matching must be safe in parallel
        let flag = Eval.ruleFlag(conditions: [Eval.condition("email", "MatchRegex", #"^qa-\d+@example\.com$"#)])
        let mismatches = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var wrong = 0
                    for i in 0..<2_000 {
                        let matching = (i + worker) % 2 == 0
                        let user = Eval.user("u\(i)", [("email", matching ? "qa-\(i)@example.com" : "dev-\(i)@example.com")])
                        let result = Evaluator.evaluate(flag: flag, user: user, segments: [:])
                        if (result.matchReason == "R") != matching { wrong += 1 }
                    }
                    return wrong
                }
            }
            return await group.reduce(0, +)
        }
        #expect(mismatches == 0)
    }
}
