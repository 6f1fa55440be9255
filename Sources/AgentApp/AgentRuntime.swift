import AgentCore
import AgentServer
import AgentTLS
import Cluster
import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import Persistence
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals
import Upstream

/// Wires the modules together for one configuration and runs them as services until SIGTERM/SIGINT: a single node,
/// or a node of a mesh (then only the leader syncs with the FeatBit server, and followers get every change from it).
public struct AgentRuntime: Sendable {
    /// A configuration problem found while starting (exit code 2).
    public struct ConfigurationError: Error, CustomStringConvertible {
        public let description: String
    }

    public let configuration: AgentConfiguration
    let logger: Logger
    public let store: DataStore
    public let status: AgentStatusBoard
    let hub: StreamingHub
    let routes: AgentRoutes
    let services: [ServiceGroupConfiguration.ServiceConfiguration]
    /// Checks the TLS files on SIGHUP too (nil without TLS).
    let tlsWatcher: TLSFileWatcher?
    let startupNotes: [String]
    /// The mesh node, in a mesh.
    public let mesh: MeshNode?

    let database: FeatBitDatabase?
    /// The TLS contexts of the configuration (none when no TLS key is set).
    public let tls: AgentTLSSetup

    public init(configuration: AgentConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        switch AgentTLSSetup.build(configuration) {
        case .success(let tls): self.tls = tls
        case .failure(let problems):
            throw ConfigurationError(description: problems.list.map(\.description).joined(separator: "; "))
        }
        let tls = self.tls
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

        let upstreamHTTP = Self.upstreamHTTP(tls)
        let insights = InsightsPipeline(mode: Self.insightsMode(configuration, database: database, notes: &notes),
                                        http: upstreamHTTP, logger: logger)
        services.append(.init(service: insights))
        var routeSettings = AgentRoutes.Settings(apiKey: configuration.apiKey)
        routeSettings.forwardEvents = configuration.forwardEvents
        routeSettings.insightsMode = configuration.insightsMode.rawValue
        routeSettings.adminAuth.burst = Double(configuration.adminAuthFailureLimit)
        routeSettings.nodeId = configuration.nodeId

        var mesh: MeshNode?
        if let cluster = configuration.cluster {
            let node = try Self.makeMeshNode(cluster, configuration: configuration, store: store, status: status,
                                             database: database, tls: tls, http: upstreamHTTP, logger: logger,
                                             notes: &notes)
            mesh = node
            routeSettings.clusterStatus = { node.currentStatus.json }
            routeSettings.bootstrap = { body in await Self.meshBootstrap(body, mesh: node, store: store, logger: logger) }
            node.setBootstrapHandler { body in
                await AgentRoutes.applyBootstrap(body, store: store, logger: logger) { change in
                    switch await node.applyLocal(change) {
                    case .applied(let outcome): return .applied(outcome.change)
                    case .notLeader: return .notApplied
                    }
                } ?? (503, Array(#"{"error":"this node no longer leads the mesh; retry"}"#.utf8))
            }
            if let database {
                // featbit.db recovering from a write failure rewrote everything: the mesh may acknowledge again.
                database.setHealthHandler { health in
                    if case .healthy = health { node.storageHealthChanged(healthy: true) } else { node.storageHealthChanged(healthy: false) }
                }
            }
        }
        self.mesh = mesh
        self.routes = AgentRoutes(hub: hub, status: status, settings: routeSettings, insights: insights, metrics: metrics,
                                  logger: logger)

        if configuration.mode == .auto, configuration.cluster == nil, let streamingUri = configuration.streamingUri,
           let apiKey = configuration.apiKey {
            let registrar = AgentRegistrar(
                settings: .init(streamingUri: streamingUri, apiKey: apiKey, agentId: configuration.agentId),
                http: upstreamHTTP, status: status, logger: logger)
            var upstreamSettings = UpstreamClient.Settings(streamingUri: streamingUri, apiKey: apiKey)
            upstreamSettings.tlsConfiguration = tls.upstream
            let upstream = UpstreamClient(settings: upstreamSettings, store: store,
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
                let fingerprint = FileFingerprint.of(path)
                let environments: [EnvironmentData]
                do {
                    environments = try DataFileSource.load(path: path)
                } catch {
                    throw ConfigurationError(description: "DataFile: \(error)")
                }
                // In a mesh the file is this node's data until a leader replicates; only the leader's edits spread.
                if mesh == nil || !store.snapshot.isInitialised { store.apply(.replace(environments)) }
                let apply: DataFileSource.Apply
                if let mesh {
                    apply = { change in
                        switch await mesh.applyLocal(change) {
                        case .applied(let outcome): return .applied(outcome.change)
                        case .notLeader: return .notLeader
                        }
                    }
                } else {
                    apply = { change in .applied(await store.applyOnWriterThread(change)) }
                }
                services.append(.init(service: DataFileSource(path: path, apply: apply, logger: logger,
                                                              loadedFingerprint: fingerprint,
                                                              initial: mesh == nil ? nil : environments)))
                notes.append("serving the data set in \(path) (watched for changes)")
            } else if store.snapshot.isInitialised {
                notes.append("no DataFile: serving the data set stored in \(configuration.dbPath ?? "featbit.db")")
            } else if mesh != nil {
                notes.append("no DataFile and no data yet: waiting for the mesh leader's data set")
            } else {
                let demo = try DataSetParser.parseBootstrap(try JSONValue.parse(DemoDataSet.json))
                store.apply(.replace(demo))
                notes.append("no DataFile: serving the embedded demo data set (environment demo/dev)")
                notes.append("server SDK secret: \(DemoDataSet.serverSecret)")
                notes.append("client SDK secret: \(DemoDataSet.clientSecret)")
            }
        }
        if let mesh {
            services.append(.init(service: MeshService(node: mesh)))
        }
        let tlsWatcher = tls.reloading.isEmpty ? nil : TLSFileWatcher(contexts: tls.reloading, logger: logger)
        self.tlsWatcher = tlsWatcher
        if let tlsWatcher {
            services.append(.init(service: tlsWatcher))
            if let files = configuration.tls {
                notes.append("TLS: HTTPS and WSS only, certificate \(files.certFile) (reloaded when it changes)")
            }
            if configuration.cluster?.tls != nil { notes.append("mesh: mutual TLS between peers") }
        }
        if configuration.releaseCodePagesAfterSeconds > 0 {
            services.append(.init(service: CodePageRelease(after: .seconds(configuration.releaseCodePagesAfterSeconds),
                                                           logger: logger),
                                  successTerminationBehavior: .ignore))
        }
        self.services = services
        self.startupNotes = notes
    }

    /// The mesh node for `cluster`, with the leader's upstream duty in auto mode.
    static func makeMeshNode(_ cluster: ClusterConfiguration, configuration: AgentConfiguration, store: DataStore,
                             status: AgentStatusBoard, database: FeatBitDatabase?, tls: AgentTLSSetup, http: HTTPClient,
                             logger: Logger, notes: inout [String]) throws -> MeshNode {
        guard let dbPath = configuration.dbPath else {
            throw ConfigurationError(description: "DbPath: must not be none in a mesh")
        }
        let upstreamDuty = configuration.mode == .auto
        var meshSettings = MeshSettings(nodeId: cluster.nodeId, peers: cluster.peers.map(\.nodeId),
                                        isWitness: cluster.isWitness, heartbeatMs: UInt64(cluster.heartbeatMs),
                                        electionTimeoutMs: UInt64(cluster.electionTimeoutMs), upstreamDuty: upstreamDuty)
        meshSettings.catchupRetryMs = max(500, UInt64(cluster.electionTimeoutMs) / 2)
        var transport = PeerTransport.Settings(
            nodeId: cluster.nodeId, clusterId: "featbit-agent", secret: Array(cluster.secret.utf8),
            listenHost: cluster.listenHost, listenPort: cluster.listenPort,
            peers: Dictionary(uniqueKeysWithValues: cluster.peers.map { ($0.nodeId, PeerAddress(host: $0.host, port: $0.port)) }),
            voters: meshSettings.voters, incarnation: UInt64.random(in: 1...UInt64.max))
        transport.redialBackoffMax = .milliseconds(Int64(max(200, cluster.electionTimeoutMs / 2)))
        transport.userTimeout = .milliseconds(Int64(cluster.electionTimeoutMs))
        if let server = tls.meshServer, let client = tls.meshClient {
            transport.tls = .init(server: server, client: client)
        }
        let settings = MeshNode.Settings(
            mesh: meshSettings, transport: transport,
            peerAddresses: Dictionary(uniqueKeysWithValues: cluster.peers.map { ($0.nodeId, $0.address) }),
            voteRecordPath: MeshVoteRecord.path(forDatabase: dbPath))
        let applied = MeshData.position(database?.metadata(MeshData.appliedKey)) ?? .zero
        let fullEpoch = MeshData.position(database?.metadata(MeshData.fullEpochKey)) ?? .zero
        // One record of refused items for both sources a node can have (the upstream while it leads, the leader).
        let refused = RefusedItems(status: status, logger: logger)

        var duty: MeshNode.UpstreamDuty?
        let nodeBox = NodeBox()
        if upstreamDuty, let streamingUri = configuration.streamingUri, let apiKey = configuration.apiKey {
            let registrar = AgentRegistrar(
                settings: .init(streamingUri: streamingUri, apiKey: apiKey, agentId: configuration.agentId),
                http: http, status: status, logger: logger)
            var upstreamSettings = UpstreamClient.Settings(streamingUri: streamingUri, apiKey: apiKey)
            upstreamSettings.tlsConfiguration = tls.upstream
            let client = UpstreamClient(
                settings: upstreamSettings, store: store, status: status, logger: logger,
                agentId: { registrar.agentId },
                apply: { change in
                    guard let node = nodeBox.node else { return nil }
                    switch await node.applyLocal(change) {
                    case .applied(let outcome): return outcome.change
                    case .notLeader: return nil
                    }
                },
                onStateChange: { state in nodeBox.node?.upstreamStateChanged(state) }, refused: refused)
            duty = LeaderUpstream(client: client, registrar: registrar, streamingUri: streamingUri, logger: logger).duty
            notes.append("mesh: only the leader syncs from \(streamingUri) (as agent \(configuration.agentId))")
        }
        let node = MeshNode(settings: settings, store: store, applied: applied, fullEpoch: fullEpoch, status: status,
                            upstream: duty, logger: logger, refused: refused)
        nodeBox.node = node
        notes.append("mesh node \(cluster.nodeId) (\(cluster.isWitness ? "witness" : "voter")) on \(cluster.listenHost):\(cluster.listenPort) "
                     + "with peers \(cluster.peers.map { "\($0.nodeId)@\($0.address)" }.joined(separator: ", ")); "
                     + "heartbeat \(cluster.heartbeatMs) ms, election timeout \(cluster.electionTimeoutMs) ms")
        return node
    }

    /// The HTTP client towards the FeatBit server (registration, insights): the shared one, or one that also trusts
    /// `UpstreamCaFile`. It lives as long as the process.
    static func upstreamHTTP(_ tls: AgentTLSSetup) -> HTTPClient {
        guard let configuration = tls.upstream else { return .shared }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: configuration))
    }

    /// A bootstrap posted to this node: validated here, applied on the leader (this node, or forwarded to it).
    static func meshBootstrap(_ body: [UInt8], mesh: MeshNode, store: DataStore, logger: Logger) async -> (status: Int, body: [UInt8]) {
        let local = await AgentRoutes.applyBootstrap(body, store: store, logger: logger) { change in
            switch await mesh.applyLocal(change) {
            case .applied(let outcome): return .applied(outcome.change)
            case .notLeader: return .notApplied
            }
        }
        if let local { return local }
        guard body.count <= mesh.maxForwardedBootstrapBytes else {
            return (413, Array(("{\"error\":\"this node does not lead the mesh and cannot forward a bootstrap over "
                               + "\(mesh.maxForwardedBootstrapBytes) bytes; post it to the leader\"}").utf8))
        }
        if let answer = await mesh.forwardBootstrap(body) {
            logger.info("bootstrap forwarded to the leader", metadata: ["event": "bootstrap-forwarded", "status": "\(answer.status)"])
            return answer
        }
        return (503, Array(#"{"error":"no mesh leader is reachable; the bootstrap was not applied, retry later"}"#.utf8))
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

    public func run() async throws {
        let hub = self.hub
        let configuration = self.configuration
        let notes = startupNotes
        let logger = self.logger
        let app = AgentServerFactory.makeApplication(
            routes: routes, hub: hub, bindAddress: configuration.bindAddress, port: configuration.port, tls: tls.server,
            logger: logger
        ) { port in
            logger.info("agent listening", metadata: [
                "event": "listening", "port": "\(port)", "mode": "\(configuration.mode.rawValue)",
            ])
            let host = configuration.bindAddress == "0.0.0.0" ? "127.0.0.1" : configuration.bindAddress
            var text = "FeatBit Agent (\(configuration.mode.rawValue) mode) listening on port \(port)\n"
            for note in notes { text += "  \(note)\n" }
            let secure = configuration.tls != nil ? "s" : ""
            text += "  point an SDK at streaming URL ws\(secure)://\(host):\(port) and event URL http\(secure)://\(host):\(port)\n"
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        hub.start()
        // SIGHUP is trapped before the port opens, so no signal after "listening" can end the process.
        let hangup = HangupService(signals: await UnixSignalsSequence(trapping: .sighup), tlsWatcher: tlsWatcher,
                                   logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: app), .init(service: hangup)] + services,
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
        await mesh?.stop()
        database?.close()
        logger.info("agent stopped", metadata: ["event": "stopped"])
        try result.get()
    }
}

/// SIGHUP (`systemctl reload`, a certificate tool's deploy hook): the TLS files are checked at once instead of at the
/// next 2 s poll, and the signal is logged. Nothing else is re-read: the configuration is read at start (restart to
/// change it), and a `DataFile` is watched anyway. Without this, SIGHUP's default action would end the process
/// with no graceful shutdown.
struct HangupService: Service {
    let signals: UnixSignalsSequence
    let tlsWatcher: TLSFileWatcher?
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                let what = tlsWatcher == nil ? "no TLS files to check" : "TLS files checked now"
                logger.notice("SIGHUP: \(what); the configuration is read only at start (restart to change it)",
                              metadata: ["event": "reload-requested"])
                tlsWatcher?.checkAll()
            }
        }
    }
}

/// Once, a while after start: unmaps the code pages start-up touched (CodePages.swift) and logs what it gave back.
struct CodePageRelease: Service {
    let after: Duration
    let logger: Logger

    func run() async throws {
        let slept: Void? = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: after) }
        guard slept != nil, !Task.isCancelled else { return }
        let release = CodePages.release()
        logger.info("code pages released", metadata: [
            "event": "code-pages-released", "mappings": "\(release.mappings)",
            "rssBeforeKiB": "\(release.rssBeforeKiB)", "rssAfterKiB": "\(release.rssAfterKiB)",
        ])
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

/// Runs the mesh node as a service: starts it, and on SIGTERM leaves the mesh (a leader hands over first).
struct MeshService: Service {
    let node: MeshNode

    func run() async throws {
        do {
            try await node.start()
        } catch {
            let listen = node.settings.transport
            node.logger.critical("cannot listen for peers on ClusterAddress \(listen.listenHost):\(listen.listenPort): \(error)",
                                 metadata: ["event": "mesh-listen-failed", "error": "\(error)"])
            throw error
        }
        try? await gracefulShutdown()
        await node.leave()
    }
}

/// Lets the upstream client's callbacks reach the node created after it.
final class NodeBox: Sendable {
    private let value = Mutex<MeshNode?>(nil)
    var node: MeshNode? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
