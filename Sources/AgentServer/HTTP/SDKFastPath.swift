import AgentCore
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Answers `GET /api/public/sdk/server/latest-all` on the connection's event loop from bytes cached per environment
/// and data sequence: no Swift task, router, middleware or `Response` per request. Polling server SDKs, serverless
/// functions and edge workers call this endpoint in a loop instead of holding a socket; through Hummingbird it served
/// half the requests per second of a bare SwiftNIO responder of the same bytes (`scripts/bench-http`).
///
/// It takes only the plain shape of the request: a GET of that path (any letter case, as the router), at most one
/// plain decimal `timestamp` and no percent-encoded parameter names, an `Authorization` that is a secret the agent
/// holds, no `Connection` header, and no earlier request of this connection still in Hummingbird's hands.
/// Everything else — a bad secret, a malformed timestamp, another endpoint — goes on to Hummingbird unchanged, so the
/// two paths never answer differently: the headers are those Hummingbird writes for the same answer (`Content-Type`,
/// `Content-Length`, `Access-Control-Allow-Origin: *` when an `Origin` came, `Date`, `Server`).
///
/// It sits after Hummingbird's connection-state handler, so idle timeouts and graceful shutdown count its requests.
final class SDKFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let store: DataStore
    private let cache: ServerPayloadCache
    private let serverName: String
    /// A request this handler is answering: its parts are consumed here, the answer goes out at its `end`.
    private var pending: (envId: String, timestamp: Int64, origin: Bool)?
    /// Requests passed on whose response `end` has not been written yet, and whether one is still being read.
    private var forwardedInFlight = 0
    private var readingForwarded = false
    /// The last `Authorization` seen on this connection and its environment id (SDKs reuse one secret).
    private var lastAuthorization: String?
    private var lastEnvId: String?
    /// The data sequence at which `lastAuthorization` was found among the secrets held.
    private var lastVerifiedSequence: UInt64?
    /// The last full body this connection sent, by environment and data sequence (no lock, no lookup while nothing
    /// changed).
    private var lastBody: (envId: String, sequence: UInt64, body: ByteBuffer)?
    /// The last response head written, by second, body length and CORS need.
    private var lastHead: (second: Int, length: Int, origin: Bool, head: HTTPResponse)?

    init(store: DataStore, cache: ServerPayloadCache, serverName: String) {
        self.store = store
        self.cache = cache
        self.serverName = serverName
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch part {
        case .head(let request):
            if forwardedInFlight == 0, !readingForwarded, let taken = take(request) {
                pending = taken
                return
            }
            forwardedInFlight += 1
            readingForwarded = true
            context.fireChannelRead(data)
        case .body:
            // A body on this GET is read and dropped, as Hummingbird's handler does.
            if pending == nil { context.fireChannelRead(data) }
        case .end:
            guard let answering = pending else {
                readingForwarded = false
                context.fireChannelRead(data)
                return
            }
            pending = nil
            respond(context: context, envId: answering.envId, timestamp: answering.timestamp, origin: answering.origin)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), forwardedInFlight > 0 { forwardedInFlight -= 1 }
        context.write(data, promise: promise)
    }

    /// The environment id, timestamp and CORS need of a request this handler answers, or nil to pass it on.
    private func take(_ request: HTTPRequest) -> (envId: String, timestamp: Int64, origin: Bool)? {
        guard request.method == .get, let target = request.path,
              request.headerFields[.connection] == nil,
              let timestamp = Self.serverLatestAllTimestamp(target),
              let authorization = request.headerFields[.authorization] else { return nil }
        let envId: String
        let sequence = store.sequence
        if authorization == lastAuthorization, let known = lastEnvId, lastVerifiedSequence == sequence {
            envId = known
        } else {
            // A secret this agent holds (as Hummingbird's route checks it), looked up again after every change: a
            // secret removed upstream stops working on a keep-alive connection too.
            guard let held = store.snapshot.environmentId(ofHeldSecret: authorization) else { return nil }
            envId = held
            lastAuthorization = authorization
            lastEnvId = envId
            lastVerifiedSequence = sequence
        }
        return (envId, timestamp, request.headerFields[.origin] != nil)
    }

    private func respond(context: ChannelHandlerContext, envId: String, timestamp: Int64, origin: Bool) {
        let body: ByteBuffer
        let sequence = store.sequence
        if timestamp == 0, let last = lastBody, last.envId == envId, last.sequence == sequence {
            body = last.body
        } else {
            body = cache.serverLatestAll(envId: envId, timestamp: timestamp, store: store)
            if timestamp == 0 { lastBody = (envId, sequence, body) }
        }
        cache.answered.add(1, ordering: .relaxed)
        context.write(wrapOutboundOut(.head(responseHead(length: body.readableBytes, origin: origin))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// The response head for a body of `length` bytes, reused while the second (its `Date`), the length and the
    /// CORS need stay the same: a polling SDK on a keep-alive connection gets the same head many times a second.
    private func responseHead(length: Int, origin: Bool) -> HTTPResponse {
        let second = time(nil)
        if let last = lastHead, last.second == second, last.length == length, last.origin == origin { return last.head }
        var fields = HTTPFields()
        fields.reserveCapacity(5)
        if length > 0 { fields[.contentType] = "application/json; charset=utf-8" }
        fields[.contentLength] = String(length)
        if origin { fields[.accessControlAllowOrigin] = "*" }
        fields[.date] = HTTPDateHeader.format(epochSecond: second)
        fields[.server] = serverName
        let head = HTTPResponse(status: .ok, headerFields: fields)
        lastHead = (second, length, origin, head)
        return head
    }

    /// The `timestamp` of a request target whose path is `/api/public/sdk/server/latest-all` (ASCII case-insensitive):
    /// 0 without one, its value when it is 1-18 plain decimal digits; nil for any other path or shape (then
    /// Hummingbird decides, e.g. a 400 for a timestamp that is not a number).
    static func serverLatestAllTimestamp(_ target: String) -> Int64? {
        var utf8 = target.utf8[...]
        let path = Self.serverLatestAllPath
        guard utf8.count >= path.count else { return nil }
        var index = utf8.startIndex
        for expected in path {
            var byte = utf8[index]
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte += 32 }
            guard byte == expected else { return nil }
            index = utf8.index(after: index)
        }
        utf8 = utf8[index...]
        guard let first = utf8.first else { return 0 }
        guard first == UInt8(ascii: "?") else { return nil }
        utf8 = utf8.dropFirst()
        var timestamp: Int64?
        for pair in utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            let name = pair[pair.startIndex..<equals]
            // An encoded name could spell `timestamp`: Hummingbird decodes those.
            if name.contains(UInt8(ascii: "%")) || name.contains(UInt8(ascii: "+")) { return nil }
            guard name.elementsEqual("timestamp".utf8), timestamp == nil else { continue }
            let value = equals == pair.endIndex ? pair[equals...] : pair[pair.index(after: equals)...]
            guard !value.isEmpty, value.count <= 18 else { return nil }
            var number: Int64 = 0
            for digit in value {
                guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { return nil }
                number = number * 10 + Int64(digit - UInt8(ascii: "0"))
            }
            timestamp = number
        }
        return timestamp ?? 0
    }

    private static let serverLatestAllPath = Array("/api/public/sdk/server/latest-all".utf8)
}

/// The `latest-all` bodies of server SDKs as `ByteBuffer`s, built once per environment and data sequence: every
/// applied change (any environment) moves the sequence and so invalidates them; a body is rebuilt at its next request.
final class ServerPayloadCache: Sendable {
    private struct Entry {
        let sequence: UInt64
        let full: ByteBuffer
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Requests the fast path answered (tests check that it, not Hummingbird, did).
    let answered = Atomic<Int>(0)

    func serverLatestAll(envId: String, timestamp: Int64, store: DataStore) -> ByteBuffer {
        let snapshot = store.snapshot
        let env = snapshot.environments[envId]
        guard timestamp == 0 else {
            // A patch since `timestamp`: per request, as it depends on the timestamp (usually small or empty).
            let bytes = SDKPayload.serverLatestAllBody(timestamp: timestamp, in: env)
            return bytes.isEmpty ? ByteBuffer() : ByteBuffer(bytes: bytes)
        }
        if let entry = entries.withLock({ $0[envId] }), entry.sequence == snapshot.sequence { return entry.full }
        let full = ByteBuffer(bytes: SDKPayload.serverLatestAllBody(timestamp: 0, in: env))
        // Only environments that exist are remembered, so unknown ids sent by clients cannot grow the cache.
        if env != nil {
            entries.withLock { entries in
                if entries.count > 10_000 { entries.removeAll(keepingCapacity: true) }
                entries[envId] = Entry(sequence: snapshot.sequence, full: full)
            }
        }
        return full
    }
}

/// The `Date` header value (IMF-fixdate).
enum HTTPDateHeader {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func format(epochSecond: Int) -> String {
        var seconds = time_t(epochSecond)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
