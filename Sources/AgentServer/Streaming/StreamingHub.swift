import AgentCore
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Everything the `/streaming` sessions share: the store, the per-event-loop registry of open sessions used for
/// fan-out, connection counters, and the settings of the handshake.
///
/// Fan-out (architecture "change feed → SDK sessions"): for each applied change, the server-SDK push of an environment
/// is serialised once into a `ByteBuffer`, then each event loop that holds sessions of that environment gets one task
/// that writes the same buffer to each of them and flushes once per socket.
public final class StreamingHub: Sendable {
    public struct Settings: Sendable {
        public var tokenExpiryMillis: Int64 = HandshakeValidator.defaultTokenExpiryMillis
        /// Largest SDK message accepted (after reassembling fragments); larger ones close the socket with 1009.
        public var maxMessageBytes: Int = 64 * 1024
        /// A socket whose writes stay blocked this long while pushes keep coming is closed (it resyncs on reconnect).
        public var slowConsumerTimeout: TimeAmount = .seconds(10)
        public init() {}
    }

    public let store: DataStore
    public let settings: Settings
    /// Server `latest-all` bodies for the HTTP fast path (SDKFastPath.swift).
    let serverPayloads = ServerPayloadCache()
    let logger: Logger
    let now: @Sendable () -> Int64

    /// One registry per event loop, touched only on that loop.
    private let registries: [ObjectIdentifier: LoopRegistry]
    private let loops: [any EventLoop]
    private let serverConnections = Atomic<Int>(0)
    private let clientConnections = Atomic<Int>(0)
    /// Every upgraded `/streaming` socket still open, registered or not (what a graceful shutdown waits for).
    private let openSockets = Atomic<Int>(0)
    private let rejectedHandshakes = Counter(label: "featbit_agent_streaming_rejected_total")
    private let pushesSent = Counter(label: "featbit_agent_streaming_pushes_total")
    private let connectionsGauge = Gauge(label: "featbit_agent_streaming_connections")
    private let subscription = Mutex<Int?>(nil)

    public init(
        store: DataStore,
        eventLoopGroup: any EventLoopGroup,
        settings: Settings = .init(),
        logger: Logger,
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) {
        self.store = store
        self.settings = settings
        self.logger = logger
        self.now = now
        var registries: [ObjectIdentifier: LoopRegistry] = [:]
        var loops: [any EventLoop] = []
        for loop in eventLoopGroup.makeIterator() {
            registries[ObjectIdentifier(loop)] = LoopRegistry(eventLoop: loop)
            loops.append(loop)
        }
        self.registries = registries
        self.loops = loops
    }

    /// Starts following the store's change feed.
    public func start() {
        let token = store.subscribe { [weak self] change in self?.fanOut(change) }
        subscription.withLock { $0 = token }
    }

    public func stop() {
        if let token = subscription.withLock({ $0 }) { store.unsubscribe(token) }
    }

    /// Open connections by SDK type.
    public var connectionCounts: (server: Int, client: Int) {
        (serverConnections.load(ordering: .relaxed), clientConnections.load(ordering: .relaxed))
    }

    // MARK: - Session registry (called on the session's event loop)

    func register(_ session: StreamingSessionHandler, envId: String, type: HandshakeValidator.ConnectionType,
                  on loop: any EventLoop) {
        guard let registry = registries[ObjectIdentifier(loop)] else { return }
        registry.add(session, envId: envId)
        switch type {
        case .server: serverConnections.add(1, ordering: .relaxed)
        case .client: clientConnections.add(1, ordering: .relaxed)
        }
        connectionsGauge.record(totalConnections)
    }

    func unregister(_ session: StreamingSessionHandler, envId: String, type: HandshakeValidator.ConnectionType,
                    on loop: any EventLoop) {
        guard let registry = registries[ObjectIdentifier(loop)] else { return }
        guard registry.remove(session, envId: envId) else { return }
        switch type {
        case .server: serverConnections.subtract(1, ordering: .relaxed)
        case .client: clientConnections.subtract(1, ordering: .relaxed)
        }
        connectionsGauge.record(totalConnections)
    }

    private var totalConnections: Int {
        serverConnections.load(ordering: .relaxed) + clientConnections.load(ordering: .relaxed)
    }

    func noteRejectedHandshake() { rejectedHandshakes.increment() }

    func socketOpened() { openSockets.add(1, ordering: .relaxed) }
    func socketClosed() { openSockets.subtract(1, ordering: .relaxed) }

    /// Upgraded `/streaming` sockets not yet closed.
    public var openSocketCount: Int { openSockets.load(ordering: .relaxed) }

    // MARK: - Fan-out

    private func fanOut(_ change: AppliedChange) {
        for delta in change.deltas {
            // Built at most once per change, by the first event loop that has a session needing it: nothing is
            // worked out for an environment or an SDK type nobody is connected as. (Decided on the loops, where a
            // session registers, so one that registers while the change is published still gets it.)
            let serverMessages = Once { delta.serverPushMessages(in: change.snapshot) }
            // What client SDKs need is worked out once; each client session only evaluates it for its user.
            let clientPlan = Once { ClientSDKResponder.plan(delta, snapshot: change.snapshot) }
            for loop in loops {
                guard let registry = registries[ObjectIdentifier(loop)] else { continue }
                loop.execute { [pushesSent] in
                    let sessions = registry.sessions(of: delta.envId)
                    guard !sessions.isEmpty else { return }
                    // The frames are built once per event loop, not shared between loops: writing one buffer to
                    // thousands of sockets retains and releases it each time, and a reference count that two cores
                    // update at once costs more than the copy.
                    var serverFrames: [ServerFrame]?
                    for session in sessions {
                        switch session.connectionType {
                        case .server:
                            if serverFrames == nil { serverFrames = serverMessages.value.map { ServerFrame(text: $0) } }
                            session.push(serverFrames ?? [])
                        case .client:
                            session.push(clientPlan.value)
                        case nil:
                            continue
                        }
                    }
                    pushesSent.increment(by: sessions.count)
                }
            }
        }
        if !change.removedEnvIds.isEmpty {
            logger.info("environments removed by a full data set; their SDK connections keep their last data",
                        metadata: ["event": "environments-removed", "envIds": "\(change.removedEnvIds)"])
        }
    }

    /// Closes every session with 1001 (graceful shutdown). Returns when each loop has initiated the closes.
    public func closeAll() async {
        for loop in loops {
            guard let registry = registries[ObjectIdentifier(loop)] else { continue }
            try? await loop.submit { registry.all().forEach { $0.shutdown() } }.get()
        }
    }

    /// Graceful shutdown of the SDK sockets: sends 1001 to each open session, then waits until every upgraded socket
    /// is closed (the SDK answered the Close, or its 2 s grace ran out) or `timeout` passes. The HTTP server's own
    /// quiescing does not wait for sockets that left its task tree, so without this the process could exit before
    /// the Close frames are written and SDKs would see a dropped connection instead of 1001.
    /// Returns the sockets still open at the end.
    @discardableResult
    public func drain(timeout: Duration = .seconds(4)) async -> Int {
        await closeAll()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while openSocketCount > 0, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return openSocketCount
    }
}

/// A value worked out the first time it is asked for, on whichever thread asks, and shared after that.
final class Once<Value: Sendable>: Sendable {
    private let state: Mutex<Value?>
    private let make: @Sendable () -> Value

    init(_ make: @escaping @Sendable () -> Value) {
        self.make = make
        state = Mutex(nil)
    }

    var value: Value {
        state.withLock { value in
            if let value { return value }
            let made = make()
            value = made
            return made
        }
    }
}

/// The sessions of one event loop, by environment. Used only on its loop (checked in debug builds), which is what
/// makes the unchecked `Sendable` sound.
final class LoopRegistry: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private var byEnv: [String: [ObjectIdentifier: StreamingSessionHandler]] = [:]

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func add(_ session: StreamingSessionHandler, envId: String) {
        eventLoop.assertInEventLoop()
        byEnv[envId, default: [:]][ObjectIdentifier(session)] = session
    }

    func remove(_ session: StreamingSessionHandler, envId: String) -> Bool {
        eventLoop.assertInEventLoop()
        let removed = byEnv[envId]?.removeValue(forKey: ObjectIdentifier(session)) != nil
        if byEnv[envId]?.isEmpty == true { byEnv[envId] = nil }
        return removed
    }

    func sessions(of envId: String) -> Dictionary<ObjectIdentifier, StreamingSessionHandler>.Values {
        eventLoop.assertInEventLoop()
        return (byEnv[envId] ?? [:]).values
    }

    func all() -> [StreamingSessionHandler] {
        return byEnv.values.flatMap(\.values)
    }
}
