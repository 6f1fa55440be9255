import AgentTLS
import NIOCore
import NIOEmbedded
import Testing

/// What the chunker hands to NIOSSL: large writes as flushed slices of at most one TLS record, so NIOSSL's per-socket
/// ciphertext buffer never grows to the size of a full data set.
@Suite struct TLSWriteChunkerTests {
    @Test func aLargeWriteLeavesInFlushedSlicesAndSmallWritesAreUntouched() throws {
        let channel = EmbeddedChannel(handler: TLSWriteChunker(chunkBytes: 16 * 1024))
        defer { _ = try? channel.finish() }
        let payload = (0..<(40 * 1024)).map { UInt8(truncatingIfNeeded: $0) }
        let written = channel.write(ByteBuffer(bytes: payload))
        // The first two slices are already flushed; the rest waits for the caller's own flush.
        #expect(try channel.readOutbound(as: ByteBuffer.self)?.readableBytes == 16 * 1024)
        #expect(try channel.readOutbound(as: ByteBuffer.self)?.readableBytes == 16 * 1024)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.flush()
        var received: [UInt8] = payload.prefix(32 * 1024).map { $0 }
        let last = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(last.readableBytes == 8 * 1024)
        received += last.readableBytesView
        #expect(received == payload, "the bytes arrive whole and in order")
        try written.wait()

        channel.write(ByteBuffer(string: "small"), promise: nil)
        channel.flush()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "small"))
    }
}
