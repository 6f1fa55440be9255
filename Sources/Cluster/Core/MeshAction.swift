/// What the mesh core asks its shell to do. The shell carries the actions out in order.
public enum MeshAction: Sendable, Equatable {
    /// Send a message to one peer (dropped by the transport if the peer is not connected).
    case send(MeshMessage, to: NodeID)
    /// Make `(term, votedFor)` durable. The actions after it in the same batch may only be carried out once the write
    /// succeeded (they include the vote it records); if it fails, the shell drops them and calls
    /// `MeshCore.termVoteWriteFailed`.
    case persistTermVote(term: UInt64, votedFor: NodeID?)
    /// Leader only: open the upstream (relay-proxy) connection for this term. `forceFull` asks the server for a
    /// full data set (a peer holds a newer full epoch than this node).
    case startUpstream(term: UInt64, forceFull: Bool)
    /// Close the upstream connection and wait for it to be closed before carrying out the next action: a node that
    /// steps down holds no upstream socket before it acts on anything else.
    case stopUpstream
    /// Leader only: ask the upstream for a full data set on the open connection (two nodes' data disagree at equal
    /// versions, or a follower holds a newer full epoch).
    case requestUpstreamFullSync
    /// Leader only: send the change just committed at `position` to `followers` (a patch of its items, or a snapshot
    /// of the whole data set when `isFull`).
    case replicate(ReplicationPlan)
    /// Leader only: answer a follower's `CATCHUP`.
    case answerCatchup(CatchupAnswer)
    /// Follower only: ask the leader for what this node misses; the shell adds its data summary and versions.
    case requestCatchup(to: NodeID, term: UInt64, applied: MeshPosition, fullEpoch: MeshPosition)
    /// Follower only: apply a replicated change (in the order received), make it durable together with its
    /// position, then call `MeshCore.replicatedApplied`.
    case applyReplicated(ReplicationMessage, isSnapshot: Bool, from: NodeID)
    /// The role, term or leader changed (log line, metrics, readiness).
    case roleChanged(role: MeshRole, term: UInt64, leaderId: NodeID?, reason: String)
    /// A vote or pre-vote was refused because the voter lists differ by more than one node.
    case unsafePeerList(peer: NodeID, theirs: [NodeID])
    /// Graceful leave finished: the shell may stop the transport.
    case leaveComplete
}

/// A committed local change to send to followers.
public struct ReplicationPlan: Sendable, Equatable {
    public var position: MeshPosition
    public var prevSeq: UInt64
    public var fullEpoch: MeshPosition
    public var isFull: Bool
    public var followers: [NodeID]

    public init(position: MeshPosition, prevSeq: UInt64, fullEpoch: MeshPosition, isFull: Bool, followers: [NodeID]) {
        self.position = position
        self.prevSeq = prevSeq
        self.fullEpoch = fullEpoch
        self.isFull = isFull
        self.followers = followers
    }
}

/// How the leader answers a follower's `CATCHUP`.
public struct CatchupAnswer: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The items newer than the follower's per-environment timestamps.
        case patch(since: [EnvironmentVersion])
        /// The whole data set (replace).
        case snapshot
    }

    public var follower: NodeID
    public var kind: Kind
    /// The leader's position the answer brings the follower to.
    public var position: MeshPosition
    public var fullEpoch: MeshPosition

    public init(follower: NodeID, kind: Kind, position: MeshPosition, fullEpoch: MeshPosition) {
        self.follower = follower
        self.kind = kind
        self.position = position
        self.fullEpoch = fullEpoch
    }
}
