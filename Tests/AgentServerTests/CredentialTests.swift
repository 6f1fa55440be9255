import AgentCore
import AgentServer
import Logging
import NIOHTTP1
import Synchronization
import TestSupport
import Testing

/// Credentials: compared in constant time, only secrets the agent holds open SDK endpoints, and failed admin
/// authentications are limited per source.
@Suite struct CredentialTests {
    @Test func constantTimeComparisonsAreEqualityAndNothingElse() {
        #expect(ConstantTime.equals(TestData.serverSecret, TestData.serverSecret))
        #expect(!ConstantTime.equals(TestData.serverSecret, TestData.forgedSecret))
        #expect(!ConstantTime.equals(TestData.serverSecret, String(TestData.serverSecret.dropLast())))
        #expect(!ConstantTime.equals("", "x"))
        #expect(ConstantTime.equals("", ""))
        let key = CredentialDigest(TestAgent.apiKey)
        #expect(key.matches(TestAgent.apiKey))
        #expect(!key.matches(TestAgent.apiKey + " "))
        #expect(!key.matches(String(TestAgent.apiKey.dropLast())))
        #expect(!key.matches(nil))
        #expect(!key.matches(""))
    }

    @Test func onlyHeldSecretsFindTheirRecord() throws {
        let store = DataStore()
        store.apply(.replace(try TestData.fakeEnvironments()))
        #expect(store.snapshot.secret(matching: TestData.serverSecret)?.type == .server)
        #expect(store.snapshot.secret(matching: TestData.clientSecret)?.type == .client)
        #expect(store.snapshot.secret(matching: TestData.forgedSecret) == nil)
        #expect(store.snapshot.secret(matching: TestData.unknownSecret) == nil)
        #expect(store.snapshot.secret(matching: "short") == nil)
    }

    /// FeatBit's evaluation server reads only the environment id embedded in a secret on its HTTP endpoints; the
    /// agent holds the secrets, so a secret forged from an environment's (public) id reads nothing.
    @Test func sdkEndpointsRefuseSecretsTheAgentDoesNotHold() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let user = #"{"keyId":"u1","name":"U","customizedProperties":[]}"#
            let requests: [(HTTPMethod, String, String?)] = [
                (.GET, "/api/public/sdk/server/latest-all", nil),
                (.POST, "/api/public/sdk/client/latest-all", user),
                (.POST, "/api/public/featureflag/evaluate", #"{"user":\#(user)}"#),
                (.POST, "/api/public/insight/track", "[]"),
                (.POST, "/ofrep/v1/evaluate/flags/returns-true", #"{"context":{"targetingKey":"u1"}}"#),
            ]
            for (method, path, body) in requests {
                for secret in [TestData.forgedSecret, TestData.unknownSecret] {
                    let refused = try await agent.http(method, path, headers: [("Authorization", secret)], body: body)
                    #expect(refused.status == 401, "\(path) with \(secret)")
                }
                // Either type of a held secret works on either endpoint, as at FeatBit.
                for secret in [TestData.serverSecret, TestData.clientSecret] {
                    let served = try await agent.http(method, path, headers: [("Authorization", secret)], body: body)
                    #expect(served.status == 200, "\(path) with a held secret: \(served.status) \(served.body)")
                }
            }
        }
    }

    @Test func failedAdminAuthenticationsAreLimitedPerSource() {
        let clock = Mutex<Double>(1_000)
        var settings = AdminAuth.Settings()
        settings.burst = 3
        settings.refillSeconds = 10
        settings.maxSources = 4
        let auth = AdminAuth(apiKey: "the-key", settings: settings, logger: TestAgent.logger, now: { clock.withLock { $0 } })
        #expect(auth.check(authorization: "the-key", source: "a", path: "/s") == .admitted)
        for _ in 0..<3 { #expect(auth.check(authorization: "guess", source: "a", path: "/s") == .refused) }
        // Out of attempts: refused before the key is looked at, even the right one, and told when to come back.
        #expect(auth.check(authorization: "guess", source: "a", path: "/s") == .limited(retryAfterSeconds: 10))
        #expect(auth.check(authorization: "the-key", source: "a", path: "/s") == .limited(retryAfterSeconds: 10))
        // Other sources are not affected.
        #expect(auth.check(authorization: "the-key", source: "b", path: "/s") == .admitted)
        #expect(auth.check(authorization: nil, source: "b", path: "/s") == .refused)
        // One attempt comes back per refill period.
        clock.withLock { $0 += 4 }
        #expect(auth.check(authorization: "the-key", source: "a", path: "/s") == .limited(retryAfterSeconds: 6))
        clock.withLock { $0 += 6 }
        #expect(auth.check(authorization: "the-key", source: "a", path: "/s") == .admitted)
        #expect(auth.check(authorization: "guess", source: "a", path: "/s") == .refused)
        #expect(auth.check(authorization: "guess", source: "a", path: "/s") == .limited(retryAfterSeconds: 10))
        // Many sources: memory stays bounded.
        for source in 0..<50 { _ = auth.check(authorization: "guess", source: "noise-\(source)", path: "/s") }
        #expect(auth.trackedSources <= 4)
        // Sources whose attempts have all come back are forgotten first.
        clock.withLock { $0 += 100 }
        _ = auth.check(authorization: "guess", source: "late", path: "/s")
        #expect(auth.trackedSources <= 4)
        #expect(auth.check(authorization: "the-key", source: "late", path: "/s") == .admitted)
        // No key configured: nothing is admitted.
        let closed = AdminAuth(apiKey: "", logger: TestAgent.logger)
        #expect(closed.check(authorization: "", source: "a", path: "/s") == .refused)
    }

    @Test func theAdminAPIAnswers429WithRetryAfterOnceASourceFailedTooOften() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            for attempt in 0..<10 {
                let refused = try await agent.http(.GET, "/api/public/proxy/status", headers: [("Authorization", "guess-\(attempt)")])
                #expect(refused.status == 401)
            }
            let limited = try await agent.http(.GET, "/api/public/proxy/status", headers: [("Authorization", TestAgent.apiKey)])
            #expect(limited.status == 429)
            #expect(Int(limited.headers.first(name: "Retry-After") ?? "") ?? 0 >= 1)
            let bootstrap = try await agent.bootstrap("{}")
            #expect(bootstrap.status == 429, "every admin endpoint shares the limit")
            // SDK endpoints are not admin endpoints.
            let sdk = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", TestData.serverSecret)])
            #expect(sdk.status == 200)
        }
    }
}
