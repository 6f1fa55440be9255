@testable import Cluster
import NIOCore
import NIOPosix
import Testing

@Suite struct TransportHandshakeTests {
    // MARK: - The handshake machine, without sockets

    static func frame(_ hello: MeshHello) -> MeshFrame {
        var buffer = MeshFrameCodec.encode(hello)
        return try! MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 16)!
    }

    static func frame(_ auth: MeshAuth) -> MeshFrame {
        var buffer = MeshFrameCodec.encode(auth)
        return try! MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 16)!
    }

    static func machines(dialerSecret: [UInt8] = TransportTesting.secret,
                         acceptorSecret: [UInt8] = TransportTesting.secret) -> (MeshHandshake, MeshHandshake) {
        let dialer = MeshHandshake(role: .dialer, identity: TransportTesting.identity("a", peers: ["b"], secret: dialerSecret),
                                   expectedPeer: "b", bulk: false, nonce: MeshHandshake.makeNonce())
        let acceptor = MeshHandshake(role: .acceptor,
                                     identity: TransportTesting.identity("b", peers: ["a"], secret: acceptorSecret),
                                     expectedPeer: nil, bulk: false, nonce: MeshHandshake.makeNonce())
        return (dialer, acceptor)
    }

    static func auth(_ action: MeshHandshake.Action) -> MeshAuth? {
        if case .sendAuth(let auth) = action { return auth }
        return nil
    }

    static func refusal(_ action: MeshHandshake.Action) -> String? {
        if case .refuse(let reason, _) = action { return reason }
        return nil
    }

    @Test func bothSidesEstablishWithTheSameSecret() throws {
        var (dialer, acceptor) = Self.machines()
        let dialerAuth = try #require(Self.auth(dialer.receive(Self.frame(acceptor.hello))))
        let acceptorAuth = try #require(Self.auth(acceptor.receive(Self.frame(dialer.hello))))
        #expect(dialerAuth != acceptorAuth, "each role proves something different")
        #expect(acceptor.receive(Self.frame(dialerAuth)) == .established(dialer.hello))
        #expect(dialer.receive(Self.frame(acceptorAuth)) == .established(acceptor.hello))
        #expect(dialer.isEstablished && acceptor.isEstablished)
    }

    @Test func aWrongSecretIsRefusedOnBothSides() throws {
        var (dialer, acceptor) = Self.machines(dialerSecret: Array("other-secret".utf8))
        let dialerAuth = try #require(Self.auth(dialer.receive(Self.frame(acceptor.hello))))
        let acceptorAuth = try #require(Self.auth(acceptor.receive(Self.frame(dialer.hello))))
        #expect(Self.refusal(acceptor.receive(Self.frame(dialerAuth))) == "wrong proof (AUTH)")
        #expect(Self.refusal(dialer.receive(Self.frame(acceptorAuth))) == "wrong proof (AUTH)")
    }

    /// A dialer without the secret echoes the acceptor's own proof back: the acceptor checks for a dialer proof.
    @Test func aReflectedProofIsRefused() throws {
        var (dialer, acceptor) = Self.machines()
        let acceptorAuth = try #require(Self.auth(acceptor.receive(Self.frame(dialer.hello))))
        #expect(Self.refusal(acceptor.receive(Self.frame(acceptorAuth))) == "wrong proof (AUTH)")
        // The other way round too.
        var (dialer2, acceptor2) = Self.machines()
        let dialerAuth = try #require(Self.auth(dialer2.receive(Self.frame(acceptor2.hello))))
        #expect(Self.refusal(dialer2.receive(Self.frame(dialerAuth))) == "wrong proof (AUTH)")
    }

    /// A HELLO that echoes this side's own nonce back is refused before any proof is computed.
    @Test func aReflectedNonceIsRefused() {
        var (dialer, acceptor) = Self.machines()
        var hello = dialer.hello
        hello.nonce = acceptor.hello.nonce
        #expect(Self.refusal(acceptor.receive(Self.frame(hello))) == "nonce reflected")
    }

    @Test func aProofThatIsNotHexOrHasTheWrongLengthIsRefused() throws {
        for bad in ["", "zz", String(repeating: "0", count: 63), String(repeating: "00", count: 31), "ä"] {
            var (dialer, acceptor) = Self.machines()
            _ = acceptor.receive(Self.frame(dialer.hello))
            #expect(Self.refusal(acceptor.receive(Self.frame(MeshAuth(hmac: bad)))) == "wrong proof (AUTH)")
        }
    }

    @Test(arguments: [
        ("proto", "unsupported proto 2"),
        ("cluster", "different clusterId"),
        ("self", "peer claims this node's own id"),
        ("unknown", "unknown node id"),
        ("nonce", "invalid nonce"),
    ])
    func badHellosAreRefused(_ change: String, _ reason: String) {
        var (_, acceptor) = Self.machines()
        var hello = MeshHandshake(role: .dialer, identity: TransportTesting.identity("a", peers: ["b"]),
                                  expectedPeer: "b", bulk: false, nonce: MeshHandshake.makeNonce()).hello
        switch change {
        case "proto": hello.proto = 2
        case "cluster": hello.clusterId = "other-cluster"
        case "self": hello.nodeId = "b"
        case "unknown": hello.nodeId = "mallory"
        case "nonce": hello.nonce = String(repeating: "AB", count: 32)
        default: Issue.record("unknown change")
        }
        #expect(acceptor.receive(Self.frame(hello)) == .refuse(reason: reason, peer: hello.nodeId))
    }

    @Test func theDialerRefusesAPeerOtherThanTheOneItDialed() {
        var dialer = MeshHandshake(role: .dialer, identity: TransportTesting.identity("a", peers: ["b", "c"]),
                                   expectedPeer: "b", bulk: false, nonce: MeshHandshake.makeNonce())
        let other = MeshHandshake(role: .acceptor, identity: TransportTesting.identity("c", peers: ["a"]),
                                  expectedPeer: nil, bulk: false, nonce: MeshHandshake.makeNonce())
        #expect(dialer.receive(Self.frame(other.hello)) == .refuse(reason: "dialed b but reached c", peer: "c"))
    }

    @Test func framesOutOfOrderAreRefused() throws {
        var (dialer, acceptor) = Self.machines()
        #expect(Self.refusal(acceptor.receive(Self.frame(MeshAuth(hmac: "00")))) == "AUTH before HELLO")

        (dialer, acceptor) = Self.machines()
        var state = MeshFrameCodec.encode(.leave(term: 1))
        let message = try #require(try MeshFrameCodec.readFrame(from: &state, maxFrameBytes: 1 << 16))
        #expect(Self.refusal(acceptor.receive(message)) == "message before the handshake")

        (dialer, acceptor) = Self.machines()
        _ = acceptor.receive(Self.frame(dialer.hello))
        #expect(Self.refusal(acceptor.receive(Self.frame(dialer.hello))) == "second HELLO")

        (dialer, acceptor) = Self.machines()
        _ = acceptor.receive(Self.frame(dialer.hello))
        #expect(Self.refusal(acceptor.receive(message)) == "message before AUTH")
    }

    @Test func aDifferentVoterListIsAccepted() throws {
        var (dialer, acceptor) = Self.machines()
        let dialerIdentity = TransportTesting.identity("a", peers: ["b", "z"])
        dialer = MeshHandshake(role: .dialer, identity: dialerIdentity, expectedPeer: "b", bulk: true,
                               nonce: MeshHandshake.makeNonce())
        #expect(dialer.hello.voters == ["a", "b", "z"])
        #expect(dialer.hello.bulk)
        let dialerAuth = try #require(Self.auth(dialer.receive(Self.frame(acceptor.hello))))
        _ = acceptor.receive(Self.frame(dialer.hello))
        #expect(acceptor.receive(Self.frame(dialerAuth)) == .established(dialer.hello))
    }

    @Test func theProofInputSeparatesFieldsAndNamesTheSender() {
        let input = MeshHandshake.proofInput(clusterId: "c", dialerNonce: "n1", acceptorNonce: "n2", dialerId: "a",
                                             acceptorId: "b", sender: .acceptor)
        #expect(String(decoding: input, as: UTF8.self) == "fb-mesh|c|n1|n2|a|b|acceptor")
    }

    // MARK: - Backoff

    @Test func backoffGrowsWithJitterUpToTheCapAndResets() {
        var backoff = RedialBackoff(minimum: .milliseconds(50), maximum: .seconds(1))
        var generator = SystemRandomNumberGenerator()
        var ceilings: [TimeAmount] = []
        for attempt in 0..<12 {
            let wait = backoff.next(using: &generator)
            let ceiling = min(TimeAmount.milliseconds(50 << attempt), .seconds(1))
            #expect(wait <= ceiling && wait >= .nanoseconds(ceiling.nanoseconds / 2))
            ceilings.append(ceiling)
        }
        #expect(ceilings.last == .seconds(1))
        for _ in 0..<100 { _ = backoff.next(using: &generator) }
        #expect(backoff.next(using: &generator) <= .seconds(1))
        backoff.reset()
        #expect(backoff.next(using: &generator) <= .milliseconds(50))
    }

    // MARK: - Against a live transport, with a raw TCP peer

    /// A raw connection that went through the handshake up to (not including) its own AUTH.
    struct RawHandshake {
        let raw: TransportRawConnection
        /// The proof this raw peer should send.
        let ourAuth: MeshAuth
        /// The transport's proof (already checked by the raw side's machine).
        let theirAuth: MeshAuth
    }

    static func rawHandshake(port: Int, group: any EventLoopGroup, as nodeId: NodeID = "b", bulk: Bool = false)
        async throws -> RawHandshake {
        let raw = try await TransportRawConnection.connect(port: port, group: group)
        var machine = MeshHandshake(role: .dialer, identity: TransportTesting.identity(nodeId, peers: ["a"]),
                                    expectedPeer: "a", bulk: bulk, nonce: MeshHandshake.makeNonce())
        try await raw.write(MeshFrameCodec.encode(machine.hello))
        let helloFrame = try #require(try await raw.readFrame())
        let theirHello = try MeshFrameCodec.decodeHello(helloFrame)
        #expect(theirHello.nodeId == "a" && theirHello.bulk == false)
        let ourAuth = try #require(Self.auth(machine.receive(helloFrame)))
        let authFrame = try #require(try await raw.readFrame())
        #expect(machine.receive(authFrame) == .established(theirHello), "the transport proves itself too")
        return RawHandshake(raw: raw, ourAuth: ourAuth, theirAuth: try MeshFrameCodec.decodeAuth(authFrame))
    }

    /// Runs `body` against a started transport "a" whose only peer is "b" (not dialed: port 0), then stops it.
    static func withTransport(_ configure: (inout PeerTransport.Settings) -> Void = { _ in },
                              _ body: (TransportNode, any EventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var settings = TransportTesting.settings("a", peers: ["b": 0])
        configure(&settings)
        let node = try await TransportNode.start(settings, group: group)
        do {
            try await body(node, group)
        } catch {
            Issue.record(error)
        }
        await node.transport.stop()
        try await group.shutdownGracefully()
    }

    @Test func aRawPeerWithTheRightProofIsAcceptedAndHeard() async throws {
        try await Self.withTransport { a, group in
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            try await handshake.raw.write(MeshFrameCodec.encode(handshake.ourAuth))
            try await handshake.raw.write(MeshFrameCodec.encode(.leave(term: 3)))
            #expect(await TransportTesting.wait { a.events.messages.count == 1 })
            #expect(a.events.messages.first?.0 == .leave(term: 3))
            #expect(a.events.messages.first?.1 == "b")
            #expect(a.events.connected("b", .inbound) == 1)
            #expect(a.transport.reachability["b"] == PeerTransport.Reachability(outbound: false, inbound: true))
            await handshake.raw.close()
            #expect(await TransportTesting.wait { a.events.disconnected("b", .inbound) == 1 })
            #expect(a.transport.reachability["b"]?.inbound == false)
        }
    }

    /// The acceptor's own proof, echoed back as the dialer's, is refused: no connection, no message.
    @Test func aReflectedAuthIsRefused() async throws {
        try await Self.withTransport { a, group in
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            try await handshake.raw.write(MeshFrameCodec.encode(handshake.theirAuth))
            try? await handshake.raw.write(MeshFrameCodec.encode(.leave(term: 3)))
            #expect(await handshake.raw.waitClosed())
            #expect(await TransportTesting.wait { a.events.refusals.count == 1 })
            #expect(a.events.refusals.first?.reason == "wrong proof (AUTH)")
            #expect(a.events.refusals.first?.peer == "b")
            #expect(a.events.messages.isEmpty)
            #expect(a.events.connected("b", .inbound) == 0)
        }
    }

    @Test func anUnknownNodeIdIsRefused() async throws {
        try await Self.withTransport { a, group in
            let raw = try await TransportRawConnection.connect(port: a.port, group: group)
            let machine = MeshHandshake(role: .dialer, identity: TransportTesting.identity("mallory", peers: ["a"]),
                                        expectedPeer: "a", bulk: false, nonce: MeshHandshake.makeNonce())
            try await raw.write(MeshFrameCodec.encode(machine.hello))
            #expect(await raw.waitClosed())
            #expect(await TransportTesting.wait { a.events.refusals.count == 1 })
            #expect(a.events.refusals.first?.reason == "unknown node id")
            #expect(a.events.refusals.first?.peer == "mallory")
        }
    }

    @Test func garbageIsClosedWithoutCrashing() async throws {
        // A long handshake timeout: this test is about garbage, and a loaded machine must not turn it into a timeout.
        try await Self.withTransport({ $0.handshakeTimeout = .seconds(60) }) { a, group in
            // Text: its first four bytes read as a length far over the handshake cap.
            let http = try await TransportRawConnection.connect(port: a.port, group: group)
            try await http.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: mesh\r\n\r\n"))
            #expect(await http.waitClosed())

            // A well-framed HELLO whose payload is not a HELLO.
            let junk = try await TransportRawConnection.connect(port: a.port, group: group)
            try await junk.write(ByteBuffer(bytes: [0, 0, 0, 8, MeshFrame.helloType, 0, 0, 0, 0, 2, 0xDE, 0xAD]))
            #expect(await junk.waitClosed())

            // Random bytes, several connections.
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<5 {
                let random = try await TransportRawConnection.connect(port: a.port, group: group)
                let bytes = (0..<512).map { _ in UInt8.random(in: 0 ... .max, using: &generator) }
                try? await random.write(ByteBuffer(bytes: bytes))
                #expect(await random.waitClosed())
            }
            #expect(await TransportTesting.wait { a.events.refusals.count == 7 })
            #expect(a.events.refusals.contains { $0.reason.contains("over the 65536-byte limit") })
            #expect(a.events.refusals.contains { $0.reason.hasPrefix("invalid HELLO") })
            #expect(a.events.messages.isEmpty)

            // Still serving: a proper peer gets in afterwards.
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            try await handshake.raw.write(MeshFrameCodec.encode(handshake.ourAuth))
            #expect(await TransportTesting.wait { a.events.connected("b", .inbound) == 1 })
            await handshake.raw.close()
        }
    }

    /// A HELLO length over 64 KiB closes the connection from the length field alone, long before the handshake
    /// timeout and without the transport waiting for (or buffering) the announced bytes.
    @Test func anOversizedHelloIsClosedAtOnce() async throws {
        try await Self.withTransport({ $0.handshakeTimeout = .seconds(30) }) { a, group in
            let raw = try await TransportRawConnection.connect(port: a.port, group: group)
            var header = ByteBuffer()
            header.writeInteger(UInt32(70_000))
            header.writeBytes([MeshFrame.helloType, 0])
            try await raw.write(header)
            #expect(await raw.waitClosed(timeout: .seconds(5)))
            #expect(await TransportTesting.wait { a.events.refusals.count == 1 })
            #expect(a.events.refusals.first?.reason.contains("70000") == true)
        }
    }

    @Test func aSilentConnectionIsClosedAfterTheHandshakeTimeout() async throws {
        try await Self.withTransport({ $0.handshakeTimeout = .milliseconds(300) }) { a, group in
            let started = ContinuousClock.now
            let raw = try await TransportRawConnection.connect(port: a.port, group: group)
            // The upper bound is loose: in a full parallel run the test's own task can wait seconds for a thread.
            #expect(await raw.waitClosed(timeout: .seconds(20)))
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(20))
            // It said nothing, so nothing names a peer; the refusal is still reported.
            #expect(await TransportTesting.wait { a.events.refusals.count == 1 })
            #expect(a.events.refusals.first?.reason.hasPrefix("handshake not completed") == true)
            #expect(a.events.refusals.first?.peer == nil)
        }
    }

    /// A peer that proved itself once but then stalls in a second handshake is closed by the timeout too.
    @Test func aStalledHandshakeAfterHelloTimesOut() async throws {
        // The raw peer's own HELLO exchange must finish within the timeout; in a full parallel run of the suites its
        // task has waited over a second for a thread (CI, 2 cores), so the timeout leaves it 5 s.
        try await Self.withTransport({ $0.handshakeTimeout = .seconds(5) }) { a, group in
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            #expect(await handshake.raw.waitClosed(timeout: .seconds(20)))
            #expect(await TransportTesting.wait { a.events.refusals.count == 1 })
            #expect(a.events.refusals.first?.peer == "b")
            #expect(a.events.connected("b", .inbound) == 0)
        }
    }

    /// Unauthenticated connections are bounded: past `maxPendingHandshakes` a new one is closed at accept, and room
    /// comes back as the pending ones finish.
    @Test func pendingHandshakesAreBounded() async throws {
        try await Self.withTransport({
            $0.maxPendingHandshakes = 2
            $0.handshakeTimeout = .seconds(30)
        }) { a, group in
            let first = try await TransportRawConnection.connect(port: a.port, group: group)
            let second = try await TransportRawConnection.connect(port: a.port, group: group)
            let firstHello = try await first.readFrame()
            let secondHello = try await second.readFrame()
            #expect(firstHello != nil && secondHello != nil, "both got the transport's HELLO")
            let third = try await TransportRawConnection.connect(port: a.port, group: group)
            #expect(await third.waitClosed())
            #expect(!first.isClosed && !second.isClosed)
            await first.close()
            // The transport notices the close, then takes a new connection (and completes a handshake on it).
            try await Task.sleep(for: .milliseconds(100))
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            try await handshake.raw.write(MeshFrameCodec.encode(handshake.ourAuth))
            #expect(await TransportTesting.wait { a.events.connected("b", .inbound) == 1 })
            await second.close()
            await handshake.raw.close()
        }
    }

    /// A second inbound control connection from the same peer (say it restarted) replaces the first.
    @Test func aNewerInboundConnectionReplacesTheOlder() async throws {
        try await Self.withTransport { a, group in
            let first = try await Self.rawHandshake(port: a.port, group: group)
            try await first.raw.write(MeshFrameCodec.encode(first.ourAuth))
            #expect(await TransportTesting.wait { a.events.connected("b", .inbound) == 1 })

            let second = try await Self.rawHandshake(port: a.port, group: group)
            try await second.raw.write(MeshFrameCodec.encode(second.ourAuth))
            #expect(await TransportTesting.wait { a.events.connected("b", .inbound) == 2 })
            #expect(await first.raw.waitClosed())
            #expect(a.events.disconnected("b", .inbound) == 1)

            try await second.raw.write(MeshFrameCodec.encode(.leave(term: 9)))
            #expect(await TransportTesting.wait { a.events.messages.count == 1 })
            #expect(a.transport.reachability["b"]?.inbound == true)
            // Events in order: connected, disconnected (the replaced one), connected.
            let lifecycle = a.events.all.filter { if case .message = $0 { false } else { true } }
            #expect(lifecycle.count == 3)
            if lifecycle.count == 3 {
                #expect(lifecycle[1] == .disconnected(peer: "b", direction: .inbound))
            }
            await second.raw.close()
        }
    }

    /// Frames after the handshake are checked like any other input: an undecodable one closes the connection.
    @Test func anInvalidMessageAfterTheHandshakeCloses() async throws {
        try await Self.withTransport { a, group in
            let handshake = try await Self.rawHandshake(port: a.port, group: group)
            try await handshake.raw.write(MeshFrameCodec.encode(handshake.ourAuth))
            try await handshake.raw.write(ByteBuffer(bytes: [0, 0, 0, 8, 0x77, 0, 0, 0, 0, 2, 0x7B, 0x7D]))
            #expect(await handshake.raw.waitClosed())
            #expect(await TransportTesting.wait { a.events.disconnected("b", .inbound) == 1 })
            #expect(a.events.messages.isEmpty)
        }
    }
}
