import AgentCore
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

/// Failed handshakes come from anyone who can reach the port: their log lines are bounded per window, and the first
/// line after a quiet spell says how many were left out.
@Suite struct LogBudgetTests {
    @Test func linesOverTheBudgetAreCountedAndReportedWithTheNextLogged() {
        let budget = LogBudget(linesPerWindow: 3, window: .seconds(10))
        let start = ContinuousClock.now
        let taken = (0..<10).map { _ in budget.take(now: start) }
        #expect(taken == [0, 0, 0, nil, nil, nil, nil, nil, nil, nil])
        #expect(budget.take(now: start + .seconds(11)) == 7, "the next window's first line reports the 7 left out")
        #expect(budget.take(now: start + .seconds(11)) == 0)
    }
}
