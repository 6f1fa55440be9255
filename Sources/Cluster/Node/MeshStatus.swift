import AgentCore

/// The `cluster` section of `/api/public/proxy/status` (agent-interface.md), as one immutable value the HTTP handlers
/// read without touching the mesh's event loop.
public struct MeshStatus: Sendable, Equatable {
    public struct Peer: Sendable, Equatable {
        public var nodeId: NodeID
        public var address: String
        /// Heard within the election timeout, or a connection to it is up.
        public var reachable: Bool
        public var dataVersion: Int64?
        public var role: String?
        public var term: UInt64?
        public var applied: MeshPosition?
        /// How many changes of the leader's term it has not made durable (known on the leader and for the leader).
        public var lag: UInt64?
        /// Whether its peer list equals ours.
        public var samePeerList: Bool?
        /// Its upstream link as it last reported it (`Stable` on a leader in sync; only while reachable).
        public var upstream: String?
    }

    public var nodeId: NodeID
    public var role: String
    public var term: UInt64
    public var leaderId: NodeID?
    public var caughtUp: Bool
    public var applied: MeshPosition
    /// How many changes of the leader's term this node has not made durable: 0 on the leader, nil when no leader is
    /// heard or the leader's position is of another term (a catch-up is then under way).
    public var lag: UInt64?
    public var fullEpoch: MeshPosition
    public var storageHealthy: Bool
    public var peers: [Peer]

    static func make(core: MeshCore, now: UInt64, addresses: [NodeID: String], reachability: [NodeID: Bool]) -> MeshStatus {
        let reference = core.isLeader ? core.applied : core.leaderId.flatMap { core.peers[$0]?.state?.applied }
        func lag(of applied: MeshPosition?) -> UInt64? {
            guard let reference, let applied, applied.term == reference.term else { return nil }
            return reference.seq &- min(reference.seq, applied.seq)
        }
        let peers = core.settings.peers.map { id -> Peer in
            let view = core.peers[id]
            let state = view?.state
            let applied = core.isLeader ? (view?.acked ?? state?.applied) : state?.applied
            let reachable = core.isReachable(id, now: now) || (reachability[id] ?? false)
            // An unreachable peer's role is unknown: its last word ("leader") would only mislead.
            return Peer(nodeId: id, address: addresses[id] ?? "", reachable: reachable,
                        dataVersion: state?.data.dataVersion, role: reachable ? state?.role.statusName : nil, term: state?.term,
                        applied: applied, lag: lag(of: applied), samePeerList: state.map { $0.voters == core.settings.voters },
                        upstream: reachable ? state?.upstreamState.rawValue : nil)
        }
        return MeshStatus(nodeId: core.settings.nodeId, role: core.role.statusName, term: core.term,
                          leaderId: core.hearsLeader(now: now) ? core.leaderId : nil, caughtUp: core.isCaughtUp(now: now),
                          applied: core.isLeader ? core.applied : core.durable,
                          lag: core.isLeader ? 0 : core.hearsLeader(now: now) ? lag(of: core.durable) : nil, fullEpoch: core.fullEpoch,
                          storageHealthy: core.storageHealthy, peers: peers)
    }

    public var json: JSONValue {
        .object([
            "nodeId": .string(nodeId), "role": .string(role), "term": .integer(Int64(term)),
            "leaderId": leaderId.map { .string($0) } ?? .null, "caughtUp": .bool(caughtUp),
            "applied": .string(applied.description), "lag": lag.map { .integer(Int64($0)) } ?? .null,
            "fullEpoch": .string(fullEpoch.description),
            "storageHealthy": .bool(storageHealthy),
            "peers": .array(peers.map { peer in
                .object([
                    "nodeId": .string(peer.nodeId), "address": .string(peer.address), "reachable": .bool(peer.reachable),
                    "dataVersion": peer.dataVersion.map { .integer($0) } ?? .null,
                    "role": peer.role.map { .string($0) } ?? .null,
                    "term": peer.term.map { .integer(Int64($0)) } ?? .null,
                    "applied": peer.applied.map { .string($0.description) } ?? .null,
                    "lag": peer.lag.map { .integer(Int64($0)) } ?? .null,
                    "samePeerList": peer.samePeerList.map { .bool($0) } ?? .null,
                    "upstream": peer.upstream.map { .string($0) } ?? .null,
                ])
            }),
        ])
    }
}
