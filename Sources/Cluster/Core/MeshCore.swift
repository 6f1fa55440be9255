/// The mesh's election and replication rules as a pure state machine (cluster-design §3): no sockets, no clock, no
/// disk. The shell feeds it ticks, peer messages, connection and upstream events, each with the current monotonic time
/// in milliseconds, and carries out the actions it returns, in order.
///
/// Election: Raft's, with randomised timeouts in [E + tick, 2E), pre-vote, leader stickiness (no (pre-)vote while a
/// leader was heard within E, unless it is a leadership transfer), check-quorum self-fencing, pause detection, the fast
/// path on a closed leader connection, leadership transfer (graceful leave, and away from a leader that lost the
/// upstream), quorum counted on the static voter list, the peer-list guard of §3.9 and vote-only witnesses.
///
/// Replication: the leader stamps each committed local change with `(term, seq)` and sends it to the followers; a
/// follower applies a patch only in sequence (`prevSeq`) and in its current term, asks for a catch-up on a gap, and
/// acknowledges only what is durable. Items merge by `updatedAt` (last writer wins) in the store, so a replayed or
/// late message cannot move data backwards.
public struct MeshCore: Sendable {
    /// What survives a restart: the vote (own file, written before a vote is sent) and the replication position
    /// (featbit.db, in the same transaction as the data).
    public struct Durable: Sendable, Equatable {
        public var term: UInt64
        public var votedFor: NodeID?
        public var applied: MeshPosition
        public var fullEpoch: MeshPosition

        public static let initial = Durable(term: 0, votedFor: nil, applied: .zero, fullEpoch: .zero)

        public init(term: UInt64, votedFor: NodeID?, applied: MeshPosition, fullEpoch: MeshPosition) {
            self.term = term
            self.votedFor = votedFor
            self.applied = applied
            self.fullEpoch = fullEpoch
        }
    }

    /// What this node knows of one peer.
    public struct PeerView: Sendable, Equatable {
        /// When a message from it last arrived.
        public var lastHeard: UInt64?
        /// Its latest `STATE`.
        public var state: PeerStateMessage?
        /// When it last reported, as leader, an interrupted upstream (or could not reach it).
        public var lostUpstreamAt: UInt64?
        /// As leader: the position it has acknowledged in this term.
        public var acked: MeshPosition?
        /// As leader: when it last confirmed this node as leader of the current term.
        public var confirmedLeaderAt: UInt64?
        /// As leader: a snapshot sent to it and not yet confirmed (its position, and when it was sent).
        public var snapshotInFlight: MeshPosition?
        public var snapshotSentAt: UInt64?
    }

    public let settings: MeshSettings
    public let incarnation: UInt64
    public private(set) var role: MeshRole
    public private(set) var term: UInt64
    public private(set) var votedFor: NodeID?
    public private(set) var leaderId: NodeID?
    /// Position of the last change accepted for applying (changes are applied in the order accepted).
    public private(set) var applied: MeshPosition
    /// Position made durable (what `STATE` and `ACK` report).
    public private(set) var durable: MeshPosition
    public private(set) var fullEpoch: MeshPosition
    public private(set) var localData: DataSummary = .empty
    public private(set) var peers: [NodeID: PeerView]
    public private(set) var upstreamState: MeshUpstreamState = .none
    public private(set) var upstreamReachable = false
    /// Whether votes and data can be made durable; a node that cannot write refuses to vote and does not campaign.
    public private(set) var storageHealthy = true
    public private(set) var leaving = false
    /// `LEAVE` was sent: the shell is stopping.
    public private(set) var hasLeft = false

    private var lastLeaderContact: UInt64?
    private var electionDeadline: UInt64
    private var lastObserved: UInt64
    private var nextHeartbeat: UInt64
    private var becameLeaderAt: UInt64 = 0
    private var votes: Set<NodeID> = []
    private var pendingLocal: MeshPosition?
    private var catchupRequestedAt: UInt64?
    private var upstreamInterruptedSince: UInt64?
    private var lastUpstreamTransferAt: UInt64?
    private var lastFullSyncRequestAt: UInt64?
    private var transfer: (target: NodeID, deadline: UInt64, forLeave: Bool)?
    private var rng: MeshRandom
    /// Started without its vote record (a new node or a lost disk): it may have voted in some term before, so it
    /// grants no vote and does not campaign until it has heard every peer; then it takes the highest term it heard,
    /// refuses votes in it (one may have been given) and votes only in later terms. The terms heard so far.
    /// (A brand-new mesh is no exception: a node that cannot hear a peer cannot know which terms that peer saw.)
    private var amnesia: [NodeID: UInt64]?

    /// Vote-record values that are not node ids (a node id cannot contain "@"). `amnesiacVote`: the node lost its
    /// vote record and has not heard every peer yet; it is written with every term it adopts meanwhile, so a restart
    /// finds it still amnesiac. `unknownVote`: a vote in this term may have been given before the record was lost.
    public static let amnesiacVote = "@amnesiac"
    public static let unknownVote = "@unknown"

    /// - Parameter votesRemembered: whether `durable.term`/`votedFor` came from this node's vote record; `false` for
    ///   a node whose record is missing.
    public init(settings: MeshSettings, durable: Durable, now: UInt64, seed: UInt64, incarnation: UInt64,
                votesRemembered: Bool = true) {
        self.settings = settings
        self.incarnation = incarnation
        self.term = durable.term
        self.votedFor = durable.votedFor
        self.applied = durable.applied
        self.durable = durable.applied
        self.fullEpoch = durable.fullEpoch
        self.role = settings.voters.count == 1 ? .standalone : settings.isWitness ? .witness : .follower
        self.leaderId = role == .standalone ? settings.nodeId : nil
        self.peers = Dictionary(uniqueKeysWithValues: settings.peers.map { ($0, PeerView()) })
        self.rng = MeshRandom(seed: seed)
        self.lastObserved = now
        self.nextHeartbeat = now
        self.electionDeadline = now
        // A node never campaigns during its first E after start: it may join an existing leader instead.
        self.electionDeadline = now + randomElectionWait()
        if (!votesRemembered || durable.votedFor == Self.amnesiacVote), settings.voters.count > 1 {
            amnesia = [:]
            votedFor = Self.amnesiacVote
        }
    }

    /// Ends amnesia once every peer was heard: the highest term heard becomes this node's, with its vote unknown.
    private mutating func clearAmnesiaIfPossible() -> [MeshAction] {
        guard let heard = amnesia, heard.count == settings.peers.count else { return [] }
        term = max(term, heard.values.max() ?? 0)
        votedFor = Self.unknownVote
        amnesia = nil
        return [.persistTermVote(term: term, votedFor: Self.unknownVote)]
    }

    // MARK: - Queries

    /// Whether this node believes it leads the current term.
    public var isLeader: Bool { role == .leader }

    /// Whether a leader was heard within the election timeout.
    public func hearsLeader(now: UInt64) -> Bool {
        if role == .leader || role == .standalone { return true }
        guard leaderId != nil, let last = lastLeaderContact else { return false }
        return now &- last < settings.electionTimeoutMs
    }

    /// A follower is caught up when it hears a leader and has made durable everything the leader last reported.
    public func isCaughtUp(now: UInt64) -> Bool {
        switch role {
        case .leader, .standalone: return true
        case .witness, .preCandidate, .candidate: return false
        case .follower:
            guard hearsLeader(now: now), let leaderId, let leaderState = peers[leaderId]?.state else { return false }
            return leaderState.term == term && durable >= leaderState.applied && localData.hasData
        }
    }

    /// Whether `peer` was heard within the election timeout.
    public func isReachable(_ peer: NodeID, now: UInt64) -> Bool {
        guard let last = peers[peer]?.lastHeard else { return false }
        return now &- last < settings.electionTimeoutMs
    }

    /// The `STATE` this node sends.
    public var stateMessage: PeerStateMessage {
        // A leader reports what it serves and replicates; a follower what it has made durable (its acknowledgement).
        PeerStateMessage(term: term, role: role, leaderId: leaderId, applied: role == .leader ? applied : durable,
                         fullEpoch: fullEpoch,
                         data: localData, upstreamState: upstreamState, upstreamReachable: upstreamReachable,
                         voters: settings.voters, incarnation: incarnation, storageHealthy: storageHealthy)
    }

    // MARK: - Time

    /// Advances the timers: heartbeats, election deadline, check-quorum, transfers.
    public mutating func tick(now: UInt64) -> [MeshAction] {
        var actions = observe(now: now)
        switch role {
        case .standalone:
            return actions
        case .leader:
            // Fencing first: a leader without a quorum sends no more heartbeats.
            actions += checkQuorum(now: now)
            if role == .leader, now >= nextHeartbeat { actions += broadcastState(now: now) }
            if role == .leader { actions += driveTransfer(now: now) }
        case .follower, .preCandidate, .candidate, .witness:
            if now >= nextHeartbeat { actions += broadcastState(now: now) }
            actions += clearAmnesiaIfPossible()
            if now >= electionDeadline, canCampaign {
                actions += startPreVote(now: now)
            } else if now >= electionDeadline {
                electionDeadline = now + randomElectionWait()
            }
            actions += catchupIfNeeded(now: now)
        }
        // Leaving while the transfer target took over (or this node stepped down meanwhile).
        if leaving, !hasLeft, role != .leader { actions += finishLeave() }
        return actions
    }

    /// Pause detection (Lifeguard's idea, cluster-design §3.4): a gap of more than E since the last event means this
    /// process did not run (GC, SIGSTOP, VM freeze). A leader steps down before doing anything else; a follower does
    /// not campaign on a stale view.
    private mutating func observe(now: UInt64) -> [MeshAction] {
        defer { lastObserved = max(lastObserved, now) }
        guard now > lastObserved, now - lastObserved > settings.electionTimeoutMs else { return [] }
        switch role {
        case .leader:
            return stepDown(reason: "paused for \(now - lastObserved) ms", now: now)
        case .preCandidate, .candidate:
            role = .follower
            electionDeadline = now + randomElectionWait()
            return [.roleChanged(role: role, term: term, leaderId: leaderId, reason: "paused")]
        case .follower, .witness:
            electionDeadline = now + randomElectionWait()
            return []
        case .standalone:
            return []
        }
    }

    // MARK: - Messages

    /// A message from an authenticated peer.
    public mutating func receive(_ message: MeshMessage, from peer: NodeID, now: UInt64) -> [MeshAction] {
        guard peer != settings.nodeId, peers[peer] != nil else { return [] }
        var actions = observe(now: now)
        peers[peer]?.lastHeard = now
        switch message {
        case .state(let state): actions += handleState(state, from: peer, now: now)
        case .preVote(let request): actions += handleVoteRequest(request, from: peer, isPreVote: true, now: now)
        case .vote(let request): actions += handleVoteRequest(request, from: peer, isPreVote: false, now: now)
        case .preVoteResponse(let response): actions += handlePreVoteResponse(response, from: peer, now: now)
        case .voteResponse(let response): actions += handleVoteResponse(response, from: peer, now: now)
        case .patch(let replication): actions += handleReplication(replication, isSnapshot: false, from: peer, now: now)
        case .snapshot(let replication): actions += handleReplication(replication, isSnapshot: true, from: peer, now: now)
        case .ack(let ack): actions += handleAck(ack, from: peer, now: now)
        case .catchup(let request): actions += handleCatchup(request, from: peer, now: now)
        case .timeoutNow(let messageTerm): actions += handleTimeoutNow(term: messageTerm, from: peer, now: now)
        case .leave(let messageTerm): actions += handleLeave(term: messageTerm, from: peer, now: now)
        case .forwardBootstrap, .forwardBootstrapResult:
            break  // handled by the shell
        }
        return actions
    }

    private mutating func handleState(_ state: PeerStateMessage, from peer: NodeID, now: UInt64) -> [MeshAction] {
        var actions: [MeshAction] = []
        peers[peer]?.state = state
        if let heard = amnesia?[peer] ?? (amnesia != nil ? 0 : nil) {
            amnesia?[peer] = max(heard, state.term)
            actions += clearAmnesiaIfPossible()
        }
        if state.role == .leader, state.upstreamState == .interrupted || state.upstreamState == .starting && !state.upstreamReachable {
            peers[peer]?.lostUpstreamAt = now
        }
        if state.term > term {
            // A higher term always wins; a leader of it is followed at once.
            actions += becomeFollower(term: state.term, leader: state.role == .leader ? peer : nil, now: now,
                                      reason: "\(peer) is in term \(state.term)")
        }
        guard state.term == term else { return actions }
        if state.role == .leader {
            if role == .leader {
                // Two leaders in one term cannot be (votes are durable and counted on a quorum); ignore it.
                return actions
            }
            if role == .preCandidate || role == .candidate || leaderId != peer {
                if role != .witness { role = .follower }
                leaderId = peer
                votes = []
                actions.append(.roleChanged(role: role, term: term, leaderId: peer, reason: "heard the leader"))
            }
            lastLeaderContact = now
            electionDeadline = now + randomElectionWait()
            actions += catchupIfNeeded(now: now)
        } else if role == .leader, state.leaderId == settings.nodeId {
            peers[peer]?.confirmedLeaderAt = now
            if let acked = peers[peer]?.acked {
                peers[peer]?.acked = max(acked, state.applied)
            } else {
                peers[peer]?.acked = state.applied
            }
            if let inFlight = peers[peer]?.snapshotInFlight, state.applied >= inFlight { clearSnapshot(peer) }
            if state.applied == durable, state.data.dataVersion == localData.dataVersion,
               state.data.digest != localData.digest, state.data.hasData, localData.hasData {
                // Same versions, different data: something was missed (deletions, out-of-order timestamps). Only a
                // full data set from the upstream settles it.
                actions += requestFullSync(now: now)
            }
        }
        return actions
    }

    private mutating func handleVoteRequest(_ request: VoteRequest, from peer: NodeID, isPreVote: Bool,
                                            now: UInt64) -> [MeshAction] {
        func reply(_ granted: Bool, _ reason: String?) -> MeshAction {
            // A grant names the term it is for; a refusal carries ours, so a candidate behind us learns it.
            let response = VoteResponse(term: granted ? request.term : term, granted: granted, reason: reason)
            return .send(isPreVote ? .preVoteResponse(response) : .voteResponse(response), to: peer)
        }
        guard settings.isCompatible(with: request.voters) else {
            return [.unsafePeerList(peer: peer, theirs: request.voters), reply(false, "unsafe peer-list change")]
        }
        if request.term < term || (isPreVote && request.term == term) {
            return [reply(false, "stale term")]
        }
        // Stickiness: while a leader is heard (or this node leads), nobody disrupts it, except by a transfer.
        if !request.transfer, hearsLeader(now: now), leaderId != peer {
            return [reply(false, "a leader is heard")]
        }
        // A leaving node still helps the node it hands over to (its vote may be the one that makes the quorum).
        if leaving, !request.transfer { return [reply(false, "leaving")] }
        guard storageHealthy else { return [reply(false, "cannot make a vote durable")] }
        if !isPreVote, amnesia != nil {
            return [reply(false, "restarted without its vote record; waiting to hear every peer")]
        }
        if isPreVote {
            // A pre-vote changes nothing here.
            return [reply(true, nil)]
        }
        var actions: [MeshAction] = []
        if request.term > term {
            actions += becomeFollower(term: request.term, leader: nil, now: now, reason: "vote request from \(peer)")
        }
        guard votedFor == nil || votedFor == peer else {
            return actions + [reply(false, "voted for \(votedFor ?? "?") in term \(term)")]
        }
        votedFor = peer
        electionDeadline = now + randomElectionWait()
        // The grant follows the write: the shell sends it only once the vote is durable.
        actions.append(.persistTermVote(term: term, votedFor: peer))
        actions.append(.send(.voteResponse(VoteResponse(term: term, granted: true)), to: peer))
        return actions
    }

    private mutating func handlePreVoteResponse(_ response: VoteResponse, from peer: NodeID, now: UInt64) -> [MeshAction] {
        if !response.granted, response.term > term {
            return becomeFollower(term: response.term, leader: nil, now: now, reason: "pre-vote refused at term \(response.term)")
        }
        guard role == .preCandidate, response.granted, response.term == term + 1 else { return [] }
        votes.insert(peer)
        guard votes.count >= settings.quorum else { return [] }
        return becomeCandidate(now: now, transfer: false)
    }

    private mutating func handleVoteResponse(_ response: VoteResponse, from peer: NodeID, now: UInt64) -> [MeshAction] {
        if response.term > term {
            return becomeFollower(term: response.term, leader: nil, now: now, reason: "vote refused at term \(response.term)")
        }
        guard role == .candidate, response.granted, response.term == term else { return [] }
        votes.insert(peer)
        guard votes.count >= settings.quorum else { return [] }
        return becomeLeader(now: now)
    }

    private mutating func handleTimeoutNow(term messageTerm: UInt64, from peer: NodeID, now: UInt64) -> [MeshAction] {
        guard messageTerm == term, leaderId == peer, role == .follower, canCampaign else { return [] }
        return becomeCandidate(now: now, transfer: true)
    }

    private mutating func handleLeave(term messageTerm: UInt64, from peer: NodeID, now: UInt64) -> [MeshAction] {
        peers[peer]?.lastHeard = nil
        peers[peer]?.confirmedLeaderAt = nil
        guard peer == leaderId, role != .leader else { return [] }
        return leaderGone(now: now, reason: "\(peer) left")
    }

    // MARK: - Connections

    /// A connection to `peer` came up (after its handshake): it hears this node's state at once, and a campaign in
    /// progress asks it again (it may have restarted and missed the request).
    public mutating func peerConnected(_ peer: NodeID, now: UInt64) -> [MeshAction] {
        var actions = observe(now: now)
        guard peers[peer] != nil else { return actions }
        actions.append(.send(.state(stateMessage), to: peer))
        switch role {
        case .preCandidate:
            actions.append(.send(.preVote(VoteRequest(term: term + 1, voters: settings.voters, transfer: false)), to: peer))
        case .candidate:
            actions.append(.send(.vote(VoteRequest(term: term, voters: settings.voters, transfer: false)), to: peer))
        case .follower, .leader, .witness, .standalone:
            break
        }
        return actions
    }

    /// The connection from `peer` closed (FIN/RST): if it is the leader, its process most likely died. The lease is
    /// void; campaign after a short random delay (0…E/4). Followers still hearing the leader keep refusing, so one
    /// broken link cannot depose a healthy leader.
    public mutating func peerDisconnected(_ peer: NodeID, now: UInt64) -> [MeshAction] {
        var actions = observe(now: now)
        guard peers[peer] != nil else { return actions }
        peers[peer]?.lastHeard = nil
        peers[peer]?.confirmedLeaderAt = nil
        clearSnapshot(peer)
        if peer == leaderId, role == .follower || role == .witness {
            actions += leaderGone(now: now, reason: "connection to the leader \(peer) closed")
        }
        return actions
    }

    private mutating func leaderGone(now: UInt64, reason: String) -> [MeshAction] {
        lastLeaderContact = nil
        leaderId = nil
        electionDeadline = now + rng.next(in: 0..<(settings.electionTimeoutMs / 4 + 1))
        return [.roleChanged(role: role, term: term, leaderId: nil, reason: reason)]
    }

    // MARK: - Upstream

    /// The upstream link's state changed (leader: its relay-proxy connection).
    public mutating func upstreamChanged(_ state: MeshUpstreamState, now: UInt64) -> [MeshAction] {
        var actions = observe(now: now)
        upstreamState = state
        switch state {
        case .interrupted, .starting:
            if role == .leader, upstreamInterruptedSince == nil { upstreamInterruptedSince = now }
        case .stable, .none, .stopped:
            upstreamInterruptedSince = nil
        }
        if state == .stable { upstreamReachable = true }
        if role == .leader { actions += driveTransfer(now: now) }
        return actions
    }

    /// A follower's probe of the upstream (TCP/TLS connect, no sync) succeeded or failed.
    public mutating func upstreamProbe(reachable: Bool) {
        upstreamReachable = reachable
    }

    // MARK: - Storage

    /// featbit.db stopped taking writes, or takes them again. `healthy: true` means the shell has rewritten the whole
    /// state, position included: everything applied is durable.
    public mutating func storageHealthChanged(healthy: Bool) {
        storageHealthy = healthy
        if healthy { durable = applied }
    }

    /// The `(term, votedFor)` write of a `.persistTermVote` failed: the shell dropped the actions after it. This node
    /// refuses votes and does not campaign until storage is healthy again; the vote stays recorded in memory, so it
    /// is never given to someone else in this term.
    public mutating func termVoteWriteFailed(now: UInt64) -> [MeshAction] {
        storageHealthy = false
        if role == .candidate {
            role = .follower
            electionDeadline = now + randomElectionWait()
            return [.roleChanged(role: role, term: term, leaderId: leaderId, reason: "cannot make the vote durable")]
        }
        return []
    }

    // MARK: - Local changes (leader)

    /// Before applying a change of its own source (upstream, bootstrap, data file), the leader takes the position
    /// to commit it at (durable with the data). `nil` when this node does not lead: it must not apply it as its own.
    /// The shell applies one local change at a time.
    public mutating func beginLocalChange() -> MeshPosition? {
        guard role == .leader || role == .standalone else { return nil }
        let position = MeshPosition(term: term, seq: applied.term == term ? applied.seq + 1 : 1)
        pendingLocal = position
        return position
    }

    /// The local change begun at `position` was applied (`changed`: something changed; `durable`: it is on disk).
    /// A leader sends it to every follower that holds data.
    public mutating func endLocalChange(at position: MeshPosition, isFull: Bool, changed: Bool, durable isDurable: Bool,
                                        data: DataSummary, now: UInt64) -> [MeshAction] {
        defer { pendingLocal = nil }
        localData = data
        guard changed, pendingLocal == position, position.term == term,
              role == .leader || role == .standalone, position > applied else { return [] }
        let prevSeq = applied.term == term ? applied.seq : 0
        applied = position
        if isDurable { durable = position }
        if isFull { fullEpoch = position }
        guard role == .leader else { return [] }
        let followers = settings.peers.filter { peers[$0]?.state?.role != .witness }
        if isFull {
            for follower in followers {
                peers[follower]?.snapshotInFlight = position
                peers[follower]?.snapshotSentAt = now
            }
        }
        return [.replicate(ReplicationPlan(position: position, prevSeq: prevSeq, fullEpoch: fullEpoch, isFull: isFull,
                                           followers: followers))]
    }

    /// The data changed outside the replication order (e.g. loaded at start): refresh the summary sent in `STATE`.
    public mutating func localDataChanged(_ data: DataSummary) {
        localData = data
    }

    // MARK: - Replication (follower)

    private mutating func handleReplication(_ message: ReplicationMessage, isSnapshot: Bool, from peer: NodeID,
                                            now: UInt64) -> [MeshAction] {
        var actions: [MeshAction] = []
        let messageTerm = message.position.term
        // The term is the fencing token: a deposed leader's changes are dropped.
        guard messageTerm >= term else { return [] }
        if messageTerm > term {
            actions += becomeFollower(term: messageTerm, leader: peer, now: now, reason: "replication from \(peer)")
        }
        guard role != .witness, role != .standalone, role != .leader else { return actions }
        if role != .follower || leaderId != peer {
            // Only the leader of this term replicates: a (pre-)candidate of the same term follows it.
            role = .follower
            votes = []
            leaderId = peer
            actions.append(.roleChanged(role: role, term: term, leaderId: peer, reason: "replication from the leader"))
        }
        lastLeaderContact = now
        electionDeadline = now + randomElectionWait()
        let inSequence = applied.term == messageTerm && message.prevSeq == applied.seq
        let accept: Bool
        if message.catchup {
            // An answer to our CATCHUP: computed for our position, so it applies whatever arrived since; a stale
            // snapshot (older than what we hold) would delete newer items, so it is dropped.
            accept = !(isSnapshot && message.position < applied)
            catchupRequestedAt = nil
        } else if isSnapshot {
            accept = message.position > applied && message.fullEpoch >= fullEpoch
        } else {
            accept = inSequence
        }
        guard accept else {
            if message.position > applied { actions += requestCatchup(now: now, force: false) }
            return actions
        }
        applied = max(applied, message.position)
        if isSnapshot { fullEpoch = max(fullEpoch, message.fullEpoch) }
        actions.append(.applyReplicated(message, isSnapshot: isSnapshot, from: peer))
        return actions
    }

    /// A replicated change was applied by the shell (`durable`: it and its position are on disk).
    public mutating func replicatedApplied(_ message: ReplicationMessage, durable isDurable: Bool, data: DataSummary,
                                           now: UInt64) -> [MeshAction] {
        localData = data
        guard isDurable else { return [] }
        durable = max(durable, message.position)
        guard role == .follower, let leaderId, term == message.position.term else { return [] }
        // Acknowledged only once durable.
        return [.send(.ack(AckMessage(term: term, applied: durable)), to: leaderId)]
    }

    /// Applying a replicated change failed (its payload did not parse): ask the leader for a catch-up.
    public mutating func replicatedApplyFailed(now: UInt64) -> [MeshAction] {
        applied = durable
        return requestCatchup(now: now, force: true)
    }

    private mutating func catchupIfNeeded(now: UInt64) -> [MeshAction] {
        guard role == .follower, !settings.isWitness, let leaderId, let leaderState = peers[leaderId]?.state,
              leaderState.term == term, leaderState.role == .leader else { return [] }
        if leaderState.applied > applied {
            return requestCatchup(now: now, force: false)
        }
        if leaderState.applied == durable, leaderState.data.hasData, localData.hasData,
           leaderState.data.dataVersion == localData.dataVersion, leaderState.data.digest != localData.digest {
            return requestCatchup(now: now, force: false)
        }
        return []
    }

    private mutating func requestCatchup(now: UInt64, force: Bool) -> [MeshAction] {
        guard let leaderId, role == .follower else { return [] }
        if !force, let last = catchupRequestedAt, now &- last < settings.catchupRetryMs { return [] }
        catchupRequestedAt = now
        return [.requestCatchup(to: leaderId, term: term, applied: durable, fullEpoch: fullEpoch)]
    }

    // MARK: - Replication (leader)

    private mutating func handleAck(_ ack: AckMessage, from peer: NodeID, now: UInt64) -> [MeshAction] {
        guard role == .leader, ack.term == term else { return [] }
        let acked = peers[peer]?.acked ?? .zero
        peers[peer]?.acked = max(acked, ack.applied)
        if let inFlight = peers[peer]?.snapshotInFlight, ack.applied >= inFlight { clearSnapshot(peer) }
        peers[peer]?.confirmedLeaderAt = now
        return driveTransfer(now: now)
    }

    private mutating func handleCatchup(_ request: CatchupRequest, from peer: NodeID, now: UInt64) -> [MeshAction] {
        if request.term > term {
            return becomeFollower(term: request.term, leader: nil, now: now, reason: "catch-up request at term \(request.term)")
        }
        guard role == .leader, request.term == term, localData.hasData else { return [] }
        var actions: [MeshAction] = []
        let kind: CatchupAnswer.Kind
        if !request.data.hasData || request.fullEpoch < fullEpoch {
            kind = .snapshot
        } else if request.data.dataVersion == localData.dataVersion, request.data.digest != localData.digest,
                  request.fullEpoch == fullEpoch {
            kind = .snapshot
        } else {
            kind = .patch(since: request.envs)
            if request.fullEpoch > fullEpoch { actions += requestFullSync(now: now) }
        }
        if kind == .snapshot {
            if let sentAt = peers[peer]?.snapshotSentAt, now &- sentAt < settings.snapshotResendMs {
                return actions  // one is on its way
            }
            peers[peer]?.snapshotInFlight = applied
            peers[peer]?.snapshotSentAt = now
        }
        actions.append(.answerCatchup(CatchupAnswer(follower: peer, kind: kind, position: applied, fullEpoch: fullEpoch)))
        return actions
    }

    private mutating func clearSnapshot(_ peer: NodeID) {
        peers[peer]?.snapshotInFlight = nil
        peers[peer]?.snapshotSentAt = nil
    }

    private mutating func requestFullSync(now: UInt64) -> [MeshAction] {
        guard role == .leader, settings.upstreamDuty else { return [] }
        if let last = lastFullSyncRequestAt, now &- last < 60_000 { return [] }
        lastFullSyncRequestAt = now
        return [.requestUpstreamFullSync]
    }

    // MARK: - Leave and transfer

    /// SIGTERM: a leader hands over to the most up-to-date follower (waiting up to `leaveCatchupMs` for it to catch
    /// up), then everyone says `LEAVE`. `.leaveComplete` tells the shell it may stop.
    public mutating func beginLeave(now: UInt64) -> [MeshAction] {
        guard !leaving else { return [] }
        leaving = true
        var actions = observe(now: now)
        if role == .leader, let target = transferTarget(now: now, requireUpstream: false) {
            transfer = (target, now + settings.leaveCatchupMs, true)
            actions += driveTransfer(now: now)
            return actions
        }
        return actions + finishLeave()
    }

    private mutating func finishLeave() -> [MeshAction] {
        guard !hasLeft else { return [] }
        hasLeft = true
        var actions: [MeshAction] = []
        if role == .leader { actions += stepDownActions(reason: "leaving", newRole: .follower) }
        leaving = true
        transfer = nil
        for peer in settings.peers { actions.append(.send(.leave(term: term), to: peer)) }
        actions.append(.leaveComplete)
        return actions
    }

    /// The follower to hand leadership to: a data node heard within E that is caught up the most (and, for an
    /// upstream-motivated transfer, reaches the upstream and did not lose it recently).
    private func transferTarget(now: UInt64, requireUpstream: Bool) -> NodeID? {
        let candidates = settings.peers.compactMap { peer -> (NodeID, MeshPosition)? in
            guard let view = peers[peer], let state = view.state, isReachable(peer, now: now),
                  state.role != .witness, state.storageHealthy, state.term == term,
                  state.voters == settings.voters || settings.isCompatible(with: state.voters) else { return nil }
            if requireUpstream {
                guard state.upstreamReachable else { return nil }
                if let lost = view.lostUpstreamAt, now &- lost < settings.upstreamLossMemoryMs { return nil }
                // Within a few changes of the leader.
                let acked = view.acked ?? state.applied
                guard acked.term == term, applied.seq <= acked.seq + 3 else { return nil }
            }
            return (peer, view.acked ?? state.applied)
        }
        // Prefer one that reaches the upstream, then the most caught up, then by id for determinism.
        return candidates.max { a, b in
            let ua = peers[a.0]?.state?.upstreamReachable ?? false
            let ub = peers[b.0]?.state?.upstreamReachable ?? false
            return (ua ? 1 : 0, a.1, b.0) < (ub ? 1 : 0, b.1, a.0)
        }?.0
    }

    private mutating func driveTransfer(now: UInt64) -> [MeshAction] {
        guard role == .leader else { return [] }
        if transfer == nil, !leaving, settings.upstreamDuty, let since = upstreamInterruptedSince,
           now &- since >= settings.upstreamTransferAfterMs,
           lastUpstreamTransferAt.map({ now &- $0 >= settings.upstreamTransferIntervalMs }) ?? true,
           let target = transferTarget(now: now, requireUpstream: true) {
            lastUpstreamTransferAt = now
            transfer = (target, now + settings.leaveCatchupMs, false)
        }
        guard let (target, deadline, forLeave) = transfer else { return [] }
        let caughtUp = (peers[target]?.acked ?? .zero) >= durable
        guard caughtUp || now >= deadline else { return [] }
        transfer = nil
        var actions: [MeshAction] = [.send(.timeoutNow(term: term), to: target)]
        if forLeave {
            actions += finishLeave()
        }
        return actions
    }

    // MARK: - Role changes

    private var canCampaign: Bool {
        !settings.isWitness && role != .standalone && role != .leader && storageHealthy && !leaving
            && settings.voters.contains(settings.nodeId) && amnesia == nil
    }

    private mutating func startPreVote(now: UInt64) -> [MeshAction] {
        role = .preCandidate
        votes = [settings.nodeId]
        electionDeadline = now + randomElectionWait()
        var actions: [MeshAction] = [.roleChanged(role: role, term: term, leaderId: nil, reason: "election timeout")]
        leaderId = nil
        lastLeaderContact = nil
        if votes.count >= settings.quorum { return actions + becomeCandidate(now: now, transfer: false) }
        let request = VoteRequest(term: term + 1, voters: settings.voters, transfer: false)
        for peer in settings.peers { actions.append(.send(.preVote(request), to: peer)) }
        return actions
    }

    private mutating func becomeCandidate(now: UInt64, transfer isTransfer: Bool) -> [MeshAction] {
        term += 1
        role = .candidate
        votedFor = settings.nodeId
        leaderId = nil
        lastLeaderContact = nil
        votes = [settings.nodeId]
        electionDeadline = now + randomElectionWait()
        var actions: [MeshAction] = [
            .roleChanged(role: role, term: term, leaderId: nil, reason: isTransfer ? "leadership transfer" : "pre-vote won"),
            // Our own vote is durable before anyone is asked.
            .persistTermVote(term: term, votedFor: settings.nodeId),
        ]
        if votes.count >= settings.quorum { return actions + becomeLeader(now: now) }
        let request = VoteRequest(term: term, voters: settings.voters, transfer: isTransfer)
        for peer in settings.peers { actions.append(.send(.vote(request), to: peer)) }
        return actions
    }

    private mutating func becomeLeader(now: UInt64) -> [MeshAction] {
        role = .leader
        leaderId = settings.nodeId
        becameLeaderAt = now
        // The data held at the start of the term is position (term, 0): followers catch up to it, then follow the
        // term's changes in sequence.
        if durable == applied { durable = MeshPosition(term: term, seq: 0) }
        applied = MeshPosition(term: term, seq: 0)
        transfer = nil
        upstreamInterruptedSince = settings.upstreamDuty ? now : nil
        for peer in settings.peers {
            peers[peer]?.acked = nil
            peers[peer]?.confirmedLeaderAt = nil
        }
        var actions: [MeshAction] = [.roleChanged(role: role, term: term, leaderId: settings.nodeId, reason: "won the election")]
        if settings.upstreamDuty {
            let newestEpoch = peers.values.compactMap { $0.state?.fullEpoch }.max() ?? .zero
            actions.append(.startUpstream(term: term, forceFull: newestEpoch > fullEpoch))
        }
        actions += broadcastState(now: now)
        return actions
    }

    private mutating func becomeFollower(term newTerm: UInt64, leader: NodeID?, now: UInt64, reason: String) -> [MeshAction] {
        var actions: [MeshAction] = []
        if role == .leader {
            actions += stepDownActions(reason: reason, newRole: .follower)
        }
        let termChanged = newTerm != term
        if termChanged {
            term = newTerm
            // An amnesiac node writes its state with the term, so a restart finds it still amnesiac.
            votedFor = amnesia == nil ? nil : Self.amnesiacVote
            // Otherwise best effort: only votes need to be durable for safety (a vote is written with its term).
            actions.append(.persistTermVote(term: term, votedFor: votedFor))
        }
        let oldRole = role
        let oldLeader = leaderId
        role = settings.isWitness ? .witness : .follower
        leaderId = leader
        votes = []
        lastLeaderContact = leader == nil ? nil : now
        electionDeadline = now + randomElectionWait()
        if termChanged || oldRole != role || oldLeader != leader {
            actions.append(.roleChanged(role: role, term: term, leaderId: leader, reason: reason))
        }
        return actions
    }

    /// Check-quorum: a leader that has not been confirmed by a quorum (itself included) within E steps down.
    private mutating func checkQuorum(now: UInt64) -> [MeshAction] {
        guard now &- becameLeaderAt >= settings.electionTimeoutMs else { return [] }
        let confirmed = settings.peers.filter { peer in
            guard let at = peers[peer]?.confirmedLeaderAt else { return false }
            return now &- at < settings.electionTimeoutMs
        }.count + 1
        guard confirmed < settings.quorum else { return [] }
        return stepDown(reason: "lost the quorum (\(confirmed) of \(settings.voters.count) within the election timeout)", now: now)
    }

    private mutating func stepDown(reason: String, now: UInt64) -> [MeshAction] {
        var actions = stepDownActions(reason: reason, newRole: .follower)
        electionDeadline = now + randomElectionWait()
        lastLeaderContact = nil
        actions.append(.roleChanged(role: role, term: term, leaderId: nil, reason: reason))
        return actions
    }

    /// Stepping down closes the upstream first, synchronously, before anything else happens (Nomad/IoTDB lesson).
    private mutating func stepDownActions(reason: String, newRole: MeshRole) -> [MeshAction] {
        role = newRole
        leaderId = nil
        transfer = nil
        upstreamInterruptedSince = nil
        return settings.upstreamDuty ? [.stopUpstream] : []
    }

    private mutating func broadcastState(now: UInt64) -> [MeshAction] {
        nextHeartbeat = now + settings.heartbeatMs
        let state = stateMessage
        return settings.peers.map { .send(.state(state), to: $0) }
    }

    private mutating func randomElectionWait() -> UInt64 {
        let e = settings.electionTimeoutMs
        return rng.next(in: (e + settings.tickMs)..<(2 * e))
    }
}
