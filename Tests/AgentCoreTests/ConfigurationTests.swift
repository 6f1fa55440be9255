import Testing
@testable import AgentCore

@Suite struct ConfigurationTests {
    func resolve(options: [String: String] = [:], env: [String: String] = [:], file: [String: JSONValue] = [:])
        -> Result<AgentConfiguration, AgentConfiguration.Problems> {
        AgentConfiguration.resolve(options: options, environment: env, file: file, hostname: "host-1")
    }

    @Test func defaultsToOfflineWithTheOfficialDefaults() throws {
        let configuration = try resolve().get()
        #expect(configuration.mode == .offline)
        #expect(configuration.port == 6100)
        #expect(configuration.dbPath == "./featbit.db")
        #expect(configuration.agentId == "host-1")
        #expect(configuration.insightsMode == .forward)
        #expect(configuration.tokenExpirySeconds == 30)
        #expect(configuration.releaseCodePagesAfterSeconds == 30)
        #expect(try resolve(env: ["ReleaseCodePagesAfterSeconds": "0"]).get().releaseCodePagesAfterSeconds == 0)
    }

    @Test func streamingUriImpliesAutoAndDerivesTheEventUri() throws {
        let configuration = try resolve(env: ["StreamingUri": "wss://featbit.example.com/sub", "ApiKey": "rp-x"]).get()
        #expect(configuration.mode == .auto)
        #expect(configuration.eventUri == "https://featbit.example.com/sub")
    }

    @Test func precedenceIsOptionThenEnvironmentThenFile() throws {
        let configuration = try resolve(options: ["Port": "7001"], env: ["Port": "7002", "ApiKey": "rp-env"],
                                        file: ["Port": .integer(7003), "ApiKey": .string("rp-file"), "Mode": .string("manual")]).get()
        #expect(configuration.port == 7001)
        #expect(configuration.apiKey == "rp-env")
        #expect(configuration.mode == .manual)
    }

    @Test func everyProblemIsNamedByItsKey() {
        guard case .failure(let problems) = resolve(env: [
            "Mode": "Auto", "Port": "70000", "ForwardEvents": "maybe", "InsightsMode": "sell", "LogLevel": "loud",
            "Streaming__TokenExpirySeconds": "-1", "EventUri": "ftp://x", "ReleaseCodePagesAfterSeconds": "soon",
        ], file: ["Prot": .integer(1)]) else {
            Issue.record("expected problems")
            return
        }
        let keys = Set(problems.list.map(\.key))
        #expect(keys == ["Mode", "Port", "ForwardEvents", "InsightsMode", "LogLevel", "Streaming__TokenExpirySeconds", "EventUri",
                         "ReleaseCodePagesAfterSeconds", "Prot"])
    }

    @Test func tokenExpiryOutsideOneSecondToOneYearIsAProblemNotACrash() {
        for text in ["0", "31536001", "9223372036854775807", "1e16"] {
            guard case .failure(let problems) = resolve(env: ["Mode": "offline", "Streaming__TokenExpirySeconds": text]) else {
                Issue.record("\(text) was accepted")
                continue
            }
            #expect(problems.list.map(\.key) == ["Streaming__TokenExpirySeconds"])
        }
        #expect((try? resolve(env: ["Mode": "offline", "Streaming__TokenExpirySeconds": "31536000"]).get())?.tokenExpirySeconds == 31_536_000)
    }

    @Test func modeRequirements() {
        #expect(throws: AgentConfiguration.Problems.self) { try resolve(env: ["Mode": "manual"]).get() }
        #expect(throws: AgentConfiguration.Problems.self) { try resolve(env: ["Mode": "auto", "ApiKey": "rp-x"]).get() }
        #expect(throws: AgentConfiguration.Problems.self) { try resolve(env: ["StreamingUri": "http://x", "ApiKey": "rp-x"]).get() }
        #expect(throws: AgentConfiguration.Problems.self) { try resolve(env: ["InsightsMode": "local", "DbPath": "none"]).get() }
    }

    @Test func forwardEventsFalseMeansDrop() throws {
        #expect(try resolve(env: ["ForwardEvents": "false", "InsightsMode": "anonymize"]).get().insightsMode == .drop)
    }

    // MARK: - The mesh

    static let mesh: [String: String] = [
        "NodeId": "n1", "ClusterAddress": "127.0.0.1:7101", "Peers": "n2@127.0.0.1:7102, n3@[::1]:7103",
        "ClusterSecret": "a-long-secret",
    ]

    @Test func aMeshConfigurationIsReadWithTheWanDefaults() throws {
        let cluster = try #require(try resolve(env: Self.mesh).get().cluster)
        #expect(cluster.nodeId == "n1" && cluster.listenHost == "127.0.0.1" && cluster.listenPort == 7101)
        #expect(cluster.peers.map(\.nodeId) == ["n2", "n3"])
        #expect(cluster.peers.map(\.address) == ["127.0.0.1:7102", "[::1]:7103"])
        #expect(cluster.heartbeatMs == 500 && cluster.electionTimeoutMs == 5_000 && !cluster.isWitness)
        var lan = Self.mesh
        lan["ClusterHeartbeatMs"] = "200"
        lan["ClusterElectionTimeoutMs"] = "1500"
        lan["ClusterRole"] = "witness"
        let tuned = try #require(try resolve(options: lan).get().cluster)
        #expect(tuned.heartbeatMs == 200 && tuned.electionTimeoutMs == 1_500 && tuned.isWitness)
        #expect(try resolve().get().cluster == nil, "no Peers: a single node")
    }

    @Test(arguments: [
        (["ClusterSecret": ""], "ClusterSecret"),
        (["ClusterSecret": "short"], "ClusterSecret"),
        (["Peers": "n1@127.0.0.1:7101,n2@127.0.0.1:7102"], "Peers"),
        (["Peers": "n2@127.0.0.1:7102,n2@127.0.0.1:7103"], "Peers"),
        (["Peers": "n2@127.0.0.1"], "Peers"),
        (["Peers": "n2@127.0.0.1:99999"], "Peers"),
        (["Peers": "127.0.0.1:7102"], "Peers"),
        (["ClusterAddress": ""], "ClusterAddress"),
        (["ClusterAddress": "nowhere"], "ClusterAddress"),
        (["DbPath": "none"], "DbPath"),
        (["ClusterHeartbeatMs": "0"], "ClusterHeartbeatMs"),
        (["ClusterHeartbeatMs": "500", "ClusterElectionTimeoutMs": "1000"], "ClusterElectionTimeoutMs"),
        (["ClusterRole": "boss"], "ClusterRole"),
        (["ClusterTlsCertFile": "/etc/mesh/node.pem"], "ClusterTlsKeyFile"),
        (["ClusterTlsCertFile": "/etc/mesh/node.pem", "ClusterTlsKeyFile": "/etc/mesh/node.key"], "ClusterTlsCaFile"),
        (["ClusterTlsCaFile": "/etc/mesh/ca.pem"], "ClusterTlsCertFile"),
    ])
    func aBadMeshSettingIsNamed(change: [String: String], key: String) {
        var env = Self.mesh
        for (k, v) in change { env[k] = v }
        guard case .failure(let problems) = resolve(env: env) else {
            Issue.record("accepted \(change)")
            return
        }
        #expect(problems.list.contains { $0.key == key }, "\(problems.list)")
    }

    @Test func aClusterAddressWithoutPeersIsAMistake() {
        guard case .failure(let problems) = resolve(env: ["ClusterAddress": "127.0.0.1:7101"]) else {
            Issue.record("accepted ClusterAddress without Peers")
            return
        }
        #expect(problems.list.map(\.key) == ["ClusterAddress"])
    }

    @Test func tlsNeedsTheCertificateAndTheKeyTogether() throws {
        let both = try resolve(env: ["TlsCertFile": "/etc/agent/tls.crt", "TlsKeyFile": "/etc/agent/tls.key"]).get()
        #expect(both.tls == .init(certFile: "/etc/agent/tls.crt", keyFile: "/etc/agent/tls.key"))
        #expect(try resolve().get().tls == nil, "no TLS keys: plain HTTP")
        for (env, key) in [(["TlsCertFile": "/etc/agent/tls.crt"], "TlsKeyFile"), (["TlsKeyFile": "/etc/agent/tls.key"], "TlsCertFile")] {
            guard case .failure(let problems) = resolve(env: env) else {
                Issue.record("accepted \(env)")
                continue
            }
            #expect(problems.list.map(\.key) == [key])
        }
    }

    @Test func meshTlsIsAllThreeFilesAndOnlyWithPeers() throws {
        var env = Self.mesh
        env["ClusterTlsCertFile"] = "/m/node.pem"
        env["ClusterTlsKeyFile"] = "/m/node.key"
        env["ClusterTlsCaFile"] = "/m/ca.pem"
        let cluster = try #require(try resolve(env: env).get().cluster)
        #expect(cluster.tls == .init(certFile: "/m/node.pem", keyFile: "/m/node.key", caFile: "/m/ca.pem"))
        #expect(try #require(try resolve(env: Self.mesh).get().cluster).tls == nil)
        guard case .failure(let problems) = resolve(env: ["ClusterTlsCaFile": "/m/ca.pem"]) else {
            Issue.record("accepted ClusterTlsCaFile without Peers")
            return
        }
        #expect(problems.list.map(\.key) == ["ClusterTlsCaFile"])
    }

    @Test func wssToAnIPAddressIsRefusedBecauseTLSNeedsAHostName() {
        for uri in ["wss://10.0.0.5:5100", "wss://[::1]:5100/sub", "wss://127.0.0.1"] {
            guard case .failure(let problems) = resolve(env: ["StreamingUri": uri, "ApiKey": "rp-x"]) else {
                Issue.record("accepted \(uri)")
                continue
            }
            #expect(problems.list.map(\.key) == ["StreamingUri"])
        }
        for uri in ["ws://10.0.0.5:5100", "wss://featbit.internal:5100", "wss://10.example.com"] {
            #expect((try? resolve(env: ["StreamingUri": uri, "ApiKey": "rp-x"]).get()) != nil, "\(uri)")
        }
    }

    @Test func upstreamCaFileIsKept() throws {
        let configuration = try resolve(env: ["StreamingUri": "wss://featbit.internal", "ApiKey": "rp-x",
                                              "UpstreamCaFile": "/etc/agent/featbit-ca.pem"]).get()
        #expect(configuration.upstreamCaFile == "/etc/agent/featbit-ca.pem")
    }
}
