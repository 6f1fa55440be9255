import Metrics

/// The transport's metrics, created once: frames by type each way, handshake failures, and whether each peer's
/// control connections are up. Names carry the agent's `featbit_agent_` prefix like its other metrics.
struct MeshTransportMetrics: Sendable {
    private let sent: [UInt8: Counter]
    private let received: [UInt8: Counter]
    let handshakeFailures: Counter
    private let connected: [PeerKey: Gauge]

    private struct PeerKey: Hashable {
        var peer: NodeID
        var direction: PeerTransportEvent.Direction
    }

    /// Frame types by metric label; every `MeshMessage.frameType` plus the handshake's.
    static let typeNames: [UInt8: String] = [
        MeshFrame.helloType: "HELLO", MeshFrame.authType: "AUTH",
        0x10: "STATE", 0x11: "PRE_VOTE", 0x12: "PRE_VOTE_RESP", 0x13: "VOTE", 0x14: "VOTE_RESP",
        0x20: "PATCH", 0x21: "SNAPSHOT", 0x22: "ACK", 0x23: "CATCHUP", 0x30: "TIMEOUT_NOW", 0x31: "LEAVE",
        0x40: "FORWARD_BOOTSTRAP", 0x41: "FORWARD_BOOTSTRAP_RESULT",
    ]

    init(peers: some Sequence<NodeID>) {
        sent = Self.typeNames.mapValues { Counter(label: "featbit_agent_mesh_frames_sent_total", dimensions: [("type", $0)]) }
        received = Self.typeNames.mapValues {
            Counter(label: "featbit_agent_mesh_frames_received_total", dimensions: [("type", $0)])
        }
        handshakeFailures = Counter(label: "featbit_agent_mesh_handshake_failures_total")
        var connected: [PeerKey: Gauge] = [:]
        for peer in peers {
            for direction in [PeerTransportEvent.Direction.inbound, .outbound] {
                let gauge = Gauge(label: "featbit_agent_mesh_peer_connected",
                                  dimensions: [("peer", peer), ("direction", direction.rawValue)])
                gauge.record(0)
                connected[PeerKey(peer: peer, direction: direction)] = gauge
            }
        }
        self.connected = connected
    }

    func frameSent(type: UInt8) { sent[type]?.increment() }
    func frameReceived(type: UInt8) { received[type]?.increment() }

    func peer(_ peer: NodeID, direction: PeerTransportEvent.Direction, connected up: Bool) {
        connected[PeerKey(peer: peer, direction: direction)]?.record(up ? 1 : 0)
    }
}
