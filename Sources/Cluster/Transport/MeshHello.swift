/// `HELLO` (frame type 0x01): who this side is and its challenge for the other side (cluster-design §3.2).
struct MeshHello: Sendable, Hashable, Codable {
    /// The mesh protocol version; this build speaks 1 only.
    var proto: Int
    var clusterId: String
    var nodeId: NodeID
    /// Random per process start: a change tells the peer this node restarted.
    var incarnation: UInt64
    /// The sender's voter list (itself and its peers), sorted.
    var voters: [NodeID]
    /// 32 random bytes, lower-case hex: the other side's proof covers it, so a proof cannot be replayed.
    var nonce: String
    /// Set by a dialer opening the extra connection for snapshots (cluster-design §3.2); an acceptor sends false.
    var bulk: Bool
}

/// `AUTH` (frame type 0x02): the sender's proof that it holds the cluster secret, bound to both nonces, both node
/// ids and the sender's role (see `MeshHandshake.proof`).
struct MeshAuth: Sendable, Hashable, Codable {
    /// HMAC-SHA256, lower-case hex.
    var hmac: String
}
