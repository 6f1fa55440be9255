import Testing
@testable import AgentCore

/// OFREP evaluation (OFREPContext, OFREPResult, OFREPAnswer) as pure functions of the request and an environment.
@Suite("OFREP evaluation")
struct OFREPTests {
    static let tester = "3db19c81-e149-4b97-8a0d-79d34531fe59"

    static func fake() throws -> EnvironmentSnapshot { try ClientPayloadTests.fakeEnvironment() }

    /// An environment of the fake data's segments and `flags` (JSON texts; `envId` and `updatedAt` filled in).
    static func environment(_ flags: [String], segments: [DataItem] = []) throws -> EnvironmentSnapshot {
        var items: [String: DataItem] = [:]
        for (index, text) in flags.enumerated() {
            guard case .object(var members) = Eval.json(text) else { continue }
            members["envId"] = members["envId"] ?? .string(ClientPayloadTests.envId)
            members["updatedAt"] = members["updatedAt"] ?? .string("2024-01-01T00:00:0\(index).000Z")
            let item = try DataItem(kind: .flag, json: .object(members))
            items[item.id] = item
        }
        return EnvironmentSnapshot(envId: ClientPayloadTests.envId, secrets: [], flags: items,
                                   segments: Dictionary(uniqueKeysWithValues: segments.map { ($0.id, $0) }))
    }

    /// A flag `key` of `type` with variations `values` (ids `v0`, `v1`, …), everyone getting `v<serve>`.
    static func flag(_ key: String, type: String, values: [String], serve: Int = 0, rules: String = "[]") -> String {
        let variations = values.enumerated().map { #"{"id":"v\#($0)","name":"n\#($0)","value":\#(JSONWriter.string(.string($1)))}"# }
        return #"""
        {"id":"id-\#(key)","key":"\#(key)","variationType":"\#(type)","isEnabled":true,"isArchived":false,
         "disabledVariationId":"v0","exptIncludeAllTargets":false,"targetUsers":[],"rules":\#(rules),
         "variations":[\#(variations.joined(separator: ","))],
         "fallthrough":{"dispatchKey":null,"includedInExpt":false,"variations":[{"id":"v\#(serve)","rollout":[0,1],"exptRollout":1}]},
         "tags":[]}
        """#
    }

    static func body(_ context: String) -> [UInt8] { Array(#"{"context":\#(context)}"#.utf8) }

    static func single(_ key: String, _ context: String, in env: EnvironmentSnapshot) -> (Int, JSONValue?) {
        let answer = OFREPAnswer.single(flagKey: key, body: body(context), in: env)
        return (answer.status, try? JSONValue.parse(answer.body))
    }

    // MARK: - Context → FeatBit user

    @Test func contextMapsToAFeatBitUser() throws {
        let context = #"""
        {"targetingKey":"u-1","name":"Ann","country":"us","age":42,"score":-3.5,"big":1e20,"beta":true,"off":false,
         "tags":["a",1,true],"profile":{"b":2,"a":"x"},"gone":null,"keyId":"not the key"}
        """#
        let user = try OFREPContext.user(fromBody: Self.body(context)).get()
        #expect(user.keyId == "u-1")
        #expect(user.name == "Ann")
        #expect(user.customizedProperties.map(\.name) == ["age", "beta", "big", "country", "keyId", "off", "profile", "score", "tags"])
        #expect(user.value(of: "country") == "us")
        #expect(user.value(of: "age") == "42")
        #expect(user.value(of: "score") == "-3.5")
        #expect(user.value(of: "big") == "1e+20")
        #expect(user.value(of: "beta") == "true")
        #expect(user.value(of: "off") == "false")
        #expect(user.value(of: "tags") == #"["a",1,true]"#)
        #expect(user.value(of: "profile") == #"{"a":"x","b":2}"#)
        #expect(user.value(of: "gone") == "")
        #expect(user.value(of: "keyId") == "u-1")  // the built-in wins, as for FeatBit SDK users
        #expect(user.value(of: "targetingKey") == "")
        let numericName = try OFREPContext.user(fromBody: Self.body(#"{"targetingKey":"u","name":7}"#)).get()
        #expect(numericName.name == "7")
        let noName = try OFREPContext.user(fromBody: Self.body(#"{"targetingKey":"u","name":null}"#)).get()
        #expect(noName.name == nil)
    }

    @Test(arguments: [
        ("", OFREPFailure.Code.targetingKeyMissing),
        ("  \n", .targetingKeyMissing),
        ("{}", .targetingKeyMissing),
        (#"{"context":null}"#, .targetingKeyMissing),
        (#"{"context":{}}"#, .targetingKeyMissing),
        (#"{"context":{"targetingKey":null}}"#, .targetingKeyMissing),
        (#"{"context":{"targetingKey":"  "}}"#, .targetingKeyMissing),
        (#"{"context":{"targetingKey":42}}"#, .invalidContext),
        (#"{"context":{"targetingKey":["u"]}}"#, .invalidContext),
        (#"{"context":"u-1"}"#, .invalidContext),
        (#"{"context":[]}"#, .invalidContext),
        ("{", .parseError),
        ("not json", .parseError),
        (#"[{"context":{"targetingKey":"u"}}]"#, .parseError),
        (#""u""#, .parseError),
        ("{\"context\":{\"targetingKey\":\"\u{1}\"}}", .parseError),
    ])
    func badRequestsGetTheirErrorCode(body: String, code: OFREPFailure.Code) {
        guard case .failure(let failure) = OFREPContext.user(fromBody: Array(body.utf8)) else {
            Issue.record("accepted \(body)")
            return
        }
        #expect(failure.code == code)
        #expect(!failure.details.isEmpty)
        #expect(failure.httpStatus == 400)
    }

    @Test func typedAttributesMatchRulesAsTheSameStringsFromAFeatBitSDK() throws {
        let env = try Self.fake()
        // Rule 1 of two-custom-rules: age > 22 and name ends with "_qa".
        let (status, json) = Self.single("two-custom-rules", #"{"targetingKey":"u-9","name":"bob_qa","age":23}"#, in: env)
        #expect(status == 200)
        #expect(json?["metadata"]?["matchReason"] == .string("Rule 1"))
        #expect(json?["reason"] == .string("TARGETING_MATCH"))
        // segment-01's rule: age <= 22, country in [cn, us, es], name != bob, isMember is true.
        let member = #"{"targetingKey":"seg-user","name":"ann","age":21.0,"country":"es","isMember":true}"#
        #expect(Self.single("custom-rule-with-segment", member, in: env).1?["metadata"]?["matchReason"] == .string("Rule 1"))
        let notMember = #"{"targetingKey":"seg-user","name":"ann","age":21,"country":"es","isMember":false}"#
        #expect(Self.single("custom-rule-with-segment", notMember, in: env).1?["metadata"]?["matchReason"] != .string("Rule 1"))
    }

    // MARK: - Reasons

    @Test func reasonsFollowFeatBitsEvaluationStep() throws {
        let env = try Self.fake()
        func reason(_ key: String, _ keyId: String, _ extra: String = "") -> JSONValue? {
            Self.single(key, #"{"targetingKey":"\#(keyId)"\#(extra)}"#, in: env).1?["reason"]
        }
        #expect(reason("returns-true", "anyone") == .string("STATIC"))
        #expect(reason("return-10p-true", Self.tester) == .string("SPLIT"))
        #expect(reason("individual-targeting", "true-3") == .string("TARGETING_MATCH"))
        #expect(reason("individual-targeting", "someone-else") == .string("DEFAULT"))
        #expect(reason("two-custom-rules", "u", #","country":"cn""#) == .string("SPLIT"))  // Rule 2: 20% / 80%
        #expect(reason("custom-rule-with-segment", "u", #","name":"ann","age":21,"country":"es","isMember":"true""#) == .string("SPLIT"))
        #expect(reason("two-custom-rules", "u", #","country":"fr""#) == .string("DEFAULT"))
    }

    @Test func aRuleNamedLikeAFeatBitReasonIsStillARule() throws {
        let rule = #"[{"id":"r","name":"default","dispatchKey":null,"includedInExpt":false,"conditions":[],"variations":[{"id":"v1","rollout":[0,1],"exptRollout":1}]}]"#
        let env = try Self.environment([Self.flag("f", type: "string", values: ["a", "b"], rules: rule)])
        let json = Self.single("f", #"{"targetingKey":"u"}"#, in: env).1
        #expect(json?["reason"] == .string("TARGETING_MATCH"))
        #expect(json?["variant"] == .string("v1"))
        #expect(json?["metadata"]?["matchReason"] == .string("default"))
    }

    @Test func disabledFlagsAreDisabled() throws {
        let env = try Self.environment([Self.flag("off", type: "boolean", values: ["true", "false"], serve: 0)
            .replacingOccurrences(of: #""isEnabled":true"#, with: #""isEnabled":false"#)])
        let json = Self.single("off", #"{"targetingKey":"u"}"#, in: env).1
        #expect(json?["reason"] == .string("DISABLED"))
        #expect(json?["value"] == .bool(true))
        #expect(json?["metadata"]?["matchReason"] == .string("flag disabled"))
    }

    @Test func whatCountsAsASplit() {
        func rule(_ rollout: String) -> FlagRule {
            FlagModel(json: Eval.json(#"{"key":"k","variations":[{"id":"a","value":"1"},{"id":"b","value":"2"}],"fallthrough":{"variations":\#(rollout)}}"#)).defaultRule
        }
        #expect(!rule(#"[{"id":"a","rollout":[0,1]}]"#).splitsUsers)
        #expect(!rule(#"[{"id":"b","rollout":[0,0]},{"id":"a","rollout":[0,1]}]"#).splitsUsers)  // "no one", then everyone
        #expect(!rule(#"[{"id":"a","rollout":[0,0.999999]}]"#).splitsUsers)  // .NET's "everyone"
        #expect(!rule(#"[{"id":"a","rollout":[0,0.5]},{"id":"a","rollout":[0.5,1]}]"#).splitsUsers)  // one variation
        #expect(rule(#"[{"id":"a","rollout":[0,0.5]},{"id":"b","rollout":[0.5,1]}]"#).splitsUsers)
        #expect(!rule(#"[{"id":"a","rollout":[0,1]},{"id":"b","rollout":[0,1]}]"#).splitsUsers)  // b is unreachable
        #expect(!rule(#"[{"id":"a","rollout":"bad"},{"id":"b","rollout":[0,1]}]"#).splitsUsers)
    }

    // MARK: - Typed values

    @Test(arguments: [
        ("boolean", "true", "true"), ("boolean", "false", "false"), ("boolean", " true ", "true"),
        ("boolean", "True", #""True""#), ("boolean", "1", #""1""#), ("boolean", "", #""""#),
        ("number", "42", "42"), ("number", "-3.5", "-3.5"), ("number", "1.0", "1"), ("number", "1e3", "1000"),
        ("number", ".5", "0.5"), ("number", "5.", "5"), ("number", "+7", "7"), ("number", " 12 ", "12"), ("number", "007", "7"),
        ("number", "12345678901234", "12345678901234"), ("number", "1e300", "1e+300"), ("number", "0.1", "0.1"),
        ("number", "abc", #""abc""#), ("number", "inf", #""inf""#), ("number", "nan", #""nan""#), ("number", "0x10", #""0x10""#),
        ("number", "1_000", #""1_000""#), ("number", "", #""""#), ("number", "1e", #""1e""#), ("number", ".", #"".""#),
        ("json", #"{"a":1,"b":[1,2]}"#, #"{"a":1,"b":[1,2]}"#), ("json", "[1,2,3]", "[1,2,3]"), ("json", "{}", "{}"),
        ("json", "{bad", #""{bad""#), ("json", "7", "7"),
        ("string", "red", #""red""#), ("string", #"say "hi""#, #""say \"hi\"""#), ("string", "true", #""true""#),
        ("other", "42", #""42""#),
    ])
    func valuesAreTypedByTheFlagsVariationType(type: String, value: String, json: String) {
        var out: [UInt8] = []
        OFREPResult.writeValue(value, variationType: type, into: &out)
        #expect(String(decoding: out, as: UTF8.self) == json)
        #expect((try? JSONValue.parse(out)) != nil)
    }

    @Test func aMissingVariationTypeServesStrings() throws {
        let env = try Self.environment([Self.flag("t", type: "boolean", values: ["true"])
            .replacingOccurrences(of: #""variationType":"boolean","#, with: "")])
        #expect(Self.single("t", #"{"targetingKey":"u"}"#, in: env).1?["value"] == .string("true"))
    }

    // MARK: - Single-flag answers

    @Test func aSuccessCarriesValueReasonVariantAndMetadata() throws {
        let env = try Self.fake()
        let (status, json) = Self.single("return-10p-true", #"{"targetingKey":"\#(Self.tester)"}"#, in: env)
        #expect(status == 200)
        #expect(json == Eval.json(#"""
        {"key":"return-10p-true","value":false,"reason":"SPLIT","variant":"f7280f87-b277-4cec-9f8f-66e2f890e845",
         "metadata":{"flagId":"7a04ac4e-b468-4bb5-8123-af980022fe54","envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40",
                     "matchReason":"default","flagVersion":1674871694804,"sendToExperiment":true}}
        """#))
    }

    @Test func unknownAndArchivedFlagsAreNotFound() throws {
        let env = try Self.environment([
            Self.flag("live", type: "string", values: ["a"]),
            Self.flag("old", type: "string", values: ["a"]).replacingOccurrences(of: #""isArchived":false"#, with: #""isArchived":true"#),
        ])
        for key in ["nope", "old", "LIVE", ""] {
            let (status, json) = Self.single(key, #"{"targetingKey":"u"}"#, in: env)
            #expect(status == 404, "\(key)")
            #expect(json?["key"] == .string(key))
            #expect(json?["errorCode"] == .string("FLAG_NOT_FOUND"))
            #expect(json?["errorDetails"]?.stringValue?.contains("\"\(key)\"") == true)
        }
        // A bad body is reported before the flag is looked up; the context after.
        #expect(Self.single("nope", "{", in: env).1?["errorCode"] == .string("PARSE_ERROR"))
        #expect(Self.single("nope", "{}", in: env).1?["errorCode"] == .string("FLAG_NOT_FOUND"))
        #expect(Self.single("live", "{}", in: env).1?["errorCode"] == .string("TARGETING_KEY_MISSING"))
    }

    @Test func aLiveFlagWinsOverAnArchivedOneWithTheSameKey() throws {
        let env = try Self.environment([
            Self.flag("dup", type: "string", values: ["live"]),
            Self.flag("dup", type: "string", values: ["archived"])
                .replacingOccurrences(of: #""isArchived":false"#, with: #""isArchived":true"#)
                .replacingOccurrences(of: #""id":"id-dup""#, with: #""id":"id-dup-2""#),
        ])
        #expect(Self.single("dup", #"{"targetingKey":"u"}"#, in: env).1?["value"] == .string("live"))
        let bulk = OFREPAnswer.bulk(body: Self.body(#"{"targetingKey":"u"}"#), ifNoneMatch: nil, in: env)
        #expect(try JSONValue.parse(bulk.body)["flags"]?.arrayValue?.count == 1)
    }

    @Test func aRolloutThatMissesTheUserIsAGeneralErrorNotAnEmptyValue() throws {
        let env = try Self.environment([Self.flag("gap", type: "boolean", values: ["true", "false"])
            .replacingOccurrences(of: #""rollout":[0,1]"#, with: #""rollout":[0,0.0000001]"#)])
        let answer = OFREPAnswer.single(flagKey: "gap", body: Self.body(#"{"targetingKey":"u"}"#), in: env)
        #expect(answer.status == 400)
        #expect(answer.served.isEmpty)
        let json = try JSONValue.parse(answer.body)
        #expect(json["errorCode"] == .string("GENERAL"))
        #expect(json["key"] == .string("gap"))
        #expect(json["errorDetails"]?.stringValue?.contains("default rule") == true)
    }

    @Test func pathKeysAreComparedOrdinally() throws {
        let env = try Self.environment([Self.flag("caf\u{e9}", type: "string", values: ["x"])])
        #expect(Self.single("caf\u{e9}", #"{"targetingKey":"u"}"#, in: env).0 == 200)
        #expect(Self.single("cafe\u{301}", #"{"targetingKey":"u"}"#, in: env).0 == 404)
    }

    // MARK: - Bulk answers and entity tags

    @Test func bulkEvaluatesEveryLiveFlagWithAnEntityTag() throws {
        let env = try Self.fake()
        let answer = OFREPAnswer.bulk(body: Self.body(#"{"targetingKey":"\#(Self.tester)"}"#), ifNoneMatch: nil, in: env)
        #expect(answer.status == 200)
        let flags = try #require(try JSONValue.parse(answer.body)["flags"]?.arrayValue)
        #expect(flags.compactMap { $0["key"]?.stringValue } == env.sortedFlags.compactMap(\.key))
        #expect(flags.allSatisfy { $0["value"]?.boolValue != nil && $0["variant"]?.stringValue != nil })
        #expect(answer.served.count == 5)
        let etag = try #require(answer.etag)
        #expect(etag.hasPrefix("\"\(env.version)-") && etag.hasSuffix("\""))
        // Each flag equals its single-flag answer.
        for flag in flags {
            let key = try #require(flag["key"]?.stringValue)
            #expect(Self.single(key, #"{"targetingKey":"\#(Self.tester)"}"#, in: env).1 == flag)
        }
    }

    @Test func ifNoneMatchGives304OnlyForThisContextAndThisData() throws {
        let env = try Self.fake()
        let body = Self.body(#"{"targetingKey":"u-1","plan":"pro"}"#)
        let etag = try #require(OFREPAnswer.bulk(body: body, ifNoneMatch: nil, in: env).etag)
        for header in [etag, "W/\(etag)", #""other", \#(etag)"#, "*"] {
            let again = OFREPAnswer.bulk(body: body, ifNoneMatch: header, in: env)
            #expect(again.status == 304, "\(header)")
            #expect(again.body.isEmpty && again.served.isEmpty && again.etag == etag)
        }
        #expect(OFREPAnswer.bulk(body: body, ifNoneMatch: #""other""#, in: env).status == 200)
        // Same data, another context (or the same context with another attribute): another tag.
        let other = OFREPAnswer.bulk(body: Self.body(#"{"targetingKey":"u-1","plan":"free"}"#), ifNoneMatch: etag, in: env)
        #expect(other.status == 200 && other.etag != etag)
        // Attribute order does not matter.
        let reordered = Self.body(#"{"plan":"pro","targetingKey":"u-1"}"#)
        #expect(OFREPAnswer.bulk(body: reordered, ifNoneMatch: etag, in: env).status == 304)
        // Removing a flag leaves the data version where it was but changes the tag.
        let fewer = EnvironmentSnapshot(envId: env.envId, secrets: env.secrets,
                                        flags: env.flags.filter { $0.value.key != "returns-true" }, segments: env.segments)
        #expect(fewer.version == env.version)
        let changed = OFREPAnswer.bulk(body: body, ifNoneMatch: etag, in: fewer)
        #expect(changed.status == 200 && changed.etag != etag)
    }

    @Test func bulkRequestErrorsAreBulkFailures() throws {
        let env = try Self.fake()
        for (body, code) in [("{", "PARSE_ERROR"), ("{}", "TARGETING_KEY_MISSING"), (#"{"context":1}"#, "INVALID_CONTEXT")] {
            let answer = OFREPAnswer.bulk(body: Array(body.utf8), ifNoneMatch: "*", in: env)
            #expect(answer.status == 400)
            let json = try JSONValue.parse(answer.body)
            #expect(json["errorCode"] == .string(code))
            #expect(json["errorDetails"]?.stringValue != nil)
            #expect(json["key"] == nil)
        }
    }

    @Test func bulkReportsAFlagItCannotServeAsAFailureEntry() throws {
        let env = try Self.environment([
            Self.flag("ok", type: "number", values: ["1.5"]),
            Self.flag("gap", type: "number", values: ["1"]).replacingOccurrences(of: #""rollout":[0,1]"#, with: #""rollout":[0,0]"#),
        ])
        let answer = OFREPAnswer.bulk(body: Self.body(#"{"targetingKey":"u"}"#), ifNoneMatch: nil, in: env)
        let flags = try #require(try JSONValue.parse(answer.body)["flags"]?.arrayValue)
        #expect(flags.count == 2)
        #expect(flags.first { $0["key"] == .string("ok") }?["value"] == .number(1.5))
        #expect(flags.first { $0["key"] == .string("gap") }?["errorCode"] == .string("GENERAL"))
        #expect(answer.served.map(\.flag.key) == ["ok"])
    }

    /// Untrusted input never crashes and always gets an OFREP status with a JSON body: valid bodies mutated byte by
    /// byte (seeded), and bodies of random bytes.
    @Test func mutatedAndRandomBodiesGetAnAnswer() throws {
        let env = try Self.fake()
        var generator = SplitMix64(seed: 20240611)
        let seeds = [#"{"context":{"targetingKey":"u-1","name":"n","age":42,"tags":["a",{"b":[1.5,true,null]}]}}"#,
                     #"{"context":{"targetingKey":"\u00e9\ud83d\ude00","country":"us"}}"#, "{}", ""]
        let inserts = Array(#"{}[]":,\0e-"#.utf8)
        for round in 0..<4000 {
            var body = Array(seeds[round % seeds.count].utf8)
            if round % 5 == 4 {
                body = (0..<Int(generator.next() % 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            } else {
                for _ in 0...(generator.next() % 4) where !body.isEmpty {
                    let at = Int(generator.next() % UInt64(body.count))
                    switch generator.next() % 3 {
                    case 0: body[at] = UInt8(truncatingIfNeeded: generator.next())
                    case 1: body.remove(at: at)
                    default: body.insert(inserts[Int(generator.next() % UInt64(inserts.count))], at: at)
                    }
                }
            }
            for answer in [OFREPAnswer.single(flagKey: "two-custom-rules", body: body, in: env),
                           OFREPAnswer.bulk(body: body, ifNoneMatch: nil, in: env)] {
                #expect([200, 400].contains(answer.status), "round \(round)")
                #expect((try? JSONValue.parse(answer.body)) != nil, "round \(round)")
            }
        }
    }

    // MARK: - Insight

    @Test func servedEvaluationsMakeOneFlagUsageInsight() throws {
        let env = try Self.fake()
        let answer = OFREPAnswer.single(flagKey: "return-10p-true",
                                        body: Self.body(#"{"targetingKey":"\#(Self.tester)","name":"tester","plan":"pro"}"#), in: env)
        let user = try #require(answer.user)
        let body = FlagUsageInsight.body(user: user, evaluations: answer.served.map { ($0.flag, $0.result) }, timestamp: 1_700_000_000_000)
        #expect(try JSONValue.parse(body) == Eval.json(#"""
        [{"user":{"keyId":"\#(Self.tester)","name":"tester","customizedProperties":[{"name":"plan","value":"pro"}]},
          "variations":[{"featureFlagKey":"return-10p-true","variation":{"id":"f7280f87-b277-4cec-9f8f-66e2f890e845","value":"false"},
                         "sendToExperiment":true,"timestamp":1700000000000}]}]
        """#))
        #expect(FlagUsageInsight.body(user: user, evaluations: [], timestamp: 1).isEmpty)
    }

    @Test func evaluatorReportsTheStepThatDecided() throws {
        let env = try Self.fake()
        func step(_ key: String, _ user: EndUser) throws -> EvaluationStep {
            let flag = try #require(env.flagModel(key: key))
            let decided = Evaluator.decide(flag: flag, user: user, segments: { env.segmentModels[$0] })
            #expect(decided.result == Evaluator.evaluate(flag: flag, user: user, segments: { env.segmentModels[$0] }))
            return decided.step
        }
        #expect(try step("individual-targeting", Eval.user("true-1")) == .targeted)
        #expect(try step("two-custom-rules", Eval.user("u", [("country", "cn")])) == .rule(1))
        #expect(try step("two-custom-rules", Eval.user("u")) == .defaultRule)
    }
}

/// A small seeded generator (SplitMix64), so a failing round can be replayed.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
