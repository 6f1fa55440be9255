import AgentCore
import AgentServer
import Foundation
import Testing

/// `type=client` on `/streaming` (spec §2.3, §2.4.2, §2.5, §3.7).
@Suite struct ClientStreamingTests {
    static let tester = #"{"keyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","name":"tester","customizedProperties":[{"name":"email","value":"tester@featbit.com"},{"name":"role","value":"qa"},{"name":"location","value":"127.0.0.1"}]}"#

    static func clientSync(_ timestamp: Int64, user: String = tester) -> String {
        #"{"messageType":"data-sync","data":{"timestamp":\#(timestamp),"user":\#(user)}}"#
    }

    @Test func fullSyncEvaluatesEveryFlagForTheUserAsFeatBitDoes() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let transcript = try await sdkSession(url: agent.streamingURL(type: "client", secret: TestData.clientSecret),
                                                  send: [Self.clientSync(0)], until: { $0.count == 1 })
            let data = try #require(transcript.jsonMessages.first?["data"])
            #expect(data["eventType"] == .string("full"))
            #expect(data["userKeyId"] == .string("3db19c81-e149-4b97-8a0d-79d34531fe59"))
            let flags = try #require(data["featureFlags"]?.arrayValue)
            #expect(flags.count == 5)
            // The fixture's README: every flag falls through for the tester; return-10p-true gives false.
            #expect(flags.allSatisfy { $0["matchReason"] == .string("default") })
            let tenPercent = try #require(flags.first { $0["id"] == .string("return-10p-true") })
            #expect(tenPercent["variation"] == .string("false"))
            #expect(tenPercent["variationId"] == .string("f7280f87-b277-4cec-9f8f-66e2f890e845"))
            #expect(tenPercent["timestamp"] == .integer(1674871694804))
        }
    }

    @Test func patchSyncReturnsOnlyTheNewerFlag() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let transcript = try await sdkSession(url: agent.streamingURL(type: "client", secret: TestData.clientSecret),
                                                  send: [Self.clientSync(1674885300000)], until: { $0.count == 1 })
            let data = try #require(transcript.jsonMessages.first?["data"])
            #expect(data["eventType"] == .string("patch"))
            #expect(data["featureFlags"]?.arrayValue?.map { $0["id"] } == [.string("custom-rule-with-segment")])
        }
    }

    @Test func missingOrInvalidUserGetsNoReplyAndTheConnectionStays() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let transcript = try await sdkSession(
                url: agent.streamingURL(type: "client", secret: TestData.clientSecret),
                send: [
                    #"{"messageType":"data-sync","data":{"timestamp":0}}"#,
                    Self.clientSync(0, user: #"{"keyId":"  ","name":"blank"}"#),
                    Self.clientSync(0, user: #"{"keyId":"u1","customizedProperties":[{"name":"age","value":42}]}"#),
                    #"{"messageType":"ping","data":null}"#,
                ],
                timeout: .seconds(10), until: { $0.count == 1 })
            #expect(transcript.messages == [#"{"messageType":"pong","data":{}}"#])
        }
    }

    @Test func reIdentifyingSwitchesTheUserOfLaterPushes() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            // individual-targeting serves a targeted variation to listed users; read its targets from the fixture.
            let flags = try TestData.fixture("featbit-fake-data/flags.json").arrayValue!
            let targeted = try #require(flags.first { $0["key"] == .string("individual-targeting") })
            let targetKey = try #require(targeted["targetUsers"]?.arrayValue?.first?["keyIds"]?.arrayValue?.first?.stringValue)
            let transcript = try await sdkSession(
                url: agent.streamingURL(type: "client", secret: TestData.clientSecret),
                send: [Self.clientSync(0), Self.clientSync(0, user: #"{"keyId":"\#(targetKey)","name":"t"}"#)],
                until: { $0.count == 3 },
                afterSend: { _ in
                    try await Task.sleep(for: .milliseconds(300))
                    let changed = try DataItem(kind: .flag, json: targeted.with("updatedAt", .string("2025-02-01T00:00:00Z")))
                    agent.store.apply(.upsert([EnvironmentData(envId: TestData.envId, secrets: nil, flags: [changed], segments: [])]))
                })
            let push = try #require(transcript.jsonMessages.last?["data"])
            #expect(push["eventType"] == .string("patch"))
            #expect(push["userKeyId"] == .string(targetKey))
            #expect(push["featureFlags"]?.arrayValue?.first?["matchReason"] == .string("targeted"))
        }
    }

    @Test func segmentChangeRepushesOnlyTheFlagsThatUseIt() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let segments = try TestData.fixture("featbit-fake-data/segments.json").arrayValue!
            let flags = try TestData.fixture("featbit-fake-data/flags.json").arrayValue!
            let flagText = JSONWriter.string(.array(flags))
            let used = try #require(segments.first { flagText.contains($0["id"]!.stringValue!) })
            let unused = segments.first { !flagText.contains($0["id"]!.stringValue!) }
            let transcript = try await sdkSession(
                url: agent.streamingURL(type: "client", secret: TestData.clientSecret),
                send: [Self.clientSync(0)], timeout: .seconds(10), until: { $0.count == 2 },
                afterSend: { _ in
                    try await Task.sleep(for: .milliseconds(300))
                    if let unused {
                        let item = try DataItem(kind: .segment, json: unused.with("updatedAt", .string("2025-03-01T00:00:00Z")))
                        agent.store.apply(.upsert([EnvironmentData(envId: TestData.envId, secrets: nil, flags: [], segments: [item])]))
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    let item = try DataItem(kind: .segment, json: used.with("updatedAt", .string("2025-03-02T00:00:00Z")))
                    agent.store.apply(.upsert([EnvironmentData(envId: TestData.envId, secrets: nil, flags: [], segments: [item])]))
                })
            #expect(transcript.messages.count == 2)
            let push = try #require(transcript.jsonMessages.last?["data"])
            let ids = push["featureFlags"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            let expected = flags.filter { JSONWriter.string($0).contains(used["id"]!.stringValue!) }.compactMap { $0["key"]?.stringValue }
            #expect(ids.sorted() == expected.sorted())
            #expect(!ids.isEmpty)
        }
    }
}
