import AgentCore
import AgentServer
import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Upstream

/// Wires the modules together for one configuration and runs them as services until SIGTERM/SIGINT.
struct AgentRuntime {
    let configuration: AgentConfiguration
    let logger: Logger
    let store: DataStore
    let status: AgentStatusBoard
    let hub: StreamingHub
    let routes: AgentRoutes
    let services: [ServiceGroupConfiguration.ServiceConfiguration]
    let startupNotes: [String]

    init(configuration: AgentConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let store = DataStore()
        self.store = store
        self.status = AgentStatusBoard(mode: configuration.mode)
        var settings = StreamingHub.Settings()
        settings.tokenExpiryMillis = Int64(configuration.tokenExpirySeconds) * 1000
        let group = MultiThreadedEventLoopGroup.singleton
        self.hub = StreamingHub(store: store, eventLoopGroup: group, settings: settings, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var notes: [String] = []

        let insights = InsightsPipeline(mode: Self.insightsMode(configuration, notes: &notes), logger: logger)
        services.append(.init(service: insights))
        var routeSettings = AgentRoutes.Settings(apiKey: configuration.apiKey)
        routeSettings.forwardEvents = configuration.forwardEvents
        self.routes = AgentRoutes(hub: hub, status: status, settings: routeSettings, insights: insights, metrics: metrics,
                                  logger: logger)

        if configuration.mode == .auto, let streamingUri = configuration.streamingUri, let apiKey = configuration.apiKey {
            let registrar = AgentRegistrar(
                settings: .init(streamingUri: streamingUri, apiKey: apiKey, agentId: configuration.agentId),
                status: status, logger: logger)
            let upstream = UpstreamClient(settings: .init(streamingUri: streamingUri, apiKey: apiKey), store: store,
                                          status: status, logger: logger, agentId: { registrar.agentId })
            // Registration ends once it succeeds; that is not a failure of the agent.
            services.append(.init(service: registrar, successTerminationBehavior: .ignore))
            services.append(.init(service: upstream))
            notes.append("syncing from \(streamingUri) as agent \(configuration.agentId)")
        }
        if configuration.mode == .offline {
            if let path = configuration.dataFile {
                do {
                    store.apply(.replace(try DataFileSource.load(path: path)))
                } catch {
                    FileHandle.standardError.write(Data("configuration error: DataFile: \(error)\n".utf8))
                    throw ExitCode(2)
                }
                services.append(.init(service: DataFileSource(path: path, store: store, logger: logger)))
                notes.append("serving the data set in \(path) (watched for changes)")
            } else {
                let demo = try DataSetParser.parseBootstrap(try JSONValue.parse(DemoDataSet.json))
                store.apply(.replace(demo))
                notes.append("no DataFile: serving the embedded demo data set (environment demo/dev)")
                notes.append("server SDK secret: \(DemoDataSet.serverSecret)")
                notes.append("client SDK secret: \(DemoDataSet.clientSecret)")
            }
        }
        self.services = services
        self.startupNotes = notes
    }

    /// The insights path for the configuration (data protection: forward, anonymize, local or drop).
    static func insightsMode(_ configuration: AgentConfiguration, notes: inout [String]) -> InsightsPipeline.Mode {
        switch configuration.insightsMode {
        case .drop:
            notes.append("insights: dropped")
            return .drop
        case .forward, .anonymize:
            guard let eventUri = configuration.eventUri else {
                notes.append("insights: dropped (no EventUri to forward them to)")
                return .drop
            }
            if configuration.insightsMode == .forward {
                notes.append("insights: forwarded to \(eventUri)")
                return .forward(eventUri: eventUri)
            }
            notes.append("insights: anonymised, then forwarded to \(eventUri)")
            return .anonymize(eventUri: eventUri, InsightAnonymizer(key: InsightAnonymizer.newKey(),
                                                                    allowedProperties: configuration.insightsAllowProperties))
        case .local:
            notes.append("insights: kept locally")
            return .drop
        }
    }

    func run() async throws {
        let hub = self.hub
        let configuration = self.configuration
        let notes = startupNotes
        let logger = self.logger
        let app = AgentServerFactory.makeApplication(
            routes: routes, hub: hub, bindAddress: configuration.bindAddress, port: configuration.port, logger: logger
        ) { port in
            logger.info("agent listening", metadata: [
                "event": "listening", "port": "\(port)", "mode": "\(configuration.mode.rawValue)",
            ])
            let host = configuration.bindAddress == "0.0.0.0" ? "127.0.0.1" : configuration.bindAddress
            var text = "FeatBit Agent (\(configuration.mode.rawValue) mode) listening on port \(port)\n"
            for note in notes { text += "  \(note)\n" }
            text += "  point an SDK at streaming URL ws://\(host):\(port) and event URL http://\(host):\(port)\n"
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        hub.start()
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: app)] + services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        hub.stop()
        logger.info("agent stopped", metadata: ["event": "stopped"])
    }
}
