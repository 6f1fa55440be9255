import AgentCore
import Foundation
import Testing
@testable import FeatBitSimulatorCore

@Suite("Payloads against FeatBit's golden data-sync snapshots")
struct GoldenPayloadTests {
    @Test("rp_full for the fake data set equals DoRelayProxyDataSyncAsync_type=full")
    func rpFullGolden() throws {
        let data = try SimFixtures.fakeData()
        let payload = SimFixtures.parse(data.rpFull())
        let golden = try SimFixtures.golden("DoRelayProxyDataSyncAsync_type=full")
        #expect(VerifyComparison.differences(payload, golden) == [])
        // The fields the brief names, spelled out.
        let item = try #require(payload["data"]?["items"]?.arrayValue?.first)
        #expect(payload["data"]?["items"]?.arrayValue?.count == 1)
        #expect(item["envId"]?.stringValue == SimFixtures.envA)
        let secrets = item["secrets"]?.arrayValue ?? []
        #expect(secrets.map { $0["type"]?.stringValue } == ["server", "client"])
        #expect(secrets.map { $0["value"]?.stringValue } == [SimFixtures.serverSecretA, SimFixtures.clientSecretA])
        #expect(secrets.allSatisfy { $0["envId"]?.stringValue == SimFixtures.envA && $0["projectKey"]?.stringValue == "webapp" && $0["envKey"]?.stringValue == "dev" })
        let goldenItem = try #require(golden["data"]?["items"]?.elements.first)
        #expect(item["featureFlags"]?.arrayValue?.map { $0["key"]?.stringValue ?? "" }
                == goldenItem["featureFlags"]?.elements.map { $0["key"]?.text ?? "" })
        #expect(item["segments"]?.arrayValue?.map { $0["name"]?.stringValue ?? "" }
                == goldenItem["segments"]?.elements.map { $0["name"]?.text ?? "" })
        let fakeFlagIds = try JSONValue.parse(Data(contentsOf: SimFixtures.sharedFixtures
            .appendingPathComponent("featbit-fake-data/flags.json"))).arrayValue!.map { $0["id"]!.stringValue! }
        #expect(item["featureFlags"]?.arrayValue?.map { $0["id"]!.stringValue! } == fakeFlagIds)
    }

    @Test("rp_patch with env timestamp 1674885300000 equals DoRelayProxyDataSyncAsync_type=patch (1 flag, 1 segment)")
    func rpPatchGolden() throws {
        let data = try SimFixtures.fakeData()
        let request = RelayProxyDataSyncRequest(timestamp: SimFixtures.patchCursor,
                                                envTimestamps: [SimFixtures.envA: SimFixtures.patchCursor])
        let payload = SimFixtures.parse(data.rpReply(to: request, connectionSecrets: data.serverSecrets))
        let golden = try SimFixtures.golden("DoRelayProxyDataSyncAsync_type=patch")
        #expect(VerifyComparison.differences(payload, golden) == [])
        let item = try #require(payload["data"]?["items"]?.arrayValue?.first)
        #expect(payload["data"]?["eventType"]?.stringValue == "rp_patch")
        #expect(item["secrets"] == .array([]))
        #expect(item["featureFlags"]?.arrayValue?.map { $0["key"]?.stringValue } == ["custom-rule-with-segment"])
        #expect(item["segments"]?.arrayValue?.map { $0["name"]?.stringValue } == ["segment-02"])
    }

    /// The payloads that equal FeatBit's golden snapshots pass the agent's validator whole: nothing refused, every
    /// flag and segment kept byte for byte (unknown fields included).
    @Test("the golden-equal rp_full, rp_patch and server payloads are valid and accepted unchanged")
    func goldenPayloadsAreValid() throws {
        let data = try SimFixtures.fakeData()
        let request = RelayProxyDataSyncRequest(timestamp: SimFixtures.patchCursor,
                                                envTimestamps: [SimFixtures.envA: SimFixtures.patchCursor])
        for bytes in [data.rpFull(), data.rpReply(to: request, connectionSecrets: data.serverSecrets)] {
            guard case .success(let message) = UpstreamMessage.parse(bytes) else {
                Issue.record("refused whole")
                continue
            }
            let parsed: DataSetParser.Parsed
            switch message {
            case .full(let p), .patch(let p): parsed = p
            case .ignored: Issue.record("ignored"); continue
            }
            #expect(parsed.refused.isEmpty, "\(parsed.refused)")
            let sent = try #require(SimFixtures.parse(bytes)["data"]?["items"]?.arrayValue?.first)
            let environment = try #require(parsed.environments.first)
            #expect(environment.flags.map(\.json) == sent["featureFlags"]?.arrayValue)
            #expect(environment.segments.map(\.json) == sent["segments"]?.arrayValue)
        }
        for timestamp in [0, SimFixtures.patchCursor] {
            let reply = SimFixtures.parse(data.serverReply(envId: SimFixtures.envA, timestamp: timestamp))
            let parsed = try DataSetParser.parseLoosePatch(try #require(reply["data"]))
            #expect(parsed.refused.isEmpty, "\(parsed.refused)")
            #expect(parsed.environments.flatMap(\.flags).count == (reply["data"]?["featureFlags"]?.arrayValue?.count ?? -1))
        }
    }

    @Test("server full/patch replies equal DoServerDataSyncAsync_type=full/patch")
    func serverGolden() throws {
        let data = try SimFixtures.fakeData()
        let full = SimFixtures.parse(data.serverReply(envId: SimFixtures.envA, timestamp: 0))
        #expect(VerifyComparison.differences(full, try SimFixtures.golden("DoServerDataSyncAsync_type=full")) == [])
        let patch = SimFixtures.parse(data.serverReply(envId: SimFixtures.envA, timestamp: SimFixtures.patchCursor))
        #expect(VerifyComparison.differences(patch, try SimFixtures.golden("DoServerDataSyncAsync_type=patch")) == [])
    }

    @Test("the snapshot comparison notices a wrong field")
    func comparisonDetectsDifferences() throws {
        let data = try SimFixtures.fakeData()
        var payload = SimFixtures.parse(data.rpFull())
        guard case .object(var root) = payload, case .object(var d) = root["data"]! else { Issue.record(); return }
        d["eventType"] = .string("rp_patch")
        root["data"] = .object(d)
        payload = .object(root)
        let differences = VerifyComparison.differences(payload, try SimFixtures.golden("DoRelayProxyDataSyncAsync_type=full"))
        #expect(differences == ["$.data.eventType: rp_patch != snapshot rp_full"])
    }
}

@Suite("Relay-proxy payload rules (spec §3.3–3.5)")
struct RelayProxyPayloadTests {
    @Test("rp_patch has one item per server secret: an env with 2 server secrets gives 2 identical items")
    func perSecretDuplication() throws {
        let data = try SimFixtures.twoEnvironments(secondServerSecretForA: true)
        let secrets = data.serverSecrets
        #expect(secrets.map(\.value) == [SimFixtures.serverSecretA, SimFixtures.serverSecretA2, SimFixtures.serverSecretB])
        let payload = SimFixtures.parse(data.rpPatch(connectionSecrets: secrets,
                                                     envTimestamps: [SimFixtures.envA: SimFixtures.patchCursor]))
        let items = try #require(payload["data"]?["items"]?.arrayValue)
        #expect(items.map { $0["envId"]?.stringValue } == [SimFixtures.envA, SimFixtures.envA, SimFixtures.envB])
        #expect(items[0] == items[1])
        #expect(items.allSatisfy { $0["secrets"] == .array([]) })
        // env B is absent from `envs`: it gets everything.
        #expect(items[2]["featureFlags"]?.arrayValue?.count == 1)
    }

    @Test("rp_full: one item per env, both secret types, envs without secrets left out")
    func fullShape() throws {
        var data = try SimFixtures.twoEnvironments(secondServerSecretForA: true)
        var items = try DataSetParser.parseBootstrap(try JSONValue.parse(data.backupJSON()))
        items.append(EnvironmentData(envId: "00000000-0000-4000-8000-00000000000c", secrets: [], flags: [], segments: []))
        data.replace(with: items)
        let payload = SimFixtures.parse(data.rpFull())
        let envs = payload["data"]?["items"]?.arrayValue ?? []
        #expect(envs.map { $0["envId"]?.stringValue } == [SimFixtures.envA, SimFixtures.envB])
        #expect(envs[0]["secrets"]?.arrayValue?.count == 3)
        #expect(envs[0]["featureFlags"]?.arrayValue?.count == 5)
        #expect(envs[1]["featureFlags"]?.arrayValue?.count == 1)
    }

    @Test("the top-level timestamp alone chooses rp_full or rp_patch")
    func replyType() throws {
        let data = try SimFixtures.fakeData()
        let ignoredEnvs = RelayProxyDataSyncRequest(timestamp: 0, envTimestamps: [SimFixtures.envA: SimFixtures.patchCursor])
        #expect(SimFixtures.parse(data.rpReply(to: ignoredEnvs, connectionSecrets: data.serverSecrets))["data"]?["eventType"]
                == .string("rp_full"))
        let noEnvs = RelayProxyDataSyncRequest(timestamp: 5)
        let patch = SimFixtures.parse(data.rpReply(to: noEnvs, connectionSecrets: data.serverSecrets))
        #expect(patch["data"]?["eventType"] == .string("rp_patch"))
        #expect(patch["data"]?["items"]?.arrayValue?.first?["featureFlags"]?.arrayValue?.count == 5)
        let upToDate = RelayProxyDataSyncRequest(timestamp: data.version, envTimestamps: [SimFixtures.envA: data.version])
        let empty = SimFixtures.parse(data.rpReply(to: upToDate, connectionSecrets: data.serverSecrets))
        #expect(empty["data"]?["items"]?.arrayValue?.first?["featureFlags"] == .array([]))
        #expect(empty["data"]?["items"]?.arrayValue?.first?["segments"] == .array([]))
    }

    @Test("data-sync request parsing: absent/fractional timestamps are 0, null is rejected, envs normalised")
    func requestParsing() throws {
        #expect(RelayProxyDataSyncRequest(data: try JSONValue.parse("{}")) == .init(timestamp: 0))
        #expect(RelayProxyDataSyncRequest(data: .null) == .init(timestamp: 0))
        #expect(RelayProxyDataSyncRequest(data: try JSONValue.parse(#"{"timestamp":1.5}"#)) == .init(timestamp: 0))
        #expect(RelayProxyDataSyncRequest(data: try JSONValue.parse(#"{"timestamp":null}"#)) == nil)
        let request = RelayProxyDataSyncRequest(data: try JSONValue.parse(
            #"{"timestamp":7,"envs":[{"envId":"226B9BF8-4AF3-4FFA-9B01-162270E4CD40","timestamp":3},{"envId":"x"}]}"#))
        #expect(request == .init(timestamp: 7, envTimestamps: [SimFixtures.envA: 3]))
    }

    @Test("the plain patch push carries exactly one entity")
    func pushMessage() throws {
        let flag = SimFixtures.flag(id: "f1", key: "k", updatedAt: 1)
        let message = SimFixtures.parse(SimulatorData.pushMessage(for: flag))
        #expect(message["messageType"] == .string("data-sync"))
        #expect(message["data"]?["eventType"] == .string("patch"))
        #expect(message["data"]?["featureFlags"]?.arrayValue?.count == 1)
        #expect(message["data"]?["segments"] == .array([]))
    }

    @Test("server latest-all: empty body for an unchanged patch")
    func latestAll() throws {
        let data = try SimFixtures.fakeData()
        #expect(data.serverLatestAll(envId: SimFixtures.envA, timestamp: data.version).isEmpty)
        #expect(!data.serverLatestAll(envId: SimFixtures.envA, timestamp: 0).isEmpty)
    }
}
