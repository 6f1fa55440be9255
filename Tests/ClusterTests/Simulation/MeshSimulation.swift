import Cluster

/// A deterministic, seeded simulation of N `MeshCore`s (cluster-design §3.12, layer 0 of §4.2): a network with delay,
/// loss, duplication, reordering and partitions; pauses; crashes and restarts with or without durable state; an
/// upstream that keeps changing the data and sometimes replaces it whole. Each node's data is a last-writer-wins map,
/// applied with the same rules as the agent's store. The invariants are checked after every event; a violation is
/// recorded with the time and the seed, never ignored.
final class MeshSimulation {
    struct Faults {
        var lossRate = 0.0
        var duplicateRate = 0.0
        /// One-way delay of a message: uniform in this range (ms), so messages reorder.
        var delay: ClosedRange<UInt64> = 1...5
        /// Per node and second: chance of a crash (restart after 0.2-3 s).
        var crashRatePerSecond = 0.0
        /// Per node and second: chance of a pause (SIGSTOP) of 0.5-3 election timeouts.
        var pauseRatePerSecond = 0.0
        /// Per second: chance that a random partition is laid (a set of links cut, one-way or both) for 1-4 s.
        var partitionRatePerSecond = 0.0
        /// A restarted node keeps its durable state (the vote, the position, the data); false models a lost disk.
        var restartKeepsDisk = true
        /// The deliberately broken variant: a restart forgets the vote (never made durable).
        var forgetVoteOnRestart = false
        /// Per node: chance that featbit.db refuses writes (disk full) for a while.
        var diskFailureRatePerSecond = 0.0
        /// Chance that a node crashes right after granting a vote, and restarts 5-50 ms later (the worst moment).
        var crashAfterVoteRate = 0.0
    }

    struct Violation: CustomStringConvertible {
        let time: UInt64
        let message: String
        var description: String { "t=\(time)ms: \(message)" }
    }

    /// Items of the simulated data set: id → updatedAt. Ids start with the environment's letter ("a…", "b…").
    typealias Items = [String: Int64]

    struct Disk {
        /// Whether the vote record exists (written at the first term/vote change).
        var hasVoteRecord = false
        var term: UInt64 = 0
        var votedFor: NodeID?
        var applied: MeshPosition = .zero
        var fullEpoch: MeshPosition = .zero
        var items: Items = [:]
        var hasData = false
    }

    final class Node {
        let id: NodeID
        var core: MeshCore?
        var disk = Disk()
        var items: Items = [:]
        var hasData = false
        var pausedUntil: UInt64?
        var upstreamConnected = false
        var diskFailingUntil: UInt64 = 0
        /// Items of the last local change (what a PATCH of it carries).
        var lastLocalChange: Items = [:]
        init(id: NodeID) { self.id = id }
    }

    enum Event {
        case tick(NodeID, incarnation: UInt64)
        case deliver(MeshMessage, from: NodeID, to: NodeID, sentIncarnation: UInt64)
        case disconnected(peer: NodeID, at: NodeID)
        case connected(peer: NodeID, at: NodeID)
        case restart(NodeID)
        case resume(NodeID)
        case upstreamChange
        case upstreamFull
        case upstreamConnect(NodeID, forceFull: Bool, incarnation: UInt64)
        case fault
        case heal
    }

    let seed: UInt64
    let settingsFor: (NodeID) -> MeshSettings
    var faults: Faults
    var random: MeshRandom
    var now: UInt64 = 0
    var nodes: [NodeID: Node] = [:]
    let ids: [NodeID]
    private var queue = EventQueue()
    /// Links cut: (from, to).
    var cut: Set<[NodeID]> = []
    var violations: [Violation] = []
    /// Role changes and faults, for reading a failing seed.
    var trace: [String]? = nil
    /// term → the node that led it (election safety).
    var leaders: [UInt64: NodeID] = [:]
    /// The upstream's data (the source of truth) and its clock for `updatedAt`.
    var truth: Items = [:]
    var upstreamClock: Int64 = 1_000
    var upstreamUp = true
    var incarnations: [NodeID: UInt64] = [:]
    var maxUpstreamConnections = 0

    init(seed: UInt64, nodeCount: Int, faults: Faults, settings: @escaping (NodeID, [NodeID]) -> MeshSettings) {
        self.seed = seed
        self.faults = faults
        self.random = MeshRandom(seed: seed ^ 0x5EED)
        let ids = (1...nodeCount).map { "n\($0)" }
        self.ids = ids
        self.settingsFor = { id in settings(id, ids.filter { $0 != id }) }
        for id in ids { nodes[id] = Node(id: id) }
        // Initial upstream data: a few items in two environments.
        for i in 0..<4 { truth["a\(i)"] = nextUpdatedAt(); truth["b\(i)"] = nextUpdatedAt() }
    }

    var electionTimeout: UInt64 { settingsFor(ids[0]).electionTimeoutMs }

    // MARK: - Running

    func start(at time: UInt64 = 0, staggerMs: UInt64 = 50) {
        for id in ids { schedule(.restart(id), at: time + random.next(in: 0..<(staggerMs + 1))) }
    }

    func schedule(_ event: Event, at time: UInt64) {
        queue.push(time: time, event)
    }

    func scheduleChaos(until end: UInt64) {
        var t: UInt64 = 500
        while t < end {
            schedule(.fault, at: t)
            t += 1_000
        }
        var c: UInt64 = 300
        while c < end {
            schedule(.upstreamChange, at: c)
            c += 150 + random.next(in: 0..<600)
        }
        schedule(.upstreamFull, at: end / 2)
    }

    /// Runs events until `end` (or until the queue is empty).
    func run(until end: UInt64) {
        while let next = queue.peekTime, next <= end {
            let (time, event) = queue.pop()!
            now = max(now, time)
            handle(event)
            checkInvariants()
        }
        now = max(now, end)
    }

    // MARK: - Events

    private func handle(_ event: Event) {
        switch event {
        case .tick(let id, let incarnation):
            guard let node = nodes[id], incarnations[id] == incarnation, node.core != nil else { return }
            if let until = node.pausedUntil, now < until { return }  // resumed by .resume
            // The shell's retry loop: once the disk takes writes again, votes and acknowledgements resume.
            if !node.core!.storageHealthy, now >= node.diskFailingUntil {
                node.disk.items = node.items
                node.disk.hasData = node.hasData
                node.disk.applied = node.core!.applied
                node.disk.fullEpoch = node.core!.fullEpoch
                node.core!.storageHealthChanged(healthy: true)
            }
            let actions = node.core!.tick(now: now)
            perform(actions, at: node)
            schedule(.tick(id, incarnation: incarnation), at: now + node.core!.settings.tickMs)
        case .deliver(let message, let from, let to, let sentIncarnation):
            // A message dies with the process that sent it (one connection per process).
            guard incarnations[from] == sentIncarnation else { return }
            guard let node = nodes[to], node.core != nil else { return }
            if let until = node.pausedUntil, now < until {
                // A paused process reads its socket later.
                schedule(.deliver(message, from: from, to: to, sentIncarnation: sentIncarnation), at: until + 1)
                return
            }
            let actions = node.core!.receive(message, from: from, now: now)
            perform(actions, at: node)
        case .disconnected(let peer, let at):
            guard let node = nodes[at], node.core != nil else { return }
            if let until = node.pausedUntil, now < until { return }
            perform(node.core!.peerDisconnected(peer, now: now), at: node)
        case .connected(let peer, let at):
            guard let node = nodes[at], node.core != nil, nodes[peer]?.core != nil else { return }
            if let until = node.pausedUntil, now < until { return }
            perform(node.core!.peerConnected(peer, now: now), at: node)
        case .restart(let id):
            restart(id)
        case .resume(let id):
            guard let node = nodes[id], node.core != nil else { return }
            node.pausedUntil = nil
            // The tick loop resumes with the time jump visible (pause detection).
            perform(node.core!.tick(now: now), at: node)
            schedule(.tick(id, incarnation: incarnations[id]!), at: now + node.core!.settings.tickMs)
        case .upstreamChange:
            upstreamChange()
        case .upstreamFull:
            upstreamFull()
        case .upstreamConnect(let id, let forceFull, let incarnation):
            guard let node = nodes[id], incarnations[id] == incarnation, node.core?.isLeader == true,
                  node.upstreamConnected, upstreamUp else { return }
            if forceFull {
                applyUpstream(at: node, items: truth, isFull: true)
            } else {
                applyUpstream(at: node, items: truth.filter { $0.value > envVersion(node.items, env: $0.key.first!) }, isFull: false)
            }
            perform(node.core!.upstreamChanged(.stable, now: now), at: node)
        case .fault:
            injectFault()
        case .heal:
            cut.removeAll()
        }
    }

    private func restart(_ id: NodeID) {
        let node = nodes[id]!
        let incarnation = random.next()
        incarnations[id] = incarnation
        if !faults.restartKeepsDisk { node.disk = Disk() }
        if faults.forgetVoteOnRestart { node.disk.votedFor = nil }
        node.items = node.disk.items
        node.hasData = node.disk.hasData
        node.pausedUntil = nil
        node.upstreamConnected = false
        var core = MeshCore(settings: settingsFor(id),
                            durable: .init(term: node.disk.term, votedFor: node.disk.votedFor,
                                           applied: node.disk.applied, fullEpoch: node.disk.fullEpoch),
                            now: now, seed: random.next(), incarnation: incarnation,
                            votesRemembered: node.disk.hasVoteRecord)
        core.localDataChanged(summary(node))
        node.core = core
        schedule(.tick(id, incarnation: incarnation), at: now + random.next(in: 0..<50))
        // Connections come up both ways with every live peer whose link is up.
        for peer in ids where peer != id && nodes[peer]!.core != nil {
            if !cut.contains([id, peer]) { schedule(.connected(peer: id, at: peer), at: now + 1 + random.next(in: 0..<10)) }
            if !cut.contains([peer, id]) { schedule(.connected(peer: peer, at: id), at: now + 1 + random.next(in: 0..<10)) }
        }
    }

    func crash(_ id: NodeID, restartAfter: UInt64?) {
        guard let node = nodes[id], node.core != nil else { return }
        trace?.append("\(now) \(id) CRASH restart in \(restartAfter ?? 0)")
        node.core = nil
        node.upstreamConnected = false
        incarnations[id] = nil
        // Peers whose link to it is up see the connection close (FIN/RST).
        for peer in ids where peer != id && !cut.contains([id, peer]) {
            schedule(.disconnected(peer: id, at: peer), at: now + random.next(in: faults.delay.lowerBound..<(faults.delay.upperBound + 1)))
        }
        if let restartAfter { schedule(.restart(id), at: now + restartAfter) }
    }

    func pause(_ id: NodeID, for duration: UInt64) {
        guard let node = nodes[id], node.core != nil, node.pausedUntil == nil else { return }
        node.pausedUntil = now + duration
        trace?.append("\(now) \(id) PAUSE \(duration)")
        schedule(.resume(id), at: now + duration)
    }

    private func injectFault() {
        let live = ids.filter { nodes[$0]!.core != nil }
        let seconds = 1.0
        for id in live {
            if random.unit() < faults.crashRatePerSecond * seconds {
                crash(id, restartAfter: 200 + random.next(in: 0..<2_800))
            } else if random.unit() < faults.pauseRatePerSecond * seconds {
                pause(id, for: electionTimeout / 2 + random.next(in: 0..<(electionTimeout * 5 / 2)))
            } else if random.unit() < faults.diskFailureRatePerSecond * seconds {
                nodes[id]!.diskFailingUntil = now + 1_000 + random.next(in: 0..<4_000)
            }
        }
        if cut.isEmpty, random.unit() < faults.partitionRatePerSecond * seconds {
            // Cut a random node off (both ways or one way), or a random set of links.
            let victim = ids[Int(random.next(in: 0..<UInt64(ids.count)))]
            let mode = random.next(in: 0..<3)
            for peer in ids where peer != victim {
                if mode != 1 { cut.insert([victim, peer]) }
                if mode != 2 { cut.insert([peer, victim]) }
            }
            schedule(.heal, at: now + 1_000 + random.next(in: 0..<3_000))
            trace?.append("\(now) CUT \(victim) mode \(mode)")
        }
    }

    // MARK: - Actions

    private func perform(_ actions: [MeshAction], at node: Node) {
        for action in actions {
            guard node.core != nil else { return }
            switch action {
            case .send(let message, let to):
                send(message, from: node.id, to: to)
                if case .voteResponse(let response) = message, response.granted,
                   random.unit() < faults.crashAfterVoteRate {
                    crash(node.id, restartAfter: 5 + random.next(in: 0..<45))
                    return
                }
            case .persistTermVote(let term, let votedFor):
                if now < node.diskFailingUntil {
                    perform(node.core!.termVoteWriteFailed(now: now), at: node)
                    return  // the rest of the batch waited for this write
                }
                node.disk.term = term
                node.disk.votedFor = votedFor
                node.disk.hasVoteRecord = true
            case .startUpstream(_, let forceFull):
                node.upstreamConnected = true
                maxUpstreamConnections = max(maxUpstreamConnections, ids.filter { nodes[$0]!.upstreamConnected }.count)
                perform(node.core!.upstreamChanged(.starting, now: now), at: node)
                schedule(.upstreamConnect(node.id, forceFull: forceFull, incarnation: incarnations[node.id]!),
                         at: now + 5 + random.next(in: 0..<20))
            case .stopUpstream:
                node.upstreamConnected = false
            case .requestUpstreamFullSync:
                if node.upstreamConnected, upstreamUp {
                    schedule(.upstreamConnect(node.id, forceFull: true, incarnation: incarnations[node.id]!), at: now + 5)
                }
            case .replicate(let plan):
                let payload = plan.isFull ? encode(node.items) : encode(node.lastLocalChange)
                let message = ReplicationMessage(position: plan.position, prevSeq: plan.prevSeq, fullEpoch: plan.fullEpoch,
                                                 catchup: false, payload: payload)
                for follower in plan.followers {
                    send(plan.isFull ? .snapshot(message) : .patch(message), from: node.id, to: follower)
                }
            case .answerCatchup(let answer):
                let message: MeshMessage
                switch answer.kind {
                case .snapshot:
                    message = .snapshot(ReplicationMessage(position: answer.position, prevSeq: 0, fullEpoch: answer.fullEpoch,
                                                           catchup: true, payload: encode(node.items)))
                case .patch(let since):
                    let versions = Dictionary(since.map { ($0.envId, $0.timestamp) }, uniquingKeysWith: max)
                    let newer = node.items.filter { $0.value > (versions[String($0.key.first!)] ?? 0) }
                    message = .patch(ReplicationMessage(position: answer.position, prevSeq: 0, fullEpoch: answer.fullEpoch,
                                                        catchup: true, payload: encode(newer)))
                }
                send(message, from: node.id, to: answer.follower)
            case .requestCatchup(let to, let term, let applied, let fullEpoch):
                let envs = ["a", "b"].map { EnvironmentVersion(envId: $0, timestamp: envVersion(node.items, env: Character($0))) }
                send(.catchup(CatchupRequest(term: term, applied: applied, fullEpoch: fullEpoch, data: summary(node), envs: envs)),
                     from: node.id, to: to)
            case .applyReplicated(let message, let isSnapshot, _):
                applyReplicated(message, isSnapshot: isSnapshot, at: node)
            case .roleChanged(let role, let term, let leader, let reason):
                trace?.append("\(now) \(node.id) \(role.rawValue) t\(term) leader=\(leader ?? "-") (\(reason))")
                if role == .leader {
                    if let existing = leaders[term], existing != node.id {
                        violations.append(Violation(time: now, message: "two leaders in term \(term): \(existing) and \(node.id) (seed \(seed))"))
                    }
                    leaders[term] = node.id
                }
            case .unsafePeerList, .leaveComplete:
                break
            }
        }
    }

    private func send(_ message: MeshMessage, from: NodeID, to: NodeID) {
        guard let incarnation = incarnations[from] else { return }
        if cut.contains([from, to]) { return }
        if random.unit() < faults.lossRate { return }
        let copies = random.unit() < faults.duplicateRate ? 2 : 1
        for _ in 0..<copies {
            let delay = random.next(in: faults.delay.lowerBound..<(faults.delay.upperBound + 1))
            schedule(.deliver(message, from: from, to: to, sentIncarnation: incarnation), at: now + delay)
        }
    }

    // MARK: - Data

    private func nextUpdatedAt() -> Int64 {
        upstreamClock += 1 + Int64(random.next(in: 0..<3))
        return upstreamClock
    }

    private func upstreamChange() {
        guard upstreamUp else { return }
        // Change 1-2 items (new versions, sometimes new items).
        var changed: Items = [:]
        for _ in 0..<(1 + random.next(in: 0..<2)) {
            let env = random.next(in: 0..<2) == 0 ? "a" : "b"
            let id = "\(env)\(random.next(in: 0..<8))"
            let at = nextUpdatedAt()
            truth[id] = at
            changed[id] = at
        }
        for id in ids where nodes[id]!.upstreamConnected {
            let node = nodes[id]!
            if node.core?.isLeader == true, node.pausedUntil == nil {
                applyUpstream(at: node, items: changed, isFull: false)
            }
        }
    }

    /// The upstream replaces its data (deleting an item): only an `rp_full` carries a deletion.
    private func upstreamFull() {
        guard upstreamUp, let victim = truth.keys.sorted().first else { return }
        truth[victim] = nil
        for id in ids where nodes[id]!.upstreamConnected {
            let node = nodes[id]!
            if node.core?.isLeader == true, node.pausedUntil == nil { applyUpstream(at: node, items: truth, isFull: true) }
        }
    }

    /// The leader applies an upstream message as a local change.
    private func applyUpstream(at node: Node, items: Items, isFull: Bool) {
        guard var core = node.core else { return }
        guard let position = core.beginLocalChange() else {
            violations.append(Violation(time: now, message: "\(node.id) got upstream data while not leading (seed \(seed))"))
            return
        }
        let before = node.items
        if isFull {
            node.items = items
        } else {
            for (id, at) in items where (node.items[id] ?? Int64.min) <= at { node.items[id] = at }
        }
        node.hasData = true
        let changed = node.items != before || (isFull && !node.disk.hasData)
        node.lastLocalChange = node.items.filter { before[$0.key] != $0.value }
        let durable = persist(node, position: changed ? position : nil, fullEpoch: isFull && changed ? position : nil)
        node.core = core
        let actions = node.core!.endLocalChange(at: position, isFull: isFull, changed: changed, durable: durable,
                                                data: summary(node), now: now)
        perform(actions, at: node)
    }

    private func applyReplicated(_ message: ReplicationMessage, isSnapshot: Bool, at node: Node) {
        let term = node.core!.term
        if message.position.term < term {
            violations.append(Violation(time: now, message: "\(node.id) applied term \(message.position.term) while in term \(term) (seed \(seed))"))
        }
        let incoming = decode(message.payload)
        let before = node.items
        if isSnapshot {
            // Replace: items absent from the snapshot go; items in both keep the newer version.
            var next: Items = [:]
            for (id, at) in incoming { next[id] = max(at, before[id] ?? Int64.min) }
            node.items = next
        } else {
            for (id, at) in incoming where (node.items[id] ?? Int64.min) <= at { node.items[id] = at }
        }
        node.hasData = node.hasData || !incoming.isEmpty || isSnapshot
        for (id, at) in before {
            if let after = node.items[id], after < at {
                violations.append(Violation(time: now, message: "\(node.id): item \(id) went back from \(at) to \(after) (seed \(seed))"))
            }
        }
        let durable = persist(node, position: message.position, fullEpoch: isSnapshot ? message.fullEpoch : nil)
        perform(node.core!.replicatedApplied(message, durable: durable, data: summary(node), now: now), at: node)
    }

    /// featbit.db: the data and the position in one transaction; fails while the disk is failing.
    private func persist(_ node: Node, position: MeshPosition?, fullEpoch: MeshPosition?) -> Bool {
        guard now >= node.diskFailingUntil else {
            node.core?.storageHealthChanged(healthy: false)
            return false
        }
        node.disk.items = node.items
        node.disk.hasData = node.hasData
        if let position { node.disk.applied = max(node.disk.applied, position) }
        if let fullEpoch { node.disk.fullEpoch = max(node.disk.fullEpoch, fullEpoch) }
        return true
    }

    func summary(_ node: Node) -> DataSummary {
        DataSummary(dataVersion: node.items.values.max() ?? 0, digest: digest(node.items), hasData: node.hasData)
    }

    func digest(_ items: Items) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for (id, at) in items.sorted(by: { $0.key < $1.key }) {
            for byte in "\(id)=\(at);".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        }
        return String(hash, radix: 16)
    }

    private func envVersion(_ items: Items, env: Character) -> Int64 {
        items.filter { $0.key.first == env }.values.max() ?? 0
    }

    private func encode(_ items: Items) -> [UInt8] {
        Array(items.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",").utf8)
    }

    private func decode(_ payload: [UInt8]) -> Items {
        var items: Items = [:]
        for pair in String(decoding: payload, as: UTF8.self).split(separator: ",") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let at = Int64(parts[1]) { items[String(parts[0])] = at }
        }
        return items
    }

    // MARK: - Invariants and queries

    private func checkInvariants() {
        for id in ids {
            guard let core = nodes[id]!.core else { continue }
            if core.role == .leader {
                if let existing = leaders[core.term], existing != id {
                    violations.append(Violation(time: now, message: "two leaders in term \(core.term): \(existing) and \(id) (seed \(seed))"))
                }
                leaders[core.term] = id
            }
        }
    }

    /// The node every live node (at least a quorum) follows, if one leads with a quorum following it.
    func stableLeader() -> NodeID? {
        let live = ids.filter { nodes[$0]!.core != nil && nodes[$0]!.pausedUntil == nil }
        guard let leader = live.first(where: { nodes[$0]!.core!.isLeader }) else { return nil }
        let term = nodes[leader]!.core!.term
        let following = live.filter { nodes[$0]!.core!.term == term && nodes[$0]!.core!.leaderId == leader }.count
        return following >= ids.count / 2 + 1 ? leader : nil
    }

    /// Runs until a stable leader exists, checking every 10 ms; returns the time it took, or nil by `deadline`.
    func timeToStableLeader(from start: UInt64, deadline: UInt64) -> UInt64? {
        var t = start
        while t <= deadline {
            run(until: t)
            if stableLeader() != nil { return t - start }
            t += 10
        }
        return nil
    }

    /// Heals everything, stops faults and lets the mesh settle: the upstream sends a final full data set.
    func healAndSettle(for duration: UInt64) {
        cut.removeAll()
        faults.lossRate = 0
        faults.duplicateRate = 0
        faults.crashRatePerSecond = 0
        faults.pauseRatePerSecond = 0
        faults.partitionRatePerSecond = 0
        faults.diskFailureRatePerSecond = 0
        queue.removeAll { event in
            switch event {
            case .fault, .upstreamChange, .upstreamFull, .heal: return true
            default: return false
            }
        }
        for id in ids {
            nodes[id]!.diskFailingUntil = 0
            if nodes[id]!.core == nil { schedule(.restart(id), at: now + 1) }
        }
        let settleStart = now
        run(until: settleStart + duration / 2)
        // The leader's periodic full re-sync (every 30 min in the agent) brings deletions everywhere.
        if let leader = stableLeader(), nodes[leader]!.upstreamConnected {
            applyUpstream(at: nodes[leader]!, items: truth, isFull: true)
        }
        run(until: settleStart + duration)
    }

    /// Digests of every node with data (after settling, all must equal the upstream's).
    var digests: [NodeID: String] {
        Dictionary(uniqueKeysWithValues: ids.map { ($0, digest(nodes[$0]!.items)) })
    }
}

/// A binary heap of events ordered by time, then by insertion (deterministic).
struct EventQueue {
    private var heap: [(time: UInt64, order: UInt64, event: MeshSimulation.Event)] = []
    private var counter: UInt64 = 0

    var peekTime: UInt64? { heap.first?.time }

    mutating func push(time: UInt64, _ event: MeshSimulation.Event) {
        counter += 1
        heap.append((time, counter, event))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (UInt64, MeshSimulation.Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(l, m) { m = l }
            if r < heap.count, less(r, m) { m = r }
            guard m != i else { break }
            heap.swapAt(i, m)
            i = m
        }
        return (top.time, top.event)
    }

    mutating func removeAll(where shouldRemove: (MeshSimulation.Event) -> Bool) {
        let kept = heap.filter { !shouldRemove($0.event) }
        heap = []
        for entry in kept.sorted(by: { ($0.time, $0.order) < ($1.time, $1.order) }) {
            heap.append(entry)  // a sorted array is a valid heap
        }
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        (heap[a].time, heap[a].order) < (heap[b].time, heap[b].order)
    }
}
