import AgentCore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// One node of the mesh: the shell around `MeshCore` (cluster-design §3.12). It owns the core on one event loop of its
/// own, turns transport events, ticks and upstream events into core calls, and carries out the core's actions in
/// order: messages through the `PeerTransport`, the vote record (written before the vote is sent), the upstream duty
/// (started per leadership term; stopped, and waited for, before anything else happens), replication to and from
/// the store (a follower acknowledges only what is durable), catch-ups and bootstrap forwarding.
public final class MeshNode: Sendable {
    public struct Settings: Sendable {
        public var mesh: MeshSettings
        public var transport: PeerTransport.Settings
        /// The configured address of each peer, for status.
        public var peerAddresses: [NodeID: String]
        /// Where `(term, votedFor)` is kept (`<DbPath>.vote`).
        public var voteRecordPath: String
        /// How often a follower probes the upstream (TCP connect) to report `upstreamReachable`.
        public var upstreamProbeInterval: Duration = .seconds(30)

        public init(mesh: MeshSettings, transport: PeerTransport.Settings, peerAddresses: [NodeID: String],
                    voteRecordPath: String) {
            self.mesh = mesh
            self.transport = transport
            self.peerAddresses = peerAddresses
            self.voteRecordPath = voteRecordPath
        }
    }

    /// The leader's upstream duty, provided by the runtime (auto mode only).
    public struct UpstreamDuty: Sendable {
        /// Open the relay-proxy connection (and register) for a leadership term.
        public var start: @Sendable (_ forceFull: Bool) -> Void
        /// Close it (a Close frame, bounded) and return once no socket is left.
        public var stop: @Sendable () async -> Void
        /// Ask for a full data set on the open connection.
        public var requestFullSync: @Sendable () -> Void
        /// Whether the FeatBit server can be reached (a TCP connect, no sync), for followers.
        public var probe: @Sendable () async -> Bool

        public init(start: @escaping @Sendable (Bool) -> Void, stop: @escaping @Sendable () async -> Void,
                    requestFullSync: @escaping @Sendable () -> Void, probe: @escaping @Sendable () async -> Bool) {
            self.start = start
            self.stop = stop
            self.requestFullSync = requestFullSync
            self.probe = probe
        }
    }

    /// What happened to a change of this node's own sources (upstream, bootstrap, data file).
    public enum LocalApplyResult: Sendable {
        case applied(ApplyOutcome)
        /// This node does not lead: the change was not applied (a bootstrap goes to `leaderId` instead).
        case notLeader(leaderId: NodeID?)
    }

    /// Answers a bootstrap body on the leader: `(HTTP status, body)`. Set by the runtime.
    public typealias BootstrapHandler = @Sendable ([UInt8]) async -> (status: Int, body: [UInt8])

    private struct LoopState {
        var core: MeshCore
        var batches: [[MeshAction]] = []
        /// An action that must finish before the next one runs (`stopUpstream`) is in progress.
        var blocked = false
        var lastLocalChange: AppliedChange?
        var leaveWaiters: [CheckedContinuation<Void, Never>] = []
        var forwardWaiters: [UInt64: CheckedContinuation<(status: Int, body: [UInt8])?, Never>] = [:]
        /// Forwards that timed out before they were registered (so they are answered at once when they are).
        var abandonedForwards: Set<UInt64> = []
        var lastUnsafeLog: [NodeID: UInt64] = [:]
        var upstreamRunning = false
        var stopped = false
    }

    public let settings: Settings
    let store: DataStore
    let status: AgentStatusBoard
    public let logger: Logger
    let upstream: UpstreamDuty?
    let loopGroup: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let transport: PeerTransport
    private let state: NIOLoopBoundBox<LoopState>
    private let published: Mutex<MeshStatus>
    private let localGate = AsyncSerialGate()
    private let bootstrapHandler = Mutex<BootstrapHandler?>(nil)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let tickTask = Mutex<RepeatedTask?>(nil)
    private let stopping = Atomic<Bool>(false)
    private let forwardIds = Atomic<UInt64>(0)
    /// Serialises and parses the large payloads (snapshots; a follower's every replicated change) off the mesh's event
    /// loop, which also sends the heartbeats. Serial: replicated changes reach the store in the order accepted.
    private let payloadQueue = DispatchQueue(label: "featbit-agent.mesh-payloads")
    private let metrics: MeshMetrics
    /// Invalid items refused from replicated messages (shared with the upstream client on a mesh in auto mode).
    private let refused: RefusedItems
    private let itemsRefused = Counter(label: RefusedItems.metric, dimensions: [("source", "peer")])

    /// - Parameters:
    ///   - applied: the replication position and full epoch featbit.db holds.
    public init(settings: Settings, store: DataStore, applied: MeshPosition, fullEpoch: MeshPosition,
                status: AgentStatusBoard, upstream: UpstreamDuty?, logger: Logger, refused: RefusedItems? = nil) {
        self.settings = settings
        self.store = store
        self.status = status
        self.refused = refused ?? RefusedItems(status: status, logger: logger)
        self.logger = logger
        self.upstream = upstream
        self.loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = loopGroup.next()
        self.metrics = MeshMetrics(peers: settings.mesh.peers)
        var record = MeshVoteRecord(term: 0, votedFor: nil)
        var remembered = false
        switch MeshVoteRecord.load(path: settings.voteRecordPath) {
        case .found(let found):
            record = found
            remembered = true
        case .missing:
            logger.notice("no vote record: this node votes once it has heard every peer", metadata: [
                "event": "mesh-vote-record-missing", "path": "\(settings.voteRecordPath)",
            ])
        case .unreadable(let reason):
            logger.error("vote record unreadable; treated as missing", metadata: [
                "event": "mesh-vote-record-unreadable", "reason": "\(reason)",
            ])
        }
        let now = Self.monotonicMillis()
        var core = MeshCore(settings: settings.mesh,
                            durable: .init(term: record.term, votedFor: record.votedFor, applied: applied, fullEpoch: fullEpoch),
                            now: now, seed: UInt64.random(in: 0...UInt64.max), incarnation: settings.transport.incarnation,
                            votesRemembered: remembered)
        core.localDataChanged(MeshData.summary(store.snapshot))
        self.state = NIOLoopBoundBox.makeBoxSendingValue(LoopState(core: core), eventLoop: loop)
        self.published = Mutex(MeshStatus.make(core: core, now: now, addresses: settings.peerAddresses,
                                               reachability: [:]))
        let box = Mutex<MeshNode?>(nil)
        self.transport = PeerTransport(settings: settings.transport, eventLoopGroup: loopGroup, logger: logger) { event in
            box.withLock { $0 }?.handle(event)
        }
        box.withLock { $0 = self }
    }

    /// Monotonic milliseconds (CLOCK_MONOTONIC, the same clock for every process on the machine).
    public static func monotonicMillis() -> UInt64 {
        NIODeadline.now().uptimeNanoseconds / 1_000_000
    }

    // MARK: - Life cycle

    /// Binds the peer listener and starts dialing and ticking. Returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let port = try await transport.start()
        let tick = TimeAmount.milliseconds(Int64(settings.mesh.tickMs))
        let repeated = loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { [self] _ in
            self.onLoop { state in state.core.tick(now: Self.monotonicMillis()) }
        }
        tickTask.withLock { $0 = repeated }
        if let upstream, settings.mesh.upstreamDuty {
            let interval = settings.upstreamProbeInterval
            addTask { [self] in
                while !Task.isCancelled {
                    let reachable = await upstream.probe()
                    self.hop {
                        self.state.value.core.upstreamProbe(reachable: reachable)
                        self.publishStatus()
                    }
                    let jitter = Double.random(in: 0.7...1.3)
                    try? await Task.sleep(for: interval * jitter)
                }
            }
        }
        logger.info("mesh node started", metadata: [
            "event": "mesh-started", "nodeId": "\(settings.mesh.nodeId)", "port": "\(port)",
            "voters": "\(settings.mesh.voters.joined(separator: ","))",
            "heartbeatMs": "\(settings.mesh.heartbeatMs)", "electionTimeoutMs": "\(settings.mesh.electionTimeoutMs)",
        ])
        return port
    }

    /// Graceful leave (SIGTERM): a leader hands over first; everyone says LEAVE. Bounded by `budget`.
    public func leave(budget: Duration = .seconds(3)) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    self.hop {
                        self.state.value.leaveWaiters.append(continuation)
                        self.perform(self.state.value.core.beginLeave(now: Self.monotonicMillis()))
                    }
                }
            }
            group.addTask { try? await Task.sleep(for: budget) }
            await group.next()
            group.cancelAll()
        }
        // A leave that timed out still releases its waiter.
        try? await loop.submit {
            let waiters = self.state.value.leaveWaiters
            self.state.value.leaveWaiters = []
            for waiter in waiters { waiter.resume() }
        }.get()
    }

    /// Stops everything: ticks, the upstream duty, the transport. Idempotent.
    public func stop() async {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        tickTask.withLock { $0?.cancel(); $0 = nil }
        for task in tasks.withLock({ tasks in defer { tasks = [] }; return tasks }) { task.cancel() }
        let wasRunning = (try? await loop.submit { () -> Bool in
            let running = self.state.value.upstreamRunning
            self.state.value.upstreamRunning = false
            self.state.value.stopped = true
            for (_, waiter) in self.state.value.forwardWaiters { waiter.resume(returning: nil) }
            self.state.value.forwardWaiters = [:]
            return running
        }.get()) ?? false
        if wasRunning { await upstream?.stop() }
        await transport.stop()
        try? await loopGroup.shutdownGracefully()
    }

    private func addTask(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        tasks.withLock { $0.append(task) }
    }

    // MARK: - Queries

    /// The last published status (cheap, any thread).
    public var currentStatus: MeshStatus { published.withLock { $0 } }

    /// Sets how the leader answers bootstrap bodies (its own and forwarded ones).
    public func setBootstrapHandler(_ handler: @escaping BootstrapHandler) {
        bootstrapHandler.withLock { $0 = handler }
    }

    // MARK: - Local changes

    /// Applies a change of this node's own sources when it leads (stamped with the next position, made durable with
    /// it, then replicated). Changes are applied one at a time, in the order they arrive.
    public func applyLocal(_ change: Change) async -> LocalApplyResult {
        await localGate.run {
            let isFull: Bool
            switch change {
            case .replace, .replicatedReplace: isFull = true
            case .upsert: isFull = false
            }
            let begun: (MeshPosition?, NodeID?) = (try? await self.loop.submit {
                let position = self.state.value.core.beginLocalChange()
                return (position, self.state.value.core.leaderId)
            }.get()) ?? (nil, nil)
            guard let position = begun.0 else { return .notLeader(leaderId: begun.1) }
            let metadata = MeshData.metadata(applied: position, fullEpoch: isFull ? position : nil)
            // A duplicate (FeatBit pushes each change once per server secret) uses no position and writes nothing.
            let outcome = await self.store.applyOnWriterThread(change, metadata: metadata, evenIfUnchanged: false)
            let summary = MeshData.summary(self.store.snapshot)
            try? await self.loop.submit {
                self.state.value.lastLocalChange = outcome.change
                self.perform(self.state.value.core.endLocalChange(
                    at: position, isFull: isFull, changed: outcome.change != nil, durable: outcome.durable,
                    data: summary, now: Self.monotonicMillis()))
                if outcome.change != nil { self.logApply(position: position, kind: isFull ? "full" : "patch", source: "local") }
            }.get()
            return .applied(outcome)
        }
    }

    /// The largest bootstrap body a follower can forward (one peer frame, with room for its header).
    public var maxForwardedBootstrapBytes: Int { settings.transport.maxFrameBytes - 64 * 1024 }

    /// Sends a bootstrap body to the leader and waits for its answer (nil: no leader, or no answer in time).
    public func forwardBootstrap(_ body: [UInt8], timeout: Duration = .seconds(10)) async -> (status: Int, body: [UInt8])? {
        let id = forwardIds.wrappingAdd(1, ordering: .relaxed).newValue
        typealias Answer = (status: Int, body: [UInt8])
        // `timedOut` tells which task finished first: only a request the timeout beat may still be registered later.
        let (answer, timedOut) = await withTaskGroup(of: (Answer?, Bool).self) { group -> (Answer?, Bool) in
            group.addTask {
                let answer: Answer? = await withCheckedContinuation { continuation in
                    self.hop {
                        guard !self.state.value.stopped, self.state.value.abandonedForwards.remove(id) == nil,
                              let leader = self.state.value.core.leaderId, leader != self.settings.mesh.nodeId,
                              self.state.value.core.hearsLeader(now: Self.monotonicMillis()) else {
                            continuation.resume(returning: nil)
                            return
                        }
                        self.state.value.forwardWaiters[id] = continuation
                        if !self.transport.send(.forwardBootstrap(ForwardedBootstrap(requestId: id, body: body)), to: leader) {
                            self.state.value.forwardWaiters[id] = nil
                            continuation.resume(returning: nil)
                        }
                    }
                }
                return (answer, false)
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return (nil, true)
            }
            guard let first = await group.next() else { return (nil, false) }
            if first.1 {
                // This request's waiter is answered with nil now, or at registration if that has not run yet; other
                // requests go on.
                self.hop {
                    if let waiter = self.state.value.forwardWaiters.removeValue(forKey: id) {
                        waiter.resume(returning: nil)
                    } else {
                        self.state.value.abandonedForwards.insert(id)
                    }
                }
            }
            group.cancelAll()
            return first
        }
        return timedOut ? nil : answer
    }

    /// The upstream connection's state changed (leader).
    public func upstreamStateChanged(_ syncState: SyncState) {
        let mapped: MeshUpstreamState
        switch syncState {
        case .none: mapped = .none
        case .starting: mapped = .starting
        case .stable: mapped = .stable
        case .interrupted: mapped = .interrupted
        case .stopped: mapped = .stopped
        }
        onLoop { state in state.core.upstreamChanged(mapped, now: Self.monotonicMillis()) }
    }

    /// featbit.db health changed (a healthy db has rewritten everything, position included).
    public func storageHealthChanged(healthy: Bool) {
        hop {
            if healthy {
                // The db rewrote the data; write the position it now holds, then report everything durable.
                let core = self.state.value.core
                let metadata = MeshData.metadata(applied: core.applied, fullEpoch: core.fullEpoch)
                self.store.enqueueApply(.upsert([]), metadata: metadata) { outcome in
                    self.hop {
                        self.state.value.core.storageHealthChanged(healthy: outcome.durable)
                        self.publishStatus()
                    }
                }
            } else {
                self.state.value.core.storageHealthChanged(healthy: false)
                self.publishStatus()
            }
        }
    }

    // MARK: - Events

    private func handle(_ event: PeerTransportEvent) {
        let now = Self.monotonicMillis()
        switch event {
        case .message(.forwardBootstrap(let request), let from):
            answerForwardedBootstrap(request, from: from)
        case .message(.forwardBootstrapResult(let result), _):
            onLoopDirect {
                if let waiter = self.state.value.forwardWaiters.removeValue(forKey: result.requestId) {
                    waiter.resume(returning: (result.status, result.body))
                }
            }
        case .message(let message, let from):
            onLoop { state in state.core.receive(message, from: from, now: now) }
        case .connected(let peer, let direction, let voters, _):
            if direction == .outbound {
                onLoop { state in state.core.peerConnected(peer, now: now) }
            }
            if voters != settings.mesh.voters {
                logger.warning("peer runs with a different peer list", metadata: [
                    "event": "mesh-peer-list-differs", "peer": "\(peer)", "theirs": "\(voters.joined(separator: ","))",
                    "ours": "\(settings.mesh.voters.joined(separator: ","))",
                ])
            }
        case .disconnected(let peer, let direction):
            if direction == .inbound {
                onLoop { state in state.core.peerDisconnected(peer, now: now) }
            }
        case .handshakeRefused:
            break  // the transport logged it
        }
    }

    private func answerForwardedBootstrap(_ request: ForwardedBootstrap, from peer: NodeID) {
        let handler = bootstrapHandler.withLock { $0 }
        addTask { [self] in
            let answer: (status: Int, body: [UInt8])
            if let handler {
                answer = await handler(request.body)
            } else {
                answer = (503, Array(#"{"error":"this node cannot apply a bootstrap"}"#.utf8))
            }
            _ = transport.send(.forwardBootstrapResult(ForwardedBootstrapResult(requestId: request.requestId,
                                                                                 status: answer.status, body: answer.body)),
                               to: peer)
        }
    }

    /// Runs a core call on the loop and performs its actions.
    private func onLoop(_ body: @escaping @Sendable (inout LoopState) -> [MeshAction]) {
        onLoopDirect {
            guard !self.state.value.stopped else { return }
            let actions = body(&self.state.value)
            self.perform(actions)
        }
    }

    private func onLoopDirect(_ body: @escaping @Sendable () -> Void) {
        if loop.inEventLoop { body() } else { hop(body) }
    }

    /// Runs `body` on the loop later; nothing once the node is stopping (its loop shuts down).
    private func hop(_ body: @escaping @Sendable () -> Void) {
        guard !stopping.load(ordering: .relaxed) else { return }
        loop.execute(body)
    }

    // MARK: - Actions

    /// Queues a batch and carries out what can run now (on the loop).
    private func perform(_ actions: [MeshAction]) {
        loop.preconditionInEventLoop()
        if !actions.isEmpty { state.value.batches.append(actions) }
        drain()
    }

    private func drain() {
        while !state.value.blocked, !state.value.batches.isEmpty {
            var batch = state.value.batches.removeFirst()
            while !batch.isEmpty, !state.value.blocked {
                let action = batch.removeFirst()
                if !execute(action) {
                    // The vote write failed: the rest of this batch (the vote it records) is dropped.
                    state.value.batches.insert(state.value.core.termVoteWriteFailed(now: Self.monotonicMillis()), at: 0)
                    batch = []
                }
            }
            if !batch.isEmpty { state.value.batches.insert(batch, at: 0) }
        }
        publishStatus()
    }

    /// Carries out one action; returns false only when a vote write failed.
    private func execute(_ action: MeshAction) -> Bool {
        switch action {
        case .send(let message, let peer):
            _ = transport.send(message, to: peer)
        case .persistTermVote(let term, let votedFor):
            do {
                try MeshVoteRecord(term: term, votedFor: votedFor).write(to: settings.voteRecordPath)
            } catch {
                metrics.dbWriteErrors.increment()
                logger.error("cannot make the vote durable; refusing votes until it can", metadata: [
                    "event": "mesh-vote-write-failed", "term": "\(term)", "error": "\(error)",
                ])
                return false
            }
        case .startUpstream(let term, let forceFull):
            state.value.upstreamRunning = true
            metrics.upstreamConnections.record(1)
            logger.info("leader: starting the upstream connection", metadata: [
                "event": "mesh-upstream-start", "term": "\(term)", "forceFull": "\(forceFull)",
            ])
            upstream?.start(forceFull)
        case .stopUpstream:
            guard state.value.upstreamRunning, let upstream else { break }
            state.value.upstreamRunning = false
            state.value.blocked = true
            let started = Self.monotonicMillis()
            addTask { [self] in
                await upstream.stop()
                self.hop {
                    self.metrics.upstreamConnections.record(0)
                    self.logger.info("upstream connection closed", metadata: [
                        "event": "mesh-upstream-stopped", "ms": "\(Self.monotonicMillis() - started)",
                    ])
                    self.state.value.blocked = false
                    self.drain()
                }
            }
        case .requestUpstreamFullSync:
            upstream?.requestFullSync()
        case .replicate(let plan):
            replicate(plan)
        case .answerCatchup(let answer):
            answerCatchup(answer)
        case .requestCatchup(let leader, let term, let applied, let fullEpoch):
            let snapshot = store.snapshot
            let request = CatchupRequest(term: term, applied: applied, fullEpoch: fullEpoch,
                                         data: MeshData.summary(snapshot), envs: MeshData.versions(snapshot))
            _ = transport.send(.catchup(request), to: leader)
        case .applyReplicated(let message, let isSnapshot, let from):
            applyReplicated(message, isSnapshot: isSnapshot, from: from)
        case .roleChanged(let role, let term, let leaderId, let reason):
            roleChanged(role: role, term: term, leaderId: leaderId, reason: reason)
        case .unsafePeerList(let peer, let theirs):
            let now = Self.monotonicMillis()
            if now &- (state.value.lastUnsafeLog[peer] ?? 0) > 60_000 || state.value.lastUnsafeLog[peer] == nil {
                state.value.lastUnsafeLog[peer] = now
                logger.error("unsafe peer-list change: votes refused between lists that differ by more than one node", metadata: [
                    "event": "mesh-unsafe-peer-list", "peer": "\(peer)", "theirs": "\(theirs.joined(separator: ","))",
                    "ours": "\(settings.mesh.voters.joined(separator: ","))",
                ])
            }
        case .leaveComplete:
            let waiters = state.value.leaveWaiters
            state.value.leaveWaiters = []
            for waiter in waiters { waiter.resume() }
        }
        return true
    }

    private func replicate(_ plan: ReplicationPlan) {
        if plan.isFull {
            sendSnapshot(position: plan.position, prevSeq: plan.prevSeq, fullEpoch: plan.fullEpoch, catchup: false,
                         to: plan.followers)
            return
        }
        // A patch holds only the change's items: built here, so it goes out in order with the heartbeats.
        guard let change = state.value.lastLocalChange else { return }
        let message = ReplicationMessage(position: plan.position, prevSeq: plan.prevSeq, fullEpoch: plan.fullEpoch,
                                         catchup: false, payload: MeshData.patchPayload(change))
        for follower in plan.followers { _ = transport.send(.patch(message), to: follower) }
    }

    private func answerCatchup(_ answer: CatchupAnswer) {
        logger.debug("answering a catch-up", metadata: [
            "event": "mesh-catchup-answer", "peer": "\(answer.follower)", "kind": "\(answer.kind)",
            "position": "\(answer.position)",
        ])
        switch answer.kind {
        case .snapshot:
            sendSnapshot(position: answer.position, prevSeq: 0, fullEpoch: answer.fullEpoch, catchup: true,
                         to: [answer.follower])
        case .patch(let since):
            // Sent in order with later patches on the control connection (a follower applies them in sequence).
            let payload = MeshData.patchPayload(store.snapshot, since: since)
            _ = transport.send(.patch(ReplicationMessage(position: answer.position, prevSeq: 0, fullEpoch: answer.fullEpoch,
                                                         catchup: true, payload: payload)), to: answer.follower)
        }
    }

    /// Serialises the whole data set off the loop and sends it. It travels on the bulk connection, never in order
    /// with patches, and may hold a little more than `position` (data is merged per item, so that is harmless).
    private func sendSnapshot(position: MeshPosition, prevSeq: UInt64, fullEpoch: MeshPosition, catchup: Bool,
                              to followers: [NodeID]) {
        let store = self.store
        payloadQueue.async { [transport, metrics] in
            let payload = MeshData.snapshotPayload(store.snapshot)
            metrics.snapshotBytes.increment(by: Int64(payload.count * followers.count))
            let message = ReplicationMessage(position: position, prevSeq: prevSeq, fullEpoch: fullEpoch, catchup: catchup,
                                             payload: payload)
            for follower in followers { _ = transport.send(.snapshot(message), to: follower) }
        }
    }

    private func applyReplicated(_ message: ReplicationMessage, isSnapshot: Bool, from: NodeID) {
        // Parsed on the (serial) payload queue, which hands each change to the (serial) store writer in the order
        // the core accepted them.
        payloadQueue.async { self.parseAndApply(message, isSnapshot: isSnapshot, from: from) }
    }

    private func parseAndApply(_ message: ReplicationMessage, isSnapshot: Bool, from: NodeID) {
        let change: Change
        do {
            let parsed: DataSetParser.Parsed
            (change, parsed) = try MeshData.change(from: message.payload, isSnapshot: isSnapshot)
            if !parsed.refused.isEmpty { itemsRefused.increment(by: Int64(parsed.refused.count)) }
            refused.record(source: "peer \(from)", parsed, replacesAll: isSnapshot, message: isSnapshot ? "snapshot" : "patch")
        } catch {
            logger.error("replicated change rejected; asking the leader for a catch-up", metadata: [
                "event": "mesh-replication-rejected", "peer": "\(from)", "position": "\(message.position)",
                "reason": "\(error)",
            ])
            onLoop { state in state.core.replicatedApplyFailed(now: Self.monotonicMillis()) }
            return
        }
        let metadata = MeshData.metadata(applied: message.position, fullEpoch: isSnapshot ? message.fullEpoch : nil)
        store.enqueueApply(change, metadata: metadata) { outcome in
            let summary = MeshData.summary(self.store.snapshot)
            self.onLoop { state in
                state.core.replicatedApplied(message, durable: outcome.durable, data: summary, now: Self.monotonicMillis())
            }
            self.hop {
                self.logApply(position: message.position, kind: isSnapshot ? "snapshot" : "patch",
                              source: message.catchup ? "catchup" : "leader")
            }
        }
    }

    private func logApply(position: MeshPosition, kind: String, source: String) {
        logger.info("mesh change applied", metadata: [
            "event": "mesh-apply", "nodeId": "\(settings.mesh.nodeId)", "position": "\(position)", "kind": "\(kind)",
            "source": "\(source)", "dataVersion": "\(store.snapshot.version)", "mono": "\(Self.monotonicMillis())",
        ])
    }

    private func roleChanged(role: MeshRole, term: UInt64, leaderId: NodeID?, reason: String) {
        let previous = published.withLock { $0 }
        if role == .candidate, previous.role != "candidate" { metrics.electionsStarted.increment() }
        if role == .leader { metrics.electionsWon.increment() }
        if leaderId != nil, leaderId != previous.leaderId { metrics.leaderChanges.increment() }
        logger.info("mesh role", metadata: [
            "event": "mesh-role", "nodeId": "\(settings.mesh.nodeId)", "role": "\(role.statusName)", "term": "\(term)",
            "leaderId": "\(leaderId ?? "")", "reason": "\(reason)", "mono": "\(Self.monotonicMillis())",
        ])
    }

    /// Copies the core's state to the status snapshot, the status board and the metrics.
    private func publishStatus() {
        let now = Self.monotonicMillis()
        let core = state.value.core
        let status = MeshStatus.make(core: core, now: now, addresses: settings.peerAddresses,
                                     reachability: transport.reachability.mapValues { $0.outbound || $0.inbound })
        published.withLock { $0 = status }
        metrics.record(status, core: core)
        let readiness: Readiness
        switch core.role {
        case .leader:
            readiness = !settings.mesh.upstreamDuty || core.upstreamState == .stable ? .healthy : .degraded
        case .standalone:
            readiness = .healthy
        case .follower, .preCandidate, .candidate, .witness:
            readiness = core.isCaughtUp(now: now) ? .healthy : .degraded
        }
        self.status.update { values in
            values.meshReadiness = readiness
            if core.role != .leader, core.role != .standalone {
                // A follower syncs from the leader.
                values.syncState = core.isCaughtUp(now: now) ? .stable : core.hearsLeader(now: now) ? .starting : .interrupted
            }
        }
    }
}

/// A first-in, first-out async lock: one body at a time, in the order they asked (an actor would interleave at its
/// awaits).
final class AsyncSerialGate: Sendable {
    private let state = Mutex<(busy: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        await acquire()
        defer { release() }
        return await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if !s.busy {
                    s.busy = true
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
