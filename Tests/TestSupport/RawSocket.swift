import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking socket work on a Dispatch thread: blocking a Swift concurrency pool thread (one per core) would
/// starve the in-process server under test, and every other test running beside it.
public func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

/// A bare TCP client for tests that need what a WebSocket library hides: an SDK that writes and never reads.
/// Its calls block: make them inside `offPool`. Always `close()` it.
public final class RawSocket: @unchecked Sendable {
    public let fd: Int32
    /// Bytes read past the end of what `exchange` or `readFrame` returned.
    private var unread: [UInt8] = []

    /// Connects to 127.0.0.1:`port` with small kernel buffers (set before connecting, so they hold).
    public init(port: Int, bufferBytes: Int32 = 4096) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestServerFailure("socket: \(errno)") }
        var size = bufferBytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            Glibc.close(fd)
            throw TestServerFailure("connect: \(errno)")
        }
    }

    public func close() { Glibc.close(fd) }

    /// Writes the WebSocket upgrade for `path` and reads the response head; returns it.
    public func upgrade(path: String) throws -> String {
        try exchange("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    }

    /// Writes `request` as it is and reads the response head (empty if the server closed without one).
    public func exchange(_ request: String) throws -> String {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard sendAll(Array(request.utf8)) else { throw TestServerFailure("could not send the request") }
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]) {
            guard recv(fd, &byte, 1, 0) == 1, head.count < 16_384 else { break }
            head.append(byte)
        }
        return String(decoding: head, as: UTF8.self)
    }

    /// Sends all of `bytes` (blocking mode).
    public func sendAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// Sends without blocking; returns the bytes taken (0 when the kernel buffer is full), or nil on an error.
    public func trySend(_ bytes: [UInt8]) -> Int? {
        let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if sent >= 0 { return sent }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : nil
    }

    /// Whether the socket can take more bytes within `milliseconds`.
    public func becomesWritable(within milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0 && descriptor.revents & Int16(POLLOUT) != 0
    }

    /// A masked client frame with any opcode, FIN or not, and payload size.
    public static func maskedFrame(opcode: UInt8, fin: Bool, payload: [UInt8]) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 {
            frame.append(UInt8(0x80 | payload.count))
        } else if payload.count < 65_536 {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
        }
        let mask: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        return frame + mask + payload.enumerated().map { $1 ^ mask[$0 % 4] }
    }

    /// The next server frame (server frames are unmasked): opcode and payload; nil if the socket ends first or
    /// nothing arrives for 5 s. Bytes after that frame stay buffered for the next call.
    public func readFrame() -> (opcode: UInt8, payload: [UInt8])? {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if unread.count >= 2 {
                var length = Int(unread[1] & 0x7F)
                var header = 2
                if length == 126, unread.count >= 4 {
                    length = Int(unread[2]) << 8 | Int(unread[3])
                    header = 4
                } else if length == 127, unread.count >= 10 {
                    length = unread[2..<10].reduce(0) { $0 << 8 | Int($1) }
                    header = 10
                }
                if length < 126 || header > 2, unread.count >= header + length {
                    let frame = (unread[0] & 0x0F, Array(unread[header..<(header + length)]))
                    unread.removeFirst(header + length)
                    return frame
                }
            }
            let count = recv(fd, &chunk, chunk.count, 0)
            guard count > 0 else { return nil }
            unread += chunk[0..<count]
        }
    }

    /// Reads server frames until a Close frame and returns its code (nil if the socket ends without one).
    public func readCloseCode() -> UInt16? {
        while let frame = readFrame() {
            guard frame.opcode == 0x8 else { continue }
            return frame.payload.count >= 2 ? UInt16(frame.payload[0]) << 8 | UInt16(frame.payload[1]) : nil
        }
        return nil
    }

    /// A client frame (masked, as RFC 6455 requires of clients) carrying `text`.
    public static func maskedText(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let mask: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        return [0x81, UInt8(0x80 | payload.count)] + mask + payload.enumerated().map { $1 ^ mask[$0 % 4] }
    }
}
