import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `bench-client bare-http PORT BODY_FILE`: the reference of scripts/bench-http, a bare SwiftNIO HTTP/1.1 server that
/// answers every request (any method, any path, body read and dropped) with `200`, `Content-Type: application/json`
/// and the bytes of BODY_FILE, keep-alive, on the same event-loop group as the agent (one loop per core). It is what
/// the agent's SDK endpoints would cost with no routing, authentication or payload work at all.
func runBareHTTP(_ args: [String]) async throws {
    guard args.count == 2, let port = Int(args[0]) else { throw BenchError("usage: bare-http PORT BODY_FILE") }
    let body = try Data(contentsOf: URL(fileURLWithPath: args[1]))
    let bodyBuffer = ByteBuffer(bytes: body)
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    withPipeliningAssistance: false, withErrorHandling: false)
                try channel.pipeline.syncOperations.addHandler(BareResponder(body: bodyBuffer))
            }
        }
        .bind(host: "127.0.0.1", port: port).get()
    FileHandle.standardOutput.write(Data("listening \(channel.localAddress?.port ?? port)\n".utf8))
    try await channel.closeFuture.get()
}

final class BareResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let body: ByteBuffer
    var keepAlive = true

    init(body: ByteBuffer) { self.body = body }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            headers.add(name: "Content-Length", value: String(body.readableBytes))
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                          promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let keepAlive = self.keepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
