// `bench-client idle-sockets`: N idle server SDKs on an agent's /streaming over ws:// or wss://, and the agent's RSS
// each costs, for scripts/bench-fanout's TLS comparison (a benchmark tool, not a test). NIO sockets (with NIOSSL for
// wss), the upgrade written and the 101 and first frame parsed by hand; the same client dials both schemes, so the
// two figures differ only by what TLS costs the agent.
import AgentCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// bench-client idle-sockets HOST PORT SECRET N AGENT_PID ws|wss [CA_FILE]
///
/// Prints one JSON line: connections, scheme, connect_seconds, agent_rss_before_kib, agent_rss_after_kib,
/// rss_per_connection_kib (after minus before, over N, 5 s after the last data-sync answer).
/// With IDLE_PING_SECONDS=S each socket sends the SDKs' ping every S s (at its own phase), as a real SDK does
/// (the Python SDK: 10 s); the RSS after is then the mean of one sample a second over three ping periods, and
/// agent_rss_max_kib their highest.
/// With IDLE_PUSH_URL (the bootstrap endpoint), IDLE_PUSH_AUTH and IDLE_PUSH_FILE (a change to post; not with pings),
/// after the RSS one change is posted and timed to every socket: push_p50_ms, push_p99_ms, push_max_ms from the post
/// to each socket's first byte of the push, and agent_cpu_ms, the CPU the agent used from the post to the last.
func runIdleSockets(_ args: [String]) async throws {
    guard args.count == 6 || args.count == 7, let port = Int(args[1]), let n = Int(args[3]), let pid = Int32(args[4]),
          args[5] == "ws" || args[5] == "wss" else {
        throw BenchError("usage: idle-sockets HOST PORT SECRET N AGENT_PID ws|wss [CA_FILE]")
    }
    let (host, secret, scheme) = (args[0], args[2], args[5])
    var tls: NIOSSLContext?
    if scheme == "wss" {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if args.count == 7 { configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(args[6])) }
        configuration.certificateVerification = .noHostnameVerification
        // IDLE_TLS12=1: the sockets speak TLS 1.2 (which stays with NIOSSL on the agent).
        if ProcessInfo.processInfo.environment["IDLE_TLS12"] == "1" { configuration.maximumTLSVersion = .tlsv12 }
        tls = try NIOSSLContext(configuration: configuration)
    }
    let concurrency = Int(ProcessInfo.processInfo.environment["FANOUT_CONNECT_CONCURRENCY"] ?? "") ?? 200
    let pingSeconds = Int(ProcessInfo.processInfo.environment["IDLE_PING_SECONDS"] ?? "") ?? 0
    let counts = IdleCounts()
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil)) }
            try channel.pipeline.syncOperations.addHandler(IdleSDKHandler(
                host: host, port: port, secret: secret, counts: counts, pingSeconds: pingSeconds))
        }
    }
    var channels: [any Channel] = []
    channels.reserveCapacity(n)
    let rssBefore = rssKiB(pid)
    let start = ContinuousClock.now
    let deadline = start + .seconds(300)
    for _ in 0..<n {
        while channels.count - counts.synced.load(ordering: .acquiring) >= concurrency {
            if let reason = counts.failure.withLock({ $0 }) { throw BenchError(reason) }
            guard ContinuousClock.now < deadline else { throw BenchError("connecting took longer than 300 s") }
            try await Task.sleep(for: .milliseconds(2))
        }
        channels.append(try await bootstrap.connect(host: host, port: port).get())
    }
    while counts.synced.load(ordering: .acquiring) < n {
        if let reason = counts.failure.withLock({ $0 }) { throw BenchError(reason) }
        guard ContinuousClock.now < deadline else {
            throw BenchError("only \(counts.synced.load(ordering: .acquiring)) of \(n) sockets synced within 300 s")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    let connectSeconds = ContinuousClock.now - start
    // Let the agent settle (receive buffers shrink, allocations return, idle TLS sockets give their buffer pages
    // back after TLSIdlePages.defaultQuietTime, 1 s).
    try await Task.sleep(for: .seconds(5))
    var samples = [rssKiB(pid)]
    if pingSeconds > 0 {
        samples = []
        for _ in 0..<(3 * pingSeconds) {
            try await Task.sleep(for: .seconds(1))
            samples.append(rssKiB(pid))
        }
    }
    let rssAfter = samples.reduce(0, +) / samples.count
    if let reason = counts.failure.withLock({ $0 }) { throw BenchError(reason) }
    let environment = ProcessInfo.processInfo.environment
    var pushFields: [(String, String)] = []
    if pingSeconds == 0, let url = environment["IDLE_PUSH_URL"], let auth = environment["IDLE_PUSH_AUTH"],
       let file = environment["IDLE_PUSH_FILE"] {
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if args.count == 7 { tlsConfiguration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(args[6])) }
        tlsConfiguration.certificateVerification = .noHostnameVerification
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tlsConfiguration))
        let body = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: file)))
        let cpuBefore = cpuNanos("\(pid)")
        counts.pushStart.store(monotonicNanos(), ordering: .releasing)
        try await trigger(method: "POST", url: url, auth: auth, body: body, client: http)
        let pushDeadline = ContinuousClock.now + .seconds(60)
        while counts.arrivals.withLock({ $0.count }) < n && ContinuousClock.now < pushDeadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        let cpu = cpuNanos("\(pid)").subtractingSaturated(cpuBefore)
        try await http.shutdown()
        let arrivals = counts.arrivals.withLock { $0 }.map { Double($0) / 1e6 }.sorted()
        guard arrivals.count == n else { throw BenchError("the push reached \(arrivals.count) of \(n) sockets in 60 s") }
        pushFields = [("push_p50_ms", String(format: "%.1f", percentile(arrivals, 50))),
                      ("push_p99_ms", String(format: "%.1f", percentile(arrivals, 99))),
                      ("push_max_ms", String(format: "%.1f", arrivals.last ?? 0)),
                      ("agent_cpu_ms", String(format: "%.1f", Double(cpu) / 1e6))]
    }
    var fields: [(String, String)] = [
        ("connections", "\(n)"), ("scheme", "\"\(scheme)\""),
        ("connect_seconds", String(format: "%.2f", Double(connectSeconds.components.seconds) + Double(connectSeconds.components.attoseconds) / 1e18)),
        ("agent_rss_before_kib", "\(rssBefore)"), ("agent_rss_after_kib", "\(rssAfter)"),
        ("rss_per_connection_kib", String(format: "%.2f", Double(rssAfter - rssBefore) / Double(max(n, 1)))),
    ]
    if pingSeconds > 0 {
        fields += [("ping_seconds", "\(pingSeconds)"), ("pong_reads", "\(counts.pongs.load(ordering: .relaxed))"),
                   ("agent_rss_max_kib", "\(samples.max() ?? 0)")]
    }
    fields += pushFields
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
    for channel in channels { channel.close(promise: nil) }
    try await group.shutdownGracefully()
}

final class IdleCounts: Sendable {
    let synced = Atomic<Int>(0)
    let pongs = Atomic<Int>(0)
    /// When the push was posted (monotonic ns; 0 before), and how long after it each socket saw its first byte.
    let pushStart = Atomic<UInt64>(0)
    let arrivals = Mutex<[UInt64]>([])
    let failure = Mutex<String?>(nil)
    func fail(_ reason: String) { failure.withLock { if $0 == nil { $0 = reason } } }
}

/// One idle server SDK: upgrade, data-sync, wait for the first complete frame (the full data set), then read and
/// drop whatever comes.
final class IdleSDKHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private enum State { case upgrading, awaitingFull, synced }
    private var state = State.upgrading
    private var pending = ByteBuffer()
    private let host: String
    private let port: Int
    private let secret: String
    private let counts: IdleCounts
    private let pingSeconds: Int
    private var pinger: RepeatedTask?
    private var pushSeen = false
    static let ping = RawFanoutClient.maskedText(#"{"messageType":"ping","data":{}}"#)

    init(host: String, port: Int, secret: String, counts: IdleCounts, pingSeconds: Int) {
        self.host = host
        self.port = port
        self.secret = secret
        self.counts = counts
        self.pingSeconds = pingSeconds
    }

    func channelActive(context: ChannelHandlerContext) {
        let token = StreamingToken.encode(
            secret: secret, timestamp: Int64(Date().timeIntervalSince1970 * 1000), position: Int.random(in: 2...10))
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = "GET /streaming?type=server&token=\(token) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .synced else {
            if pinger != nil { counts.pongs.add(1, ordering: .relaxed) }  // only pongs come while idle
            let pushStart = counts.pushStart.load(ordering: .acquiring)
            if pushStart > 0 && !pushSeen {
                pushSeen = true
                let now = monotonicNanos()
                counts.arrivals.withLock { $0.append(now.subtractingSaturated(pushStart)) }
            }
            return
        }
        var incoming = unwrapInboundIn(data)
        pending.writeBuffer(&incoming)
        if state == .upgrading {
            let view = pending.readableBytesView
            guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 101") else {
                counts.fail("upgrade refused: \(head.prefix(80))")
                return
            }
            pending.moveReaderIndex(forwardBy: end.upperBound - view.startIndex)
            state = .awaitingFull
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(bytes: RawFanoutClient.maskedText(
                #"{"messageType":"data-sync","data":{"timestamp":0}}"#))), promise: nil)
        }
        // The first frame: 2-byte header, then a 16- or 64-bit extended length.
        let bytes = Array(pending.readableBytesView.prefix(10))
        guard bytes.count >= 2 else { return }
        var length = Int(bytes[1] & 0x7f)
        var header = 2
        if length == 126 {
            guard bytes.count >= 4 else { return }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            header = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return }
            length = bytes[2..<10].reduce(0) { $0 << 8 | Int($1) }
            header = 10
        }
        guard pending.readableBytes >= header + length else { return }
        state = .synced
        pending = ByteBuffer()
        counts.synced.add(1, ordering: .releasing)
        if pingSeconds > 0 {
            let channel = context.channel
            let period = Int64(pingSeconds) * 1000
            pinger = context.eventLoop.scheduleRepeatedTask(
                initialDelay: .milliseconds(Int64.random(in: 0..<period)), delay: .milliseconds(period)
            ) { _ in
                channel.writeAndFlush(channel.allocator.buffer(bytes: IdleSDKHandler.ping), promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        if state != .synced { counts.fail("a socket closed before its data-sync answer") }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        counts.fail("socket error: \(error)")
        context.close(promise: nil)
    }
}
