import AgentCore
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
    private let budget: LogBudget
    private var logged = false

    /// - Parameters:
    ///   - event: the `event` field of the log line (e.g. `tls-handshake-failed`).
    ///   - budget: shared by every connection of one listener, so failures cannot flood the log.
    public init(logger: Logger, event: String, level: Logger.Level = .notice, budget: LogBudget) {
        self.logger = logger
        self.event = event
        self.level = level
        self.budget = budget
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
            if let suppressed = budget.take() {
                var metadata: Logger.Metadata = [
                    "event": "\(event)", "remote": "\(context.remoteAddress.map { "\($0)" } ?? "unknown")",
                    "reason": "\(error)",
                ]
                if suppressed > 0 { metadata["notLogged"] = "\(suppressed)" }
                logger.log(level: level, "TLS handshake failed; connection closed", metadata: metadata)
            }
        }
        context.close(promise: nil)
    }
}
