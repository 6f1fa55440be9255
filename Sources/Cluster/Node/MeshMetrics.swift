import Metrics

/// The mesh's metrics (cluster-design §3.12).
struct MeshMetrics: Sendable {
    let term = Gauge(label: "mesh_term")
    let isLeader = Gauge(label: "mesh_is_leader")
    let electionsStarted = Counter(label: "mesh_elections_total", dimensions: [("result", "started")])
    let electionsWon = Counter(label: "mesh_elections_total", dimensions: [("result", "won")])
    let leaderChanges = Counter(label: "mesh_leader_changes_total")
    let upstreamConnections = Gauge(label: "mesh_upstream_connections")
    let snapshotBytes = Counter(label: "mesh_snapshot_bytes_total")
    let dbWriteErrors = Counter(label: "mesh_db_write_errors_total")
    let leaderless = Gauge(label: "mesh_leaderless")
    private let lag: [String: Gauge]
    private let reachable: [String: Gauge]

    init(peers: [String]) {
        lag = Dictionary(uniqueKeysWithValues: peers.map { ($0, Gauge(label: "mesh_replication_lag_seq", dimensions: [("peer", $0)])) })
        reachable = Dictionary(uniqueKeysWithValues: peers.map { ($0, Gauge(label: "mesh_peer_reachable", dimensions: [("peer", $0)])) })
    }

    func record(_ status: MeshStatus, core: MeshCore) {
        term.record(Int64(status.term))
        isLeader.record(core.isLeader ? 1 : 0)
        leaderless.record(status.leaderId == nil ? 1 : 0)
        for peer in status.peers {
            reachable[peer.nodeId]?.record(peer.reachable ? 1 : 0)
            if let value = peer.lag { lag[peer.nodeId]?.record(Int64(value)) }
        }
    }
}
