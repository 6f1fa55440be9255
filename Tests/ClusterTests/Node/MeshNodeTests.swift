import AgentCore
import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Three real `MeshNode`s in one process, over loopback TCP with the real transport and stores (manual mode: no
/// upstream): one leader; a change of the leader reaches every follower's store; a bootstrap posted to a follower is
/// applied through the leader; a stopped leader is replaced and the mesh goes on replicating.
@Suite(.serialized) struct MeshNodeTests {
    /// A journal that keeps nothing but reports writes durable (the followers acknowledge).
    final class MemoryJournal: ChangeJournal {
        func persist(_ change: AppliedChange, metadata: [String: String?]) -> Bool { true }
        func persistMetadata(_ metadata: [String: String?]) -> Bool { true }
    }

    struct TestNode {
        let id: NodeID
        let node: MeshNode
        let store: DataStore
    }

    /// The demo data set with every `updatedAt` moved to `minute` past 09:00 on 2026-11-01.
    static func dataSet(minute: Int) throws -> [EnvironmentData] {
        let text = DemoDataSet.json.replacingOccurrences(
            of: "2026-11-01T09:00:00.000Z", with: String(format: "2026-11-01T09:%02d:00.000Z", minute))
        return try DataSetParser.parseBootstrap(try JSONValue.parse(Array(text.utf8)))
    }

    /// `count` distinct ports that are free now, chosen below the kernel's ephemeral range. The nodes bind them only
    /// after the first node has started dialling the others, and a port from the ephemeral range (what binding port 0
    /// hands out) can by then be the source port of one of those dials or of another test's connection: a fresh-clone
    /// CI run failed once with "Address already in use" that way.
    static func freePorts(_ count: Int) throws -> [Int] {
        let range = ((try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? "")
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        let lower = 10_000
        let upper = max(lower + 1_000, (range.first ?? 32_768) - 1)
        var ports: [Int] = []
        for _ in 0..<1_000 where ports.count < count {
            let port = Int.random(in: lower..<upper)
            if !ports.contains(port), canBind(port) { ports.append(port) }
        }
        guard ports.count == count else { throw NoFreePorts(description: "no \(count) free ports in \(lower)..<\(upper)") }
        return ports
    }

    struct NoFreePorts: Error, CustomStringConvertible {
        let description: String
    }

    /// Whether 127.0.0.1:`port` can be bound now (without SO_REUSEADDR, so a port in TIME_WAIT is refused too).
    static func canBind(_ port: Int) -> Bool {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return false }
        defer { close(s) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) } } == 0
    }

    static func startMesh(directory: String) async throws -> [TestNode] {
        let ids = ["n1", "n2", "n3"]
        let ports = try freePorts(3)
        var logger = Logger(label: "mesh-test")
        logger.logLevel = .warning
        var nodes: [TestNode] = []
        for (index, id) in ids.enumerated() {
            let peers = ids.enumerated().filter { $0.element != id }
            let settings = MeshSettings(nodeId: id, peers: peers.map(\.element), heartbeatMs: 100, electionTimeoutMs: 600,
                                        upstreamDuty: false)
            let transport = PeerTransport.Settings(
                nodeId: id, clusterId: "test", secret: Array("a-test-secret".utf8), listenHost: "127.0.0.1",
                listenPort: ports[index],
                peers: Dictionary(uniqueKeysWithValues: peers.map { ($0.element, PeerAddress(host: "127.0.0.1", port: ports[$0.offset])) }),
                voters: settings.voters, incarnation: UInt64(index + 1))
            let store = DataStore(journal: MemoryJournal())
            let node = MeshNode(settings: .init(mesh: settings, transport: transport, peerAddresses: [:],
                                                voteRecordPath: "\(directory)/\(id).vote"),
                                store: store, applied: .zero, fullEpoch: .zero, status: AgentStatusBoard(mode: .manual),
                                upstream: nil, logger: logger)
            node.setBootstrapHandler { body in
                guard let environments = try? DataSetParser.parseBootstrap(try JSONValue.parse(body)) else { return (400, []) }
                switch await node.applyLocal(.replace(environments)) {
                case .applied: return (200, Array("applied".utf8))
                case .notLeader: return (503, [])
                }
            }
            nodes.append(TestNode(id: id, node: node, store: store))
        }
        for node in nodes { try await node.node.start() }
        return nodes
    }

    /// Waits (bounded) until `condition` holds.
    static func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(what)")
        return false
    }

    static func leader(of nodes: [TestNode]) -> TestNode? {
        let leaders = nodes.filter { $0.node.currentStatus.role == "leader" }
        guard leaders.count == 1, let leader = leaders.first else { return nil }
        let term = leader.node.currentStatus.term
        guard nodes.allSatisfy({ $0.node.currentStatus.leaderId == leader.id && $0.node.currentStatus.term == term }) else {
            return nil
        }
        return leader
    }

    @Test func aMeshElectsReplicatesForwardsAndFailsOver() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let all = try await Self.startMesh(directory: directory)
        var nodes = all
        do {
            #expect(await Self.eventually("one leader followed by all") { Self.leader(of: nodes) != nil })
            let leader = try #require(Self.leader(of: nodes))

            // The leader's change reaches every follower's store.
            guard case .applied(let outcome) = await leader.node.applyLocal(.replace(try Self.dataSet(minute: 1))) else {
                Issue.record("the leader did not apply its change")
                return
            }
            let version = try #require(outcome.change?.snapshot.version)
            #expect(await Self.eventually("the snapshot on every node") { nodes.allSatisfy { $0.store.snapshot.version == version } })
            #expect(await Self.eventually("followers caught up") { nodes.allSatisfy { $0.node.currentStatus.caughtUp } })

            // A follower does not apply a change of its own; a bootstrap it forwards is applied by the leader.
            let follower = try #require(nodes.first { $0.id != leader.id })
            guard case .notLeader(let leaderId) = await follower.node.applyLocal(.replace(try Self.dataSet(minute: 2))) else {
                Issue.record("a follower applied a change as its own")
                return
            }
            #expect(leaderId == leader.id)
            let body = Array(DemoDataSet.json.replacingOccurrences(of: "2026-11-01T09:00:00.000Z", with: "2026-11-01T09:03:00.000Z").utf8)
            let answer = await follower.node.forwardBootstrap(body)
            #expect(answer?.status == 200)
            let third = try #require(try Self.dataSet(minute: 3).first?.flags.first?.updatedAt)
            #expect(await Self.eventually("the forwarded bootstrap on every node") { nodes.allSatisfy { $0.store.snapshot.version == third } })

            // The leader stops: the other two elect a new one, which replicates.
            await leader.node.stop()
            nodes.removeAll { $0.id == leader.id }
            #expect(await Self.eventually("a new leader") { Self.leader(of: nodes) != nil })
            let next = try #require(Self.leader(of: nodes))
            #expect(next.node.currentStatus.term > leader.node.currentStatus.term)
            _ = await next.node.applyLocal(.upsert(try Self.dataSet(minute: 4)))
            let fourth = try #require(try Self.dataSet(minute: 4).first?.flags.first?.updatedAt)
            #expect(await Self.eventually("the new leader's change on the other node") { nodes.allSatisfy { $0.store.snapshot.version == fourth } })
        } catch {
            for node in all { await node.node.stop() }
            throw error
        }
        for node in all { await node.node.stop() }
    }

    @Test func aForwardThatTimesOutLeavesTheOthersWaiting() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let nodes = try await Self.startMesh(directory: directory)
        do {
            #expect(await Self.eventually("one leader followed by all") { Self.leader(of: nodes) != nil })
            let leader = try #require(Self.leader(of: nodes))
            // The leader answers "slow" never in time and "fast" after 800 ms.
            leader.node.setBootstrapHandler { body in
                try? await Task.sleep(for: String(decoding: body, as: UTF8.self) == "slow" ? .seconds(5) : .milliseconds(800))
                return (200, body)
            }
            let follower = try #require(nodes.first { $0.id != leader.id })
            async let slow = follower.node.forwardBootstrap(Array("slow".utf8), timeout: .milliseconds(300))
            async let fast = follower.node.forwardBootstrap(Array("fast".utf8), timeout: .seconds(10))
            let (slowAnswer, fastAnswer) = await (slow, fast)
            #expect(slowAnswer == nil, "the slow one timed out")
            #expect(fastAnswer?.status == 200 && fastAnswer?.body == Array("fast".utf8),
                    "the other request still got the leader's answer")
        } catch {
            for node in nodes { await node.node.stop() }
            throw error
        }
        for node in nodes { await node.node.stop() }
    }
}
