import Logging
import NIOCore

/// One mesh connection, at either end. Runs the handshake (`MeshHandshake`) before anything else; after it, an
/// inbound connection turns frames into messages for `PeerConnections`, and an outbound one only writes (a peer sends
/// to us on its own outbound connection, so a message arriving on ours is a protocol violation and closes it).
/// Lives on the transport's event loop only; every input is untrusted: a bad one is logged and closes the connection.
final class MeshConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = MeshFrame
    typealias OutboundOut = ByteBuffer

    /// Control connections carry every message but snapshots; bulk ones carry snapshots (cluster-design §3.2).
    enum Kind: String, Sendable {
        case control
        case bulk
    }

    /// What an outbound connection was dialed for.
    struct Dial: Sendable {
        var peer: NodeID
        var kind: Kind
        /// Tells this dial from a later one to the same peer.
        var attempt: UInt64
    }

    let role: MeshHandshake.Role
    /// Set for an outbound connection.
    let dial: Dial?
    /// For an inbound connection, what the dialer asked for in its `HELLO`.
    private(set) var kind: Kind
    /// The peer's `HELLO` once its proof checked out; nil during the handshake.
    private(set) var peer: MeshHello?
    /// The peer's address, for logs only (never for identity).
    private(set) var remote = "?"
    /// When a frame was last queued for writing (the bulk idle timer reads it).
    private(set) var lastWrite = NIODeadline.now()
    private(set) var closing = false
    /// Bytes accepted for this connection and not yet taken by the kernel (see `MeshOutboundBudget`).
    let budget: MeshOutboundBudget

    private var handshake: MeshHandshake
    private let owner: PeerConnections
    private var context: ChannelHandlerContext?
    private var handshakeTimer: Scheduled<Void>?
    private var started = false
    /// The handshake's failure was reported, so the close that follows is not reported again.
    private var failureReported = false

    init(dial: Dial?, identity: MeshHandshake.Identity, owner: PeerConnections) {
        self.role = dial == nil ? .acceptor : .dialer
        self.dial = dial
        self.kind = dial?.kind ?? .control
        self.owner = owner
        self.budget = MeshOutboundBudget(limit: 2 * min(owner.settings.outboundHighWaterBytes, Int.max / 2))
        self.handshake = MeshHandshake(role: role, identity: identity, expectedPeer: dial?.peer,
                                       bulk: dial?.kind == .bulk, nonce: MeshHandshake.makeNonce())
    }

    /// The direction of this connection as events name it.
    var direction: PeerTransportEvent.Direction { role == .dialer ? .outbound : .inbound }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { begin(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        begin(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let frame = unwrapInboundIn(data)
        owner.metrics.frameReceived(type: frame.type)
        if let peer {
            guard role == .acceptor else {
                fail("message on an outbound connection (a peer sends on its own)", event: "mesh-protocol-violation")
                return
            }
            let message: MeshMessage
            do {
                message = try MeshFrameCodec.decode(type: frame.type, flags: frame.flags, payload: frame.payload)
            } catch {
                fail("\(error)", event: "mesh-frame-invalid")
                return
            }
            owner.received(message, from: peer.nodeId)
            return
        }
        switch handshake.receive(frame) {
        case .sendAuth(let auth):
            context.writeAndFlush(wrapOutboundOut(MeshFrameCodec.encode(auth)), promise: nil)
            owner.metrics.frameSent(type: MeshFrame.authType)
        case .established(let hello):
            handshakeTimer?.cancel()
            handshakeTimer = nil
            peer = hello
            if role == .acceptor { kind = hello.bulk ? .bulk : .control }
            owner.established(self)
        case .refuse(let reason, let claimed):
            refuse(reason, claimedPeer: claimed)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closing else { return }
        if let error = error as? MeshFrameError {
            if peer == nil { refuse("\(error)") } else { fail("\(error)", event: "mesh-frame-invalid") }
            return
        }
        // Socket errors (a reset when the peer process dies, a timeout): the close is what gets reported.
        owner.logger.debug("mesh connection error", metadata: [
            "event": "mesh-connection-error", "error": "\(error)", "peer": "\(peer?.nodeId ?? dial?.peer ?? "?")",
            "remote": "\(remote)",
        ])
        close()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        handshakeTimer = nil
        closing = true
        if started, peer == nil, !failureReported {
            failureReported = true
            owner.closedDuringHandshake(self, claimedPeer: handshake.claimedPeer)
        }
        owner.closed(self)
        context.fireChannelInactive()
    }

    // MARK: - Called by PeerConnections

    /// Writes one encoded frame, reserving its bytes first (for frames that did not come through `send`).
    @discardableResult
    func write(_ frame: ByteBuffer, type: UInt8) -> Bool {
        guard budget.reserve(frame.readableBytes) else {
            overflow(frameBytes: frame.readableBytes)
            return false
        }
        return writeReserved(frame, type: type)
    }

    /// Writes one encoded frame whose bytes are reserved in `budget`; they are released once the kernel has them (or
    /// the connection is gone). Closes the connection instead when the bytes the channel has not yet handed to the
    /// kernel would pass the high-water mark (one frame is always accepted onto an empty buffer, so a frame bigger
    /// than the mark can still go).
    @discardableResult
    func writeReserved(_ frame: ByteBuffer, type: UInt8) -> Bool {
        let bytes = frame.readableBytes
        guard let context, peer != nil, !closing else {
            budget.release(bytes)
            return false
        }
        let unsent = (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
        guard unsent == 0 || unsent + bytes <= owner.settings.outboundHighWaterBytes else {
            budget.release(bytes)
            overflow(frameBytes: bytes, unsent: unsent)
            return false
        }
        lastWrite = .now()
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { [budget] _ in budget.release(bytes) }
        context.writeAndFlush(wrapOutboundOut(frame), promise: written)
        owner.metrics.frameSent(type: type)
        return true
    }

    /// The peer does not read what we send: close the connection rather than buffer more (cluster-design §3.2; the
    /// protocol resends state and repairs gaps by catch-up once it is redialed).
    func overflow(frameBytes: Int, unsent: Int? = nil) {
        guard !closing else { return }
        owner.logger.warning("mesh peer is not reading; closing the connection instead of buffering more", metadata: [
            "event": "mesh-outbound-overflow", "peer": "\(peer?.nodeId ?? "?")", "kind": "\(kind.rawValue)",
            "unsent": "\(unsent.map(String.init) ?? "-")", "accepted": "\(budget.bytes)", "frame": "\(frameBytes)",
            "highWater": "\(owner.settings.outboundHighWaterBytes)",
        ])
        close()
    }

    func close() {
        guard !closing, let context else { return }
        closing = true
        context.close(promise: nil)
    }

    // MARK: - Handshake

    private func begin(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        remote = context.channel.remoteAddress.map { "\($0)" } ?? "?"
        context.writeAndFlush(wrapOutboundOut(MeshFrameCodec.encode(handshake.hello)), promise: nil)
        owner.metrics.frameSent(type: MeshFrame.helloType)
        let timeout = owner.settings.handshakeTimeout
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            handshakeTimer = nil
            if peer == nil { refuse("handshake not completed within \(timeout)") }
        }
    }

    private func refuse(_ reason: String, claimedPeer: NodeID? = nil) {
        guard !closing else { return }
        failureReported = true
        owner.refused(self, reason: reason, claimedPeer: claimedPeer ?? handshake.claimedPeer)
        close()
    }

    private func fail(_ reason: String, event: String) {
        owner.logger.warning("closing a mesh connection", metadata: [
            "event": "\(event)", "reason": "\(reason)", "peer": "\(peer?.nodeId ?? "?")",
            "direction": "\(direction.rawValue)", "kind": "\(kind.rawValue)", "remote": "\(remote)",
        ])
        close()
    }
}
