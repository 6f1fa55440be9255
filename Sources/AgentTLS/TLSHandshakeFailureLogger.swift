import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// Sits right after a `NIOSSLHandler`: a connection whose TLS handshake fails (a plaintext client on a TLS port, an
/// untrusted or missing client certificate, an old protocol) is logged with the reason and closed. Removes itself
/// once the handshake completes, so an established connection carries nothing for it.
public final class TLSHandshakeFailureLogger: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny

    private let logger: Logger
    private let event: String
    private let level: Logger.Level
    private var logged = false

    /// - Parameter event: the `event` field of the log line (e.g. `tls-handshake-failed`).
    public init(logger: Logger, event: String, level: Logger.Level = .notice) {
        self.logger = logger
        self.event = event
        self.level = level
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted? = event as? TLSUserEvent {
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !logged {
            logged = true
            logger.log(level: level, "TLS handshake failed; connection closed", metadata: [
                "event": "\(event)", "remote": "\(context.remoteAddress.map { "\($0)" } ?? "unknown")",
                "reason": "\(error)",
            ])
        }
        context.close(promise: nil)
    }
}
