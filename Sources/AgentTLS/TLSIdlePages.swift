import NIOCore
import NIOSSL

/// Gives an idle TLS socket's buffer pages back to the kernel.
///
/// `NIOSSLHandler` keeps two buffers for a connection's life (32 KiB of plaintext read, 16 KiB of ciphertext write,
/// from `TLSBufferAllocator`'s slots), and every message in or out writes a page of each. Once the connection has
/// been quiet for `quietTime`, neither holds a byte anyone will read again: NIOSSL hands the plaintext on and rewinds
/// its buffer within the read, and the ciphertext has left the socket. Their pages are then given back
/// (`MADV_DONTNEED`; they read as zeros and cost nothing until the next message writes them). An idle SDK socket keeps
/// no page of either: 8 KiB less per socket.
///
/// Two handlers around `NIOSSLHandler` share one `TLSIdlePages`:
/// - `networkSide`, between the socket and NIOSSL: sees every ciphertext buffer NIOSSL writes (which slot it is in)
///   and all traffic in and out (what "quiet" means);
/// - `plaintextSide`, right after NIOSSL: sees the plaintext buffer NIOSSL reads into and passes on a copy of its
///   bytes, so no handler further on ever holds NIOSSL's buffer — the guarantee that its pages can go.
/// The ciphertext buffer's pages go only while the socket has no write queued (`bufferedWritableBytes` is 0): a queued
/// write still points into it.
///
/// With a `TLS13SecretLog` (the SDK port), a quiet TLS 1.3 connection goes further: NIOSSL is replaced by
/// `TLS13RecordLayer`, which keeps only the connection's traffic keys (`TLS13OffloadTracker` tells when that is exact).
/// NIOSSL's buffers, its action ring and BoringSSL's connection state are then freed.
///
/// All state lives on the channel's event loop; the release runs as its own task there, never inside NIOSSL's calls.
public final class TLSIdlePages {
    /// Quiet time before the pages go: long enough that a burst of messages (a push, a ping and its pong) does not
    /// fault its pages in again for every message, short next to the SDKs' ping interval (10 s for the Python SDK),
    /// so a pinging SDK's socket holds them about a tenth of the time.
    public static let defaultQuietTime: TimeAmount = .seconds(1)

    /// Quiet time before a connection that can leave NIOSSL does (a one-time move, so it need not wait for the page
    /// release's full second): every connection still on NIOSSL holds about 10 KiB, and during a burst of connects
    /// those add up (1,400 connections a second, held 1 s each, left 10 MiB of heap behind them).
    public static let defaultOffloadQuietTime: TimeAmount = .milliseconds(250)

    let quietTime: TimeAmount
    let offloadQuietTime: TimeAmount
    private var plaintext: SlotTicket?
    private var ciphertext: SlotTicket?
    /// The slots of the last buffers seen, kept after a release (for tests).
    private var seenPlaintext: SlotTicket?
    private var seenCiphertext: SlotTicket?
    var lastSeen: [SlotTicket] { [seenPlaintext, seenCiphertext].compactMap { $0 } }
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var scheduled: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// Follows the records while NIOSSL is in charge, when this connection may leave it.
    private var tracker: TLS13OffloadTracker?
    /// A write has passed towards NIOSSL without a flush after it: NIOSSL holds it, so it must stay.
    private var unflushedWrite = false

    /// - Parameter offload: the key log of the context this connection's handshake uses; with it, a quiet TLS 1.3
    ///   connection leaves NIOSSL for `TLS13RecordLayer`.
    public init(quietTime: TimeAmount = TLSIdlePages.defaultQuietTime,
                offloadQuietTime: TimeAmount = TLSIdlePages.defaultOffloadQuietTime, offload: TLS13SecretLog? = nil) {
        self.quietTime = quietTime
        self.offloadQuietTime = min(offloadQuietTime, quietTime)
        self.tracker = offload.map { TLS13OffloadTracker(log: $0) }
    }

    /// The handler to add before `NIOSSLHandler` (on the socket's side of it).
    public var networkSide: NetworkSide { NetworkSide(self) }
    /// The handler to add right after `NIOSSLHandler`.
    public var plaintextSide: PlaintextSide { PlaintextSide(self) }

    private func activity(ciphertext buffer: ByteBuffer? = nil, plaintext plain: ByteBuffer? = nil) {
        if let buffer, let ticket = Self.ticket(of: buffer) {
            ciphertext = ticket
            seenCiphertext = ticket
        }
        if let plain, let ticket = Self.ticket(of: plain) {
            plaintext = ticket
            seenPlaintext = ticket
        }
        lastActivity = .now()
        guard scheduled == nil, plaintext != nil || ciphertext != nil else { return }
        schedule(in: tracker?.eligible == true ? offloadQuietTime : quietTime)
    }

    private static func ticket(of buffer: ByteBuffer) -> SlotTicket? {
        guard buffer.readableBytes > 0 else { return nil }
        return buffer.withUnsafeReadableBytes { bytes in bytes.baseAddress.flatMap { TLSBufferAllocator.ticket(for: $0) } }
    }

    private func schedule(in delay: TimeAmount) {
        guard let context else { return }
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            scheduled = nil
            releaseIfQuiet()
        }
    }

    private func releaseIfQuiet() {
        guard let context, context.channel.isActive else { return }
        let quietFor = NIODeadline.now() - lastActivity
        if quietFor >= offloadQuietTime, offloadIfReady(context) { return }
        guard quietFor >= quietTime else {
            schedule(in: (tracker?.eligible == true && quietFor < offloadQuietTime ? offloadQuietTime : quietTime) - quietFor)
            return
        }
        if let ticket = plaintext {
            ticket.pool.release(ticket)
            plaintext = nil
        }
        if let ticket = ciphertext {
            let queued = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? nil
            if queued == 0 {
                ticket.pool.release(ticket)
                ciphertext = nil
            } else {
                // A write is still queued (a slow reader): its bytes may be in this buffer. Look again later.
                schedule(in: quietTime)
            }
        }
    }

    /// Replaces NIOSSL (and the handlers around it) with `TLS13RecordLayer` when the tracker knows the record layer's
    /// exact state and nothing is held in NIOSSL or queued on the socket. The handlers go in one go on the event loop,
    /// between reads, so no byte passes while the pipeline changes.
    private func offloadIfReady(_ context: ChannelHandlerContext) -> Bool {
        guard let keys = tracker?.handover, !unflushedWrite else { return false }
        let queued = (try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)) ?? nil
        guard queued == 0 else { return false }
        let pipeline = context.pipeline.syncOperations
        guard let ssl = try? pipeline.handler(type: NIOSSLHandler.self), ssl.tlsVersion == .tlsv13,
              let sslContext = try? pipeline.context(handlerType: NIOSSLHandler.self) else { return false }
        do {
            try pipeline.addHandler(TLS13RecordLayer(read: keys.read, write: keys.write), position: .after(context.handler))
        } catch {
            return false
        }
        pipeline.removeHandler(context: sslContext, promise: nil)
        if let plaintextSide = try? pipeline.context(handlerType: PlaintextSide.self) {
            pipeline.removeHandler(context: plaintextSide, promise: nil)
        }
        if let chunker = try? pipeline.context(handlerType: TLSWriteChunker.self) {
            pipeline.removeHandler(context: chunker, promise: nil)
        }
        // NIOSSL's buffers are gone with it; nothing else needs the slots.
        try? context.channel.syncOptions?.setOption(ChannelOptions.allocator, value: ByteBufferAllocator())
        pipeline.removeHandler(context: context, promise: nil)
        return true
    }

    private func attach(_ context: ChannelHandlerContext) {
        self.context = context
    }

    private func detach() {
        tracker?.finish()
        tracker = nil
        scheduled?.cancel()
        scheduled = nil
        context = nil
        plaintext = nil
        ciphertext = nil
    }

    public final class NetworkSide: ChannelDuplexHandler, RemovableChannelHandler {
        public typealias InboundIn = ByteBuffer
        public typealias InboundOut = ByteBuffer
        public typealias OutboundIn = ByteBuffer
        public typealias OutboundOut = ByteBuffer

        private let pages: TLSIdlePages

        init(_ pages: TLSIdlePages) {
            self.pages = pages
        }

        public func handlerAdded(context: ChannelHandlerContext) {
            pages.attach(context)
        }

        public func handlerRemoved(context: ChannelHandlerContext) {
            pages.detach()
        }

        public func channelInactive(context: ChannelHandlerContext) {
            pages.detach()
            context.fireChannelInactive()
        }

        public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pages.activity()
            if pages.tracker != nil { pages.tracker!.inbound(unwrapInboundIn(data)) }
            context.fireChannelRead(data)
        }

        public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let buffer = unwrapOutboundIn(data)
            pages.activity(ciphertext: buffer)
            if pages.tracker != nil { pages.tracker!.outbound(buffer) }
            context.write(data, promise: promise)
        }
    }

    public final class PlaintextSide: ChannelDuplexHandler, RemovableChannelHandler {
        public typealias InboundIn = ByteBuffer
        public typealias InboundOut = ByteBuffer
        public typealias OutboundIn = NIOAny

        private let pages: TLSIdlePages
        /// Copies come from malloc: the slots are for NIOSSL's own buffers.
        private let allocator = ByteBufferAllocator()

        init(_ pages: TLSIdlePages) {
            self.pages = pages
        }

        public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            pages.activity(plaintext: buffer)
            var copy = allocator.buffer(capacity: buffer.readableBytes)
            copy.writeImmutableBuffer(buffer)
            context.fireChannelRead(wrapInboundOut(copy))
        }

        public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            pages.unflushedWrite = true
            context.write(data, promise: promise)
        }

        public func flush(context: ChannelHandlerContext) {
            pages.unflushedWrite = false
            context.flush()
        }
    }
}
