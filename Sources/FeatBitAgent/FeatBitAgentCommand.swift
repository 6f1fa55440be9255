import AgentApp
import AgentCore
import AgentServer
import AgentTLS
import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle

@main
struct FeatBitAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "featbit-agent",
        abstract: "FeatBit Agent: serves FeatBit SDKs from memory as a read replica and relay proxy of the FeatBit evaluation server.",
        discussion: """
        Every option can also be set by the environment variable of the key's name (e.g. Mode, ApiKey, Port) or \
        in a JSON --config file with the same keys. Precedence: option > environment > config file > default.
        """
    )

    @Option(name: .customLong("config"), help: "JSON file with configuration keys (Mode, ApiKey, Port, ...)")
    var configFile: String?
    @Option(name: .customLong("mode"), help: help("Mode")) var mode: String?
    @Option(name: .customLong("api-key"), help: help("ApiKey")) var apiKey: String?
    @Option(name: .customLong("agent-id"), help: help("AgentId")) var agentId: String?
    @Option(name: .customLong("streaming-uri"), help: help("StreamingUri")) var streamingUri: String?
    @Option(name: .customLong("forward-events"), help: help("ForwardEvents")) var forwardEvents: String?
    @Option(name: .customLong("event-uri"), help: help("EventUri")) var eventUri: String?
    @Option(name: .customLong("insights-mode"), help: help("InsightsMode")) var insightsMode: String?
    @Option(name: .customLong("insights-allow-properties"), help: help("InsightsAllowProperties")) var insightsAllow: String?
    @Option(name: .customLong("port"), help: help("Port")) var port: String?
    @Option(name: .customLong("bind"), help: help("BindAddress")) var bind: String?
    @Option(name: .customLong("db"), help: help("DbPath")) var db: String?
    @Option(name: .customLong("data-file"), help: help("DataFile")) var dataFile: String?
    @Option(name: .customLong("node-id"), help: help("NodeId")) var nodeId: String?
    @Option(name: .customLong("cluster-address"), help: help("ClusterAddress")) var clusterAddress: String?
    @Option(name: .customLong("peers"), help: help("Peers")) var peers: String?
    @Option(name: .customLong("cluster-secret"), help: help("ClusterSecret")) var clusterSecret: String?
    @Option(name: .customLong("cluster-heartbeat-ms"), help: help("ClusterHeartbeatMs")) var clusterHeartbeatMs: String?
    @Option(name: .customLong("cluster-election-timeout-ms"), help: help("ClusterElectionTimeoutMs"))
    var clusterElectionTimeoutMs: String?
    @Option(name: .customLong("cluster-role"), help: help("ClusterRole")) var clusterRole: String?
    @Option(name: .customLong("tls-cert-file"), help: help("TlsCertFile")) var tlsCertFile: String?
    @Option(name: .customLong("tls-key-file"), help: help("TlsKeyFile")) var tlsKeyFile: String?
    @Option(name: .customLong("cluster-tls-cert-file"), help: help("ClusterTlsCertFile")) var clusterTlsCertFile: String?
    @Option(name: .customLong("cluster-tls-key-file"), help: help("ClusterTlsKeyFile")) var clusterTlsKeyFile: String?
    @Option(name: .customLong("cluster-tls-ca-file"), help: help("ClusterTlsCaFile")) var clusterTlsCaFile: String?
    @Option(name: .customLong("upstream-ca-file"), help: help("UpstreamCaFile")) var upstreamCaFile: String?
    @Option(name: .customLong("admin-auth-failure-limit"), help: help("AdminAuthFailureLimit")) var adminAuthFailureLimit: String?
    @Option(name: .customLong("release-code-pages-after-seconds"), help: help("ReleaseCodePagesAfterSeconds"))
    var releaseCodePagesAfterSeconds: String?
    @Option(name: .customLong("token-expiry-seconds"), help: help("Streaming__TokenExpirySeconds")) var tokenExpiry: String?
    @Option(name: .customLong("log-level"), help: help("LogLevel")) var logLevel: String?
    @Flag(name: .customLong("check-config"),
          help: "Validate the configuration, print it as JSON (secrets left out) and exit 0, or 2 with the problems; binds nothing")
    var checkConfig = false

    static func help(_ key: String) -> ArgumentHelp {
        guard let k = AgentConfiguration.keys.first(where: { $0.name == key }) else { return ArgumentHelp("") }
        return ArgumentHelp("\(k.help) [env \(k.name); default: \(k.defaultText)]")
    }

    var optionValues: [String: String] {
        let pairs: [(String, String?)] = [
            ("Mode", mode), ("ApiKey", apiKey), ("AgentId", agentId), ("StreamingUri", streamingUri),
            ("ForwardEvents", forwardEvents), ("EventUri", eventUri), ("InsightsMode", insightsMode),
            ("InsightsAllowProperties", insightsAllow), ("Port", port), ("BindAddress", bind), ("DbPath", db),
            ("DataFile", dataFile), ("NodeId", nodeId), ("ClusterAddress", clusterAddress), ("Peers", peers),
            ("ClusterSecret", clusterSecret), ("ClusterHeartbeatMs", clusterHeartbeatMs),
            ("ClusterElectionTimeoutMs", clusterElectionTimeoutMs), ("ClusterRole", clusterRole),
            ("Streaming__TokenExpirySeconds", tokenExpiry), ("LogLevel", logLevel),
            ("TlsCertFile", tlsCertFile), ("TlsKeyFile", tlsKeyFile), ("ClusterTlsCertFile", clusterTlsCertFile),
            ("ClusterTlsKeyFile", clusterTlsKeyFile), ("ClusterTlsCaFile", clusterTlsCaFile), ("UpstreamCaFile", upstreamCaFile),
            ("AdminAuthFailureLimit", adminAuthFailureLimit), ("ReleaseCodePagesAfterSeconds", releaseCodePagesAfterSeconds),
        ]
        return Dictionary(uniqueKeysWithValues: pairs.compactMap { key, value in value.map { (key, $0) } })
    }

    func run() async throws {
        let configuration = try resolveConfiguration()
        if checkConfig {
            print(String(decoding: JSONWriter.bytes(Self.summary(configuration)), as: UTF8.self))
            return
        }
        let level = Logger.Level(rawValue: configuration.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "featbit-agent")

        let runtime: AgentRuntime
        do {
            runtime = try AgentRuntime(configuration: configuration, metrics: registry, logger: logger)
        } catch let error as AgentRuntime.ConfigurationError {
            FileHandle.standardError.write(Data("configuration error: \(error.description)\n".utf8))
            throw ExitCode(2)
        }
        try await runtime.run()
    }

    /// The resolved configuration for `--check-config`: what deployment tooling and its tests compare (no secret).
    static func summary(_ c: AgentConfiguration) -> JSONValue {
        var object: [String: JSONValue] = [
            "mode": .string(c.mode.rawValue), "apiKeySet": .bool(c.apiKey != nil), "agentId": .string(c.agentId),
            "streamingUri": c.streamingUri.map { .string($0) } ?? .null, "insightsMode": .string(c.insightsMode.rawValue),
            "port": .integer(Int64(c.port)), "bindAddress": .string(c.bindAddress),
            "dbPath": c.dbPath.map { .string($0) } ?? .null, "nodeId": .string(c.nodeId), "logLevel": .string(c.logLevel.rawValue),
            "cluster": .null, "tls": .bool(c.tls != nil), "upstreamCaFile": c.upstreamCaFile.map { .string($0) } ?? .null,
            "adminAuthFailureLimit": .integer(Int64(c.adminAuthFailureLimit)),
            "releaseCodePagesAfterSeconds": .integer(Int64(c.releaseCodePagesAfterSeconds)),
        ]
        if let mesh = c.cluster {
            object["cluster"] = .object([
                "address": .string("\(mesh.listenHost):\(mesh.listenPort)"),
                "peers": .array(mesh.peers.map { .string("\($0.nodeId)@\($0.address)") }),
                "heartbeatMs": .integer(Int64(mesh.heartbeatMs)), "electionTimeoutMs": .integer(Int64(mesh.electionTimeoutMs)),
                "role": .string(mesh.isWitness ? "witness" : "voter"), "tls": .bool(mesh.tls != nil),
            ])
        }
        return .object(object)
    }

    /// Resolves the configuration; on problems prints one line per problem and exits with code 2 before binding.
    func resolveConfiguration() throws -> AgentConfiguration {
        var file: [String: JSONValue] = [:]
        var problems: [String] = []
        if let path = configFile {
            do {
                let json = try JSONValue.parse(try Data(contentsOf: URL(fileURLWithPath: path)))
                if let object = json.objectValue { file = object } else { problems.append("--config: \(path) is not a JSON object") }
            } catch {
                problems.append("--config: cannot read \(path) as JSON (\(error))")
            }
        }
        switch AgentConfiguration.resolve(options: optionValues, environment: ProcessInfo.processInfo.environment,
                                          file: file, hostname: ProcessInfo.processInfo.hostName) {
        case .success(let configuration) where problems.isEmpty:
            // The certificate, key and CA files must be readable, PEM, and each key must match its certificate.
            let tlsProblems = AgentTLSSetup.problems(configuration)
            if tlsProblems.isEmpty { return configuration }
            problems.append(contentsOf: tlsProblems.map(\.description))
        case .success:
            break
        case .failure(let found):
            problems.append(contentsOf: found.list.map(\.description))
        }
        for line in problems { FileHandle.standardError.write(Data("configuration error: \(line)\n".utf8)) }
        throw ExitCode(2)
    }
}
