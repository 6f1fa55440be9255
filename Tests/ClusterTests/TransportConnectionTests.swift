@testable import Cluster
import NIOCore
import NIOPosix
import Testing

@Suite struct TransportConnectionTests {
    /// Starts one transport per id, each with every other as a peer (addresses filled in once all are bound), runs
    /// `body`, and stops them all.
    static func withMesh(_ ids: [NodeID], secrets: [NodeID: [UInt8]] = [:],
                         configure: (inout PeerTransport.Settings) -> Void = { _ in },
                         _ body: ([NodeID: TransportNode], any EventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var nodes: [NodeID: TransportNode] = [:]
        do {
            for id in ids {
                var settings = TransportTesting.settings(
                    id, peers: Dictionary(uniqueKeysWithValues: ids.filter { $0 != id }.map { ($0, 0) }),
                    secret: secrets[id] ?? TransportTesting.secret)
                configure(&settings)
                nodes[id] = try await TransportNode.start(settings, group: group)
            }
            for (id, node) in nodes {
                for (peer, other) in nodes where peer != id {
                    node.transport.updateAddress(PeerAddress(host: "127.0.0.1", port: other.port), for: peer)
                }
            }
            try await body(nodes, group)
        } catch {
            Issue.record(error)
        }
        for node in nodes.values { await node.transport.stop() }
        try await group.shutdownGracefully()
    }

    static func fullyConnected(_ nodes: [NodeID: TransportNode]) -> Bool {
        nodes.allSatisfy { id, node in
            nodes.keys.filter { $0 != id }.allSatisfy {
                node.transport.reachability[$0] == PeerTransport.Reachability(outbound: true, inbound: true)
            }
        }
    }

    @Test func twoTransportsExchangeMessagesBothWays() async throws {
        try await Self.withMesh(["a", "b"]) { nodes, _ in
            let a = try #require(nodes["a"]), b = try #require(nodes["b"])
            #expect(await TransportTesting.wait { Self.fullyConnected(nodes) })
            #expect(a.events.connected("b", .outbound) == 1 && a.events.connected("b", .inbound) == 1)
            if case .connected(_, _, let voters, let incarnation) = a.events.all.first(where: {
                if case .connected("b", .inbound, _, _) = $0 { true } else { false }
            }) {
                #expect(voters == ["a", "b"])
                #expect(incarnation == b.transport.settings.incarnation)
            }

            for seq in 1...50 {
                #expect(a.transport.send(.state(TransportTesting.state(term: 1, seq: UInt64(seq))), to: "b"))
                #expect(b.transport.send(.ack(AckMessage(term: 1, applied: MeshPosition(term: 1, seq: UInt64(seq)))), to: "a"))
            }
            #expect(await TransportTesting.wait { b.events.messages.count == 50 && a.events.messages.count == 50 })
            // In order, and from the right peer.
            #expect(b.events.messages.map(\.0) == (1...50).map { .state(TransportTesting.state(term: 1, seq: UInt64($0))) })
            #expect(b.events.messages.allSatisfy { $0.1 == "a" })
            #expect(a.events.messages.allSatisfy { $0.1 == "b" })
            #expect(a.events.refusals.isEmpty && b.events.refusals.isEmpty)
        }
    }

    @Test func threeTransportsFormAFullMesh() async throws {
        try await Self.withMesh(["a", "b", "c"]) { nodes, _ in
            #expect(await TransportTesting.wait { Self.fullyConnected(nodes) })
            for (id, node) in nodes {
                for peer in nodes.keys where peer != id {
                    #expect(node.transport.send(.leave(term: UInt64(id.unicodeScalars.first!.value)), to: peer))
                }
            }
            #expect(await TransportTesting.wait { nodes.values.allSatisfy { $0.events.messages.count == 2 } })
            for (id, node) in nodes {
                let senders = Set(node.events.messages.map(\.1))
                #expect(senders == Set(nodes.keys.filter { $0 != id }))
                for (message, from) in node.events.messages {
                    #expect(message == .leave(term: UInt64(from.unicodeScalars.first!.value)))
                }
            }
        }
    }

    @Test func aPeerWithTheWrongSecretIsRefusedOnBothSidesAndNeverHeard() async throws {
        try await Self.withMesh(["a", "b"], secrets: ["b": Array("not-the-secret".utf8)]) { nodes, _ in
            let a = try #require(nodes["a"]), b = try #require(nodes["b"])
            // Both keep redialing with backoff; each side must have refused (or been refused by) the other.
            #expect(await TransportTesting.wait {
                a.events.refusals.contains { $0.reason == "wrong proof (AUTH)" && $0.peer == "b" }
                    && b.events.refusals.contains { $0.reason == "wrong proof (AUTH)" && $0.peer == "a" }
            })
            #expect(!a.transport.send(.leave(term: 1), to: "b"))
            #expect(!b.transport.send(.leave(term: 1), to: "a"))
            try await Task.sleep(for: .milliseconds(300))
            for node in [a, b] {
                #expect(node.events.messages.isEmpty)
                #expect(node.events.count { if case .connected = $0 { true } else { false } } == 0)
            }
            #expect(a.transport.reachability["b"] == PeerTransport.Reachability(outbound: false, inbound: false))
        }
    }

    @Test func aTransportNotInThePeerListIsRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = try await TransportNode.start(TransportTesting.settings("a", peers: ["b": 0]), group: group)
        let c = try await TransportNode.start(TransportTesting.settings("c", peers: ["a": a.port]), group: group)
        #expect(await TransportTesting.wait {
            a.events.refusals.contains { $0.reason == "unknown node id" && $0.peer == "c" } && !c.events.refusals.isEmpty
        })
        #expect(c.events.refusals.allSatisfy { $0.peer == "a" })
        #expect(!c.transport.send(.leave(term: 1), to: "a"))
        #expect(a.events.messages.isEmpty && a.events.connected("c", .inbound) == 0)
        await c.transport.stop()
        await a.transport.stop()
        try await group.shutdownGracefully()
    }

    /// Stopping a transport closes its connections: the peer sees both directions go (the inbound one is the core's
    /// "process died" signal), redials with backoff, and reconnects once a new process listens on the same port.
    @Test func aStoppedPeerIsReportedAndRedialedWhenItComesBack() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let a = try await TransportNode.start(TransportTesting.settings("a", peers: ["b": 0]), group: group)
        var bSettings = TransportTesting.settings("b", peers: ["a": a.port])
        let b = try await TransportNode.start(bSettings, group: group)
        a.transport.updateAddress(PeerAddress(host: "127.0.0.1", port: b.port), for: "b")
        var restarted: TransportNode?
        do {
            #expect(await TransportTesting.wait { Self.fullyConnected(["a": a, "b": b]) })
            await b.transport.stop()
            #expect(await TransportTesting.wait {
                a.events.disconnected("b", .inbound) == 1 && a.events.disconnected("b", .outbound) == 1
            })
            #expect(a.transport.reachability["b"] == PeerTransport.Reachability(outbound: false, inbound: false))
            #expect(!a.transport.send(.leave(term: 1), to: "b"))
            // No events from a stopped transport, and stop is idempotent.
            let eventsAfterStop = b.events.all.count
            await b.transport.stop()

            // Redials against a closed port back off; then the "restarted" node listens on the same port.
            try await Task.sleep(for: .milliseconds(300))
            bSettings.listenPort = b.port
            bSettings.incarnation += 1
            let b2 = try await TransportNode.start(bSettings, group: group)
            restarted = b2
            #expect(await TransportTesting.wait { Self.fullyConnected(["a": a, "b": b2]) })
            #expect(a.events.connected("b", .outbound) == 2 && a.events.connected("b", .inbound) == 2)
            let lastInbound = a.events.all.last { if case .connected("b", .inbound, _, _) = $0 { true } else { false } }
            #expect(lastInbound == .connected(peer: "b", direction: .inbound, voters: ["a", "b"],
                                              incarnation: bSettings.incarnation))
            #expect(a.transport.send(.leave(term: 2), to: "b"))
            #expect(await TransportTesting.wait { b2.events.messages.count == 1 })
            #expect(b.events.all.count == eventsAfterStop)
        } catch {
            Issue.record(error)
        }
        await restarted?.transport.stop()
        await a.transport.stop()
        try await group.shutdownGracefully()
    }

    /// A 2 MiB snapshot goes on the bulk connection and arrives intact, while STATE keeps flowing, in order, on
    /// the control connection.
    @Test func aLargeSnapshotArrivesOverTheBulkConnectionWhileStateKeepsFlowing() async throws {
        try await Self.withMesh(["a", "b"]) { nodes, _ in
            let a = try #require(nodes["a"]), b = try #require(nodes["b"])
            #expect(await TransportTesting.wait { Self.fullyConnected(nodes) })
            #expect(a.transport.reachability["b"]?.bulk == false)

            // Pseudo-random bytes (xorshift): no pattern a framing bug could preserve by accident, and cheap to make.
            var x: UInt64 = 0x9E37_79B9_7F4A_7C15
            let payload = (0..<(2 << 20)).map { _ in
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                return UInt8(truncatingIfNeeded: x)
            }
            let snapshot = MeshMessage.snapshot(ReplicationMessage(
                position: MeshPosition(term: 3, seq: 10), prevSeq: 0, fullEpoch: MeshPosition(term: 3, seq: 10),
                catchup: true, payload: payload))

            var seq: UInt64 = 0
            func sendState() {
                seq += 1
                _ = a.transport.send(.state(TransportTesting.state(term: 3, seq: seq)), to: "b")
            }
            for _ in 0..<5 { sendState() }
            #expect(a.transport.send(snapshot, to: "b"))
            for _ in 0..<5 { sendState() }
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, !b.events.messages.contains(where: { $0.0.frameType == 0x21 }) {
                sendState()
                try await Task.sleep(for: .milliseconds(5))
            }
            for _ in 0..<5 { sendState() }
            #expect(await TransportTesting.wait { b.events.messages.filter { $0.0.frameType == 0x10 }.count == Int(seq) })

            let received = b.events.messages
            let snapshots = received.filter { $0.0.frameType == 0x21 }
            #expect(snapshots.count == 1)
            #expect(snapshots.first?.0 == snapshot, "the 2 MiB payload arrives byte for byte")
            let states: [UInt64] = received.compactMap { if case .state(let s) = $0.0 { s.applied.seq } else { nil } }
            #expect(states == Array(1...seq), "every STATE arrives, in order")
            #expect(a.transport.reachability["b"]?.bulk == true)
            // Bulk connections are not control connections: no extra connected events.
            #expect(b.events.connected("a", .inbound) == 1)

            // A second snapshot reuses the bulk connection.
            #expect(a.transport.send(snapshot, to: "b"))
            #expect(await TransportTesting.wait { b.events.messages.filter { $0.0.frameType == 0x21 }.count == 2 })
        }
    }

    @Test func anIdleBulkConnectionIsClosedAndRedialedOnDemand() async throws {
        try await Self.withMesh(["a", "b"], configure: { $0.bulkIdleTimeout = .seconds(1) }) { nodes, _ in
            let a = try #require(nodes["a"]), b = try #require(nodes["b"])
            #expect(await TransportTesting.wait { Self.fullyConnected(nodes) })
            let snapshot = MeshMessage.snapshot(ReplicationMessage(position: MeshPosition(term: 1, seq: 1), prevSeq: 0,
                                                                   fullEpoch: .zero, catchup: true, payload: [1, 2, 3]))
            #expect(a.transport.send(snapshot, to: "b"))
            // The snapshot arriving proves the bulk connection was up (snapshots travel on nothing else); whether it
            // is still up when we look depends on how long the machine took, so only its closing is checked.
            #expect(await TransportTesting.wait { b.events.messages.count == 1 })
            #expect(await TransportTesting.wait(timeout: .seconds(15)) { a.transport.reachability["b"]?.bulk == false })
            // The control connections are untouched and nothing was reported for the bulk one.
            #expect(Self.fullyConnected(nodes))
            #expect(b.events.disconnected("a", .inbound) == 0)
            #expect(a.transport.send(snapshot, to: "b"))
            #expect(await TransportTesting.wait { b.events.messages.count == 2 })
        }
    }

    @Test func sendDropsWhatItCannotDeliver() async throws {
        try await Self.withMesh(["a", "b"], configure: { $0.maxFrameBytes = 1 << 16 }) { nodes, _ in
            let a = try #require(nodes["a"])
            #expect(!a.transport.send(.leave(term: 1), to: "nobody"))
            #expect(!a.transport.send(.leave(term: 1), to: "a"))
            #expect(await TransportTesting.wait { Self.fullyConnected(nodes) })
            let tooBig = MeshMessage.patch(ReplicationMessage(position: .zero, prevSeq: 0, fullEpoch: .zero,
                                                              catchup: false, payload: Array(repeating: 0, count: 1 << 16)))
            #expect(!a.transport.send(tooBig, to: "b"))
            #expect(a.transport.send(.leave(term: 1), to: "b"))
        }
    }

    @Test func lifecycleMisuseIsHandled() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let never = PeerTransport(settings: TransportTesting.settings("a", peers: ["b": 0]), eventLoopGroup: group,
                                  logger: TransportTesting.logger("never"), onEvent: { _ in })
        await never.stop()
        await never.stop()
        await #expect(throws: PeerTransportError.alreadyStarted) { _ = try await never.start() }

        var bad = TransportTesting.settings("a", peers: ["a": 1])
        let invalid = PeerTransport(settings: bad, eventLoopGroup: group, logger: TransportTesting.logger("bad"),
                                    onEvent: { _ in })
        await #expect(throws: PeerTransportError.self) { _ = try await invalid.start() }
        bad = TransportTesting.settings("a", peers: ["b": 1], secret: [])
        let noSecret = PeerTransport(settings: bad, eventLoopGroup: group, logger: TransportTesting.logger("bad"),
                                     onEvent: { _ in })
        await #expect(throws: PeerTransportError.invalidSettings("secret is empty")) { _ = try await noSecret.start() }

        let twice = try await TransportNode.start(TransportTesting.settings("a", peers: ["b": 0]), group: group)
        await #expect(throws: PeerTransportError.alreadyStarted) { _ = try await twice.transport.start() }
        await twice.transport.stop()
        try await group.shutdownGracefully()
    }

    // MARK: - Against a fake peer that the transport dials

    /// A listener posing as "b": completes the handshake as acceptor, then lets the test misbehave.
    static func withFakePeer(_ configure: (inout PeerTransport.Settings) -> Void = { _ in },
                             _ body: (TransportNode, TransportAcceptedConnections) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let accepted = TransportAcceptedConnections()
        let listener = try await TransportRawConnection.listen(group: group) { raw in accepted.append(raw) }
        var settings = TransportTesting.settings("a", peers: ["b": listener.localAddress?.port ?? 0])
        configure(&settings)
        let a = try await TransportNode.start(settings, group: group)
        do {
            try await body(a, accepted)
        } catch {
            Issue.record(error)
        }
        await a.transport.stop()
        for raw in accepted.all { await raw.close() }
        try? await listener.close()
        try await group.shutdownGracefully()
    }

    /// Plays acceptor "b" on `raw`: reads the dialer's HELLO, answers HELLO and AUTH, checks the dialer's AUTH.
    static func acceptAsB(_ raw: TransportRawConnection) async throws {
        var machine = MeshHandshake(role: .acceptor, identity: TransportTesting.identity("b", peers: ["a"]),
                                    expectedPeer: nil, bulk: false, nonce: MeshHandshake.makeNonce())
        try await raw.write(MeshFrameCodec.encode(machine.hello))
        let hello = try #require(try await raw.readFrame())
        let auth = try #require(TransportHandshakeTests.auth(machine.receive(hello)))
        try await raw.write(MeshFrameCodec.encode(auth))
        let theirAuth = try #require(try await raw.readFrame())
        let outcome = machine.receive(theirAuth)
        guard case .established(let dialer) = outcome else {
            Issue.record("handshake with the transport failed: \(outcome)")
            return
        }
        #expect(dialer.nodeId == "a")
    }

    /// A peer must send on its own connection: a message on ours is a protocol violation that closes it (and the
    /// transport redials).
    @Test func aMessageOnAnOutboundConnectionClosesIt() async throws {
        try await Self.withFakePeer { a, accepted in
            #expect(await TransportTesting.wait { !accepted.all.isEmpty })
            let raw = try #require(accepted.all.first)
            try await Self.acceptAsB(raw)
            #expect(await TransportTesting.wait { a.events.connected("b", .outbound) == 1 })
            try await raw.write(MeshFrameCodec.encode(.leave(term: 1)))
            #expect(await raw.waitClosed())
            #expect(await TransportTesting.wait { a.events.disconnected("b", .outbound) == 1 })
            #expect(a.events.messages.isEmpty)
            // Redialed.
            #expect(await TransportTesting.wait { accepted.all.count >= 2 })
        }
    }

    /// A peer that stops reading: once the unsent bytes would pass the high-water mark the connection is closed,
    /// `send` goes back to returning false, and nothing blocks.
    @Test func aPeerThatDoesNotReadIsDisconnectedAtTheHighWaterMark() async throws {
        try await Self.withFakePeer({ $0.outboundHighWaterBytes = 1 << 20 }) { a, accepted in
            #expect(await TransportTesting.wait { !accepted.all.isEmpty })
            let raw = try #require(accepted.all.first)
            try await Self.acceptAsB(raw)
            #expect(await TransportTesting.wait { a.events.connected("b", .outbound) == 1 })
            try await raw.channel.setOption(ChannelOptions.autoRead, value: false).get()

            let patch = MeshMessage.patch(ReplicationMessage(position: .zero, prevSeq: 0, fullEpoch: .zero, catchup: false,
                                                             payload: Array(repeating: 0x42, count: 256 << 10)))
            var sent = 0
            let deadline = ContinuousClock.now + .seconds(20)
            // Kernel buffers on loopback take several MiB before NIO has to hold anything; 1 GiB is far past that.
            // Paced so the event loop keeps up: what fills up is the socket, not the hop to the loop.
            while sent < 4096, ContinuousClock.now < deadline, a.events.disconnected("b", .outbound) == 0 {
                if a.transport.send(patch, to: "b") { sent += 1 }
                try await Task.sleep(for: .milliseconds(1))
            }
            #expect(await TransportTesting.wait { a.events.disconnected("b", .outbound) == 1 })
            #expect(sent > 8, "the kernel's buffers filled before the transport's own mark was passed")
            #expect(!a.transport.send(patch, to: "b"))
        }
    }

    /// The socket options a mesh connection gets, read back from a live socket.
    @Test func meshSocketsGetTheirTCPOptions() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try await TransportRawConnection.listen(group: group) { _ in }
        var settings = TransportTesting.settings("a", peers: [:])
        settings.userTimeout = .milliseconds(4500)
        let channel = try await MeshSocketOptions.apply(settings, to: ClientBootstrap(group: group))
            .connect(host: "127.0.0.1", port: listener.localAddress?.port ?? 0).get()
        #expect(try await channel.getOption(ChannelOptions.tcpOption(.tcp_nodelay)).get() != 0)
        #expect(try await channel.getOption(ChannelOptions.socketOption(.so_keepalive)).get() != 0)
        #if os(Linux)
        #expect(try await channel.getOption(MeshSocketOptions.tcp(4)).get() == 5)
        #expect(try await channel.getOption(MeshSocketOptions.tcp(5)).get() == 1)
        #expect(try await channel.getOption(MeshSocketOptions.tcp(6)).get() == 3)
        #expect(try await channel.getOption(MeshSocketOptions.tcp(18)).get() == 4500)
        #endif
        try await channel.close()
        try await listener.close()
        try await group.shutdownGracefully()
    }
}
