import Metrics
import NIOCore
import Synchronization

/// The TLS 1.3 record layer of an established connection (RFC 8446 §5), in place of `NIOSSLHandler` once the
/// connection has been quiet (`TLSIdlePages`, `TLS13OffloadTracker`). The handshake, certificate and every check of
/// it stay BoringSSL's; this handler only protects and opens application records with the keys that handshake made
/// (swift-crypto's AES-GCM and ChaCha20-Poly1305), and answers the one post-handshake message a client may send
/// (KeyUpdate). What it keeps per connection is two keys, two IVs, two secrets and two counters, where NIOSSL kept
/// BoringSSL's connection state and a ring of buffered actions (about 9 KiB per idle socket).
///
/// A record that does not authenticate, any other handshake message, or an alert other than `close_notify` ends the
/// connection with an alert, the error passed on; a `close_notify` is answered with one and the connection closed.
public final class TLS13RecordLayer: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Connections this process has moved off NIOSSL (for the benchmark and tests).
    public static var connectionsOffloaded: Int { offloaded.load(ordering: .relaxed) }
    static let offloaded = Atomic<Int>(0)
    static let offloadedMetric = Counter(label: "featbit_agent_tls_connections_offloaded_total")

    private var read: TLS13TrafficKey
    private var write: TLS13TrafficKey
    /// The start of a record not yet complete (nil between records: an idle socket keeps no buffer).
    private var pending: ByteBuffer?
    private var outputClosed = false
    private var failed = false
    /// Buffers from malloc: the channel's allocator keeps its slots for NIOSSL.
    private static let allocator = ByteBufferAllocator()
    private var allocator: ByteBufferAllocator { Self.allocator }

    init(read: TLS13TrafficKey, write: TLS13TrafficKey) {
        self.read = read
        self.write = write
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        Self.offloaded.add(1, ordering: .relaxed)
        Self.offloadedMetric.increment()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var buffer = unwrapInboundIn(data)
        if var earlier = pending {
            earlier.writeBuffer(&buffer)
            buffer = earlier
            pending = nil
        }
        var plaintext: ByteBuffer?
        var closeNotify = false
        do {
            records: while buffer.readableBytes >= 5 {
                let start = buffer.readerIndex
                let type = buffer.getInteger(at: start, as: UInt8.self)!
                let length = Int(buffer.getInteger(at: start + 3, as: UInt16.self)!)
                guard length <= TLS13TrafficKey.maxCiphertext else { throw TLS13RecordError.recordOverflow(length) }
                guard buffer.readableBytes >= 5 + length else { break }
                let header = buffer.readBytes(length: 5)!
                let body = buffer.readBytes(length: length)!
                guard type == 23 else {
                    throw TLS13RecordError.unexpectedMessage("unprotected record of type \(type) after the handshake")
                }
                let opened = try read.open(header: header, body: body)
                switch opened.type {
                case 23:
                    guard !opened.content.isEmpty else { continue }
                    if plaintext == nil { plaintext = allocator.buffer(capacity: opened.content.count) }
                    plaintext!.writeBytes(opened.content)
                case 21:
                    guard opened.content.count == 2 else { throw TLS13RecordError.unexpectedMessage("malformed alert") }
                    if opened.content[1] == 0 {
                        closeNotify = true
                        break records
                    }
                    // user_canceled is a warning that precedes close_notify; every other alert is fatal.
                    guard opened.content[1] == 90 else {
                        throw TLS13RecordError.alertReceived(level: opened.content[0], description: opened.content[1])
                    }
                case 22:
                    try handshakeMessages(opened.content, context: context)
                default:
                    throw TLS13RecordError.unexpectedMessage("record content type \(opened.type)")
                }
            }
        } catch {
            if let plaintext { context.fireChannelRead(wrapInboundOut(plaintext)) }
            fail(error, context: context)
            return
        }
        if buffer.readableBytes > 0 && !closeNotify {
            // Keep only the partial record, not the read buffer it arrived in.
            var rest = allocator.buffer(capacity: buffer.readableBytes)
            rest.writeBuffer(&buffer)
            pending = rest
        }
        if let plaintext { context.fireChannelRead(wrapInboundOut(plaintext)) }
        if closeNotify {
            // The client will send nothing more: answer with our close_notify and close, as NIOSSL does.
            sendAlert(description: 0, level: 1, context: context)
            context.close(promise: nil)
        }
    }

    /// Post-handshake messages (RFC 8446 §4.6): only KeyUpdate is expected from a client.
    private func handshakeMessages(_ content: [UInt8], context: ChannelHandlerContext) throws {
        var index = 0
        while index < content.count {
            guard content.count - index >= 4 else { throw TLS13RecordError.unexpectedMessage("fragmented handshake message") }
            let type = content[index]
            let length = Int(content[index + 1]) << 16 | Int(content[index + 2]) << 8 | Int(content[index + 3])
            guard type == 24 else { throw TLS13RecordError.unexpectedMessage("handshake message \(type) after the handshake") }
            guard length == 1, content.count - index >= 5, content[index + 4] <= 1 else {
                throw TLS13RecordError.unexpectedMessage("malformed KeyUpdate")
            }
            read.update()
            if content[index + 4] == 1 && !outputClosed {
                // update_requested: our KeyUpdate (not requesting one back) goes under the old key, then ours changes.
                var out = allocator.buffer(capacity: 32)
                try [UInt8]([24, 0, 0, 1, 0]).withUnsafeBytes { try write.seal($0, type: 22, into: &out) }
                write.update()
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            }
            index += 5
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !outputClosed else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        let buffer = unwrapOutboundIn(data)
        let maxPlain = TLS13TrafficKey.maxPlaintext
        let records = max(1, (buffer.readableBytes + maxPlain - 1) / maxPlain)
        var out = allocator.buffer(capacity: buffer.readableBytes + records * 22)
        do {
            try buffer.withUnsafeReadableBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let end = min(bytes.count, offset + maxPlain)
                    try write.seal(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), type: 23, into: &out)
                    offset = end
                }
            }
        } catch {
            promise?.fail(error)
            fail(error, context: context)
            return
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode != .input && !outputClosed && context.channel.isActive {
            sendAlert(description: 0, level: 1, context: context)
        }
        context.close(mode: mode, promise: promise)
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        guard !failed else { return }
        failed = true
        pending = nil
        if let recordError = error as? TLS13RecordError {
            if case .alertReceived = recordError {} else {
                sendAlert(description: recordError.alertDescription, level: 2, context: context)
            }
        }
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    /// Sends one alert and closes our output to further records.
    private func sendAlert(description: UInt8, level: UInt8, context: ChannelHandlerContext) {
        guard !outputClosed else { return }
        outputClosed = true
        var out = allocator.buffer(capacity: 32)
        guard (try? [level, description].withUnsafeBytes({ try write.seal($0, type: 21, into: &out) })) != nil else { return }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }
}
