import NIOCore

/// Sits right after a `NIOSSLHandler` (between it and the handlers that write): a large write is passed down in
/// slices of `chunkBytes`, each flushed. `NIOSSLHandler` encrypts everything written before a flush into one
/// ciphertext buffer per connection and keeps that buffer's capacity for the connection's life; without this, every
/// SDK socket kept a buffer as large as the full data set it was sent at connect (170 KiB per idle socket with a
/// 129 KB data set; 62.6 KiB with this handler). Flushing earlier changes nothing on the wire but when bytes leave.
public final class TLSWriteChunker: ChannelOutboundHandler, RemovableChannelHandler, Sendable {
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Small enough that the ciphertext of one piece and a WebSocket frame header, each with its record overhead
    /// (at most 29 bytes in TLS 1.2, 22 in 1.3), fits in one 4 KiB page, so an idle socket's ciphertext buffer has one
    /// page resident (its slot from `TLSBufferAllocator`); large enough that a full data set is a few dozen writes.
    /// Measured per idle TLS socket: 31.3 KiB with 16 KiB pieces, 28.1 with 4 KiB (both from malloc).
    public static let defaultChunkBytes = 4096 - 128
    let chunkBytes: Int

    public init(chunkBytes: Int = TLSWriteChunker.defaultChunkBytes) {
        self.chunkBytes = max(1, chunkBytes)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = unwrapOutboundIn(data)
        guard buffer.readableBytes > chunkBytes else {
            context.write(data, promise: promise)
            return
        }
        while buffer.readableBytes > chunkBytes, let slice = buffer.readSlice(length: chunkBytes) {
            context.write(wrapOutboundOut(slice), promise: nil)
            context.flush()
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }
}
