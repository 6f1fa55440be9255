import AgentCore
import AgentServer
import Foundation
import Synchronization
import TestSupport
import Testing

/// OFREP over HTTP on the agent's port: authentication, status codes, headers and the flag-usage insights.
@Suite struct OFREPHTTPTests {
    static let tester = #"{"context":{"targetingKey":"3db19c81-e149-4b97-8a0d-79d34531fe59","name":"tester","plan":"pro"}}"#

    /// Keeps what the routes hand to the insights pipeline.
    final class RecordingSink: InsightSink {
        let posts = Mutex<[(body: String, authorization: String)]>([])
        func accept(body: [UInt8], authorization: String) {
            posts.withLock { $0.append((String(decoding: body, as: UTF8.self), authorization)) }
        }
        var all: [(body: String, authorization: String)] { posts.withLock { $0 } }
    }

    @Test func everyWayOfSendingTheSecretAuthenticates() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            for headers in [
                [("Authorization", "Bearer \(TestData.serverSecret)")],
                [("Authorization", "bearer  \(TestData.clientSecret)")],
                [("X-API-Key", TestData.clientSecret)],
                [("x-api-key", TestData.serverSecret)],
                [("Authorization", TestData.serverSecret)],
                [("Authorization", "Bearer wrong"), ("X-API-Key", TestData.serverSecret)],
            ] {
                let single = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true", headers: headers, body: Self.tester)
                #expect(single.status == 200, "\(headers)")
                #expect(single.json?["value"] == .bool(true))
                let bulk = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: headers, body: Self.tester)
                #expect(bulk.status == 200, "\(headers)")
            }
        }
    }

    @Test func anythingElseIs401() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            for headers in [
                [], [("Authorization", "")], [("Authorization", "Bearer ")], [("Authorization", "Bearer nope")],
                [("Authorization", TestAgent.apiKey)],
                // well formed, but of an environment the agent does not hold, or not one of its env's secrets
                [("Authorization", TestData.unknownSecret)],
                [("X-API-Key", "XXXXXXXXXXXXXXXXXXXXXX" + String(TestData.serverSecret.suffix(22)))],
                [("Authorization", "Basic \(TestData.serverSecret)")],
            ] {
                for path in ["/ofrep/v1/evaluate/flags/returns-true", "/ofrep/v1/evaluate/flags"] {
                    let response = try await agent.http(.POST, path, headers: headers, body: Self.tester)
                    #expect(response.status == 401, "\(path) \(headers)")
                    #expect(response.json?["errorDetails"]?.stringValue != nil)
                }
            }
        }
    }

    @Test func beforeAnyDataSetTheAnswerIs503() async throws {
        try await withTestAgent(initial: nil) { agent in
            let response = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true",
                                                headers: [("Authorization", "Bearer \(TestData.serverSecret)")], body: Self.tester)
            #expect(response.status == 503)
            #expect(response.json?["errorDetails"] != nil)
        }
    }

    @Test func singleFlagStatusCodesAndBodies() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let auth = [("Authorization", "Bearer \(TestData.serverSecret)")]
            let ok = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/return-10p-true", headers: auth, body: Self.tester)
            #expect(ok.status == 200)
            #expect(ok.headers.first(name: "Content-Type")?.hasPrefix("application/json") == true)
            #expect(ok.json?["key"] == .string("return-10p-true"))
            #expect(ok.json?["value"] == .bool(false))
            #expect(ok.json?["reason"] == .string("SPLIT"))
            #expect(ok.json?["variant"] == .string("f7280f87-b277-4cec-9f8f-66e2f890e845"))
            #expect(ok.json?["metadata"]?["envId"] == .string(TestData.envId))
            // Routing is case-insensitive; the key is not.
            #expect(try await agent.http(.POST, "/OFREP/v1/Evaluate/Flags/return-10p-true", headers: auth, body: Self.tester).status == 200)
            let cases: [(String, String, Int, String)] = [
                ("missing-flag", Self.tester, 404, "FLAG_NOT_FOUND"),
                ("RETURNS-TRUE", Self.tester, 404, "FLAG_NOT_FOUND"),
                ("returns-true", #"{"context":{"name":"x"}}"#, 400, "TARGETING_KEY_MISSING"),
                ("returns-true", "", 400, "TARGETING_KEY_MISSING"),
                ("returns-true", #"{"context":{"targetingKey":7}}"#, 400, "INVALID_CONTEXT"),
                ("returns-true", #"{"context":"u"}"#, 400, "INVALID_CONTEXT"),
                ("returns-true", #"{"context":{"targetingKey":"u""#, 400, "PARSE_ERROR"),
                ("returns-true", "[]", 400, "PARSE_ERROR"),
            ]
            for (key, body, status, code) in cases {
                let response = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/\(key)", headers: auth, body: body)
                #expect(response.status == status, "\(key) \(body)")
                #expect(response.json?["errorCode"] == .string(code), "\(key) \(body): \(response.body)")
                #expect(response.json?["key"] == .string(key))
                #expect(response.json?["errorDetails"]?.stringValue?.isEmpty == false)
            }
            // Percent-encoded keys are decoded.
            let encoded = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns%2Dtrue", headers: auth, body: Self.tester)
            #expect(encoded.status == 200)
            // Too large a body.
            let huge = #"{"context":{"targetingKey":"u","pad":""# + String(repeating: "x", count: 1_100_000) + #""}}"#
            let tooLarge = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true", headers: auth, body: huge)
            #expect(tooLarge.status == 413)
            #expect(tooLarge.json?["errorDetails"] != nil)
            // The server is still fine.
            #expect(try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true", headers: auth, body: Self.tester).status == 200)
        }
    }

    @Test func bulkAnswersWithAnETagAnd304() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let auth = [("X-API-Key", TestData.clientSecret)]
            let first = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: auth, body: Self.tester)
            #expect(first.status == 200)
            #expect(first.json?["flags"]?.arrayValue?.count == 5)
            let etag = try #require(first.headers.first(name: "ETag"))
            #expect(first.headers.first(name: "Access-Control-Expose-Headers")?.contains("ETag") == true)
            let again = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: auth + [("If-None-Match", etag)], body: Self.tester)
            #expect(again.status == 304)
            #expect(again.body.isEmpty)
            #expect(again.headers.first(name: "ETag") == etag)
            let stale = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: auth + [("If-None-Match", #""0-0""#)], body: Self.tester)
            #expect(stale.status == 200)
            // A change of a flag the context sees: a new tag.
            let changed = try TestData.fakeBootstrapBody { flags in
                for index in flags.indices where flags[index]["key"] == .string("returns-true") {
                    flags[index] = flags[index].with("isEnabled", .bool(false)).with("updatedAt", .string("2030-01-01T00:00:00Z"))
                }
            }
            #expect(try await agent.bootstrap(changed).status == 200)
            let after = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: auth + [("If-None-Match", etag)], body: Self.tester)
            #expect(after.status == 200)
            #expect(after.headers.first(name: "ETag") != etag)
            let flag = after.json?["flags"]?.arrayValue?.first { $0["key"] == .string("returns-true") }
            #expect(flag?["reason"] == .string("DISABLED"))
            // Bad requests.
            let bad = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: auth, body: #"{"context":{}}"#)
            #expect(bad.status == 400)
            #expect(bad.json?["errorCode"] == .string("TARGETING_KEY_MISSING"))
        }
    }

    @Test func corsLetsWebProvidersSendTheirHeadersAndReadTheETag() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let preflight = try await agent.http(.OPTIONS, "/ofrep/v1/evaluate/flags", headers: [
                ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization,content-type,if-none-match,x-api-key"),
            ])
            #expect(preflight.status == 200 || preflight.status == 204)
            let allowed = preflight.headers.first(name: "Access-Control-Allow-Headers")?.lowercased() ?? ""
            for header in ["authorization", "content-type", "if-none-match", "x-api-key"] {
                #expect(allowed.contains(header), "\(header) in \(allowed)")
            }
            let bulk = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: [
                ("Origin", "https://app.example.com"), ("Authorization", "Bearer \(TestData.clientSecret)"),
            ], body: Self.tester)
            #expect(bulk.headers.first(name: "Access-Control-Allow-Origin") == "*")
            #expect(bulk.headers.first(name: "Access-Control-Expose-Headers") == "ETag")
        }
    }

    @Test func servedEvaluationsAreRecordedAsInsightsWithTheRequestsSecret() async throws {
        let sink = RecordingSink()
        try await withTestAgent(initial: try TestData.fakeEnvironments(), insights: sink) { agent in
            let single = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/return-10p-true",
                                              headers: [("Authorization", "Bearer \(TestData.serverSecret)")], body: Self.tester)
            #expect(single.status == 200)
            #expect(sink.all.count == 1)
            let post = try #require(sink.all.first)
            #expect(post.authorization == TestData.serverSecret)
            let insight = try #require(try JSONValue.parse(post.body).arrayValue?.first)
            #expect(insight["user"]?["keyId"] == .string("3db19c81-e149-4b97-8a0d-79d34531fe59"))
            #expect(insight["user"]?["customizedProperties"] == .array([.object(["name": .string("plan"), "value": .string("pro")])]))
            let variation = try #require(insight["variations"]?.arrayValue?.first)
            #expect(variation["featureFlagKey"] == .string("return-10p-true"))
            #expect(variation["variation"] == .object(["id": .string("f7280f87-b277-4cec-9f8f-66e2f890e845"), "value": .string("false")]))
            #expect(variation["sendToExperiment"] == .bool(true))
            #expect(variation["timestamp"]?.doubleValue.map { abs($0 - Double(TestAgent.nowMillis())) < 60_000 } == true)

            // Bulk: one insight with every flag; a 304 and failures record nothing.
            let bulk = try await agent.http(.POST, "/ofrep/v1/evaluate/flags", headers: [("X-API-Key", TestData.clientSecret)], body: Self.tester)
            #expect(sink.all.count == 2)
            #expect(sink.all.last?.authorization == TestData.clientSecret)
            #expect(try JSONValue.parse(sink.all[1].body).arrayValue?.first?["variations"]?.arrayValue?.count == 5)
            let etag = try #require(bulk.headers.first(name: "ETag"))
            _ = try await agent.http(.POST, "/ofrep/v1/evaluate/flags",
                                     headers: [("X-API-Key", TestData.clientSecret), ("If-None-Match", etag)], body: Self.tester)
            _ = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/nope", headers: [("X-API-Key", TestData.clientSecret)], body: Self.tester)
            _ = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true", headers: [("X-API-Key", TestData.clientSecret)], body: "{}")
            _ = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true", body: Self.tester)
            #expect(sink.all.count == 2)
        }
    }

    @Test func forwardEventsFalseRecordsNothing() async throws {
        let sink = RecordingSink()
        try await withTestAgent(initial: try TestData.fakeEnvironments(), insights: sink, forwardEvents: false) { agent in
            let single = try await agent.http(.POST, "/ofrep/v1/evaluate/flags/returns-true",
                                              headers: [("Authorization", TestData.serverSecret)], body: Self.tester)
            #expect(single.status == 200)
            #expect(sink.all.isEmpty)
        }
    }
}
