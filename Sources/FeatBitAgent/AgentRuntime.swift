import AgentCore
import AgentServer
import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import Persistence
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

    let database: FeatBitDatabase?

    init(configuration: AgentConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let status = AgentStatusBoard(mode: configuration.mode)
        self.status = status

        // featbit.db first: load what it holds and serve it at once; every later change is durable before it is seen.
        var loaded = LoadedState.empty
        var database: FeatBitDatabase?
        if let path = configuration.dbPath {
            switch FeatBitDatabase.open(path: path, logger: logger, status: status) {
            case .ready(let db, let state):
                database = db
                loaded = state
            case .unavailable(let problem):
                // The open already logged why; serve from memory (and from what could be salvaged).
                loaded = problem.salvaged ?? .empty
                status.update { $0.problems["db"] = problem.message }
            }
        }
        self.database = database
        let store = DataStore(initial: loaded.snapshot(), journal: database)
        self.store = store
        if loaded.isInitialised {
            logger.info("serving the data set stored in featbit.db", metadata: [
                "event": "db-loaded", "environments": "\(loaded.environments.count)",
                "dataVersion": "\(store.snapshot.version)", "sequence": "\(loaded.sequence)",
            ])
            // Until the upstream confirms it, what the db held may be stale.
            if configuration.mode == .auto { status.update { $0.dataMayBeStale = true } }
        }
        var settings = StreamingHub.Settings()
        settings.tokenExpiryMillis = Int64(configuration.tokenExpirySeconds) * 1000
        let group = MultiThreadedEventLoopGroup.singleton
        self.hub = StreamingHub(store: store, eventLoopGroup: group, settings: settings, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var notes: [String] = []

        let insights = InsightsPipeline(mode: Self.insightsMode(configuration, database: database, notes: &notes), logger: logger)
        services.append(.init(service: insights))
        var routeSettings = AgentRoutes.Settings(apiKey: configuration.apiKey)
        routeSettings.forwardEvents = configuration.forwardEvents
        routeSettings.nodeId = configuration.nodeId
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
        if let database {
            services.append(.init(service: DatabaseRetryService(database: database)))
        }

        if configuration.mode == .offline {
            if let path = configuration.dataFile {
                let fingerprint = DataFileSource.fingerprint(path: path)
                do {
                    store.apply(.replace(try DataFileSource.load(path: path)))
                } catch {
                    FileHandle.standardError.write(Data("configuration error: DataFile: \(error)\n".utf8))
                    throw ExitCode(2)
                }
                services.append(.init(service: DataFileSource(path: path, store: store, logger: logger,
                                                              loadedFingerprint: fingerprint)))
                notes.append("serving the data set in \(path) (watched for changes)")
            } else if store.snapshot.isInitialised {
                notes.append("no DataFile: serving the data set stored in \(configuration.dbPath ?? "featbit.db")")
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
    static func insightsMode(_ configuration: AgentConfiguration, database: FeatBitDatabase?,
                             notes: inout [String]) -> InsightsPipeline.Mode {
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
            return .anonymize(eventUri: eventUri, InsightAnonymizer(key: anonymizationKey(database, notes: &notes),
                                                                    allowedProperties: configuration.insightsAllowProperties))
        case .local:
            guard let database else {
                notes.append("insights: dropped (InsightsMode=local needs a writable featbit.db)")
                return .drop
            }
            notes.append("insights: kept in featbit.db (newest \(localInsightRetention) kept), never forwarded")
            return .local { rows in
                try database.appendInsights(rows.map { (timestamp: $0.0, envId: $0.1, body: $0.2) })
                _ = try database.pruneInsights(keepNewest: localInsightRetention)
            }
        }
    }

    /// Insight objects `InsightsMode=local` keeps; older ones are deleted.
    static let localInsightRetention = 100_000

    /// The HMAC key of `anonymize`, kept in featbit.db so pseudonyms stay stable across restarts.
    static func anonymizationKey(_ database: FeatBitDatabase?, notes: inout [String]) -> [UInt8] {
        if let hex = database?.metadata(MetadataKey.insightsSecret), let key = hexBytes(hex), key.count == 32 { return key }
        let key = InsightAnonymizer.newKey()
        do {
            guard let database else { throw CocoaError(.fileWriteUnknown) }
            try database.setMetadata(MetadataKey.insightsSecret, key.map { String(format: "%02x", $0) }.joined())
        } catch {
            notes.append("insights: the anonymisation key could not be stored; pseudonyms change on restart")
        }
        return key
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        return stride(from: 0, to: chars.count, by: 2).map { i in
            UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16)
        }.reduce(into: [UInt8]?([])) { result, byte in
            guard let byte, result != nil else { result = nil; return }
            result!.append(byte)
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
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app)] + services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        // A backstop for anything still waiting (a last insight flush to a server that does not answer): with the SDK
        // drain below, the process exits within 10 s of SIGTERM.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)
        let result: Result<Void, any Error>
        do { try await group.run(); result = .success(()) } catch { result = .failure(error) }
        let stillOpen = await hub.drain()
        if stillOpen > 0 {
            logger.warning("SDK sockets still open at exit", metadata: ["event": "shutdown-drain", "open": "\(stillOpen)"])
        }
        hub.stop()
        database?.close()
        logger.info("agent stopped", metadata: ["event": "stopped"])
        try result.get()
    }
}

/// Retries failed db writes every 10 s, rewriting the whole state once the disk takes writes again.
struct DatabaseRetryService: Service {
    let database: FeatBitDatabase

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await database.runRetryLoop(interval: .seconds(10))
        }
    }
}
