import AgentCore
import Foundation
import Synchronization
import Testing
@testable import FeatBitSimulatorCore

@Suite("Simulator: handshake, messages, pushes")
struct SimulatorTests {
    static let now: Int64 = 1_800_000_000_000

    static func simulator(_ data: SimulatorData, keys: [String] = [SimFixtures.apiKey]) -> Simulator {
        Simulator(data: data, settings: .init(apiKeys: keys), clock: { now })
    }

    static func token(_ secret: String, at ms: Int64 = now) -> String {
        StreamingToken.encode(secret: secret, timestamp: ms, position: 9)
    }

    @Test("relay-proxy handshake: unknown key or no server secret → 4003; known key resolves every server secret")
    func relayProxyHandshake() throws {
        let sim = Self.simulator(try SimFixtures.twoEnvironments(secondServerSecretForA: true))
        #expect(sim.validateHandshake(query: ["type": "relay-proxy", "token": "rp-unknown"]) == .failure(.invalid("unknown relay-proxy key")))
        #expect(sim.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey, "version": "3"])
                == .failure(.invalid("unsupported version")))
        guard case .success(.relayProxy(let key, let secrets)) = sim.validateHandshake(
            query: ["type": "relay-proxy", "token": SimFixtures.apiKey]) else { Issue.record("rejected"); return }
        #expect(key == SimFixtures.apiKey)
        #expect(secrets.count == 3)
        let clientOnly = Self.simulator(try SimulatorData(bootstrap: JSONValue.parse(#"""
            {"eventType":"rp_full","items":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","secrets":[{"type":"client","projectKey":"p","envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","envKey":"e","value":"0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"}],"featureFlags":[],"segments":[]}]}
            """#)))
        #expect(clientOnly.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey])
                == .failure(.invalid("relay-proxy key has no server secret in scope")))
    }

    @Test("server/client handshake follows spec §1.4")
    func sdkHandshake() throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        guard case .success(.server(let secret)) = sim.validateHandshake(
            query: ["type": "server", "token": Self.token(SimFixtures.serverSecretA)]) else { Issue.record(); return }
        #expect(secret.envId == SimFixtures.envA)
        #expect(sim.validateHandshake(query: ["type": "server", "token": Self.token(SimFixtures.serverSecretA, at: Self.now - 30_001)])
                == .failure(.invalid("token expired")))
        if case .failure = sim.validateHandshake(query: ["type": "server", "token": Self.token(SimFixtures.serverSecretA, at: Self.now + 30_000)]) {
            Issue.record("exactly 30 s must be accepted")
        }
        #expect(sim.validateHandshake(query: ["type": "client", "token": Self.token(SimFixtures.serverSecretA)])
                == .failure(.invalid("secret type mismatch")))
        #expect(sim.validateHandshake(query: ["type": "server", "token": Self.token(SimFixtures.serverSecretB)])
                == .failure(.invalid("unknown secret")))
        #expect(sim.validateHandshake(query: ["type": "server", "token": "QQQQS123"]) == .failure(.invalid("malformed token")))
        #expect(sim.validateHandshake(query: ["type": "Server", "token": Self.token(SimFixtures.serverSecretA)])
                == .failure(.invalid("unsupported type")))
        #expect(sim.validateHandshake(query: ["type": "server", "token": "  "]) == .failure(.invalid("missing token")))
        guard case .success(.client) = sim.validateHandshake(
            query: ["type": "client", "token": Self.token(SimFixtures.clientSecretA)]) else { Issue.record(); return }
    }

    @Test("a flag change is pushed once per server secret to relay proxies, once to server SDKs of that env only")
    func pushFanOut() async throws {
        let sim = Self.simulator(try SimFixtures.twoEnvironments(secondServerSecretForA: true))
        let rpSocket = FakeSocket(), serverA = FakeSocket(), serverB = FakeSocket()
        guard case .success(let rpKind) = sim.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey])
        else { Issue.record(); return }
        _ = rpSocket.open(sim, kind: rpKind)
        let secrets = sim.data.serverSecrets
        _ = serverA.open(sim, kind: .server(secret: secrets[0]))
        _ = serverB.open(sim, kind: .server(secret: secrets[2]))
        let flag = SimFixtures.flag(id: "a0000000-0000-4000-8000-000000000001", key: "new-flag", updatedAt: Self.now)
        let counts = try sim.upsert([flag])
        #expect(counts == Simulator.PushCounts(relayProxy: 2, server: 1, client: 0))
        let rpMessages = await rpSocket.drain().compactMap(\.json)
        #expect(rpMessages.count == 2)
        #expect(rpMessages[0] == rpMessages[1])
        #expect(rpMessages[0]["data"]?["eventType"] == .string("patch"))
        #expect(rpMessages[0]["data"]?["featureFlags"]?.arrayValue?.first?["key"] == .string("new-flag"))
        #expect(await serverA.drain().count == 1)
        #expect(await serverB.drain().isEmpty)
        #expect(sim.data.environments[SimFixtures.envA]?.flags[flag.id] != nil)
    }

    @Test("an upsert into an unknown environment is refused and changes nothing")
    func unknownEnvironment() throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        let before = sim.data.revision
        #expect(throws: SimulatorDataError.self) {
            try sim.upsert([SimFixtures.flag(id: "x", env: SimFixtures.envB, key: "x", updatedAt: 1)])
        }
        #expect(sim.data.revision == before)
    }

    @Test("pushes follow the connect-time environment set: a bootstrap adds no push target")
    func connectTimeScope() async throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        let socket = FakeSocket()
        guard case .success(let kind) = sim.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey])
        else { Issue.record(); return }
        _ = socket.open(sim, kind: kind)
        sim.replace(with: try DataSetParser.parseBootstrap(JSONValue.parse(SimFixtures.twoEnvironments().backupJSON())))
        let counts = try sim.upsert([SimFixtures.flag(id: "b2", env: SimFixtures.envB, key: "b2", updatedAt: 2)])
        #expect(counts.relayProxy == 0)
        #expect(await socket.drain().isEmpty)
    }

    @Test("messages: ping → pong, data-sync → rp_full/rp_patch, rp-agent-status recorded, garbage ignored")
    func messages() async throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        let socket = FakeSocket()
        guard case .success(let kind) = sim.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey])
        else { Issue.record(); return }
        let connection = socket.open(sim, kind: kind)
        for text in [
            #"{"messageType":"ping","data":{}}"#,
            "not json", #"{"messageType":"ping"}"#, #"{"data":{}}"#, #"{"messageType":"nope","data":{}}"#,
            #"{"messageType":"data-sync","data":{"timestamp":null}}"#,
            #"{"messageType":"DATA-SYNC","data":{"timestamp":0}}"#,
            #"{"messageType":"data-sync","data":{"timestamp":1674885300000,"envs":[{"envId":"226b9bf8-4af3-4ffa-9b01-162270e4cd40","timestamp":1674885300000}]}}"#,
            #"{"messageType":"rp-agent-status","data":{"agentId":"a1","status":"{\"syncState\":\"Stable\"}"}}"#,
            #"{"messageType":"rp-agent-status","data":{"agentId":"a1","status":"{\"syncState\":\"Interrupted\"}"}}"#,
        ] {
            sim.handleMessage(Array(text.utf8), from: connection)
        }
        let out = await socket.drain()
        #expect(out.first == .text(Array(#"{"messageType":"pong","data":{}}"#.utf8)))
        #expect(out.dropFirst().compactMap { $0.json?["data"]?["eventType"]?.stringValue } == ["rp_full", "rp_patch"])
        let statuses = sim.agentStatuses
        #expect(statuses.count == 1)
        #expect(statuses.first?.status == #"{"syncState":"Interrupted"}"#)
        #expect(statuses.first?.reports == 2)
        let state = sim.stateJSON()
        #expect(state["rpFullSent"] == .integer(1))
        #expect(state["rpPatchSent"] == .integer(1))
    }

    @Test("server and client SDK data-sync and pushes")
    func sdkConnections() async throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        let server = FakeSocket(), client = FakeSocket()
        let data = sim.data
        let serverConnection = server.open(sim, kind: .server(secret: data.secret(SimFixtures.serverSecretA)!))
        let clientConnection = client.open(sim, kind: .client(secret: data.secret(SimFixtures.clientSecretA)!))
        sim.handleMessage(Array(#"{"messageType": "data-sync", "data": {"timestamp": 0}}"#.utf8), from: serverConnection)
        sim.handleMessage(Array(#"{"messageType":"data-sync","data":{"timestamp":0,"user":{"keyId":"3db19c81-e149-4b97-8a0d-79d34531fe59","name":"tester","customizedProperties":[]}}}"#.utf8),
                          from: clientConnection)
        // A segment referenced by `custom-rule-with-segment` changes: server gets the segment, client the flag.
        var segment = try #require(sim.data.environments[SimFixtures.envA]?.segments["0779d76b-afc6-4886-ab65-af8c004273ad"]?.json.objectValue)
        segment["updatedAt"] = .string(SimFixtures.iso(Self.now))
        try sim.upsert([DataItem(kind: .segment, json: .object(segment))])
        let serverOut = await server.drain().compactMap(\.json)
        #expect(serverOut.map { $0["data"]?["eventType"]?.stringValue } == ["full", "patch"])
        #expect(serverOut[0]["data"]?["featureFlags"]?.arrayValue?.count == 5)
        #expect(serverOut[1]["data"]?["segments"]?.arrayValue?.count == 1)
        let clientOut = await client.drain().compactMap(\.json)
        #expect(clientOut.map { $0["data"]?["eventType"]?.stringValue } == ["full", "patch"])
        let full = clientOut[0]["data"]?["featureFlags"]?.arrayValue ?? []
        #expect(full.first { $0["id"] == .string("return-10p-true") }?["variation"] == .string("false"))
        #expect(clientOut[1]["data"]?["featureFlags"]?.arrayValue?.map { $0["id"]?.stringValue } == ["custom-rule-with-segment"])
    }

    @Test("down drops every socket without a close frame; close sends the code; send-raw reaches relay proxies")
    func downCloseRaw() async throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        guard case .success(let kind) = sim.validateHandshake(query: ["type": "relay-proxy", "token": SimFixtures.apiKey])
        else { Issue.record(); return }
        let a = FakeSocket(), b = FakeSocket(), server = FakeSocket()
        _ = a.open(sim, kind: kind)
        _ = b.open(sim, kind: kind)
        _ = server.open(sim, kind: .server(secret: sim.data.secret(SimFixtures.serverSecretA)!))
        #expect(sim.sendRaw(Array("garbage".utf8), type: "relay-proxy") == 2)
        #expect(sim.close(type: "relay-proxy", code: 4003, reason: "bye") == 2)
        #expect(await a.drain() == [.text(Array("garbage".utf8)), .close(code: 4003, reason: "bye")])
        #expect(sim.connections().count == 1)
        #expect(sim.down() == 1)
        #expect(!sim.isUp)
        #expect(server.aborted.withLock { $0 })
        #expect(await server.drain().isEmpty)
        sim.up()
        #expect(sim.isUp)
        _ = b
    }

    @Test("touch timestamps are strictly increasing past the data version")
    func touch() throws {
        let sim = Self.simulator(try SimFixtures.fakeData())
        #expect(sim.touchTimestamp() == Self.now)
        try sim.upsert([SimFixtures.flag(id: "f", key: "f", updatedAt: Self.now + 10)])
        #expect(sim.touchTimestamp() == Self.now + 11)
    }
}

@Suite("Failure injection")
struct FailureInjectionTests {
    @Test("queued plans are consumed in order, each for its count, then requests succeed")
    func sequencing() throws {
        let sim = Simulator(data: SimulatorData(), settings: .init(apiKeys: [SimFixtures.apiKey]))
        sim.addRegistrationFailure(FailurePlan(status: 500, count: 2))
        sim.addRegistrationFailure(try FailurePlan(json: JSONValue.parse(#"{"status":429,"retryAfter":3}"#)))
        sim.addRegistrationFailure(try FailurePlan(json: JSONValue.parse(#"{"delayMs":20,"count":1}"#)))
        #expect(sim.registrationFailures.pending == 4)
        var outcomes: [Simulator.FaultOutcome] = []
        for _ in 0..<6 { outcomes.append(sim.beginRegistration()) }
        #expect(outcomes == [
            .injected(.forStatus(500, retryAfterSeconds: 1), delayMillis: 0),
            .injected(.forStatus(500, retryAfterSeconds: 1), delayMillis: 0),
            .injected(.forStatus(429, retryAfterSeconds: 3), delayMillis: 0),
            .delayed(20), .normal, .normal,
        ])
        #expect(sim.stateJSON()["registrationRequests"] == .integer(6))
        #expect(sim.registrationFailures.pending == 0)
    }

    @Test("the ELS bodies: 429 rate-limit JSON with Retry-After, 403 JSON, 500 empty")
    func responses() {
        let limited = InjectedResponse.forStatus(429, retryAfterSeconds: 2)
        #expect(limited.body == #"{"error":"Rate limit exceeded. Please try again later."}"#)
        #expect(limited.headers.contains { $0.0 == "Retry-After" && $0.1 == "2" })
        #expect(InjectedResponse.forStatus(403, retryAfterSeconds: 1).status == 403)
        #expect(InjectedResponse.forStatus(500, retryAfterSeconds: 1).body == "")
    }

    @Test("plan validation and clearing")
    func validation() throws {
        #expect(throws: FailurePlanError.self) { try FailurePlan(json: JSONValue.parse(#"{"count":2}"#)) }
        #expect(throws: FailurePlanError.self) { try FailurePlan(json: JSONValue.parse(#"{"status":"500"}"#)) }
        #expect(throws: FailurePlanError.self) { try FailurePlan(json: JSONValue.parse(#"{"status":700}"#)) }
        #expect(throws: FailurePlanError.self) { try FailurePlan(json: JSONValue.parse(#"[]"#)) }
        let sim = Simulator(data: SimulatorData(), settings: .init(apiKeys: []))
        sim.addInsightFailure(FailurePlan(status: 503, count: 3))
        sim.addInsightFailure(FailurePlan(status: 503, count: 0))
        #expect(sim.insightFailures.pending == 3)
        #expect(sim.beginInsight() == .injected(.forStatus(503, retryAfterSeconds: 1), delayMillis: 0))
        sim.clearInsightFailures()
        #expect(sim.beginInsight() == .normal)
    }

    @Test("registration keys: rp- prefix and known")
    func keys() {
        let sim = Simulator(data: SimulatorData(), settings: .init(apiKeys: [SimFixtures.apiKey, "not-rp"]))
        #expect(sim.isKnownRelayProxyKey(SimFixtures.apiKey))
        #expect(!sim.isKnownRelayProxyKey("not-rp"))
        #expect(!sim.isKnownRelayProxyKey("rp-other"))
        #expect(!sim.isKnownRelayProxyKey(nil))
        sim.register(agentId: "a")
        sim.register(agentId: "a")
        #expect(sim.registeredAgents == ["a"])
        #expect(sim.stateJSON()["registrations"] == .integer(2))
    }
}
