/// What the peer transport reports to the node that owns it. Delivered on the transport's event loop, in order per
/// connection; the callback must not block.
public enum PeerTransportEvent: Sendable, Hashable {
    /// Which way a connection was dialed, seen from this node.
    public enum Direction: String, Sendable, Hashable {
        /// Dialed by the peer: the connection this node reads the peer's messages from.
        case inbound
        /// Dialed by this node: the connection this node sends its messages to the peer on.
        case outbound
    }

    /// A message from an authenticated peer (it arrives on the peer's outbound connection, our inbound one).
    case message(MeshMessage, from: NodeID)
    /// A control connection finished its handshake. `voters` and `incarnation` are what the peer announced in its
    /// HELLO; a voter list different from ours is accepted and left to the core to flag (cluster-design §3.9).
    case connected(peer: NodeID, direction: Direction, voters: [NodeID], incarnation: UInt64)
    /// An authenticated control connection closed. The inbound one closing (FIN/RST) is the core's fast path for "the
    /// leader process died" (cluster-design §3.4). Bulk connections report neither `connected` nor `disconnected`.
    case disconnected(peer: NodeID, direction: Direction)
    /// A handshake failed: the reason also went to the log (event `mesh-handshake-refused`). `peer` is the node id the
    /// other side claimed (inbound) or the one this node meant to dial (outbound); nil when not known.
    case handshakeRefused(reason: String, peer: NodeID?)
}
