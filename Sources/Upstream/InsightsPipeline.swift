import AgentCore
import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Synchronization

/// The path of SDK usage events (`POST /api/public/insight/track`) per `InsightsMode`:
/// `forward` (batched, retried with backoff, bounded buffer), `anonymize` (the same after `InsightAnonymizer`),
/// `local` (kept in featbit.db, never forwarded) or `drop`. `accept` never blocks: the HTTP answer is 200 at once and
/// what does not fit the buffer is dropped, counted and logged.
public final class InsightsPipeline: InsightSink, Service, Sendable {
    public enum Mode: Sendable {
        case forward(eventUri: String)
        case anonymize(eventUri: String, InsightAnonymizer)
        /// Keeps `(receivedAtMillis, envId, body)` rows locally.
        case local(store: @Sendable ([(Int64, String?, [UInt8])]) throws -> Void)
        case drop
    }

    public struct Settings: Sendable {
        /// Buffered request bodies at most (each is one SDK POST, ≤ 50 events for the Python SDK).
        public var capacity = 10_000
        /// Request bytes buffered at most, whatever the number of posts (a few large posts must not exhaust memory).
        public var maxBufferedBytes = 64 * 1024 * 1024
        public var flushInterval: Duration = .seconds(1)
        /// Insight objects per upstream POST.
        public var maxBatch = 500
        public var requestTimeout: Duration = .seconds(5)
        public var maxBackoff: Duration = .seconds(60)
        public init() {}
    }

    /// One buffered POST, kept as the bytes it came in (a parsed tree takes ~6 times as much memory, which would make
    /// `maxBufferedBytes` a bound on the wrong thing); parsed again when it is forwarded.
    struct Pending: Sendable {
        let authorization: String
        let receivedAt: Int64
        /// A JSON array of insight objects.
        let body: [UInt8]
        /// Insight objects in it (for the accepted/dropped counts).
        let events: Int
        var size: Int { body.count }
    }

    private let mode: Mode
    private let settings: Settings
    private let http: HTTPClient
    private let logger: Logger
    private struct Buffer {
        var items: [Pending] = []
        var bytes = 0
    }

    private let buffer = Mutex(Buffer())
    private let dropped = Counter(label: "featbit_agent_insights_dropped_total")
    private let accepted = Counter(label: "featbit_agent_insights_accepted_total")
    private let forwarded = Counter(label: "featbit_agent_insights_forwarded_total")
    private let droppedSinceLog = Atomic<Int>(0)
    // The same figures for status (a metrics counter cannot be read back).
    private let acceptedCount = Atomic<Int>(0)
    private let forwardedCount = Atomic<Int>(0)
    private let storedCount = Atomic<Int>(0)
    private let droppedCount = Atomic<Int>(0)

    public init(mode: Mode, settings: Settings = .init(), http: HTTPClient = .shared, logger: Logger) {
        self.mode = mode
        self.settings = settings
        self.http = http
        self.logger = logger
    }

    public var isRecording: Bool {
        if case .drop = mode { return false }
        return true
    }

    /// Bodies waiting to be sent or stored.
    public var pendingCount: Int { buffer.withLock { $0.items.count } }

    public var counts: InsightCounts {
        InsightCounts(accepted: acceptedCount.load(ordering: .relaxed), forwarded: forwardedCount.load(ordering: .relaxed),
                      stored: storedCount.load(ordering: .relaxed), dropped: droppedCount.load(ordering: .relaxed),
                      pending: pendingCount)
    }

    /// `drop` mode counts posts (their events are not parsed); every other path counts events.
    private func countDropped(_ count: Int) {
        dropped.increment(by: count)
        droppedCount.add(count, ordering: .relaxed)
    }

    public func accept(body: [UInt8], authorization: String) {
        if case .drop = mode {
            countDropped(1)
            return
        }
        guard case .array(let insights)? = try? JSONValue.parse(body) else {
            logger.info("ignored an insight body that is not a JSON array", metadata: ["event": "insights-malformed"])
            return
        }
        enqueue(body: body, events: insights.count, authorization: authorization)
    }

    public func accept(ownInsights body: [UInt8], events: Int, authorization: String) {
        if case .drop = mode {
            countDropped(events)
            return
        }
        enqueue(body: body, events: events, authorization: authorization)
    }

    /// Buffers one body of `events` insight objects, or drops it (counted, logged later) when the buffer is full.
    private func enqueue(body: [UInt8], events: Int, authorization: String) {
        let item = Pending(authorization: authorization, receivedAt: Int64(Date().timeIntervalSince1970 * 1000),
                           body: body, events: events)
        let fits = buffer.withLock { pending -> Bool in
            guard pending.items.count < settings.capacity, pending.bytes + item.size <= settings.maxBufferedBytes else {
                return false
            }
            pending.items.append(item)
            pending.bytes += item.size
            return true
        }
        if fits {
            accepted.increment(by: events)
            acceptedCount.add(events, ordering: .relaxed)
        } else {
            countDropped(events)
            droppedSinceLog.add(events, ordering: .relaxed)
        }
    }

    public func run() async throws {
        var backoff: Duration = .zero
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // Up to a minute with backoff: SIGTERM ends the wait and goes to the last flush.
            let pause = settings.flushInterval + backoff
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            reportDrops()
            backoff = await flush() ? .zero : min(settings.maxBackoff, max(.seconds(1), backoff * 2))
        }
        // Graceful shutdown: one last flush.
        _ = await flush()
        reportDrops()
    }

    private func reportDrops() {
        let count = droppedSinceLog.exchange(0, ordering: .relaxed)
        if count > 0 {
            logger.warning("insight buffer full; events dropped", metadata: ["event": "insights-dropped", "count": "\(count)"])
        }
    }

    /// Sends or stores everything buffered. Returns false if something failed and was put back.
    @discardableResult
    public func flush() async -> Bool {
        let batch = buffer.withLock { pending -> [Pending] in
            defer { pending = Buffer() }
            return pending.items
        }
        guard !batch.isEmpty else { return true }
        switch mode {
        case .drop:
            return true
        case .local(let store):
            do {
                let envIds = batch.map { SecretCodec.envId(fromSecret: $0.authorization)?.featbitString }
                try store(zip(batch, envIds).map { ($0.receivedAt, $1, $0.body) })
                storedCount.add(batch.reduce(0) { $0 + $1.events }, ordering: .relaxed)
                return true
            } catch {
                logger.error("could not keep insights locally", metadata: ["event": "insights-local-failed", "error": "\(error)"])
                requeue(batch)
                return false
            }
        case .forward(let eventUri):
            return await forward(batch, to: eventUri, transform: { $0 })
        case .anonymize(let eventUri, let anonymizer):
            return await forward(batch, to: eventUri, transform: anonymizer.anonymizeInsight)
        }
    }

    private func forward(_ batch: [Pending], to eventUri: String, transform: (JSONValue) -> JSONValue) async -> Bool {
        var failed: [Pending] = []
        // One POST per environment secret (FeatBit attributes events by it), in chunks of maxBatch objects.
        let groups = Dictionary(grouping: batch, by: \.authorization)
        for (authorization, items) in groups.sorted(by: { $0.key < $1.key }) {
            // Kept as received: what is put back for a retry is transformed again when it is sent, and an HMAC
            // pseudonym of a pseudonym would count one user as two.
            let insights = items.flatMap { (try? JSONValue.parse($0.body))?.arrayValue ?? [] }
            var start = 0
            chunks: while start < insights.count {
                let end = min(insights.count, start + settings.maxBatch)
                let chunk = insights[start..<end].map(transform)
                switch await post(chunk, authorization: authorization, to: eventUri) {
                case .sent:
                    forwarded.increment(by: chunk.count)
                    forwardedCount.add(chunk.count, ordering: .relaxed)
                case .refused:
                    // Sending it again would be refused again (unknown secret, bad or too large body).
                    countDropped(chunk.count)
                case .failed:
                    failed.append(Pending(authorization: authorization, receivedAt: items[0].receivedAt,
                                          body: JSONWriter.bytes(.array(Array(insights[start...]))),
                                          events: insights.count - start))
                    break chunks
                }
                start = end
            }
        }
        if !failed.isEmpty { requeue(failed) }
        return failed.isEmpty
    }

    enum PostOutcome { case sent, refused, failed }

    /// 2xx: sent. 408, 429, 5xx and transport errors: failed, retried later. Any other answer: refused for good.
    private func post(_ insights: [JSONValue], authorization: String, to eventUri: String) async -> PostOutcome {
        var request = HTTPClientRequest(url: trackURL(eventUri))
        request.method = .POST
        request.headers.add(name: "Authorization", value: authorization)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "featbit-agent")
        request.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(.array(insights))))
        do {
            let response = try await http.execute(request, timeout: TimeAmount(settings.requestTimeout))
            _ = try? await response.body.collect(upTo: 1024 * 1024)
            let status = Int(response.status.code)
            if (200..<300).contains(status) { return .sent }
            if status == 408 || status == 429 || status >= 500 {
                logger.warning("insight forwarding failed; will retry", metadata: [
                    "event": "insights-forward-failed", "status": "\(status)", "count": "\(insights.count)",
                ])
                return .failed
            }
            logger.error("insight forwarding refused; these events are dropped", metadata: [
                "event": "insights-forward-refused", "status": "\(status)", "count": "\(insights.count)",
            ])
            return .refused
        } catch {
            logger.warning("insight forwarding failed; will retry", metadata: [
                "event": "insights-forward-failed", "error": "\(error)", "count": "\(insights.count)",
            ])
            return .failed
        }
    }

    private func trackURL(_ eventUri: String) -> String {
        var base = eventUri
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/api/public/insight/track"
    }

    /// Puts failed work back at the front, within the capacity; the oldest overflow is dropped and counted.
    private func requeue(_ items: [Pending]) {
        let overflow = buffer.withLock { pending -> Int in
            var merged = items + pending.items
            var bytes = merged.reduce(0) { $0 + $1.size }
            var lost = 0
            while !merged.isEmpty, merged.count > settings.capacity || bytes > settings.maxBufferedBytes {
                let dropped = merged.removeFirst()
                bytes -= dropped.size
                lost += dropped.events
            }
            pending = Buffer(items: merged, bytes: bytes)
            return lost
        }
        if overflow > 0 {
            countDropped(overflow)
            droppedSinceLog.add(overflow, ordering: .relaxed)
        }
    }
}
