import AgentCore
@testable import Cluster
import Testing

/// The `cluster` section of status as the status page reads it: this node's own replication lag, each peer's lag
/// and upstream link, and nothing stale presented as current.
@Suite struct MeshStatusTests {
    static let e = MeshSettings.lanElectionTimeoutMs

    @Test func aFollowerReportsItsOwnLagBehindTheLeaderItHears() throws {
        var core = MeshCoreTests.core(durable: .init(term: 1, votedFor: nil, applied: MeshPosition(term: 1, seq: 7), fullEpoch: .zero))
        _ = core.receive(MeshCoreTests.state(term: 1, role: .leader, leader: "n2", applied: MeshPosition(term: 1, seq: 10)),
                         from: "n2", now: 100)
        let status = MeshStatus.make(core: core, now: 100, addresses: ["n2": "10.0.0.2:7100"], reachability: [:])
        #expect(status.role == "follower" && status.leaderId == "n2")
        #expect(status.lag == 3)
        let leader = try #require(status.peers.first { $0.nodeId == "n2" })
        #expect(leader.lag == 0 && leader.upstream == "Stable" && leader.role == "leader" && leader.reachable == true)
        let silent = try #require(status.peers.first { $0.nodeId == "n3" })
        #expect(silent.lag == nil && silent.upstream == nil && silent.reachable == false)
        #expect(status.json["lag"] == .integer(3))
        #expect(status.json["peers"]?.arrayValue?.first?["upstream"] == .string("Stable"))

        // The leader falls silent: no leader, no lag figure measured against what it said long ago.
        let later = MeshStatus.make(core: core, now: 100 + 2 * Self.e, addresses: [:], reachability: [:])
        #expect(later.leaderId == nil && later.lag == nil)
        #expect(later.json["lag"] == .null)
        #expect(later.peers.first { $0.nodeId == "n2" }?.upstream == nil)
    }

    @Test func theLeaderHasNoLag() {
        var core = MeshCoreTests.core()
        let now = MeshCoreTests.leader(&core)
        let status = MeshStatus.make(core: core, now: now, addresses: [:], reachability: [:])
        #expect(status.role == "leader" && status.lag == 0 && status.leaderId == "n1")
    }
}
