// The sockets of `bench-client fanout`: plain non-blocking sockets on one epoll instance per client thread, with the
// HTTP upgrade written and the 101 and WebSocket frames parsed by hand (a benchmark tool, not a test).
//
// Why not NIO here: the client shares the machine's cores with the agent it measures, so every microsecond the
// client spends per push is taken from the agent. Profiled at 10,000 sockets, an NIO channel read cost the client
// about 10 µs per push, nearly half of it outside the kernel (buffer allocation, pipeline, retains); this loop is a
// `read(2)` into a per-thread buffer and a frame-header check.
import AgentCore
import Foundation
import Synchronization
import CEpoll

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: arrival times and the trigger time use the same clock.
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// When each socket saw the push of one round: one slot per socket, written once by the thread that owns it.
final class RawRound: @unchecked Sendable {
    let count: Int
    private let slots: UnsafeMutableBufferPointer<UInt64>
    private let received = Atomic<Int>(0)

    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: 0)
    }

    deinit { slots.deallocate() }

    func record(_ index: Int, at nanos: UInt64) {
        guard slots[index] == 0 else { return }  // the first push of the round counts
        slots[index] = nanos
        received.add(1, ordering: .releasing)
    }

    var receivedCount: Int { received.load(ordering: .acquiring) }

    /// Waits (polling every millisecond) until every socket has its push, or fails after `seconds`.
    func waitAll(seconds: Double) async throws {
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        while receivedCount < count {
            guard monotonicNanos() < deadline else {
                throw BenchError("only \(receivedCount) of \(count) sockets got the push within \(seconds) s")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// All arrival times; call after `waitAll`.
    var times: [UInt64] { Array(slots) }
}

/// N WebSocket connections to an agent's `/streaming`, spread over `threads` threads, each with its own epoll.
final class RawFanoutClient: @unchecked Sendable {
    struct Target {
        let host: String
        let port: Int
        let secret: String
    }

    private enum State { case idle, connecting, upgrading, awaitingFull, synced, failed }

    /// One socket. Touched only by the thread that owns it (index % threads).
    private struct Connection {
        var fd: Int32 = -1
        var state = State.idle
        var attempts = 0
        var pending: [UInt8] = []
    }

    private let target: Target
    private let threads: Int
    private let concurrency: Int
    private var connections: [Connection]
    private let synced = Atomic<Int>(0)
    private let failure = Mutex<String?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let holdRequested = Atomic<Bool>(false)
    private let held = Atomic<Int>(0)
    private let gate = DispatchSemaphore(value: 0)
    private let finished = DispatchGroup()
    private let round = Mutex<RawRound?>(nil)
    private let dataSync: [UInt8]

    init(target: Target, count: Int, threads: Int, concurrency: Int) {
        self.target = target
        self.threads = max(1, threads)
        self.concurrency = max(1, concurrency / max(1, threads))
        connections = Array(repeating: Connection(), count: count)
        dataSync = Self.maskedText(#"{"messageType":"data-sync","data":{"timestamp":0}}"#)
    }

    var syncedCount: Int { synced.load(ordering: .acquiring) }
    var failureReason: String? { failure.withLock { $0 } }

    /// Starts the threads; they connect their share of sockets, then read pushes until `stop()`.
    func start() {
        for thread in 0..<threads {
            finished.enter()
            let worker = Thread { [self] in
                run(thread: thread)
                finished.leave()
            }
            worker.name = "fanout-\(thread)"
            worker.start()
        }
    }

    /// Every later push is recorded into `next`.
    func startRound(_ next: RawRound) { round.withLock { $0 = next } }

    /// Blocks every client thread (the pushes stay in the socket buffers) until `release()`.
    func hold() async throws {
        holdRequested.store(true, ordering: .releasing)
        while held.load(ordering: .acquiring) < threads { try await Task.sleep(for: .milliseconds(1)) }
    }

    func release() {
        holdRequested.store(false, ordering: .releasing)
        for _ in 0..<threads { gate.signal() }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        finished.wait()
        for connection in connections where connection.fd >= 0 { close(connection.fd) }
    }

    // MARK: - One thread

    private func run(thread: Int) {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { return fail("epoll_create1: \(String(cString: strerror(errno)))") }
        defer { close(epoll) }
        let mine = Array(stride(from: thread, to: connections.count, by: threads))
        var queue = mine[...]  // not yet started (or to retry)
        var inFlight = 0
        var events = [epoll_event](repeating: epoll_event(), count: 1024)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }

        while !stopping.load(ordering: .acquiring), failureReason == nil {
            if holdRequested.load(ordering: .acquiring) {
                held.add(1, ordering: .releasing)
                gate.wait()
                held.subtract(1, ordering: .releasing)
            }
            while inFlight < concurrency, let index = queue.popFirst() {
                if open(index, epoll: epoll) { inFlight += 1 }
            }
            let ready = epoll_wait(epoll, &events, Int32(events.count), 10)
            if ready < 0 {
                if errno == EINTR { continue }
                return fail("epoll_wait: \(String(cString: strerror(errno)))")
            }
            for event in events.prefix(Int(ready)) {
                let index = Int(event.data.u64)
                let before = connections[index].state
                handle(index, events: event.events, epoll: epoll, buffer: buffer)
                let after = connections[index].state
                if before != .synced && after == .synced { inFlight -= 1 }
                if after == .failed {
                    inFlight -= 1
                    connections[index].attempts += 1
                    guard connections[index].attempts < 20 else {
                        return fail("connection \(index) failed 20 times")
                    }
                    connections[index].state = .idle
                    queue.append(index)
                }
            }
        }
    }

    /// Starts a non-blocking connect; false if it failed at once (then the connection is queued again).
    private func open(_ index: Int, epoll: Int32) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            fail("socket: \(String(cString: strerror(errno)))")
            return false
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(target.port).bigEndian)
        inet_pton(AF_INET, target.host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 || errno == EINPROGRESS else {
            close(fd)
            fail("connect: \(String(cString: strerror(errno)))")
            return false
        }
        connections[index].fd = fd
        connections[index].state = .connecting
        connections[index].pending.removeAll(keepingCapacity: false)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue
        event.data.u64 = UInt64(index)
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
        return true
    }

    private func handle(_ index: Int, events: UInt32, epoll: Int32, buffer: UnsafeMutableRawBufferPointer) {
        let fd = connections[index].fd
        if connections[index].state == .connecting {
            guard events & EPOLLOUT.rawValue != 0 else { return drop(index, epoll: epoll) }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0, send(index, upgradeRequest()) else { return drop(index, epoll: epoll) }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
            event.data.u64 = UInt64(index)
            epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
            connections[index].state = .upgrading
            return
        }
        guard events & EPOLLIN.rawValue != 0 else { return drop(index, epoll: epoll) }
        // The time this socket's bytes reached the client, before any parsing.
        let arrival = monotonicNanos()
        let count = read(fd, buffer.baseAddress, buffer.count)
        guard count > 0 else {
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
            return drop(index, epoll: epoll)
        }
        let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
        if connections[index].state == .synced && connections[index].pending.isEmpty {
            // The common case while measuring: whole frames in one read, nothing buffered.
            let consumed = parseFrames(index, bytes, arrival: arrival, epoll: epoll)
            if consumed < count, connections[index].state == .synced {
                connections[index].pending.append(contentsOf: bytes[consumed...])
            }
            return
        }
        connections[index].pending.append(contentsOf: bytes)
        if connections[index].state == .upgrading {
            guard let end = Self.find(Array("\r\n\r\n".utf8), in: connections[index].pending) else { return }
            guard connections[index].pending.starts(with: Array("HTTP/1.1 101".utf8)) else {
                let head = String(decoding: connections[index].pending.prefix(200), as: UTF8.self)
                return fail("connection \(index): upgrade refused: \(head)")
            }
            connections[index].pending.removeFirst(end + 4)
            guard send(index, dataSync) else { return drop(index, epoll: epoll) }
            connections[index].state = .awaitingFull
        }
        let pending = connections[index].pending
        let consumed = pending.withUnsafeBytes { parseFrames(index, $0, arrival: arrival, epoll: epoll) }
        if connections[index].fd == fd { connections[index].pending.removeFirst(consumed) }
    }

    /// Handles every complete frame in `bytes`; returns the bytes consumed. Server frames are unmasked; the agent
    /// sends whole messages, so a continuation frame is treated as its own message.
    private func parseFrames(_ index: Int, _ bytes: UnsafeRawBufferPointer, arrival: UInt64, epoll: Int32) -> Int {
        var offset = 0
        while bytes.count - offset >= 2 {
            let b0 = bytes[offset], b1 = bytes[offset + 1]
            var header = 2
            var length = Int(b1 & 0x7F)
            if length == 126 {
                guard bytes.count - offset >= 4 else { break }
                length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
                header = 4
            } else if length == 127 {
                guard bytes.count - offset >= 10 else { break }
                length = (0..<8).reduce(0) { $0 << 8 | Int(bytes[offset + 2 + $1]) }
                header = 10
            }
            guard bytes.count - offset >= header + length else { break }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + header)..<(offset + header + length)])
            offset += header + length
            switch (connections[index].state, b0 & 0x0F) {
            case (_, 0x8):
                fail("connection \(index): closed by the agent")
                return offset
            case (.awaitingFull, 0x1):
                guard Self.head(of: payload, contains: #""eventType":"full""#) else {
                    fail("connection \(index): unexpected first reply: \(String(decoding: payload.prefix(200), as: UTF8.self))")
                    return offset
                }
                connections[index].state = .synced
                synced.add(1, ordering: .releasing)
            case (.synced, 0x1):
                guard Self.head(of: payload, contains: #""eventType":"patch""#) else {
                    fail("connection \(index): unexpected push: \(String(decoding: payload.prefix(200), as: UTF8.self))")
                    return offset
                }
                round.withLock { $0 }?.record(index, at: arrival)
            default:
                break
            }
        }
        return offset
    }

    private func send(_ index: Int, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write(connections[index].fd, $0.baseAddress, $0.count) } == bytes.count
    }

    /// A socket that failed before it was synced is retried; one that fails later ends the run.
    private func drop(_ index: Int, epoll: Int32) {
        let fd = connections[index].fd
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        close(fd)
        connections[index].fd = -1
        if connections[index].state == .synced {
            fail("connection \(index): closed after its data-sync reply")
        }
        connections[index].state = .failed
    }

    private func fail(_ reason: String) {
        failure.withLock { if $0 == nil { $0 = reason } }
    }

    private func upgradeRequest() -> [UInt8] {
        let token = StreamingToken.encode(
            secret: target.secret, timestamp: Int64(Date().timeIntervalSince1970 * 1000), position: Int.random(in: 2...10))
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        return Array(("GET /streaming?type=server&token=\(token) HTTP/1.1\r\nHost: \(target.host):\(target.port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8)
    }

    static func maskedText(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        var frame: [UInt8] = [0x81]
        if payload.count < 126 {
            frame.append(UInt8(0x80 | payload.count))
        } else {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $1 ^ mask[$0 % 4] }
        return frame
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        }
        return nil
    }

    private static func head(of payload: UnsafeRawBufferPointer, contains text: StaticString) -> Bool {
        let needle = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        let haystack = UnsafeRawBufferPointer(rebasing: payload.prefix(256))
        guard haystack.count >= needle.count else { return false }
        outer: for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            for j in 1..<needle.count where haystack[i + j] != needle[j] { continue outer }
            return true
        }
        return false
    }
}
