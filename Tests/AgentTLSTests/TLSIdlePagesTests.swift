#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import AgentTLS

/// A TLS socket that goes quiet gives its NIOSSL buffers' pages back, and what it sends and receives afterwards, or
/// still has queued for a slow reader, arrives whole.
@Suite struct TLSIdlePagesTests {
    static let quiet = TimeAmount.milliseconds(300)

    @Test func aQuietSocketKeepsNoBufferPageAndItsMessagesStayWhole() async throws {
        try await Self.withEchoServer { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { client.close() }
            var sizes = [5, 1_000, 20_000, 3, 70_000]
            for round in 0..<3 {
                let message = Self.pattern(count: sizes[round], seed: round)
                #expect(try await client.roundTrip(message) == message, "round \(round) echoed whole")
                let slots = try await server.lastSeenSlots()
                #expect(slots.count == 2, "the plaintext and the ciphertext buffer are both in slots")
                #expect(try await Self.eventually { Self.residentPages(slots) == 0 }, "round \(round): pages given back")
            }
            sizes.removeFirst(3)
            for (index, size) in sizes.enumerated() {
                let message = Self.pattern(count: size, seed: 10 + index)
                #expect(try await client.roundTrip(message) == message)
            }
        }
    }

    /// The control: a socket that has not been quiet long enough keeps a page of each buffer.
    @Test func beforeTheQuietTimeTheBufferPagesStay() async throws {
        try await Self.withEchoServer(quiet: .hours(1)) { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { client.close() }
            let message = Self.pattern(count: 100, seed: 1)
            #expect(try await client.roundTrip(message) == message)
            let slots = try await server.lastSeenSlots()
            #expect(slots.count == 2)
            try await Task.sleep(for: .milliseconds(Int64(Self.quiet.nanoseconds / 1_000_000) * 3))
            #expect(Self.residentPages(slots) >= 2, "one page of each buffer written and kept")
        }
    }

    @Test func aSlowReaderStillGetsEveryByteItHasNotReadYet() async throws {
        try await Self.withEchoServer { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki, smallBuffers: true)
            defer { client.close() }
            #expect(try await client.roundTrip([1, 2, 3]) == [1, 2, 3], "handshake done")
            // The client reads nothing while the server echoes 4 MB: the server's writes queue up behind a full
            // socket for several quiet times, then the client reads it all.
            try await client.channel.setOption(.autoRead, value: false).get()
            let message = Self.pattern(count: 4 << 20, seed: 7)
            client.send(message)
            try await Task.sleep(for: .milliseconds(Int64(Self.quiet.nanoseconds / 1_000_000) * 4))
            let queued = try await server.queuedBytes()
            #expect(queued > 0, "the test needs writes still queued at the server")
            #expect(try await client.receive(count: message.count) == message, "every queued byte arrives as sent")
        }
    }

    // MARK: - Support

    static func pattern(count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 8) &+ seed) }
    }

    static func residentPages(_ slots: [SlotTicket]) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return slots.reduce(0) { total, slot in
            var vector = [UInt8](repeating: 0, count: slot.pool.slotBytes / page)
            _ = vector.withUnsafeMutableBufferPointer { mincore(slot.address, slot.pool.slotBytes, $0.baseAddress) }
            return total + vector.filter { $0 & 1 == 1 }.count
        }
    }

    /// Polls `condition` for up to 10 s.
    static func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    struct EchoServer {
        let port: Int
        let pki: TestPKI
        let accepted: NIOLockedValueBox<[(channel: any Channel, pages: NIOLoopBound<TLSIdlePages>)]>

        func lastSeenSlots() async throws -> [SlotTicket] {
            let pages = try #require(accepted.withLockedValue { $0.last?.pages })
            return try await pages.eventLoop.submit { pages.value.lastSeen }.get()
        }

        func queuedBytes() async throws -> Int {
            let channel = try #require(accepted.withLockedValue { $0.last?.channel })
            return try await channel.getOption(ChannelOptions.bufferedWritableBytes).get()
        }
    }

    /// A TLS echo server set up as the agent's SDK port is: slot buffers, idle pages, write chunks.
    /// With `offload`, the server's context logs its secrets there and quiet TLS 1.3 connections leave NIOSSL.
    static func withEchoServer(quiet: TimeAmount = Self.quiet,
                               offloadQuiet: TimeAmount = TLSIdlePages.defaultOffloadQuietTime, offload: TLS13SecretLog? = nil,
                               _ body: (EchoServer) async throws -> Void) async throws {
        var pki = try TestPKI()
        defer { pki.remove() }
        let leaf = try pki.issue("server")
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(leaf.cert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: leaf.key, format: .pem))
        )
        configuration.keyLogCallback = offload?.callback
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let accepted = NIOLockedValueBox<[(channel: any Channel, pages: NIOLoopBound<TLSIdlePages>)]>([])
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_sndbuf), value: 4096)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.syncOptions?.setOption(.allocator, value: TLSBufferAllocator.allocator)
                    let pages = TLSIdlePages(quietTime: quiet, offloadQuietTime: offloadQuiet, offload: offload)
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(pages.networkSide)
                    try operations.addHandler(NIOSSLServerHandler(context: context))
                    try operations.addHandler(pages.plaintextSide)
                    try operations.addHandler(TLSWriteChunker())
                    try operations.addHandler(Echo())
                    accepted.withLockedValue { $0.append((channel, NIOLoopBound(pages, eventLoop: channel.eventLoop))) }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        do {
            try await body(EchoServer(port: listener.localAddress!.port!, pki: pki, accepted: accepted))
        } catch {
            try? await listener.close()
            try? await group.shutdownGracefully()
            throw error
        }
        try? await listener.close()
        for (channel, _) in accepted.withLockedValue({ $0 }) { try? await channel.close() }
        try await group.shutdownGracefully()
    }

    final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.write(data, promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
    }
}

/// A TLS client on NIO's default allocator that collects what it receives (with `smallBuffers` and auto-read off, a
/// slow reader).
final class TLSTestClient: Sendable {
    let channel: any Channel
    let group: MultiThreadedEventLoopGroup
    let received: NIOLockedValueBox<[UInt8]>
    /// The errors the client's pipeline saw (NIOSSL's among them).
    let errors: NIOLockedValueBox<[String]>

    init(channel: any Channel, group: MultiThreadedEventLoopGroup, received: NIOLockedValueBox<[UInt8]>,
         errors: NIOLockedValueBox<[String]>) {
        self.channel = channel
        self.group = group
        self.received = received
        self.errors = errors
    }

    static func connect(port: Int, pki: TestPKI, smallBuffers: Bool = false,
                        maximumTLSVersion: TLSVersion? = nil) async throws -> TLSTestClient {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(pki.caCert)
        configuration.maximumTLSVersion = maximumTLSVersion
        let context = try NIOSSLContext(configuration: configuration)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let received = NIOLockedValueBox<[UInt8]>([])
        let errors = NIOLockedValueBox<[String]>([])
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHandler(Collector(received: received, errors: errors))
                }
            }
        if smallBuffers {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: 4096)
        }
        let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
        return TLSTestClient(channel: channel, group: group, received: received, errors: errors)
    }

    func send(_ bytes: [UInt8]) {
        channel.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
    }

    /// Turns reading on and waits (up to 20 s) for `count` bytes more than were taken before.
    func receive(count: Int) async throws -> [UInt8] {
        try await channel.setOption(.autoRead, value: true).get()
        channel.read()
        for _ in 0..<400 {
            if received.withLockedValue({ $0.count }) >= count { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return received.withLockedValue { taken in
            defer { taken.removeAll() }
            return taken
        }
    }

    func roundTrip(_ bytes: [UInt8]) async throws -> [UInt8] {
        send(bytes)
        return try await receive(count: bytes.count)
    }

    /// Closes the socket; its event loop stops in the background.
    func close() {
        channel.close(promise: nil)
        group.shutdownGracefully { _ in }
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        let errors: NIOLockedValueBox<[String]>

        init(received: NIOLockedValueBox<[UInt8]>, errors: NIOLockedValueBox<[String]>) {
            self.received = received
            self.errors = errors
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLockedValue { $0 += buffer.readableBytesView }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            errors.withLockedValue { $0.append("\(error)") }
            context.fireErrorCaught(error)
        }
    }
}
