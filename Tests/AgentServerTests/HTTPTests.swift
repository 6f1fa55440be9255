import AgentCore
import AgentServer
import Foundation
import TestSupport
import Testing

/// The HTTP API (spec §6) as an SDK, FeatBit's "sync to agent" and an operator use it.
@Suite struct HTTPTests {
    @Test func healthBeforeAndAfterData() async throws {
        try await withTestAgent(initial: nil) { agent in
            let live = try await agent.http(.GET, "/health/liveness")
            #expect(live.status == 200 && live.body == "Healthy")
            let notReady = try await agent.http(.GET, "/health/readiness")
            #expect(notReady.status == 503 && notReady.body == "Unhealthy")
            #expect(try await agent.bootstrap(try TestData.fakeBootstrapBody()).status == 200)
            let ready = try await agent.http(.GET, "/health/readiness")
            #expect(ready.status == 200 && ready.body == "Healthy")
        }
    }

    @Test func requestsAskingForAnUpgradeTheAgentDoesNotDoAreStillAnswered() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let token = TestAgent.token(TestData.serverSecret)
            let (health, wrongPath, streaming) = try await offPool {
                // curl --http2 asks for h2c: answered over HTTP/1.1.
                let h2c = try RawSocket(port: agent.port)
                defer { h2c.close() }
                let health = try h2c.exchange("GET /health/liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
                // An SDK pointed at a wrong path gets a 404, not a dropped connection.
                let wrong = try RawSocket(port: agent.port)
                defer { wrong.close() }
                let wrongPath = try wrong.upgrade(path: "/streamingx?type=server")
                // The real thing still upgrades.
                let real = try RawSocket(port: agent.port)
                defer { real.close() }
                return (health, wrongPath, try real.upgrade(path: "/Streaming?type=server&token=\(token)"))
            }
            #expect(health.hasPrefix("HTTP/1.1 200"))
            #expect(wrongPath.hasPrefix("HTTP/1.1 404"))
            #expect(streaming.hasPrefix("HTTP/1.1 101"))
        }
    }

    @Test func serverLatestAll() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let full = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", TestData.serverSecret)])
            #expect(full.status == 200)
            #expect(full.json?["data"]?["featureFlags"]?.arrayValue?.count == 5)
            let patch = try await agent.http(.GET, "/api/public/sdk/server/latest-all?timestamp=1674885300000", headers: [("Authorization", TestData.serverSecret)])
            #expect(patch.json?["data"]?["eventType"] == .string("patch"))
            #expect(patch.json?["data"]?["segments"]?.arrayValue?.count == 1)
            let none = try await agent.http(.GET, "/api/public/sdk/server/latest-all?timestamp=1800000000000", headers: [("Authorization", TestData.serverSecret)])
            #expect(none.status == 200 && none.body.isEmpty)
            let noAuth = try await agent.http(.GET, "/api/public/sdk/server/latest-all")
            #expect(noAuth.status == 401)
            let badAuth = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", "Bearer nope")])
            #expect(badAuth.status == 401)
        }
    }

    @Test func clientLatestAllAndEvaluate() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let auth = [("Authorization", TestData.clientSecret)]
            let ok = try await agent.http(.POST, "/api/public/sdk/client/latest-all", headers: auth, body: ClientStreamingTests.tester)
            #expect(ok.status == 200)
            #expect(ok.json?["data"]?["userKeyId"] == .string("3db19c81-e149-4b97-8a0d-79d34531fe59"))
            let invalid = try await agent.http(.POST, "/api/public/sdk/client/latest-all", headers: auth, body: #"{"keyId":""}"#)
            #expect(invalid.status == 400 && invalid.body == "invalid end user")
            let malformed = try await agent.http(.POST, "/api/public/sdk/client/latest-all", headers: auth, body: "{")
            #expect(malformed.status == 400)
            let evaluate = try await agent.http(.POST, "/api/public/featureflag/evaluate", headers: auth,
                                                body: #"{"user":\#(ClientStreamingTests.tester),"filter":{"keys":["return-10p-true"]}}"#)
            #expect(evaluate.status == 200)
            #expect(evaluate.json?.arrayValue?.first?["variation"]?["value"] == .string("false"))
            let badMode = try await agent.http(.POST, "/api/public/featureflag/evaluate", headers: auth,
                                               body: #"{"user":\#(ClientStreamingTests.tester),"filter":{"tagFilterMode":"xor"}}"#)
            #expect(badMode.status == 400 && badMode.body.hasPrefix("Invalid tag filter mode"))
        }
    }

    @Test func adminEndpointsNeedTheApiKeyOnBothPrefixesAndAnyCase() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            for path in ["/api/public/proxy/status", "/api/proxy/status", "/API/Public/Proxy/Status", "/api/public/proxy/backup"] {
                #expect(try await agent.http(.GET, path).status == 401, "\(path) without key")
                #expect(try await agent.http(.GET, path, headers: [("Authorization", "rp-wrong")]).status == 401)
                #expect(try await agent.http(.GET, path, headers: [("Authorization", TestAgent.apiKey)]).status == 200, "\(path)")
            }
            let wrong = try await agent.bootstrap(try TestData.fakeBootstrapBody(), apiKey: "rp-nope")
            #expect(wrong.status == 401)
        }
    }

    @Test func statusReportsServesVersionAndConnections() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let status = try await agent.http(.GET, "/api/public/proxy/status", headers: [("Authorization", TestAgent.apiKey)])
            let json = try #require(status.json)
            #expect(json["serves"] == .string("webapp:dev"))
            #expect(json["dataVersion"] == .integer(1674885485421))
            #expect(json["syncState"] == .string("None"))
            #expect(json["lastSyncedAt"] == .null)
            #expect(json["connections"]?["server"] == .integer(0))
            #expect(json["cluster"]?["role"] == .string("standalone"))
            #expect(json["reportedAt"]?.stringValue.flatMap(FeatBitTimestamp.milliseconds(fromISO8601:)) != nil)
        }
    }

    @Test func backupIsAValidBootstrapBodyThatRoundTrips() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let backup = try await agent.http(.GET, "/api/proxy/backup", headers: [("Authorization", TestAgent.apiKey)])
            let environments = try DataSetParser.parseBootstrap(try #require(backup.json))
            #expect(environments.first?.flags.count == 5 && environments.first?.segments.count == 2 && environments.first?.secrets?.count == 2)
            let response = try await agent.bootstrap(backup.body)
            #expect(response.status == 200)
            #expect(response.json?["dataVersion"] == .integer(1674885485421))
            #expect(response.json?["serves"] == .string("webapp:dev"))
        }
    }

    @Test(arguments: [
        ("{not json", "invalid JSON"),
        (#"[]"#, "body is not a JSON object"),
        (#"{"eventType":"rp_full"}"#, "missing \"items\""),
        (#"{"eventType":"rp_full","items":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","featureFlags":[{"id":"x","envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40"}],"segments":[]}]}"#, "updatedAt"),
        (#"{"eventType":"rp_full","items":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","featureFlags":[],"segments":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","updatedAt":"2024-01-01T00:00:00Z"}]}]}"#, "items[0].segments[0].id: missing"),
        (#"{"eventType":"rp_full","items":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","featureFlags":[{"id":"x","updatedAt":"2024-01-01T00:00:00Z"}],"segments":[]}]}"#, "items[0].featureFlags[0].envId: missing"),
    ])
    func badBootstrapIs400WithAReasonAndKeepsTheData(body: String, reasonFragment: String) async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let before = agent.store.snapshot.sequence
            let response = try await agent.bootstrap(body)
            #expect(response.status == 400)
            let reason = response.json?["error"]?.stringValue ?? ""
            #expect(reason.contains(reasonFragment), "reason: \(reason)")
            #expect(agent.store.snapshot.sequence == before)
            let still = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", TestData.serverSecret)])
            #expect(still.json?["data"]?["featureFlags"]?.arrayValue?.count == 5)
        }
    }

    @Test func corsAllowsAnyOrigin() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let preflight = try await agent.http(.OPTIONS, "/api/public/sdk/client/latest-all", headers: [
                ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization,content-type"),
            ])
            #expect(preflight.status == 200 || preflight.status == 204)
            #expect(preflight.headers.first(name: "Access-Control-Allow-Origin") == "*")
            let get = try await agent.http(.GET, "/health/liveness", headers: [("Origin", "https://app.example.com")])
            #expect(get.headers.first(name: "Access-Control-Allow-Origin") == "*")
        }
    }

    @Test func insightTrackAnswers200AtOnceAnd401WithoutASecret() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let body = #"[{"user":{"keyId":"u1","name":"U","customizedProperties":[]},"variations":[]}]"#
            let accepted = try await agent.http(.POST, "/api/public/insight/track", headers: [("Authorization", TestData.serverSecret)], body: body)
            #expect(accepted.status == 200)
            let unauthorised = try await agent.http(.POST, "/api/public/insight/track", body: body)
            #expect(unauthorised.status == 401)
        }
    }

    @Test func nonUpgradeRequestToStreamingIs404() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let plain = try await agent.http(.GET, "/streaming?type=server")
            #expect(plain.status == 404)
        }
    }
}
