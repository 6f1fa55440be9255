// `bench-client fanout`: N FeatBit server SDKs on one agent's /streaming, for scripts/bench-fanout and
// scripts/bench-e2e (a benchmark tool, not a test).
//
// Each socket is a bare NIO channel that writes the HTTP upgrade request itself and parses the 101 and the
// WebSocket frames by hand: no HTTP codec, no upgrade handler, no frame decoder. That keeps the client cheap per
// socket and per read, and avoids NIO's typed client upgrader, which fails every write made while the upgrade is in
// progress (`NIOHTTPClientUpgradeError.writingToHandlerDuringUpgrade`, silently with `promise: nil`) — a data-sync
// written from the upgrade pipeline handler never reaches the wire.
import AgentCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// When each socket saw its push: one slot per socket, each written once by that socket's event loop, read after
/// `allReceived` completes.
final class PushTimes: @unchecked Sendable {
    let count: Int
    private let slots: UnsafeMutableBufferPointer<UInt64>
    private let received = Atomic<Int>(0)
    let allReceived: EventLoopPromise<Void>

    init(count: Int, eventLoop: any EventLoop) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0)
        allReceived = eventLoop.makePromise()
        if count == 0 { allReceived.succeed() }
    }

    deinit { slots.deallocate() }

    func record(_ index: Int, at nanos: UInt64) {
        guard slots[index] == 0 else { return }  // the first push of the round counts
        slots[index] = nanos
        if received.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == count { allReceived.succeed() }
    }

    var receivedCount: Int { received.load(ordering: .acquiring) }

    /// All times; call only after `allReceived` succeeded.
    var times: [UInt64] {
        _ = received.load(ordering: .acquiring)
        return Array(slots)
    }
}

/// Where all sockets report a push, swapped between rounds (the measured push, then the floor push).
final class PushRound: Sendable {
    private let current = Mutex<PushTimes?>(nil)
    func start(_ times: PushTimes) { current.withLock { $0 = times } }
    func record(_ index: Int, at nanos: UInt64) { current.withLock { $0 }?.record(index, at: nanos) }
}

/// One server SDK: upgrade, data-sync, full reply, then one timestamp per push.
final class FanoutConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State { case upgrading, awaitingFull, idle, closed }

    private let index: Int
    private let request: ByteBuffer
    private let dataSync: ByteBuffer
    private let synced: EventLoopPromise<Void>
    private let round: PushRound
    private var state = State.upgrading
    private var pending: ByteBuffer?
    private var message: ByteBuffer?

    init(index: Int, request: ByteBuffer, dataSync: ByteBuffer, synced: EventLoopPromise<Void>, round: PushRound) {
        self.index = index
        self.request = request
        self.dataSync = dataSync
        self.synced = synced
        self.round = round
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state != .idle { fail(context: context, "socket closed before its data-sync reply") }
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "\(error)")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The time this socket's bytes reached the client, before any parsing.
        let arrival = NIODeadline.now().uptimeNanoseconds
        var bytes = unwrapInboundIn(data)
        if pending == nil || pending!.readableBytes == 0 {
            pending = bytes
        } else {
            pending!.writeBuffer(&bytes)
        }
        if state == .upgrading {
            guard let end = Self.find(Self.headEnd, in: pending!, within: .max) else { return }
            let headLength = end + Self.headEnd.count
            let head = pending!.readString(length: headLength) ?? ""
            guard head.hasPrefix("HTTP/1.1 101") else {
                return fail(context: context, "upgrade refused: \(head.prefix(200))")
            }
            state = .awaitingFull
            context.writeAndFlush(wrapOutboundOut(dataSync), promise: nil)
        }
        while let (opcode, payload) = nextMessage() {
            switch (state, opcode) {
            case (_, 0x9):  // ping: the agent sends none; answer anyway
                context.writeAndFlush(wrapOutboundOut(Self.maskedFrame(opcode: 0xA, payload: payload)), promise: nil)
            case (_, 0x8):
                return fail(context: context, "closed by the agent")
            case (.awaitingFull, 0x1):
                guard Self.head(of: payload, contains: #""eventType":"full""#) else {
                    return fail(context: context, "unexpected first reply: \(String(buffer: payload).prefix(200))")
                }
                state = .idle
                synced.succeed()
            case (.idle, 0x1):
                guard Self.head(of: payload, contains: #""eventType":"patch""#) else {
                    return fail(context: context, "unexpected push: \(String(buffer: payload).prefix(200))")
                }
                round.record(index, at: arrival)
            default:
                break
            }
        }
        if pending!.readableBytes == 0 { pending = nil } else { pending!.discardReadBytes() }
    }

    /// The next complete message in `pending` (fragments joined); server frames are unmasked.
    private func nextMessage() -> (UInt8, ByteBuffer)? {
        while var buffer = pending, buffer.readableBytes >= 2 {
            let b0 = buffer.readInteger(as: UInt8.self)!
            let b1 = buffer.readInteger(as: UInt8.self)!
            var length = Int(b1 & 0x7F)
            if length == 126 {
                guard let n = buffer.readInteger(as: UInt16.self) else { return nil }
                length = Int(n)
            } else if length == 127 {
                guard let n = buffer.readInteger(as: UInt64.self) else { return nil }
                length = Int(n)
            }
            let mask = b1 & 0x80 != 0 ? buffer.readBytes(length: 4) : nil
            guard b1 & 0x80 == 0 || mask != nil, var payload = buffer.readSlice(length: length) else { return nil }
            pending = buffer
            if let mask {
                payload = ByteBuffer(bytes: payload.readableBytesView.enumerated().map { $1 ^ mask[$0 % 4] })
            }
            let opcode = b0 & 0x0F
            let fin = b0 & 0x80 != 0
            if opcode >= 0x8 { return (opcode, payload) }  // control frames are never fragmented
            if opcode != 0 { message = payload } else { message?.writeBuffer(&payload) }
            if fin, let complete = message {
                message = nil
                return (opcode == 0 ? 0x1 : opcode, complete)
            }
        }
        return nil
    }

    private func fail(context: ChannelHandlerContext, _ reason: String) {
        state = .closed
        synced.fail(BenchError("connection \(index): \(reason)"))
        context.close(promise: nil)
    }

    private static let headEnd = Array("\r\n\r\n".utf8)

    /// Offset of `needle` in the first `limit` readable bytes of `buffer` (a plain loop: no generic search per read).
    private static func find(_ needle: [UInt8], in buffer: ByteBuffer, within limit: Int) -> Int? {
        buffer.withUnsafeReadableBytes { haystack in
            needle.withUnsafeBytes { search(UnsafeRawBufferPointer(rebasing: haystack.prefix(limit)), $0) }
        }
    }

    private static func head(of payload: ByteBuffer, contains text: StaticString) -> Bool {
        let needle = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        return payload.withUnsafeReadableBytes { search(UnsafeRawBufferPointer(rebasing: $0.prefix(256)), needle) } != nil
    }

    private static func search(_ haystack: UnsafeRawBufferPointer, _ needle: UnsafeRawBufferPointer) -> Int? {
        guard needle.count > 0, haystack.count >= needle.count else { return nil }
        let first = needle[0]
        var i = 0
        outer: while i <= haystack.count - needle.count {
            if haystack[i] == first {
                for j in 1..<needle.count where haystack[i + j] != needle[j] { i += 1; continue outer }
                return i
            }
            i += 1
        }
        return nil
    }

    static func maskedFrame(opcode: UInt8, payload: ByteBuffer) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.writeInteger(0x80 | opcode)
        let n = payload.readableBytes
        if n < 126 {
            frame.writeInteger(UInt8(0x80 | n))
        } else if n < 65536 {
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(n))
        } else {
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(n))
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame.writeBytes(mask)
        frame.writeBytes(payload.readableBytesView.enumerated().map { $1 ^ mask[$0 % 4] })
        return frame
    }
}

/// With FANOUT_MARKS=1, phase times on stderr in CLOCK_MONOTONIC seconds (to cut a `perf record -k CLOCK_MONOTONIC`).
func mark(_ phase: String) {
    guard ProcessInfo.processInfo.environment["FANOUT_MARKS"] == "1" else { return }
    let t = NIODeadline.now().uptimeNanoseconds
    FileHandle.standardError.write(Data(String(format: "mark %@ %.6f\n", phase, Double(t) / 1e9).utf8))
}

/// Resident set size of a process in KiB.
func rssKiB(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }
    return 0
}

/// CPU time of all threads of a process in nanoseconds (`/proc/PID/task/*/schedstat`, nanosecond resolution).
func cpuNanos(_ pid: String) -> UInt64 {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var total: UInt64 = 0
    for task in tasks {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
           let first = text.split(separator: " ").first, let nanos = UInt64(first) {
            total += nanos
        }
    }
    return total
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))]
}

func trigger(method: String, url: String, auth: String, body: ByteBuffer) async throws {
    var request = HTTPClientRequest(url: url)
    request.method = HTTPMethod(rawValue: method)
    if auth != "none" { request.headers.add(name: "Authorization", value: auth) }
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(body)
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    guard (200..<300).contains(response.status.code) else {
        throw BenchError("\(method) \(url) answered \(response.status)")
    }
}

func waitAll(_ times: PushTimes, seconds: Int64) async throws {
    let timeout = times.allReceived.futureResult.eventLoop.scheduleTask(in: .seconds(seconds)) {
        times.allReceived.fail(BenchError("only \(times.receivedCount) of \(times.count) sockets got the push within \(seconds) s"))
    }
    defer { timeout.cancel() }
    try await times.allReceived.futureResult.get()
}

/// bench-client fanout HOST PORT SECRET N AGENT_PID METHOD URL AUTH CHANGE_BODY [FLOOR_CHANGE_BODY]
///
/// Prints one JSON line: the fields of scripts/lib/fanout_client.py, plus
/// - push_first_ms / push_spread_ms: first arrival after the trigger, and last minus first arrival;
/// - client_cpu_ms / agent_cpu_ms: CPU time each process used from the trigger to the last arrival;
/// - floor_ms (with FLOOR_CHANGE_BODY): the client's own time to take N pushes that are already waiting in its
///   sockets — the client's event loops are held while a second change is made and the agent writes every push,
///   then released; floor_ms is release to last arrival. agent_alone_ms / agent_alone_cpu_ms: the wall and CPU time
///   from that second trigger until the agent is done with the change and its fan-out, while the client is idle
///   (its event loops held) — what the agent needs when it has the machine to itself.
func runFanout(_ args: [String]) async throws {
    guard args.count == 9 || args.count == 10, let port = Int(args[1]), let n = Int(args[3]), let pid = Int32(args[4]) else {
        throw BenchError("usage: fanout HOST PORT SECRET N AGENT_PID METHOD URL AUTH CHANGE_BODY [FLOOR_CHANGE_BODY]")
    }
    let (host, secret, method, url, auth) = (args[0], args[2], args[5], args[6], args[7])
    let changeBody = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: args[8])))
    let floorBody = try args.count == 10 ? ByteBuffer(bytes: Data(contentsOf: URL(fileURLWithPath: args[9]))) : nil
    let threads = Int(ProcessInfo.processInfo.environment["FANOUT_CLIENT_THREADS"] ?? "") ?? System.coreCount
    let concurrency = Int(ProcessInfo.processInfo.environment["FANOUT_CONNECT_CONCURRENCY"] ?? "") ?? 200
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)

    let dataSync = FanoutConnection.maskedFrame(
        opcode: 0x1, payload: ByteBuffer(string: #"{"messageType":"data-sync","data":{"timestamp":0}}"#))
    let round = PushRound()

    @Sendable func connect(_ index: Int) async throws -> any Channel {
        let token = StreamingToken.encode(
            secret: secret, timestamp: Int64(Date().timeIntervalSince1970 * 1000), position: Int.random(in: 2...10))
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let request = ByteBuffer(string: "GET /streaming?type=server&token=\(token) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n")
        var attempt = 0
        while true {
            let loop = group.next()
            let synced = loop.makePromise(of: Void.self)
            do {
                let channel = try await ClientBootstrap(group: loop)
                    .connectTimeout(.seconds(10))
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FanoutConnection(
                                index: index, request: request, dataSync: dataSync, synced: synced, round: round))
                        }
                    }
                    .connect(host: host, port: port).get()
                do {
                    try await synced.futureResult.get()
                } catch {
                    channel.close(promise: nil)
                    throw error
                }
                return channel
            } catch {
                synced.fail(error)
                attempt += 1
                if attempt >= 20 { throw error }
                try await Task.sleep(for: .milliseconds(50 * attempt))
            }
        }
    }

    let rssBefore = rssKiB(pid)
    let connectStart = ContinuousClock.now
    var channels: [any Channel] = []
    channels.reserveCapacity(n)
    try await withThrowingTaskGroup(of: (any Channel).self) { tasks in
        var next = 0
        while next < min(concurrency, n) { let i = next; tasks.addTask { try await connect(i) }; next += 1 }
        while let channel = try await tasks.next() {
            channels.append(channel)
            if next < n { let i = next; tasks.addTask { try await connect(i) }; next += 1 }
        }
    }
    let connectSeconds = ContinuousClock.now - connectStart
    try await Task.sleep(for: .seconds(2))  // let the agent settle (receive buffers shrink, allocations return)
    let rssAfter = rssKiB(pid)

    // Warm the HTTP client up (its event loops, a pooled keep-alive connection to the trigger's server), so that the
    // trigger's own cost is a request on an open connection.
    if let origin = URL(string: url).flatMap({ URLComponents(url: $0, resolvingAgainstBaseURL: false) }) {
        var health = origin
        (health.path, health.query) = ("/health/liveness", nil)
        if let healthURL = health.string {
            for _ in 0..<3 {
                _ = try? await HTTPClient.shared.execute(HTTPClientRequest(url: healthURL), timeout: .seconds(5))
                    .body.collect(upTo: 1 << 16)
            }
        }
    }

    // The measured push.
    let push = PushTimes(count: n, eventLoop: group.next())
    round.start(push)
    try await Task.sleep(for: .milliseconds(200))
    let clientPid = String(getpid())
    let (agentCPU0, clientCPU0) = (cpuNanos(String(pid)), cpuNanos(clientPid))
    let t0 = NIODeadline.now().uptimeNanoseconds
    mark("push-start")
    try await trigger(method: method, url: url, auth: auth, body: changeBody)
    let triggerNanos = NIODeadline.now().uptimeNanoseconds - t0
    try await waitAll(push, seconds: 60)
    let (agentCPU, clientCPU) = (cpuNanos(String(pid)) - agentCPU0, cpuNanos(clientPid) - clientCPU0)
    mark("push-end")
    let arrivals = push.times.map { Double(Int64($0) - Int64(t0)) / 1e6 }.sorted()

    // The floor: hold every client event loop, make a second change, let the agent write all pushes, release.
    var floorMillis: Double?
    var floorAgentCPU: Double?
    var agentAloneMillis: Double?
    if let floorBody {
        try await Task.sleep(for: .milliseconds(500))
        let floor = PushTimes(count: n, eventLoop: group.next())
        round.start(floor)
        let gate = DispatchSemaphore(value: 0)
        let held = Atomic<Int>(0)
        for loop in group.makeIterator() {
            loop.execute {
                held.add(1, ordering: .relaxed)
                gate.wait()
            }
        }
        while held.load(ordering: .relaxed) < threads { try await Task.sleep(for: .milliseconds(1)) }
        // Trigger, and sample the agent's CPU time every millisecond until it has been idle for 100 ms: every push
        // is then in the client's socket buffers, and the last busy sample is when the agent finished on its own.
        let agentTask = String(pid)
        let floorAgentCPU0 = cpuNanos(agentTask)
        let floorStart = NIODeadline.now()
        let answered = Atomic<Bool>(false)
        let triggered = Task {
            defer { answered.store(true, ordering: .releasing) }
            try await trigger(method: method, url: url, auth: auth, body: floorBody)
        }
        var previous = floorAgentCPU0
        var previousSample = floorStart
        var lastBusy = floorStart
        while !answered.load(ordering: .acquiring) || NIODeadline.now() - lastBusy < .milliseconds(100) {
            try await Task.sleep(for: .milliseconds(1))
            let (now, sample) = (cpuNanos(agentTask), NIODeadline.now())
            // Busy: more than a quarter of a core since the last sample.
            if now - previous > UInt64((sample - previousSample).nanoseconds / 4) { lastBusy = sample }
            (previous, previousSample) = (now, sample)
        }
        try await triggered.value
        floorAgentCPU = Double(previous - floorAgentCPU0) / 1e6
        agentAloneMillis = Double((lastBusy - floorStart).nanoseconds) / 1e6
        let release = NIODeadline.now().uptimeNanoseconds
        mark("floor-release")
        for _ in 0..<threads { gate.signal() }
        try await waitAll(floor, seconds: 60)
        mark("floor-end")
        floorMillis = Double(Int64(floor.times.max()!) - Int64(release)) / 1e6
    }

    for channel in channels { channel.close(promise: nil) }
    try? await group.shutdownGracefully()

    func ms(_ x: Double) -> String { String(format: "%.1f", x) }
    var fields: [(String, String)] = [
        ("connections", "\(n)"),
        ("connect_seconds", String(format: "%.2f", Double(connectSeconds.components.seconds) + Double(connectSeconds.components.attoseconds) / 1e18)),
        ("agent_rss_before_kib", "\(rssBefore)"), ("agent_rss_after_kib", "\(rssAfter)"),
        ("rss_per_connection_kib", String(format: "%.2f", Double(rssAfter - rssBefore) / Double(max(n, 1)))),
        ("push_p50_ms", ms(percentile(arrivals, 50))), ("push_p99_ms", ms(percentile(arrivals, 99))),
        ("push_max_ms", ms(arrivals.last!)),
        ("push_first_ms", ms(arrivals.first!)), ("push_spread_ms", ms(arrivals.last! - arrivals.first!)),
        ("trigger_ms", ms(Double(triggerNanos) / 1e6)),
        ("agent_cpu_ms", ms(Double(agentCPU) / 1e6)), ("client_cpu_ms", ms(Double(clientCPU) / 1e6)),
        ("client_threads", "\(threads)"),
    ]
    if let floorMillis, let floorAgentCPU {
        fields.append(("floor_ms", ms(floorMillis)))
        fields.append(("agent_alone_cpu_ms", ms(floorAgentCPU)))
    }
    if let agentAloneMillis { fields.append(("agent_alone_ms", ms(agentAloneMillis))) }
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}
