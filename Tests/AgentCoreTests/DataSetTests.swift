import Testing
@testable import AgentCore

@Suite struct DataSetParserTests {
    @Test func parsesFeatBitsFakeDataSet() throws {
        let environments = try DataSetParser.parseBootstrap(try Fixtures.fakeDataBootstrap())
        #expect(environments.count == 1)
        #expect(environments[0].flags.count == 5)
        #expect(environments[0].segments.count == 2)
        #expect(environments[0].secrets?.count == 2)
        let flag = try #require(environments[0].flags.first { $0.key == "return-10p-true" })
        #expect(flag.updatedAt == 1674871694804)
        #expect(flag.envId == Fixtures.envA)
    }

    @Test func unknownFieldsArePreservedVerbatim() throws {
        let json = Fixtures.flagJSON(id: "f1", updatedAt: 1000, extra: ["revision": .integer(7), "creatorId": .string("someone")])
        let item = try DataItem(kind: .flag, json: json)
        let reparsed = try JSONValue.parse(item.encoded)
        #expect(reparsed == json)
        #expect(reparsed["revision"] == .integer(7))
    }

    @Test(arguments: [
        ("id", "items[0].featureFlags[0].id: missing or not a non-empty string"),
        ("envId", "items[0].featureFlags[0].envId: missing or not a string"),
        ("updatedAt", "items[0].featureFlags[0].updatedAt: missing or not a string"),
    ])
    func missingMandatoryFieldIsNamed(field: String, message: String) throws {
        guard case .object(var flag) = Fixtures.flagJSON(id: "f1", updatedAt: 1000) else { return }
        flag[field] = nil
        let body: JSONValue = .object(["eventType": .string("rp_full"), "items": .array([.object([
            "envId": .string(Fixtures.envA), "featureFlags": .array([.object(flag)]), "segments": .array([]),
        ])])])
        let error = #expect(throws: DataSetError.self) { try DataSetParser.parseBootstrap(body) }
        #expect(error?.description == message)
    }

    /// A data set replaces everything: an item whose flag or segment list is missing (a misspelt key, say) would
    /// delete them all, so it is refused; patches may leave a list out.
    @Test func aReplacingItemMustCarryItsFlagAndSegmentLists() throws {
        for field in ["featureFlags", "segments"] {
            var item: [String: JSONValue] = ["envId": .string(Fixtures.envA), "featureFlags": .array([]), "segments": .array([])]
            item[field] = nil
            let body: JSONValue = .object(["eventType": .string("rp_full"), "items": .array([.object(item)])])
            let error = #expect(throws: DataSetError.self) { try DataSetParser.parseBootstrap(body) }
            #expect(error?.description.hasPrefix("items[0].\(field): missing") == true, "\(String(describing: error))")
        }
        let patch = #"{"messageType":"data-sync","data":{"eventType":"rp_patch","items":[{"envId":"\#(Fixtures.envA)","secrets":[],"featureFlags":[]}]}}"#
        guard case .success(.patch) = UpstreamMessage.parse(Array(patch.utf8)) else {
            Issue.record("a patch without segments was refused")
            return
        }
    }

    @Test func malformedShapesAreRejectedWithReasons() throws {
        #expect(throws: DataSetError("body is not a JSON object")) { try DataSetParser.parseBootstrap(.array([])) }
        #expect(throws: DataSetError("missing \"items\"")) {
            try DataSetParser.parseBootstrap(.object(["eventType": .string("rp_full")]))
        }
        #expect(throws: DataSetError("expected a list", path: "items")) {
            try DataSetParser.parseBootstrap(.object(["eventType": .string("rp_full"), "items": .string("x")]))
        }
        let error = #expect(throws: DataSetError.self) {
            try DataSetParser.parseBootstrap(.object(["eventType": .string("x"), "items": .array([.object(["envId": .string("nope")])])]))
        }
        #expect(error?.description == "items[0].envId: is not a GUID: nope")
        #expect(throws: DataSetError.self) {
            try DataItem(kind: .segment, json: Fixtures.segmentJSON(id: "s", updatedAt: 1).replacing("updatedAt", with: .string("soon")))
        }
    }

    @Test func eventTypeIsRequiredButNotValidated() throws {
        for eventType in ["rp_full", "rp-full", "anything"] {
            let body: JSONValue = .object(["eventType": .string(eventType), "items": .array([])])
            #expect(try DataSetParser.parseBootstrap(body).isEmpty)
        }
    }
}

extension JSONValue {
    func replacing(_ key: String, with value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members[key] = value
        return .object(members)
    }
}
