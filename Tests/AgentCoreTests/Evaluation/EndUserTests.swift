import Testing
@testable import AgentCore

@Suite("EndUser (spec §4.3, §5.2)")
struct EndUserTests {
    @Test func parsesTheCanonicalShape() throws {
        let user = try #require(EndUser.parse(Eval.json(#"""
        {"keyId":"97f202d6-db9e-4da2-a465-1b35f8621858","name":"rick",
         "customizedProperties":[{"name":"role","value":"bad-guy"},{"name":"中文名","value":"瑞克"}]}
        """#)))
        #expect(user.keyId == "97f202d6-db9e-4da2-a465-1b35f8621858")
        #expect(user.name == "rick")
        #expect(user.customizedProperties == [.init(name: "role", value: "bad-guy"), .init(name: "中文名", value: "瑞克")])
        #expect(user.value(of: "中文名") == "瑞克")
    }

    @Test("member names are case-insensitive", arguments: ["keyId", "keyid", "KeyId", "KEYID"])
    func caseInsensitiveMembers(spelling: String) throws {
        let user = try #require(EndUser.parse(Eval.json(#"""
        {"\#(spelling)":"u1","NAME":"n","CustomizedProperties":[{"Name":"a","VALUE":"b"}]}
        """#)))
        #expect(user.keyId == "u1")
        #expect(user.name == "n")
        #expect(user.customizedProperties == [.init(name: "a", value: "b")])
    }

    @Test("invalid users", arguments: [
        #"{}"#,
        #"{"keyId":null}"#,
        #"{"keyId":""}"#,
        #"{"keyId":"  \t"}"#,
        #"{"keyId":"\u00a0\u2003"}"#,
        #"{"keyId":42}"#,
        #"{"keyId":"u","name":5}"#,
        #"{"keyId":"u","name":true}"#,
        #"{"keyId":"u","customizedProperties":[{"name":"age","value":30}]}"#,
        #"{"keyId":"u","customizedProperties":[{"name":"vip","value":true}]}"#,
        #"{"keyId":"u","customizedProperties":[{"name":1,"value":"x"}]}"#,
        #"{"keyId":"u","customizedProperties":{"name":"a","value":"b"}}"#,
        #"{"keyId":"u","customizedProperties":["a"]}"#,
        #"["u"]"#,
        #""u""#,
        #"null"#,
    ])
    func invalid(text: String) {
        #expect(EndUser.parse(Eval.json(text)) == nil)
    }

    @Test func nullsAreAccepted() throws {
        let user = try #require(EndUser.parse(Eval.json(#"""
        {"keyId":"u","name":null,"customizedProperties":[{"name":"a","value":null},null,{"name":null,"value":"x"}],"extra":1}
        """#)))
        #expect(user.name == nil)
        #expect(user.customizedProperties == [.init(name: "a", value: nil), .init(name: nil, value: "x")])
        #expect(EndUser.parse(Eval.json(#"{"keyId":"u","customizedProperties":null}"#))?.customizedProperties == [])
    }

    @Test func valueOfFollowsDotNet() {
        let user = Eval.user("k1", name: "bob", [("role", "qa"), ("role", "second"), ("empty", nil), ("Name", "custom")])
        #expect(user.value(of: "keyId") == "k1")
        #expect(user.value(of: "name") == "bob")
        #expect(user.value(of: "role") == "qa")          // first entry wins
        #expect(user.value(of: "Role") == "")            // ordinal: no such property
        #expect(user.value(of: "empty") == "")           // null value → ""
        #expect(user.value(of: "missing") == "")         // absent → ""
        #expect(user.value(of: "") == "")                // blank property → ""
        #expect(user.value(of: "  ") == "")
        #expect(user.value(of: "KeyId") == "")           // only the exact built-in spelling
        #expect(user.value(of: "Name") == "custom")
        #expect(Eval.user("k2", name: nil).value(of: "name") == nil)
    }

    @Test func jsonRoundTrips() throws {
        let user = Eval.user("k1", name: nil, [("a", "1"), ("b", nil)])
        #expect(user.json == Eval.json(#"""
        {"keyId":"k1","name":null,"customizedProperties":[{"name":"a","value":"1"},{"name":"b","value":null}]}
        """#))
        #expect(EndUser.parse(user.json) == user)
    }
}
