import AgentCore
import AgentTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Every connection of one transport, and the dialing that keeps the outbound ones up (cluster-design §3.2).
///
/// Per peer: one outbound control connection, dialed at start and redialed with jittered backoff whenever it is lost;
/// one outbound bulk connection, dialed on demand for snapshots and closed when idle; and the peer's inbound control
/// and bulk connections, which are only read from. A newer inbound connection of a peer replaces the older one.
///
/// Lives on the transport's event loop only, like every channel of the transport; `PeerTransport` reaches it through a
/// `NIOLoopBoundBox`. State is always written back before anything that can re-enter (closing a channel, writing,
/// emitting an event).
final class PeerConnections {
    let settings: PeerTransport.Settings
    let logger: Logger
    let metrics: MeshTransportMetrics
    let loop: any EventLoop
    private let routes: PeerRoutes
    private let identity: MeshHandshake.Identity
    private let onEvent: @Sendable (PeerTransportEvent) -> Void
    private var random = SystemRandomNumberGenerator()

    private var stopping = false
    private var server: (any Channel)?
    /// Every channel not yet closed, whatever its state, so `stop()` can close and await them all.
    private var open: [ObjectIdentifier: any Channel] = [:]
    private var pendingConnects: [UInt64: EventLoopFuture<any Channel>] = [:]
    private var nextAttempt: UInt64 = 0
    /// Inbound connections still in their handshake.
    private var handshakingInbound = 0
    /// When a refusal was last logged at warning level, per peer (or remote address) and reason: a peer that keeps
    /// redialling with a wrong secret is logged once a minute, the repeats at debug level.
    private var lastRefusalWarning: [String: NIODeadline] = [:]
    /// Bounds the log lines of failed TLS handshakes (a peer with the wrong certificate redials for ever).
    private let tlsFailureLog = LogBudget()
    private var links: [NodeID: PeerLink]

    private struct PeerLink {
        var address: PeerAddress
        var control: OutboundLink
        var bulk: OutboundLink
        var inbound: MeshConnectionHandler?
        var inboundBulk: MeshConnectionHandler?
        /// The newest snapshot waiting for the bulk connection's handshake (one per peer: a newer one replaces it).
        var pendingSnapshot: ByteBuffer?
        var bulkIdleTimer: Scheduled<Void>?

        subscript(kind: MeshConnectionHandler.Kind) -> OutboundLink {
            get { kind == .control ? control : bulk }
            set { if kind == .control { control = newValue } else { bulk = newValue } }
        }
    }

    private struct OutboundLink {
        enum State {
            case idle
            case connecting(attempt: UInt64)
            case up(MeshConnectionHandler)
        }

        var state = State.idle
        var backoff: RedialBackoff
        /// Control: the scheduled redial.
        var redial: Scheduled<Void>?
        /// Bulk (dialed on demand only): no dial before this, after a failed one.
        var notBefore = NIODeadline.uptimeNanoseconds(0)
    }

    init(settings: PeerTransport.Settings, loop: any EventLoop, logger: Logger, routes: PeerRoutes,
         onEvent: @escaping @Sendable (PeerTransportEvent) -> Void) {
        self.settings = settings
        self.loop = loop
        self.logger = logger
        self.routes = routes
        self.onEvent = onEvent
        self.metrics = MeshTransportMetrics(peers: settings.peers.keys)
        self.identity = MeshHandshake.Identity(
            clusterId: settings.clusterId, nodeId: settings.nodeId, secret: settings.secret,
            incarnation: settings.incarnation, voters: settings.voters.sorted(), peers: Set(settings.peers.keys))
        let backoff = RedialBackoff(minimum: settings.redialBackoffMin, maximum: settings.redialBackoffMax)
        self.links = settings.peers.mapValues {
            PeerLink(address: $0, control: OutboundLink(backoff: backoff), bulk: OutboundLink(backoff: backoff))
        }
    }

    // MARK: - Life cycle

    /// The listener is bound: dial every peer.
    func started(server: any Channel) throws {
        guard !stopping else { throw PeerTransportError.stopped }
        self.server = server
        for peer in links.keys.sorted() { dial(peer, .control) }
    }

    /// Closes every connection and the listener and cancels every timer; the future completes when all are closed.
    /// Idempotent. No event is emitted once stopping.
    func stop() -> EventLoopFuture<Void> {
        if !stopping {
            stopping = true
            for peer in links.keys {
                links[peer]?.control.redial?.cancel()
                links[peer]?.control.redial = nil
                links[peer]?.bulkIdleTimer?.cancel()
                links[peer]?.bulkIdleTimer = nil
                links[peer]?.pendingSnapshot = nil
            }
            routes.clear()
        }
        var closed: [EventLoopFuture<Void>] = []
        if let server {
            server.close(promise: nil)
            closed.append(server.closeFuture)
        }
        for channel in Array(open.values) {
            channel.close(promise: nil)
            closed.append(channel.closeFuture)
        }
        for connect in pendingConnects.values {
            closed.append(connect.map { _ in () }.recover { _ in () })
        }
        return EventLoopFuture.andAllComplete(closed, on: loop)
    }

    // MARK: - Channels

    /// Sets up a new channel: the listener's (`dial` nil) or one this node dials.
    func initialize(_ channel: any Channel, dial: MeshConnectionHandler.Dial?) -> EventLoopFuture<Void> {
        guard !stopping else { return loop.makeFailedFuture(PeerTransportError.stopped) }
        if dial == nil, handshakingInbound >= settings.maxPendingHandshakes {
            metrics.handshakeFailures.increment()
            logger.warning("mesh handshake refused", metadata: [
                "event": "mesh-handshake-refused", "reason": "too many connections in their handshake",
                "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "direction": "inbound",
            ])
            return loop.makeFailedFuture(TooManyHandshakes())
        }
        let handler = MeshConnectionHandler(dial: dial, identity: identity, owner: self)
        do {
            if let tls = settings.tls {
                // Mutual TLS first; a peer whose certificate the cluster CA did not sign never reaches the handshake.
                if dial == nil {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server.current))
                } else {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: tls.client.current, serverHostname: nil))
                }
                try channel.pipeline.syncOperations.addHandler(
                    TLSHandshakeFailureLogger(logger: logger, event: "mesh-tls-refused", level: .warning,
                                              budget: tlsFailureLog))
                try channel.pipeline.syncOperations.addHandler(TLSWriteChunker())
            }
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(MeshFrameDecoder(maxFrameBytes: settings.maxFrameBytes)))
            try channel.pipeline.syncOperations.addHandler(handler)
        } catch {
            return loop.makeFailedFuture(error)
        }
        if dial == nil { handshakingInbound += 1 }
        let id = ObjectIdentifier(channel)
        open[id] = channel
        channel.closeFuture.assumeIsolated().whenComplete { [self] _ in open[id] = nil }
        return loop.makeSucceededVoidFuture()
    }

    /// A handshake completed.
    func established(_ handler: MeshConnectionHandler) {
        guard let hello = handler.peer else { return }
        if handler.role == .acceptor { handshakingInbound -= 1 }
        guard !stopping else {
            handler.close()
            return
        }
        if let dial = handler.dial {
            establishedOutbound(handler, dial: dial, hello: hello)
        } else {
            establishedInbound(handler, hello: hello)
        }
    }

    private func establishedOutbound(_ handler: MeshConnectionHandler, dial: MeshConnectionHandler.Dial, hello: MeshHello) {
        guard var link = links[dial.peer], case .connecting(let attempt) = link[dial.kind].state, attempt == dial.attempt
        else {
            handler.close()
            return
        }
        link[dial.kind].state = .up(handler)
        link[dial.kind].backoff.reset()
        let bound = PeerRoutes.Outbound(handler: NIOLoopBound(handler, eventLoop: loop), budget: handler.budget)
        switch dial.kind {
        case .control:
            links[dial.peer] = link
            routes.update(dial.peer) { $0.control = bound }
            metrics.peer(dial.peer, direction: .outbound, connected: true)
            logConnection("mesh peer connected", event: "mesh-peer-connected", handler)
            emit(.connected(peer: dial.peer, direction: .outbound, voters: hello.voters.sorted(),
                            incarnation: hello.incarnation))
        case .bulk:
            let pending = link.pendingSnapshot
            link.pendingSnapshot = nil
            links[dial.peer] = link
            routes.update(dial.peer) { $0.bulk = bound }
            logger.debug("mesh bulk connection up", metadata: ["event": "mesh-bulk-connected", "peer": "\(dial.peer)"])
            if let pending { handler.write(pending, type: MeshMessage.snapshotFrameType) }
            armBulkIdleTimer(dial.peer)
        }
    }

    private func establishedInbound(_ handler: MeshConnectionHandler, hello: MeshHello) {
        let peer = hello.nodeId
        guard var link = links[peer] else {
            // Unreachable: the handshake accepts configured peers only.
            handler.close()
            return
        }
        switch handler.kind {
        case .control:
            let replaced = link.inbound
            link.inbound = handler
            links[peer] = link
            routes.update(peer) { $0.inbound = true }
            metrics.peer(peer, direction: .inbound, connected: true)
            if let replaced {
                logConnection("mesh peer connected again; its older connection is closed", event: "mesh-peer-replaced",
                              handler)
                replaced.close()
                emit(.disconnected(peer: peer, direction: .inbound))
            } else {
                logConnection("mesh peer connected", event: "mesh-peer-connected", handler)
            }
            emit(.connected(peer: peer, direction: .inbound, voters: hello.voters.sorted(), incarnation: hello.incarnation))
        case .bulk:
            let replaced = link.inboundBulk
            link.inboundBulk = handler
            links[peer] = link
            replaced?.close()
        }
    }

    /// A message from an authenticated peer's inbound connection.
    func received(_ message: MeshMessage, from peer: NodeID) {
        emit(.message(message, from: peer))
    }

    /// The handshake refused the other side (the handler closes the connection next).
    func refused(_ handler: MeshConnectionHandler, reason: String, claimedPeer: NodeID?) {
        metrics.handshakeFailures.increment()
        guard !stopping else { return }
        let peer = handler.dial?.peer ?? claimedPeer
        let key = "\(peer ?? handler.remote)|\(handler.direction.rawValue)|\(reason)"
        let now = NIODeadline.now()
        let level: Logger.Level
        if let last = lastRefusalWarning[key], now - last < .seconds(60) {
            level = .debug
        } else {
            level = .warning
            if lastRefusalWarning.count > 1_000 { lastRefusalWarning.removeAll() }
            lastRefusalWarning[key] = now
        }
        logger.log(level: level, "mesh handshake refused", metadata: [
            "event": "mesh-handshake-refused", "reason": "\(reason)", "peer": "\(peer ?? "?")",
            "direction": "\(handler.direction.rawValue)", "kind": "\(handler.kind.rawValue)", "remote": "\(handler.remote)",
        ])
        emit(.handshakeRefused(reason: reason, peer: peer))
    }

    /// The other side closed before the handshake completed. For a dial this is the peer refusing us; an inbound
    /// connection that never said who it is (a port probe) is not worth a warning.
    func closedDuringHandshake(_ handler: MeshConnectionHandler, claimedPeer: NodeID?) {
        if handler.role == .dialer || claimedPeer != nil {
            refused(handler, reason: "connection closed during the handshake", claimedPeer: claimedPeer)
        } else if !stopping {
            logger.debug("mesh connection closed before its HELLO", metadata: [
                "event": "mesh-connection-closed", "remote": "\(handler.remote)",
            ])
        }
    }

    /// A connection closed (after `channelActive`).
    func closed(_ handler: MeshConnectionHandler) {
        if let dial = handler.dial {
            closedOutbound(handler, dial: dial)
            return
        }
        guard let hello = handler.peer else {
            handshakingInbound -= 1
            return
        }
        let peer = hello.nodeId
        guard var link = links[peer] else { return }
        switch handler.kind {
        case .control:
            // A replaced connection is no longer the link's: its close was reported when it was replaced.
            guard link.inbound === handler else { return }
            link.inbound = nil
            links[peer] = link
            routes.update(peer) { $0.inbound = false }
            metrics.peer(peer, direction: .inbound, connected: false)
            guard !stopping else { return }
            logConnection("mesh peer disconnected", event: "mesh-peer-disconnected", handler)
            emit(.disconnected(peer: peer, direction: .inbound))
        case .bulk:
            if link.inboundBulk === handler {
                link.inboundBulk = nil
                links[peer] = link
            }
        }
    }

    private func closedOutbound(_ handler: MeshConnectionHandler, dial: MeshConnectionHandler.Dial) {
        guard var link = links[dial.peer] else { return }
        switch link[dial.kind].state {
        case .up(let current) where current === handler:
            link[dial.kind].state = .idle
            switch dial.kind {
            case .control:
                let wait = link.control.backoff.next(using: &random)
                links[dial.peer] = link
                routes.update(dial.peer) { $0.control = nil }
                metrics.peer(dial.peer, direction: .outbound, connected: false)
                guard !stopping else { return }
                logConnection("mesh peer disconnected", event: "mesh-peer-disconnected", handler)
                scheduleRedial(dial.peer, in: wait)
                emit(.disconnected(peer: dial.peer, direction: .outbound))
            case .bulk:
                link.bulkIdleTimer?.cancel()
                link.bulkIdleTimer = nil
                link.pendingSnapshot = nil
                links[dial.peer] = link
                routes.update(dial.peer) { $0.bulk = nil }
            }
        case .connecting(let attempt) where attempt == dial.attempt:
            dialFailed(dial, reason: "handshake failed")
        case .idle, .connecting, .up:
            break
        }
    }

    // MARK: - Dialing

    /// Dials the peer's control or bulk connection unless it is up or being dialed, or the address is unknown.
    private func dial(_ peer: NodeID, _ kind: MeshConnectionHandler.Kind) {
        guard !stopping, var link = links[peer], case .idle = link[kind].state, link.address.port != 0 else { return }
        guard let bootstrap = ClientBootstrap(validatingGroup: loop) else { return }
        nextAttempt += 1
        let dial = MeshConnectionHandler.Dial(peer: peer, kind: kind, attempt: nextAttempt)
        link[kind].redial?.cancel()
        link[kind].redial = nil
        link[kind].state = .connecting(attempt: dial.attempt)
        links[peer] = link
        let bound = NIOLoopBound(self, eventLoop: loop)
        let connect = MeshSocketOptions.apply(settings, to: bootstrap)
            .connectTimeout(settings.handshakeTimeout)
            .channelInitializer { channel in bound.value.initialize(channel, dial: dial) }
            .connect(host: link.address.host, port: link.address.port)
        pendingConnects[dial.attempt] = connect
        connect.hop(to: loop).assumeIsolated().whenComplete { [self] result in
            pendingConnects[dial.attempt] = nil
            if case .failure(let error) = result { dialFailed(dial, reason: "\(error)") }
        }
    }

    /// A dial did not end in an established connection: back off before the next.
    private func dialFailed(_ dial: MeshConnectionHandler.Dial, reason: String) {
        guard var link = links[dial.peer], case .connecting(let attempt) = link[dial.kind].state, attempt == dial.attempt
        else { return }
        let firstFailure = link[dial.kind].backoff.failures == 0
        let wait = link[dial.kind].backoff.next(using: &random)
        link[dial.kind].state = .idle
        if dial.kind == .bulk {
            link.bulk.notBefore = .now() + wait
            link.pendingSnapshot = nil
        }
        links[dial.peer] = link
        guard !stopping else { return }
        let metadata: Logger.Metadata = [
            "event": "mesh-dial-failed", "peer": "\(dial.peer)", "kind": "\(dial.kind.rawValue)",
            "address": "\(link.address)", "reason": "\(reason)", "retryInMs": "\(wait.nanoseconds / 1_000_000)",
        ]
        if firstFailure && dial.kind == .control {
            logger.info("mesh peer unreachable; redialing with backoff", metadata: metadata)
        } else {
            logger.debug("mesh dial failed", metadata: metadata)
        }
        if dial.kind == .control { scheduleRedial(dial.peer, in: wait) }
    }

    private func scheduleRedial(_ peer: NodeID, in wait: TimeAmount) {
        guard !stopping, links[peer] != nil else { return }
        links[peer]?.control.redial?.cancel()
        links[peer]?.control.redial = loop.assumeIsolated().scheduleTask(in: wait) { [self] in
            links[peer]?.control.redial = nil
            dial(peer, .control)
        }
    }

    /// A new address for a peer: used from the next dial on, which happens now if the control connection is down.
    func updateAddress(_ address: PeerAddress, for peer: NodeID) {
        guard !stopping, var link = links[peer] else { return }
        link.address = address
        link.control.backoff.reset()
        link.bulk.backoff.reset()
        link.bulk.notBefore = .uptimeNanoseconds(0)
        let redialNow = if case .idle = link.control.state { true } else { false }
        if redialNow {
            link.control.redial?.cancel()
            link.control.redial = nil
        }
        links[peer] = link
        if redialNow { dial(peer, .control) }
    }

    // MARK: - Bulk

    /// A snapshot whose bulk connection was not up when `send` looked: write it, or keep it (the newest only) for
    /// the connection being dialed. Dropped while a failed bulk dial backs off.
    func sendSnapshot(_ frame: ByteBuffer, to peer: NodeID) {
        guard !stopping, var link = links[peer] else { return }
        switch link.bulk.state {
        case .up(let handler):
            handler.write(frame, type: MeshMessage.snapshotFrameType)
        case .connecting:
            link.pendingSnapshot = frame
            links[peer] = link
        case .idle:
            guard NIODeadline.now() >= link.bulk.notBefore else {
                logger.debug("snapshot dropped: the bulk connection is backing off", metadata: [
                    "event": "mesh-snapshot-dropped", "peer": "\(peer)",
                ])
                return
            }
            link.pendingSnapshot = frame
            links[peer] = link
            dial(peer, .bulk)
        }
    }

    /// Closes the bulk connection once nothing was written to it for `bulkIdleTimeout` and nothing is left to send.
    private func armBulkIdleTimer(_ peer: NodeID) {
        guard !stopping, case .up(let handler) = links[peer]?.bulk.state else { return }
        let idle = settings.bulkIdleTimeout
        let due = max(handler.lastWrite + idle, .now() + min(idle, .seconds(1)))
        links[peer]?.bulkIdleTimer?.cancel()
        links[peer]?.bulkIdleTimer = loop.assumeIsolated().scheduleTask(deadline: due) { [self] in
            links[peer]?.bulkIdleTimer = nil
            guard case .up(let current) = links[peer]?.bulk.state, current === handler else { return }
            if NIODeadline.now() - handler.lastWrite >= idle, handler.budget.bytes == 0 {
                logger.debug("closing the idle mesh bulk connection", metadata: ["event": "mesh-bulk-idle", "peer": "\(peer)"])
                handler.close()
            } else {
                armBulkIdleTimer(peer)
            }
        }
    }

    // MARK: - Helpers

    private func emit(_ event: PeerTransportEvent) {
        guard !stopping else { return }
        onEvent(event)
    }

    private func logConnection(_ message: Logger.Message, event: String, _ handler: MeshConnectionHandler) {
        logger.info(message, metadata: [
            "event": "\(event)", "peer": "\(handler.peer?.nodeId ?? handler.dial?.peer ?? "?")",
            "direction": "\(handler.direction.rawValue)", "remote": "\(handler.remote)",
            "incarnation": "\(handler.peer?.incarnation ?? 0)",
        ])
    }
}

/// Fails the channel initializer of a connection accepted past `maxPendingHandshakes` (the bootstrap then closes it).
private struct TooManyHandshakes: Error {}

extension MeshMessage {
    /// `SNAPSHOT`'s frame type, the one message that goes on the bulk connection.
    static let snapshotFrameType: UInt8 = 0x21
}
