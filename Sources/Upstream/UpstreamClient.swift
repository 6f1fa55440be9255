import AgentCore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import WSClient

/// Auto mode's link to the FeatBit evaluation server: one relay-proxy WebSocket, the data-sync of spec §3.4 after
/// every (re)connect, every `rp_full`/`rp_patch`/`patch` applied to the store, keep-alive pings, `rp-agent-status`
/// every 60 s, and reconnects per `UpstreamSync`. It never stops the agent serving the data it has.
public final class UpstreamClient: Service, Sendable {
    public struct Settings: Sendable {
        public var streamingUri: String
        public var apiKey: String
        public var pingInterval: Duration = .seconds(15)
        public var statusInterval: Duration = .seconds(60)
        /// No message at all for this long (pongs included) means the link is dead: reconnect.
        public var silenceTimeout: Duration = .seconds(45)
        /// A full re-sync on the open socket, so environments added to the relay proxy's scope appear (spec §8.11).
        public var fullResyncInterval: Duration = .seconds(30 * 60)
        /// Largest upstream message accepted; larger ones close the socket (and the agent reconnects).
        public var maxMessageBytes: Int = 64 * 1024 * 1024
        /// A connect (TCP, TLS, WebSocket upgrade) that takes longer is abandoned and retried.
        public var connectTimeout: Duration = .seconds(10)
        /// How long a close waits for the server's Close frame before dropping the socket.
        public var closeTimeout: Duration = .seconds(2)
        /// TLS for `wss://` (the system trust store plus `UpstreamCaFile`); `nil` uses the client's default.
        public var tlsConfiguration: TLSConfiguration?

        public init(streamingUri: String, apiKey: String) {
            self.streamingUri = streamingUri
            self.apiKey = apiKey
        }

        /// `StreamingUri` without a trailing `/` + `/streaming?type=relay-proxy&token=<ApiKey>` (spec §3.1).
        public var url: String {
            var base = streamingUri
            while base.hasSuffix("/") { base.removeLast() }
            let token = apiKey.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? apiKey
            return "\(base)/streaming?type=relay-proxy&token=\(token)"
        }
    }

    /// Applies a change that came from the server; returns what changed. A single node applies to the store; a mesh
    /// leader stamps the change with its replication position first (and a node that no longer leads applies
    /// nothing).
    public typealias Apply = @Sendable (Change) async -> AppliedChange?

    private let settings: Settings
    private let store: DataStore
    private let status: AgentStatusBoard
    private let agentId: @Sendable () -> String?
    private let logger: Logger
    private let apply: Apply
    private let onStateChange: (@Sendable (SyncState) -> Void)?
    private let sync = Mutex(UpstreamSync())
    /// Writes a text message on the open connection, if there is one.
    private let currentWriter = Mutex<(@Sendable ([UInt8]) async throws -> Void)?>(nil)
    private let messagesApplied = Counter(label: "featbit_agent_upstream_messages_total", dimensions: [("result", "applied")])
    private let messagesRejected = Counter(label: "featbit_agent_upstream_messages_total", dimensions: [("result", "rejected")])
    private let reconnects = Counter(label: "featbit_agent_upstream_reconnects_total")
    private let itemsRefused = Counter(label: RefusedItems.metric, dimensions: [("source", "upstream")])
    private let refused: RefusedItems

    /// - Parameter agentId: the registered agent id, once registration succeeded (status reports wait for it).
    public init(settings: Settings, store: DataStore, status: AgentStatusBoard, logger: Logger,
                agentId: @escaping @Sendable () -> String?, apply: Apply? = nil,
                onStateChange: (@Sendable (SyncState) -> Void)? = nil, refused: RefusedItems? = nil) {
        self.settings = settings
        self.refused = refused ?? RefusedItems(status: status, logger: logger)
        self.store = store
        self.status = status
        self.logger = logger
        self.agentId = agentId
        self.apply = apply ?? { change in await store.applyOnWriterThread(change) }
        self.onStateChange = onStateChange
        publish()
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.connectLoop(forceFull: false)
        } onGracefulShutdown: {
            self.sync.withLock { $0.stop() }
            self.publish()
        }
    }

    /// One leadership term's upstream duty: connects, syncs and reconnects until the task is cancelled; then closes
    /// the socket with a Close frame (bounded by `closeTimeout`) and returns. `forceFull` asks for a full data set on
    /// the first connect.
    public func runSession(forceFull: Bool) async {
        sync.withLock { $0 = UpstreamSync() }
        publish()
        await connectLoop(forceFull: forceFull)
    }

    /// Asks the server for a full data set on the open connection (no-op when none is open).
    public func requestFullSync() {
        guard let write = currentWriter.withLock({ $0 }) else { return }
        let request = UpstreamRequest.dataSync(for: store.snapshot, forceFull: true)
        Task { try? await write(request) }
    }

    private func connectLoop(forceFull: Bool) async {
        var firstForceFull = forceFull
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let closeCode = await connectOnce(forceFull: firstForceFull)
            firstForceFull = false
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            let delay = sync.withLock { $0.disconnected(closeCode: closeCode, random: Double.random(in: 0..<1)) }
            publish()
            reconnects.increment()
            status.update { $0.upstreamReconnects += 1 }
            let refused = sync.withLock { $0.refused }
            if refused {
                logger.error("the FeatBit server refused the relay-proxy key (4003); check ApiKey. Still serving the data held; retrying slowly",
                             metadata: ["event": "upstream-refused", "retryInSeconds": "\(Int(delay))"])
            } else {
                logger.warning("upstream connection lost; still serving the data held", metadata: [
                    "event": "upstream-disconnected", "closeCode": "\(closeCode.map(String.init) ?? "none")",
                    "retryInSeconds": "\(String(format: "%.1f", delay))",
                ])
            }
            // Up to 72 s after a refusal: SIGTERM must not wait for it.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int(delay * 1000))) }
        }
        sync.withLock { $0.stop() }
        publish()
    }

    /// One connection's life. Returns the close code the server sent, if any.
    private func connectOnce(forceFull: Bool) async -> UInt16? {
        let configuration = WebSocketClientConfiguration(maxFrameSize: settings.maxMessageBytes,
                                                         closeTimeout: settings.closeTimeout, autoPing: .disabled)
        let connected = ConnectedFlag()
        do {
            let lastMessage = LastMessageClock()
            let close = try await withConnectionWatchdog(connected, lastMessage: lastMessage) {
                try await WebSocketClient.connect(url: self.settings.url, configuration: configuration,
                                                  tlsConfiguration: self.settings.tlsConfiguration, logger: self.logger) {
                    inbound, outbound, _ in
                    connected.set()
                    self.tlsFailed(nil)
                    self.logger.info("connected to the FeatBit server", metadata: ["event": "upstream-connected"])
                    self.currentWriter.withLock { $0 = { bytes in try await outbound.write(.text(String(decoding: bytes, as: UTF8.self))) } }
                    defer { self.currentWriter.withLock { $0 = nil } }
                    try await outbound.write(.text(String(decoding: UpstreamRequest.dataSync(for: self.store.snapshot, forceFull: forceFull),
                                                          as: UTF8.self)))
                    lastMessage.touch()
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await self.keepAlive(outbound) }
                        group.addTask { try await self.reportStatus(outbound) }
                        group.addTask { try await self.fullResync(outbound) }
                        for try await message in inbound.messages(maxSize: self.settings.maxMessageBytes) {
                            lastMessage.touch()
                            switch message {
                            case .text(let text): await self.handle(Array(text.utf8))
                            case .binary(let buffer): await self.handle(Array(buffer.readableBytesView))
                            }
                        }
                        group.cancelAll()
                    }
                }
            }
            return close.map { UInt16(webSocketErrorCode: $0.closeCode) }
        } catch {
            if let reason = Self.tlsFailure(error) {
                tlsFailed(reason)
            } else {
                logger.debug("upstream connection failed", metadata: ["event": "upstream-connect-failed", "error": "\(error)"])
            }
            return nil
        }
    }

    /// Why the connection failed, if it failed in TLS (an untrusted or expired certificate, a name mismatch, a server
    /// that does not speak TLS).
    static func tlsFailure(_ error: any Error) -> String? {
        switch error {
        case let error as NIOSSLError: return "\(error)"
        case let error as NIOSSLExtraError: return "\(error)"
        case let error as BoringSSLError: return "\(error)"
        case let error as NIOConnectionError:
            // A failure while connecting comes wrapped, one per address tried.
            return error.connectionErrors.lazy.compactMap { tlsFailure($0.error) }.first
        default: return nil
        }
    }

    /// Records (or with `nil` clears) a TLS failure towards the server: logged with its reason and shown in the
    /// status' problems, since it will not go away by retrying until the certificate or `UpstreamCaFile` changes.
    private func tlsFailed(_ reason: String?) {
        if let reason {
            logger.error("TLS to the FeatBit server failed; check its certificate or UpstreamCaFile", metadata: [
                "event": "upstream-tls-failed", "reason": "\(reason)",
            ])
        }
        status.update { values in
            values.problems["upstreamTls"] = reason.map { reason in
                let hint = reason.contains("CERTIFICATE_VERIFY_FAILED")
                    ? "its certificate is not trusted (set UpstreamCaFile to the CA that signed it): " : ""
                return "TLS to the FeatBit server failed: \(hint)\(reason)"
            }
        }
    }

    /// Applies one upstream message; bad input is logged and dropped, the data already held stays.
    func handle(_ bytes: [UInt8]) async {
        switch UpstreamMessage.parse(bytes) {
        case .success(.ignored):
            return
        case .success(.full(let parsed)):
            guard admit(parsed, kind: "rp_full") else { return }
            let applied = await apply(.replace(parsed.environments))
            accepted(kind: "rp_full", changed: applied)
        case .success(.patch(let parsed)):
            guard admit(parsed, kind: "patch") else { return }
            let applied = await apply(.upsert(parsed.environments))
            accepted(kind: "patch", changed: applied)
        case .failure(let rejection):
            messagesRejected.increment()
            sync.withLock { $0.applyFailed() }
            publish()
            logger.error("rejected a message from the FeatBit server; keeping the data held", metadata: [
                "event": "upstream-message-rejected", "reason": "\(rejection)", "bytes": "\(bytes.count)",
            ])
        }
    }

    /// Records and logs the items a message refused; false when it refused every item it carried (then nothing of it
    /// is applied: the stored version does not move, and the link reports Interrupted).
    private func admit(_ parsed: DataSetParser.Parsed, kind: String) -> Bool {
        // A full sync that applies nothing does not replace the record of what was refused before.
        refused.record(source: "upstream", parsed, replacesAll: kind == "rp_full" && !parsed.refusedEveryItem, message: kind)
        guard !parsed.refused.isEmpty else { return true }
        itemsRefused.increment(by: Int64(parsed.refused.count))
        guard parsed.refusedEveryItem else { return true }
        messagesRejected.increment()
        sync.withLock { $0.applyFailed() }
        publish()
        logger.error("every item of a message from the FeatBit server was invalid; nothing of it applied", metadata: [
            "event": "upstream-message-rejected", "reason": "every item invalid", "kind": "\(kind)",
            "refused": "\(parsed.refused.count)",
        ])
        return false
    }

    private func accepted(kind: String, changed: AppliedChange?) {
        messagesApplied.increment()
        sync.withLock { $0.applied(now: Int64(Date().timeIntervalSince1970 * 1000)) }
        publish()
        logger.debug("applied upstream data-sync", metadata: [
            "event": "upstream-applied", "kind": "\(kind)", "changed": "\(changed != nil)",
            "sequence": "\(store.snapshot.sequence)",
        ])
    }

    private func keepAlive(_ outbound: WebSocketOutboundWriter) async throws {
        let ping = String(decoding: UpstreamRequest.ping, as: UTF8.self)
        while true {
            try await Task.sleep(for: settings.pingInterval)
            try await outbound.write(.text(ping))
        }
    }

    private func reportStatus(_ outbound: WebSocketOutboundWriter) async throws {
        while true {
            if let agentId = agentId() {
                let values = status.values
                let message = UpstreamRequest.agentStatus(
                    agentId: agentId, snapshot: store.snapshot, syncState: values.syncState,
                    lastSyncedAt: values.lastSyncedAt, now: Int64(Date().timeIntervalSince1970 * 1000))
                try await outbound.write(.text(String(decoding: message, as: UTF8.self)))
                try await Task.sleep(for: settings.statusInterval)
            } else {
                // Not registered yet: look again soon.
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func fullResync(_ outbound: WebSocketOutboundWriter) async throws {
        while true {
            try await Task.sleep(for: settings.fullResyncInterval)
            let request = UpstreamRequest.dataSync(for: store.snapshot, forceFull: true)
            try await outbound.write(.text(String(decoding: request, as: UTF8.self)))
        }
    }

    /// Runs a connection and cancels it when it is not up (upgraded) within `connectTimeout`, or when nothing (not
    /// even a pong) has arrived for `silenceTimeout` once it is up. Cancelling ends the reader even on a path that
    /// silently drops everything (a Close frame alone would wait for an answer that never comes), and the socket is
    /// closed within `closeTimeout`.
    private func withConnectionWatchdog<T: Sendable>(_ connected: ConnectedFlag, lastMessage: LastMessageClock,
                                                     _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: self.settings.connectTimeout)
                if !connected.isSet {
                    self.logger.warning("connecting to the FeatBit server timed out", metadata: [
                        "event": "upstream-connect-timeout", "seconds": "\(self.settings.connectTimeout.components.seconds)",
                    ])
                    throw CancellationError()
                }
                let check = min(self.settings.pingInterval, self.settings.silenceTimeout / 3)
                while true {
                    try await Task.sleep(for: check)
                    if lastMessage.silence > self.settings.silenceTimeout {
                        self.logger.warning("no message from the FeatBit server for too long; reconnecting",
                                            metadata: ["event": "upstream-silent"])
                        throw CancellationError()
                    }
                }
            }
            while let result = try await group.next() {
                if let value = result {
                    group.cancelAll()
                    return value
                }
            }
            throw CancellationError()
        }
    }

    /// Copies the sync state to the status board (status, readiness, status reports).
    private func publish() {
        let current = sync.withLock { $0 }
        onStateChange?(current.state)
        status.update { values in
            values.syncState = current.state
            if let at = current.lastSyncedAt { values.lastSyncedAt = at }
            if current.state == .stable { values.dataMayBeStale = false }
            if current.refused {
                values.problems["upstream"] = "the FeatBit server refused the relay-proxy key (close 4003)"
            } else {
                values.problems["upstream"] = nil
            }
        }
    }
}

/// Set once the WebSocket is up (the connect timeout no longer applies).
private final class ConnectedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

/// When the last upstream message arrived (monotonic), shared by the reader and the keep-alive task.
private final class LastMessageClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func touch() { instant.withLock { $0 = .now } }
    var silence: Duration { ContinuousClock.now - instant.withLock { $0 } }
}
