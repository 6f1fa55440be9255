import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The peer transport of the clustered mesh (cluster-design §3.2): authenticated, length-framed TCP connections
/// between the nodes of a static peer list.
///
/// Topology: this node dials one outbound control connection to every peer and sends all its messages to that peer on
/// it; what peers send arrives on their own outbound connections (our inbound ones), which are only read from. So each
/// direction of each pair is its own connection, and one-way reachability is visible. Snapshots go on a second,
/// on-demand outbound bulk connection per peer, so heartbeats never queue behind them.
///
/// `send` never blocks and never queues without bound: a message for a connection that is not up is dropped (the
/// protocol resends state every heartbeat and repairs gaps by catch-up), and a connection whose unsent bytes (counted
/// from `send`, so including frames still on their way to the event loop) would pass the high-water mark is closed. Events arrive through `onEvent` on the transport's event loop, in order per connection.
/// Every channel of a transport lives on one event loop of the group it was given; `stop()` must be awaited before the
/// group is shut down.
public final class PeerTransport: Sendable {
    public let settings: Settings
    private let loop: any EventLoop
    private let logger: Logger
    private let routes: PeerRoutes
    private let connections: NIOLoopBoundBox<PeerConnections>
    private let lifecycle = Mutex(Lifecycle.idle)

    private enum Lifecycle {
        case idle
        case starting
        case running
        case stopped
    }

    /// `onEvent` is called on the transport's event loop and must not block (hand the event to the node's own queue).
    public init(settings: Settings, eventLoopGroup: any EventLoopGroup, logger: Logger,
                onEvent: @escaping @Sendable (PeerTransportEvent) -> Void) {
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.nodeId)"
        let loop = eventLoopGroup.next()
        let routes = PeerRoutes(peers: settings.peers.keys)
        self.settings = settings
        self.loop = loop
        self.logger = logger
        self.routes = routes
        self.connections = .makeBoxSendingValue(
            PeerConnections(settings: settings, loop: loop, logger: logger, routes: routes, onEvent: onEvent),
            eventLoop: loop)
    }

    /// Binds the listener and starts dialing every peer; returns the bound port (useful with `listenPort` 0).
    /// Throws for invalid settings, a failed bind, or a second call.
    public func start() async throws -> Int {
        if let problem = settings.problem { throw PeerTransportError.invalidSettings(problem) }
        try lifecycle.withLock { state throws(PeerTransportError) in
            guard case .idle = state else { throw PeerTransportError.alreadyStarted }
            state = .starting
        }
        guard let bootstrap = ServerBootstrap(validatingGroup: loop) else {
            lifecycle.withLock { $0 = .idle }
            throw PeerTransportError.unsupportedEventLoopGroup
        }
        let box = connections
        let server: any Channel
        do {
            server = try await MeshSocketOptions.apply(settings, to: bootstrap)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.backlog, value: 128)
                .childChannelInitializer { channel in box.value.initialize(channel, dial: nil) }
                .bind(host: settings.listenHost, port: settings.listenPort)
                .get()
        } catch {
            lifecycle.withLock { state in
                if case .starting = state { state = .idle }
            }
            throw error
        }
        do {
            try await loop.submit { try box.value.started(server: server) }.get()
        } catch {
            try? await server.close()
            throw error
        }
        lifecycle.withLock { state in
            if case .starting = state { state = .running }
        }
        let port = server.localAddress?.port ?? settings.listenPort
        logger.info("mesh transport listening", metadata: [
            "event": "mesh-listening", "host": "\(settings.listenHost)", "port": "\(port)", "peers": "\(settings.peers.count)",
        ])
        return port
    }

    /// Closes the listener and every connection and cancels every timer; returns once all are closed. Idempotent; no
    /// event is delivered once it has begun.
    public func stop() async {
        let wasStarted = lifecycle.withLock { state in
            defer { state = .stopped }
            switch state {
            case .idle, .stopped: return false
            case .starting, .running: return true
            }
        }
        guard wasStarted else { return }
        let box = connections
        try? await loop.flatSubmit { box.value.stop() }.get()
    }

    /// Sends `message` to `peer`: a snapshot on the bulk connection (dialed on demand; the newest snapshot waits for
    /// its handshake), everything else on the control connection. Returns false, dropping the message, when the
    /// connection is not up, the peer is unknown, the message is over `maxFrameBytes`, or the connection's unsent bytes
    /// would pass `outboundHighWaterBytes` (the connection is then closed and redialed). Callable from any thread;
    /// the write happens on the connection's event loop, in call order.
    @discardableResult
    public func send(_ message: MeshMessage, to peer: NodeID) -> Bool {
        guard let route = routes.entry(peer) else { return false }
        let type = message.frameType
        let isSnapshot = type == MeshMessage.snapshotFrameType
        // A snapshot may wait for its bulk connection only while the peer is reachable at all.
        guard route.control != nil || (isSnapshot && route.bulk != nil) else { return false }
        let frame = MeshFrameCodec.encode(message)
        guard frame.readableBytes - MeshFrameCodec.lengthFieldBytes <= settings.maxFrameBytes else {
            logger.warning("mesh message over the frame limit; dropped", metadata: [
                "event": "mesh-frame-too-large", "peer": "\(peer)", "type": "\(message.name)",
                "bytes": "\(frame.readableBytes)", "limit": "\(settings.maxFrameBytes)",
            ])
            return false
        }
        if let outbound = isSnapshot ? route.bulk : route.control {
            let bytes = frame.readableBytes
            guard outbound.budget.reserve(bytes) else {
                loop.execute { outbound.handler.value.overflow(frameBytes: bytes) }
                return false
            }
            loop.execute { outbound.handler.value.writeReserved(frame, type: type) }
        } else {
            let box = connections
            loop.execute { box.value.sendSnapshot(frame, to: peer) }
        }
        return true
    }

    /// Changes where `peer` is dialed (port 0: not known, not dialed). A control connection that is down is redialed
    /// at once; one that is up is kept.
    public func updateAddress(_ address: PeerAddress, for peer: NodeID) {
        guard routes.entry(peer) != nil else { return }
        let box = connections
        loop.execute { box.value.updateAddress(address, for: peer) }
    }

    /// Which connections of each configured peer have completed their handshake.
    public var reachability: [NodeID: Reachability] {
        routes.reachability
    }
}
