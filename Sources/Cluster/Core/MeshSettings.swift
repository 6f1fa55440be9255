/// What the mesh core needs to know about its configuration; built once from `AgentConfiguration`.
public struct MeshSettings: Sendable, Equatable {
    public var nodeId: NodeID
    /// This node and its `Peers`, sorted: the voter list the quorum is counted against (never the reachable set).
    public var voters: [NodeID]
    /// A vote-only node: it votes and heartbeats but never leads and holds no data.
    public var isWitness: Bool
    /// `ClusterHeartbeatMs`: how often `STATE` goes to every peer.
    public var heartbeatMs: UInt64
    /// `ClusterElectionTimeoutMs` (E): elections start after a random wait in [E + tick, 2E) without a leader.
    public var electionTimeoutMs: UInt64
    /// Whether the leader holds the upstream connection (auto mode).
    public var upstreamDuty: Bool
    /// A leader whose upstream has been interrupted this long hands over to a follower that reaches it.
    public var upstreamTransferAfterMs: UInt64 = 30_000
    /// At most one upstream-motivated transfer per this interval.
    public var upstreamTransferIntervalMs: UInt64 = 120_000
    /// Never hand leadership to a node that lost the upstream within this window.
    public var upstreamLossMemoryMs: UInt64 = 300_000
    /// On leave, how long the leader waits for the transfer target to catch up.
    public var leaveCatchupMs: UInt64 = 2_000
    /// A follower re-asks for a catch-up after this long without an answer.
    public var catchupRetryMs: UInt64 = 2_000
    /// A snapshot sent to a follower is not sent again (for its repeated catch-ups) until it reports the snapshot's
    /// position, its connection closes, or this long passed (max(5 s, 4 E)): a large snapshot on a slow link takes a
    /// while, and a second copy queued behind it would only overflow the connection's buffer.
    public var snapshotResendMs: UInt64

    /// The WAN-safe default profile: heartbeat 500 ms, election timeout 5 s.
    public static let defaultHeartbeatMs: UInt64 = 500
    public static let defaultElectionTimeoutMs: UInt64 = 5_000
    /// The LAN profile: 200 ms / 1.5 s.
    public static let lanHeartbeatMs: UInt64 = 200
    public static let lanElectionTimeoutMs: UInt64 = 1_500

    public init(nodeId: NodeID, peers: [NodeID], isWitness: Bool = false,
                heartbeatMs: UInt64 = defaultHeartbeatMs, electionTimeoutMs: UInt64 = defaultElectionTimeoutMs,
                upstreamDuty: Bool) {
        self.nodeId = nodeId
        self.voters = Array(Set(peers + [nodeId])).sorted()
        self.isWitness = isWitness
        self.heartbeatMs = heartbeatMs
        self.electionTimeoutMs = electionTimeoutMs
        self.upstreamDuty = upstreamDuty
        self.snapshotResendMs = max(5_000, 4 * electionTimeoutMs)
    }

    /// The tick of the timers: a quarter of the heartbeat, between 10 and 100 ms (100 ms WAN, 50 ms LAN).
    public var tickMs: UInt64 { min(100, max(10, heartbeatMs / 4)) }

    /// ⌊N/2⌋ + 1 of this node's own voter list.
    public var quorum: Int { voters.count / 2 + 1 }

    /// The peers (voters other than this node).
    public var peers: [NodeID] { voters.filter { $0 != nodeId } }

    /// The peer-list guard of cluster-design §3.9: votes are only granted or counted between nodes whose voter lists
    /// differ by at most one node (a rolling change adds or removes one node at a time).
    public func isCompatible(with otherVoters: [NodeID]) -> Bool {
        Set(voters).symmetricDifference(otherVoters).count <= 1
    }
}
