import Cluster
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Layer 0 of the fault plan (cluster-design §4.2): thousands of seeded runs of N cores under delay, loss,
/// duplication, reordering, partitions, pauses, crashes with and without durable state, and disk failures.
@Suite struct MeshSimulationTests {
    static func lan(_ id: NodeID, _ peers: [NodeID]) -> MeshSettings {
        MeshSettings(nodeId: id, peers: peers, heartbeatMs: MeshSettings.lanHeartbeatMs,
                     electionTimeoutMs: MeshSettings.lanElectionTimeoutMs, upstreamDuty: true)
    }

    /// The chaos run of a seed: every fault at once; 5 nodes for every fourth seed, a lost disk on every third restart.
    static func chaos(seed: UInt64) -> MeshSimulation {
        var faults = MeshSimulation.Faults()
        faults.lossRate = 0.05
        faults.duplicateRate = 0.05
        faults.delay = 1...40
        faults.crashRatePerSecond = 0.03
        faults.pauseRatePerSecond = 0.02
        faults.partitionRatePerSecond = 0.15
        faults.diskFailureRatePerSecond = 0.02
        faults.crashAfterVoteRate = 0.1
        faults.restartKeepsDisk = seed % 3 != 0
        return MeshSimulation(seed: seed, nodeCount: seed % 4 == 0 ? 5 : 3, faults: faults, settings: lan)
    }

    /// Seeds per batch; CI runs every batch (10,000 seeds for liveness, more under chaos).
    static let batches = 0..<10

    /// Once a majority is connected, a leader within 3 election timeouts in at least 99.9 % of seeds, and always
    /// within 10: all nodes start at once (fresh, no vote records), 1 % loss, 1-10 ms delay.
    @Test(arguments: batches)
    func leaderWithinThreeElectionTimeouts(batch: Int) {
        var slow: [UInt64] = []
        var never: [UInt64] = []
        let seeds = UInt64(batch * 1_000)..<UInt64(batch * 1_000 + 1_000)
        for seed in seeds {
            var faults = MeshSimulation.Faults()
            faults.lossRate = 0.01
            faults.delay = 1...10
            let sim = MeshSimulation(seed: seed, nodeCount: 3, faults: faults, settings: Self.lan)
            sim.start()
            let e = sim.electionTimeout
            guard let took = sim.timeToStableLeader(from: 0, deadline: 10 * e) else { never.append(seed); continue }
            if took > 3 * e { slow.append(seed) }
            #expect(sim.violations.isEmpty, "\(sim.violations)")
        }
        #expect(never.isEmpty, "no leader within 10 election timeouts for seeds \(never)")
        // 99.9 % of 1,000 seeds: at most one slow seed per batch.
        #expect(slow.count <= 1, "leader took more than 3 election timeouts for seeds \(slow)")
    }

    /// Election safety, term fencing and data monotonicity under every fault at once; after healing, one leader, at
    /// most 2 upstream connections ever, and every node's data equal to the upstream's.
    @Test(arguments: batches)
    func chaosKeepsInvariantsAndConverges(batch: Int) {
        let seeds = UInt64(100_000 + batch * 200)..<UInt64(100_000 + batch * 200 + 200)
        for seed in seeds {
            let sim = Self.chaos(seed: seed)
            sim.start()
            sim.scheduleChaos(until: 20_000)
            sim.run(until: 20_000)
            sim.healAndSettle(for: 12_000)
            #expect(sim.violations.isEmpty, "seed \(seed): \(sim.violations.prefix(3))")
            #expect(sim.stableLeader() != nil, "seed \(seed): no stable leader after healing")
            let digests = Set(sim.digests.values)
            #expect(digests == [sim.digest(sim.truth)], "seed \(seed): data did not converge: \(sim.digests)")
            #expect(sim.maxUpstreamConnections <= 2, "seed \(seed): \(sim.maxUpstreamConnections) upstream connections")
        }
    }

    /// The checker has teeth: with a restart that forgets its vote (the vote was never made durable) the simulation
    /// finds two leaders in one term.
    @Test func forgettingTheVoteIsCaught() {
        var caught: UInt64?
        for seed in UInt64(0)..<3_000 {
            var faults = MeshSimulation.Faults()
            faults.delay = 1...40
            faults.lossRate = 0.1
            faults.crashRatePerSecond = 0.2
            faults.crashAfterVoteRate = 0.5
            faults.partitionRatePerSecond = 0.3
            faults.forgetVoteOnRestart = true
            let sim = MeshSimulation(seed: seed, nodeCount: 3, faults: faults, settings: Self.lan)
            sim.start()
            sim.scheduleChaos(until: 30_000)
            sim.run(until: 30_000)
            if sim.violations.contains(where: { $0.message.contains("two leaders") }) { caught = seed; break }
        }
        #expect(caught != nil, "a vote that is not durable went unnoticed in 3,000 seeds")
        print("forgotten vote caught at seed \(caught.map(String.init) ?? "-")")
    }

    /// A debugging aid, not a check: prints the trace of one chaos seed (`MESH_SEED=N swift test --filter traceOneSeed`).
    @Test(.enabled(if: Environment.get("MESH_SEED") != nil, "set MESH_SEED to trace one chaos seed"))
    func traceOneSeed() throws {
        let seed = try #require(Environment.get("MESH_SEED").flatMap { UInt64($0) })
        let sim = Self.chaos(seed: seed)
        sim.trace = []
        sim.start()
        sim.scheduleChaos(until: 20_000)
        sim.run(until: 20_000)
        sim.trace?.append("---- heal")
        sim.healAndSettle(for: 12_000)
        print(sim.trace!.joined(separator: "\n"))
        for id in sim.ids {
            let n = sim.nodes[id]!
            print(id, n.core.map { "\($0.role) t\($0.term) leader=\($0.leaderId ?? "-") applied=\($0.applied) durable=\($0.durable) epoch=\($0.fullEpoch) hasData=\($0.localData.hasData) up=\(n.upstreamConnected)" } ?? "down", sim.digest(n.items))
        }
        print("truth", sim.digest(sim.truth), sim.violations)
    }
}

enum Environment {
    static func get(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
