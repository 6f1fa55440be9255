import AgentCore
import AgentTLS
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL
import NIOWebSocket

/// The server's per-connection setup: `/streaming` WebSocket upgrades go straight into NIO handlers
/// (`StreamingSessionHandler`, no Swift task kept per socket), every other request to Hummingbird's responder.
public struct AgentChildChannel: ServerChildChannel, HTTPChannelHandler {
    public enum UpgradeResult: Sendable {
        /// The socket now lives in its NIO handlers alone.
        case streaming
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    public struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        public let channel: any Channel
    }

    public let responder: HTTPChannelHandler.Responder
    let hub: StreamingHub
    /// When set, every connection is TLS (HTTPS and WSS only), with the context current when it was accepted.
    let tls: ReloadingTLSContext?
    /// Bounds the log lines of failed handshakes on this port (anyone can cause them).
    let tlsFailureLog = LogBudget()

    public init(responder: @escaping HTTPChannelHandler.Responder, hub: StreamingHub, tls: ReloadingTLSContext? = nil) {
        self.responder = responder
        self.hub = hub
        self.tls = tls
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let hub = self.hub
        let tls = self.tls
        let tlsFailureLog = self.tlsFailureLog
        return channel.eventLoop.makeCompletedFuture {
            if let tls {
                // TLS first: a plaintext request or a failed handshake is logged and closed before HTTP sees a byte.
                // NIOSSL's per-connection buffers come from untouched pages (TLSBufferAllocator.swift).
                try channel.syncOptions?.setOption(ChannelOptions.allocator, value: TLSBufferAllocator.allocator)
                // ... and an idle socket gives their pages back; a quiet TLS 1.3 connection leaves NIOSSL for a record
                // layer that keeps only its keys (TLSIdlePages.swift).
                let idlePages = TLSIdlePages(offload: .shared)
                try channel.pipeline.syncOperations.addHandler(idlePages.networkSide)
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current))
                try channel.pipeline.syncOperations.addHandler(idlePages.plaintextSide)
                try channel.pipeline.syncOperations.addHandler(
                    TLSHandshakeFailureLogger(logger: hub.logger, event: "tls-handshake-failed", budget: tlsFailureLog))
                // Bounds the ciphertext buffer NIOSSL keeps per socket (TLSWriteChunker.swift).
                try channel.pipeline.syncOperations.addHandler(TLSWriteChunker())
            }
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                // Frames larger than the message limit are refused by the decoder (close 1009).
                maxFrameSize: hub.settings.maxMessageBytes,
                enableAutomaticErrorHandling: true,
                shouldUpgrade: { channel, head in
                    channel.eventLoop.makeSucceededFuture(StreamingRequest.isStreamingPath(head.uri) ? HTTPHeaders() : nil)
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        let request = StreamingRequest(uri: head.uri)
                        let outcome = HandshakeValidator.validate(
                            query: request.query,
                            nowMillis: hub.now(),
                            snapshot: hub.store.snapshot,
                            tokenExpiryMillis: hub.settings.tokenExpiryMillis
                        )
                        let remote = head.headers.first(name: "X-Forwarded-For")?.split(separator: ",").first.map {
                            $0.trimmingCharacters(in: .whitespaces)
                        } ?? channel.remoteAddress?.description ?? "unknown"
                        // An idle SDK socket needs little receive buffer; it grows when a message needs it.
                        try channel.syncOptions?.setOption(
                            ChannelOptions.recvAllocator,
                            value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536)
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            NIOWebSocketFrameAggregator(
                                minNonFinalFragmentSize: 0,
                                maxAccumulatedFrameCount: 64,
                                maxAccumulatedFrameSize: hub.settings.maxMessageBytes
                            )
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            StreamingSessionHandler(hub: hub, outcome: outcome, remote: remote)
                        )
                        return UpgradeResult.streaming
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: tls != nil))
                        // Closes idle keep-alive connections on shutdown (quiesce) and after the idle timeout.
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: .seconds(120), logger: logger)
                        )
                        // Server SDKs polling latest-all are answered here, on the event loop (SDKFastPath.swift).
                        try channel.pipeline.syncOperations.addHandler(
                            SDKFastPath(store: hub.store, cache: hub.serverPayloads, serverName: AgentServerFactory.serverName)
                        )
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: serverUpgradeConfiguration
            )
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: configuration
            )
            let upgradeHandler = try channel.pipeline.syncOperations.handler(
                type: NIOTypedHTTPServerUpgradeHandler<UpgradeResult>.self)
            try channel.pipeline.syncOperations.addHandler(UpgradeRequestFilter(), position: .before(upgradeHandler))
            return Value(upgradeResult: negotiated, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .streaming:
                // Nothing to await: the handlers own the socket from here on.
                return
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            }
        } catch {
            logger.debug("connection ended before its first request completed", metadata: ["error": "\(error)"])
            try? await value.channel.close()
        }
    }
}

/// Lets only WebSocket upgrades of `/streaming` reach NIO's upgrade handler; any other request that asks for an
/// upgrade (`Upgrade: h2c` from `curl --http2`, a WebSocket to a wrong path) has its upgrade headers removed and is
/// answered as the plain HTTP request it also is (a 404 for a wrong path). NIO's upgrade handler drops the request
/// head of an upgrade it does not perform, so such requests used to get no answer at all.
final class UpgradeRequestFilter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data), let upgrade = head.headers.first(name: "upgrade") else {
            context.fireChannelRead(data)
            return
        }
        if upgrade.lowercased() == "websocket" && StreamingRequest.isStreamingPath(head.uri) {
            // What follows the upgrade are WebSocket frames, not HTTP parts: this filter's work is done.
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        head.headers.remove(name: "upgrade")
        let connection = head.headers[canonicalForm: "connection"].filter { $0.lowercased() != "upgrade" }
        head.headers.remove(name: "connection")
        for token in connection { head.headers.add(name: "connection", value: String(token)) }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}

/// Path and query of an upgrade request to `/streaming` (spec §2.1).
struct StreamingRequest {
    /// Query parameters; names lowercased (case-insensitive), values percent-decoded and case-sensitive.
    let query: [String: String]

    init(uri: String) {
        var query: [String: String] = [:]
        if let questionMark = uri.firstIndex(of: "?") {
            for pair in uri[uri.index(after: questionMark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = Self.decode(parts[0]).lowercased()
                let value = parts.count > 1 ? Self.decode(parts[1]) : ""
                // The first occurrence wins.
                if query[name] == nil { query[name] = value }
            }
        }
        self.query = query
    }

    /// Whether the path starts with the segment `/streaming` (ASP.NET `StartsWithSegments`, case-insensitive).
    static func isStreamingPath(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
        let lower = path.lowercased()
        return lower == "/streaming" || lower.hasPrefix("/streaming/")
    }

    private static func decode(_ text: Substring) -> String {
        let plusDecoded = text.replacingOccurrences(of: "+", with: " ")
        return plusDecoded.removingPercentEncoding ?? plusDecoded
    }
}

import Foundation
