import Testing
@testable import AgentCore

@Suite struct UpstreamMessageTests {
    @Test func rpFullReplacesWithSecrets() throws {
        let body = try Fixtures.fakeDataBootstrap()
        let message = JSONWriter.bytes(.object(["messageType": .string("data-sync"), "data": body.replacing("eventType", with: .string("rp_full"))]))
        guard case .success(.full(let parsed)) = UpstreamMessage.parse(message) else { Issue.record("not a full"); return }
        #expect(parsed.refused.isEmpty, "FeatBit's own fake data is valid")
        #expect(parsed.environments.first?.secrets?.count == 2)
        #expect(parsed.environments.first?.flags.count == 5)
    }

    @Test func rpPatchNeverCarriesSecretsAndPushedPatchGroupsByEntityEnv() throws {
        let flag = Fixtures.flagJSON(id: "f1", env: Fixtures.envB, updatedAt: 10)
        let rpPatch = #"{"messageType":"data-sync","data":{"eventType":"rp_patch","items":[{"envId":"\#(Fixtures.envA)","secrets":[{"type":"server","value":"\#(Fixtures.serverSecretA)"}],"featureFlags":[],"segments":[]}]}}"#
        guard case .success(.patch(let patched)) = UpstreamMessage.parse(Array(rpPatch.utf8)) else { Issue.record("not a patch"); return }
        #expect(patched.environments.first?.secrets == nil)
        // Their secrets are never used, so a malformed one does not cost the patch its flags.
        let flagText = JSONWriter.string(Fixtures.flagJSON(id: "f2", updatedAt: 20))
        let oddSecrets = #"{"messageType":"data-sync","data":{"eventType":"rp_patch","items":[{"envId":"\#(Fixtures.envA)","secrets":[{"type":7}],"featureFlags":[\#(flagText)],"segments":[]}]}}"#
        guard case .success(.patch(let withOddSecrets)) = UpstreamMessage.parse(Array(oddSecrets.utf8)) else {
            Issue.record("a patch with a malformed secret was rejected")
            return
        }
        #expect(withOddSecrets.environments.first?.flags.map(\.id) == ["f2"])
        #expect(withOddSecrets.refused.isEmpty)
        let push = JSONWriter.bytes(.object(["messageType": .string("data-sync"), "data": .object([
            "eventType": .string("patch"), "featureFlags": .array([flag]), "segments": .array([]),
        ])]))
        guard case .success(.patch(let environments)) = UpstreamMessage.parse(push) else { Issue.record("not a patch"); return }
        #expect(environments.environments.map(\.envId) == [Fixtures.envB])
    }

    @Test func badUpstreamInputIsRejectedWithAReason() {
        func reason(_ text: String) -> String? {
            if case .failure(let rejection) = UpstreamMessage.parse(Array(text.utf8)) { return rejection.description }
            return nil
        }
        #expect(reason("{{{")?.hasPrefix("not JSON") == true)
        #expect(reason(#"{"messageType":"data-sync","data":{"eventType":"rp_teleport","items":[]}}"#) == "unknown data-sync eventType \"rp_teleport\"")
        #expect(reason(#"{"messageType":"data-sync","data":{"eventType":"patch","featureFlags":{"id":"x"}}}"#)
                == "featureFlags: expected a list")
        // An item without its version is refused on its own; the message around it is not malformed.
        let unversioned = #"{"messageType":"data-sync","data":{"eventType":"patch","featureFlags":[{"id":"x","envId":"\#(Fixtures.envA)"}]}}"#
        guard case .success(.patch(let parsed)) = UpstreamMessage.parse(Array(unversioned.utf8)) else {
            Issue.record("a patch with one invalid flag was not parsed")
            return
        }
        #expect(parsed.refusedEveryItem)
        #expect(parsed.refused.first?.id == "x")
        #expect(parsed.refused.first?.error.problems.first?.description == "featureFlags[0].updatedAt: missing or not a string")
        #expect(reason(#"{"messageType":"data-sync","data":{"eventType":"rp_full"}}"#) == "missing \"items\"")
        // An rp_full item without its secrets would lock every SDK of that environment out: rejected instead.
        #expect(reason(#"{"messageType":"data-sync","data":{"eventType":"rp_full","items":[{"envId":"\#(Fixtures.envA)","featureFlags":[],"segments":[]}]}}"#)?.contains("secrets") == true)
        if case .success(.ignored(let type)) = UpstreamMessage.parse(Array(#"{"messageType":"pong","data":{}}"#.utf8)) {
            #expect(type == "pong")
        } else {
            Issue.record("pong should be ignored")
        }
    }

    @Test func dataSyncRequestCarriesPerEnvironmentVersions() throws {
        #expect(String(decoding: UpstreamRequest.dataSync(for: .empty), as: UTF8.self) == #"{"messageType":"data-sync","data":{"timestamp":0}}"#)
        let store = DataStore()
        store.apply(.replace([
            Fixtures.environment(flags: [Fixtures.flag("a", updatedAt: 500)]),
            Fixtures.environment(Fixtures.envB, flags: []),
        ]))
        let request = try JSONValue.parse(UpstreamRequest.dataSync(for: store.snapshot))
        #expect(request["data"]?["timestamp"] == .integer(500))
        let envs = request["data"]?["envs"]?.arrayValue ?? []
        #expect(envs.contains(.object(["envId": .string(Fixtures.envA), "timestamp": .integer(500)])))
        #expect(envs.contains(.object(["envId": .string(Fixtures.envB), "timestamp": .integer(0)])))
    }

    @Test func agentStatusIsAJSONEncodedString() throws {
        let message = try JSONValue.parse(UpstreamRequest.agentStatus(agentId: "a1", snapshot: .empty, syncState: .stable,
                                                                      lastSyncedAt: 1_700_000_000_000, now: 1_700_000_060_000))
        #expect(message["messageType"] == .string("rp-agent-status"))
        let status = try JSONValue.parse(try #require(message["data"]?["status"]?.stringValue))
        #expect(status["syncState"] == .string("Stable"))
        #expect(status["lastSyncedAt"] == .string("2023-11-14T22:13:20.000Z"))
    }
}

@Suite struct UpstreamSyncTests {
    @Test func backoffFollowsTheTableClampsAt55AndResetsAfterASync() {
        var sync = UpstreamSync()
        #expect(sync.state == .starting)
        let delays = (0..<14).map { _ in sync.disconnected(closeCode: nil, random: 0.5) }
        #expect(delays[0] > 0 && delays[0] < 1)
        #expect(delays[1...9].map { $0.rounded() } == [1, 2, 3, 5, 8, 13, 21, 34, 55])
        #expect(delays[10...].allSatisfy { $0 == 55 }, "no wrap-around to 0 s")
        #expect(sync.state == .interrupted)
        sync.applied(now: 42)
        #expect(sync.state == .stable && sync.lastSyncedAt == 42 && sync.failures == 0)
        #expect(sync.disconnected(closeCode: 1006, random: 0.5) < 1)
    }

    @Test func jitterSpreadsReconnects() {
        var a = UpstreamSync(), b = UpstreamSync()
        for _ in 0..<5 { _ = a.disconnected(closeCode: nil, random: 0); _ = b.disconnected(closeCode: nil, random: 0.99) }
        #expect(a.disconnected(closeCode: nil, random: 0) != b.disconnected(closeCode: nil, random: 0.99))
    }

    @Test func refusedCredentialsAreRetriedSlowlyNotHammered() {
        var sync = UpstreamSync()
        let delay = sync.disconnected(closeCode: 4003, random: 0.5)
        #expect(delay >= 48)
        #expect(sync.refused)
        sync.applied(now: 1)
        #expect(!sync.refused)
    }

    @Test func applyFailureInterruptsAndStopIsFinal() {
        var sync = UpstreamSync()
        sync.applied(now: 1)
        sync.applyFailed()
        #expect(sync.state == .interrupted)
        sync.stop()
        sync.applyFailed()
        #expect(sync.state == .stopped)
    }
}

@Suite struct InsightAnonymizerTests {
    @Test func keysAndNamesArePseudonymisedAndOnlyAllowedPropertiesKept() throws {
        let anonymizer = InsightAnonymizer(key: Array(repeating: 7, count: 32), allowedProperties: ["plan"])
        let body = try JSONValue.parse(#"[{"user":{"keyId":"alice@example.com","name":"Alice","customizedProperties":[{"name":"plan","value":"pro"},{"name":"email","value":"alice@example.com"}]},"variations":[{"featureFlagKey":"f","sendToExperiment":true,"timestamp":1,"variation":{"id":"v","value":"true"}}]}]"#)
        let result = try #require(anonymizer.anonymize(body))
        let user = try #require(result.arrayValue?.first?["user"])
        #expect(user["keyId"] == .string(anonymizer.pseudonym("alice@example.com")))
        #expect(user["keyId"]?.stringValue?.count == 64)
        #expect(user["name"] != .string("Alice"))
        #expect(user["customizedProperties"] == .array([.object(["name": .string("plan"), "value": .string("pro")])]))
        #expect(!JSONWriter.string(result).contains("alice"))
        // The insight itself is untouched.
        #expect(result.arrayValue?.first?["variations"] == body.arrayValue?.first?["variations"])
        // Stable for the same key, different for another key.
        #expect(anonymizer.pseudonym("x") == InsightAnonymizer(key: Array(repeating: 7, count: 32), allowedProperties: []).pseudonym("x"))
        #expect(anonymizer.pseudonym("x") != InsightAnonymizer(key: Array(repeating: 8, count: 32), allowedProperties: []).pseudonym("x"))
        // Lowercase hex of HMAC-SHA256 (Python: hmac.new(bytes([7]*32), b"alice@example.com", sha256).hexdigest()).
        #expect(InsightAnonymizer(key: Array(repeating: 7, count: 32), allowedProperties: []).pseudonym("alice@example.com")
                == "09870f7a555563284d0f3306c0cb12941e1ac64c5d737c671ae6125baa2715b0")
    }
}
