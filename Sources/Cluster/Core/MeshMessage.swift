/// A node's id in the mesh (`NodeId`); peers are identified by the id they proved in the handshake, never by address.
public typealias NodeID = String

/// A replication position: the leader's term and the sequence number of a change within that term. Positions order
/// first by term, then by sequence (a change of a later term is always newer).
public struct MeshPosition: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var term: UInt64
    public var seq: UInt64

    public static let zero = MeshPosition(term: 0, seq: 0)

    public init(term: UInt64, seq: UInt64) {
        self.term = term
        self.seq = seq
    }

    public static func < (a: MeshPosition, b: MeshPosition) -> Bool {
        (a.term, a.seq) < (b.term, b.seq)
    }

    public var description: String { "\(term).\(seq)" }
}

/// A node's role as shown in status and sent in `STATE` (cluster-design §3.1).
public enum MeshRole: String, Sendable, Codable {
    case follower
    /// Asking for pre-votes: its term is not raised yet.
    case preCandidate = "pre-candidate"
    case candidate
    case leader
    /// Votes and heartbeats, never leads, holds no data, serves no SDKs.
    case witness
    /// No peers: leader of itself, no election.
    case standalone

    /// The role name of the status contract (`leader`, `follower`, `candidate`, `standalone`, `witness`).
    public var statusName: String { self == .preCandidate ? "candidate" : rawValue }
}

/// The upstream link as a peer reports it (spec §7.2 states plus whether a probe reaches the server).
public enum MeshUpstreamState: String, Sendable, Codable {
    case none = "None"
    case starting = "Starting"
    case stable = "Stable"
    case interrupted = "Interrupted"
    case stopped = "Stopped"
}

/// A summary of the data a node holds, as it reports it in `STATE` and `CATCHUP`.
public struct DataSummary: Sendable, Hashable, Codable {
    /// Max `updatedAt` over everything held.
    public var dataVersion: Int64
    /// Digest over every environment's sorted `(id, updatedAt)` pairs and its secrets (hex, 16 characters).
    public var digest: String
    /// Whether a data set is held at all.
    public var hasData: Bool

    public static let empty = DataSummary(dataVersion: 0, digest: "", hasData: false)

    public init(dataVersion: Int64, digest: String, hasData: Bool) {
        self.dataVersion = dataVersion
        self.digest = digest
        self.hasData = hasData
    }
}

/// `STATE`, sent by every node to every peer every heartbeat interval: the leader's is the heartbeat, a follower's
/// to the leader is its acknowledgement, and everyone's feeds liveness and status (cluster-design §3.3).
public struct PeerStateMessage: Sendable, Hashable, Codable {
    public var term: UInt64
    public var role: MeshRole
    public var leaderId: NodeID?
    /// The position this node has made durable.
    public var applied: MeshPosition
    /// The position of the last full replace (an upstream `rp_full`, a bootstrap) this node holds.
    public var fullEpoch: MeshPosition
    public var data: DataSummary
    public var upstreamState: MeshUpstreamState
    /// Whether this node's probe reaches the FeatBit server (followers probe without syncing).
    public var upstreamReachable: Bool
    /// This node's voter list (itself and its `Peers`), sorted; the peer-list guard of §3.9 compares them.
    public var voters: [NodeID]
    /// Random per process start: a change tells peers the node restarted.
    public var incarnation: UInt64
    /// Whether this node's featbit.db takes writes (a node that cannot write refuses to vote and does not ACK).
    public var storageHealthy: Bool

    public init(term: UInt64, role: MeshRole, leaderId: NodeID?, applied: MeshPosition, fullEpoch: MeshPosition,
                data: DataSummary, upstreamState: MeshUpstreamState, upstreamReachable: Bool, voters: [NodeID],
                incarnation: UInt64, storageHealthy: Bool) {
        self.term = term
        self.role = role
        self.leaderId = leaderId
        self.applied = applied
        self.fullEpoch = fullEpoch
        self.data = data
        self.upstreamState = upstreamState
        self.upstreamReachable = upstreamReachable
        self.voters = voters
        self.incarnation = incarnation
        self.storageHealthy = storageHealthy
    }
}

/// `PRE_VOTE` and `VOTE`: a request for a vote in `term`.
public struct VoteRequest: Sendable, Hashable, Codable {
    /// For a pre-vote, the term the candidate would campaign in (its own + 1; not adopted by anyone).
    public var term: UInt64
    /// The candidate's voter list (peer-list guard).
    public var voters: [NodeID]
    /// A leadership transfer (`TIMEOUT_NOW`): granted even while a leader is heard.
    public var transfer: Bool

    public init(term: UInt64, voters: [NodeID], transfer: Bool) {
        self.term = term
        self.voters = voters
        self.transfer = transfer
    }
}

/// `PRE_VOTE_RESP` and `VOTE_RESP`. A rejection carries the responder's term, so a node with a lower term learns it
/// (etcd #8243).
public struct VoteResponse: Sendable, Hashable, Codable {
    public var term: UInt64
    public var granted: Bool
    public var reason: String?

    public init(term: UInt64, granted: Bool, reason: String? = nil) {
        self.term = term
        self.granted = granted
        self.reason = reason
    }
}

/// `PATCH` and `SNAPSHOT`: one change (or a catch-up answer) from the leader of `position.term`.
public struct ReplicationMessage: Sendable, Hashable, Codable {
    /// The position the follower reaches by applying this message.
    public var position: MeshPosition
    /// The sequence the follower must already hold (same term) for an ordinary patch; ignored for catch-up answers.
    public var prevSeq: UInt64
    /// The leader's full epoch; a snapshot carries its own.
    public var fullEpoch: MeshPosition
    /// An answer to `CATCHUP`: applied whatever the follower's position (the leader computed it for that position).
    public var catchup: Bool
    /// The data: for a patch an `rp_patch`-shaped body, for a snapshot an `rp_full`-shaped body (opaque to the core).
    public var payload: [UInt8]

    public init(position: MeshPosition, prevSeq: UInt64, fullEpoch: MeshPosition, catchup: Bool, payload: [UInt8]) {
        self.position = position
        self.prevSeq = prevSeq
        self.fullEpoch = fullEpoch
        self.catchup = catchup
        self.payload = payload
    }
}

/// `ACK`: sent by a follower after the change is durable in its featbit.db.
public struct AckMessage: Sendable, Hashable, Codable {
    public var term: UInt64
    public var applied: MeshPosition

    public init(term: UInt64, applied: MeshPosition) {
        self.term = term
        self.applied = applied
    }
}

/// One environment's version, as data-sync requests carry it.
public struct EnvironmentVersion: Sendable, Hashable, Codable {
    public var envId: String
    public var timestamp: Int64

    public init(envId: String, timestamp: Int64) {
        self.envId = envId
        self.timestamp = timestamp
    }
}

/// `CATCHUP`: "send me what I miss", by per-environment timestamps (FeatBit's own data-sync idea).
public struct CatchupRequest: Sendable, Hashable, Codable {
    public var term: UInt64
    public var applied: MeshPosition
    public var fullEpoch: MeshPosition
    public var data: DataSummary
    public var envs: [EnvironmentVersion]

    public init(term: UInt64, applied: MeshPosition, fullEpoch: MeshPosition, data: DataSummary,
                envs: [EnvironmentVersion]) {
        self.term = term
        self.applied = applied
        self.fullEpoch = fullEpoch
        self.data = data
        self.envs = envs
    }
}

/// `FORWARD_BOOTSTRAP`: a bootstrap posted to a follower, sent to the leader (it takes effect on every node).
public struct ForwardedBootstrap: Sendable, Hashable, Codable {
    /// Chosen by the sender to match the answer.
    public var requestId: UInt64
    public var body: [UInt8]

    public init(requestId: UInt64, body: [UInt8]) {
        self.requestId = requestId
        self.body = body
    }
}

/// The leader's answer to `FORWARD_BOOTSTRAP`.
public struct ForwardedBootstrapResult: Sendable, Hashable, Codable {
    public var requestId: UInt64
    /// HTTP status the leader answered with.
    public var status: Int
    public var body: [UInt8]

    public init(requestId: UInt64, status: Int, body: [UInt8]) {
        self.requestId = requestId
        self.status = status
        self.body = body
    }
}

/// Every message of the mesh protocol after the handshake (cluster-design §3.3). Messages are one-way; a "reply" is a
/// message on the replier's own connection.
public enum MeshMessage: Sendable, Hashable {
    case state(PeerStateMessage)
    case preVote(VoteRequest)
    case preVoteResponse(VoteResponse)
    case vote(VoteRequest)
    case voteResponse(VoteResponse)
    case patch(ReplicationMessage)
    case snapshot(ReplicationMessage)
    case ack(AckMessage)
    case catchup(CatchupRequest)
    /// Leadership transfer: campaign now, skipping pre-vote and stickiness.
    case timeoutNow(term: UInt64)
    /// Graceful shutdown: peers mark the sender down at once.
    case leave(term: UInt64)
    case forwardBootstrap(ForwardedBootstrap)
    case forwardBootstrapResult(ForwardedBootstrapResult)

    /// The frame type byte of each message (cluster-design §3.2).
    public var frameType: UInt8 {
        switch self {
        case .state: return 0x10
        case .preVote: return 0x11
        case .preVoteResponse: return 0x12
        case .vote: return 0x13
        case .voteResponse: return 0x14
        case .patch: return 0x20
        case .snapshot: return 0x21
        case .ack: return 0x22
        case .catchup: return 0x23
        case .timeoutNow: return 0x30
        case .leave: return 0x31
        case .forwardBootstrap: return 0x40
        case .forwardBootstrapResult: return 0x41
        }
    }

    /// The term the message carries (every message carries one except the bootstrap forwarding).
    public var term: UInt64? {
        switch self {
        case .state(let m): return m.term
        case .preVote(let m), .vote(let m): return m.term
        case .preVoteResponse(let m), .voteResponse(let m): return m.term
        case .patch(let m), .snapshot(let m): return m.position.term
        case .ack(let m): return m.term
        case .catchup(let m): return m.term
        case .timeoutNow(let term), .leave(let term): return term
        case .forwardBootstrap, .forwardBootstrapResult: return nil
        }
    }

    /// A short name for logs and metrics.
    public var name: String {
        switch self {
        case .state: return "STATE"
        case .preVote: return "PRE_VOTE"
        case .preVoteResponse: return "PRE_VOTE_RESP"
        case .vote: return "VOTE"
        case .voteResponse: return "VOTE_RESP"
        case .patch: return "PATCH"
        case .snapshot: return "SNAPSHOT"
        case .ack: return "ACK"
        case .catchup: return "CATCHUP"
        case .timeoutNow: return "TIMEOUT_NOW"
        case .leave: return "LEAVE"
        case .forwardBootstrap: return "FORWARD_BOOTSTRAP"
        case .forwardBootstrapResult: return "FORWARD_BOOTSTRAP_RESULT"
        }
    }
}
