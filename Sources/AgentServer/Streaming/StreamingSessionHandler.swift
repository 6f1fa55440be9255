import AgentCore
import Logging
import NIOCore
import NIOWebSocket

/// One SDK WebSocket after the upgrade: translates frames and pushes into `SDKSession` events and performs its
/// actions. Lives on its channel's event loop only; no task is kept per socket (see docs/performance.md).
final class StreamingSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let hub: StreamingHub
    private var session: SDKSession
    private var pendingActions: [SDKSession.Action]
    private var context: ChannelHandlerContext?
    /// The context of the channel's `WebSocketFrameEncoder`: server pushes, already encoded as frames, are written
    /// from there, so they skip the handlers and the encoder between this handler and the socket.
    private var encodedFrameContext: ChannelHandlerContext?
    private var registered: (envId: String, type: HandshakeValidator.ConnectionType)?
    /// Armed while the socket cannot take more writes: if it still cannot when this fires, the SDK is not reading.
    private var slowConsumerCheck: Scheduled<Void>?
    /// Set once our Close frame is out: the socket is closed when the SDK answers it, or after a grace period.
    private var closeGrace: Scheduled<Void>?
    private let remote: String

    init(hub: StreamingHub, outcome: HandshakeValidator.Outcome, remote: String) {
        self.hub = hub
        self.remote = remote
        (self.session, self.pendingActions) = SDKSession.start(outcome)
        if case .invalid(let reason) = outcome {
            hub.noteRejectedHandshake()
            hub.logger.debug("rejected SDK handshake", metadata: ["event": "sdk-rejected", "reason": "\(reason)", "remote": "\(remote)"])
        } else if case .unavailable(let reason) = outcome {
            hub.noteRejectedHandshake()
            hub.logger.info("SDK connected before any data set", metadata: ["event": "sdk-unavailable", "reason": "\(reason)", "remote": "\(remote)"])
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        hub.socketOpened()
        encodedFrameContext = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        let actions = pendingActions
        pendingActions = []
        perform(actions, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        hub.socketClosed()
        closeGrace?.cancel()
        slowConsumerCheck?.cancel()
        deregister(on: context.eventLoop)
        self.context = nil
        encodedFrameContext = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        deregister(on: context.eventLoop)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            // Binary frames are parsed like text (spec §2.2).
            let data = frame.unmaskedData
            let actions = data.withUnsafeReadableBytes { bytes in
                session.receive(bytes, snapshot: hub.store.snapshot)
            }
            perform(actions, context: context)
        case .ping:
            var pongData = frame.unmaskedData
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: pongData.readSlice(length: pongData.readableBytes) ?? ByteBuffer())
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            if closeGrace != nil {
                // The SDK answered our Close: the close handshake is complete.
                closeGrace?.cancel()
                context.close(promise: nil)
                return
            }
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            perform(session.peerClosed(code: code), context: context, closeAfterWrite: true)
        default:
            break
        }
    }

    /// Backpressure: while our writes to the SDK are stuck, stop reading what it sends, so an SDK that asks for data
    /// and never reads the answers cannot make the agent queue replies without bound. A socket that stays stuck for
    /// `slowConsumerTimeout` is closed (the SDK resyncs from its version when it reconnects).
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: writable)
        if writable {
            slowConsumerCheck?.cancel()
            slowConsumerCheck = nil
        } else if slowConsumerCheck == nil {
            slowConsumerCheck = context.eventLoop.scheduleTask(in: hub.settings.slowConsumerTimeout) { [self] in
                slowConsumerCheck = nil
                guard let context = self.context, !context.channel.isWritable else { return }
                hub.logger.warning("closing an SDK socket that does not read what the agent sends",
                                   metadata: ["event": "sdk-slow-consumer", "remote": "\(remote)",
                                              "envId": "\(registered?.envId ?? "-")"])
                perform(session.slowConsumer(), context: context)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        hub.logger.debug("SDK socket error", metadata: ["event": "sdk-socket-error", "error": "\(error)", "remote": "\(remote)"])
        // Fragmented messages are reassembled after NIO's own protocol-error handling, so their errors land here:
        // answer them with a close code the SDK can read, as NIO does for a single frame that is too large.
        if let error = error as? NIOWebSocketFrameAggregator.Error {
            switch error {
            case .tooManyFragments, .accumulatedFrameSizeIsTooLarge:
                perform(session.refuse(code: 1009, reason: "message too large"), context: context)
            default:
                perform(session.refuse(code: 1002, reason: "fragmented frames out of order"), context: context)
            }
            if closeGrace != nil { return }
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            perform(session.shutdown(), context: context)
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The SDK's side of the TCP connection ended without a WebSocket Close (its process exited, a proxy gave
            // up). The server's child channels allow half-closure (for HTTP), so NIO leaves the socket open: without
            // this it stayed in CLOSE_WAIT, registered and holding its memory, until a push happened to fail.
            hub.logger.debug("SDK socket ended without a close", metadata: [
                "event": "sdk-input-closed", "remote": "\(remote)", "envId": "\(registered?.envId ?? "-")",
            ])
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: - Called by the hub on this channel's event loop

    /// The SDK type of a registered session (nil before its first data-sync and once it is closing).
    var connectionType: HandshakeValidator.ConnectionType? { registered?.type }

    /// A server SDK's push: the same serialised frames go to every server SDK of the environment on this loop.
    func push(_ serverFrames: [ServerFrame]) {
        guard let context, !serverFrames.isEmpty else { return }
        if let encodedFrameContext {
            for frame in serverFrames { encodedFrameContext.write(NIOAny(frame.encoded), promise: nil) }
            encodedFrameContext.flush()
        } else {
            for frame in serverFrames {
                context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: frame.payload)), promise: nil)
            }
            context.flush()
        }
    }

    /// A client SDK's push: the plan evaluated for this session's user.
    func push(_ clientPlan: ClientPushPlan) {
        guard let context else { return }
        perform(session.push(clientPlan), context: context)
    }

    func shutdown() {
        guard let context else { return }
        perform(session.shutdown(), context: context)
    }

    // MARK: - Actions

    private func perform(_ actions: [SDKSession.Action], context: ChannelHandlerContext, closeAfterWrite: Bool = false) {
        for action in actions {
            switch action {
            case .send(let bytes):
                let buffer = context.channel.allocator.buffer(bytes: bytes)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
            case .close(let code, let reason):
                deregister(on: context.eventLoop)
                var buffer = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
                buffer.writeInteger(code)
                buffer.writeString(reason)
                let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)
                if closeAfterWrite {
                    // Answering the SDK's Close: the handshake ends with our frame.
                    context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
                } else if closeGrace == nil {
                    // RFC 6455 §7.1.1: wait for the SDK's Close before dropping TCP, so it reads our code reliably.
                    context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
                    closeGrace = context.eventLoop.scheduleTask(in: .seconds(2)) { context.close(promise: nil) }
                }
            case .register(let envId, let type):
                registered = (envId, type)
                hub.register(self, envId: envId, type: type, on: context.eventLoop)
            case .ignored(let rejection):
                hub.logger.debug("ignored SDK message", metadata: ["event": "sdk-message-ignored", "reason": "\(rejection)", "remote": "\(remote)"])
            case .invalidUser:
                // Debug, like other ignored messages: an SDK can send these as fast as it likes.
                hub.logger.debug("client data-sync without a valid user; no reply",
                                metadata: ["event": "sdk-invalid-user", "remote": "\(remote)"])
            }
        }
    }

    private func deregister(on loop: any EventLoop) {
        guard let registered else { return }
        self.registered = nil
        hub.unregister(self, envId: registered.envId, type: registered.type, on: loop)
    }
}

/// One server-SDK push message, built once per event loop and written to every server SDK of the environment there:
/// the whole WebSocket frame (server frames are unmasked, so the bytes are the same for every socket), which the
/// socket writes with one `write` and no per-socket header or frame value.
struct ServerFrame {
    /// Header and payload: a final, unmasked text frame.
    let encoded: ByteBuffer
    /// The payload alone (a view into `encoded`).
    let payload: ByteBuffer

    init(text: [UInt8]) {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(text.count + 10)
        buffer.writeInteger(UInt8(0x81))  // FIN, text
        switch text.count {
        case ..<126:
            buffer.writeInteger(UInt8(text.count))
        case ..<65536:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(text.count))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(text.count))
        }
        let headerLength = buffer.readableBytes
        buffer.writeBytes(text)
        encoded = buffer
        payload = buffer.getSlice(at: headerLength, length: text.count)!
    }
}
