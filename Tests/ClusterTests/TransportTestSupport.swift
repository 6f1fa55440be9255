@testable import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What the transport suites share: settings for a node on 127.0.0.1, an event recorder, bounded waits, and a raw TCP
/// peer that speaks (or breaks) the mesh protocol by hand.
enum TransportTesting {
    static let secret = Array("transport-test-secret".utf8)
    static let clusterId = "test-cluster"

    static func settings(_ nodeId: NodeID, peers: [NodeID: Int], secret: [UInt8] = secret,
                         clusterId: String = clusterId) -> PeerTransport.Settings {
        var settings = PeerTransport.Settings(
            nodeId: nodeId, clusterId: clusterId, secret: secret, listenHost: "127.0.0.1", listenPort: 0,
            peers: peers.mapValues { PeerAddress(host: "127.0.0.1", port: $0) },
            voters: ([nodeId] + peers.keys).sorted(), incarnation: UInt64.random(in: 1 ... .max))
        // Long: a test task starved by a busy machine must not look like a stalled handshake (the tests of the timeout
        // itself set a short one).
        settings.handshakeTimeout = .seconds(30)
        settings.redialBackoffMin = .milliseconds(20)
        settings.redialBackoffMax = .milliseconds(200)
        return settings
    }

    /// Quiet unless `MESH_TEST_LOG` names a level (e.g. `MESH_TEST_LOG=debug`).
    static func logger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = ProcessInfo.processInfo.environment["MESH_TEST_LOG"].flatMap(Logger.Level.init(rawValue:))
            ?? .critical
        return logger
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
    static func wait(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// The identity a raw test peer claims in a hand-made handshake.
    static func identity(_ nodeId: NodeID, peers: [NodeID], secret: [UInt8] = secret) -> MeshHandshake.Identity {
        MeshHandshake.Identity(clusterId: clusterId, nodeId: nodeId, secret: secret, incarnation: 7,
                               voters: ([nodeId] + peers).sorted(), peers: Set(peers))
    }

    static func state(term: UInt64, seq: UInt64 = 0) -> PeerStateMessage {
        PeerStateMessage(term: term, role: .follower, leaderId: nil, applied: MeshPosition(term: term, seq: seq),
                         fullEpoch: .zero, data: .empty, upstreamState: .none, upstreamReachable: false,
                         voters: ["a", "b"], incarnation: 1, storageHealthy: true)
    }
}

/// Records a transport's events (its `onEvent`).
final class TransportEventLog: Sendable {
    private let events = Mutex<[PeerTransportEvent]>([])

    func record(_ event: PeerTransportEvent) {
        events.withLock { $0.append(event) }
    }

    var all: [PeerTransportEvent] { events.withLock { $0 } }

    var messages: [(MeshMessage, NodeID)] {
        all.compactMap { if case .message(let m, let from) = $0 { (m, from) } else { nil } }
    }

    var refusals: [(reason: String, peer: NodeID?)] {
        all.compactMap { if case .handshakeRefused(let reason, let peer) = $0 { (reason, peer) } else { nil } }
    }

    func count(_ predicate: (PeerTransportEvent) -> Bool) -> Int { all.filter(predicate).count }

    func connected(_ peer: NodeID, _ direction: PeerTransportEvent.Direction) -> Int {
        count { if case .connected(peer, direction, _, _) = $0 { true } else { false } }
    }

    func disconnected(_ peer: NodeID, _ direction: PeerTransportEvent.Direction) -> Int {
        count { $0 == .disconnected(peer: peer, direction: direction) }
    }
}

/// A started transport and its events.
struct TransportNode {
    let transport: PeerTransport
    let events: TransportEventLog
    let port: Int

    static func start(_ settings: PeerTransport.Settings, group: any EventLoopGroup) async throws -> TransportNode {
        let events = TransportEventLog()
        let transport = PeerTransport(settings: settings, eventLoopGroup: group,
                                      logger: TransportTesting.logger("mesh-\(settings.nodeId)"),
                                      onEvent: { events.record($0) })
        let port = try await transport.start()
        return TransportNode(transport: transport, events: events, port: port)
    }
}

/// Connections a fake peer's listener accepted.
final class TransportAcceptedConnections: Sendable {
    private let connections = Mutex<[TransportRawConnection]>([])

    func append(_ connection: TransportRawConnection) { connections.withLock { $0.append(connection) } }
    var all: [TransportRawConnection] { connections.withLock { $0 } }
}

/// A raw TCP connection for tests: collects every byte received, writes whatever it is given.
final class TransportRawConnection: Sendable {
    let channel: any Channel
    private let inbox: Inbox

    final class Inbox: Sendable {
        let bytes = Mutex(ByteBuffer())
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let inbox: Inbox
        init(_ inbox: Inbox) { self.inbox = inbox }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var incoming = unwrapInboundIn(data)
            inbox.bytes.withLock { _ = $0.writeBuffer(&incoming) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    static func connect(port: Int, group: any EventLoopGroup) async throws -> TransportRawConnection {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(inbox)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TransportRawConnection(channel: channel, inbox: inbox)
    }

    /// A listener whose accepted connections are handed to `accepted` (a fake peer for a transport to dial).
    static func listen(group: any EventLoopGroup, accepted: @escaping @Sendable (TransportRawConnection) -> Void)
        async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let inbox = Inbox()
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox))
                    accepted(TransportRawConnection(channel: channel, inbox: inbox))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func write(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    var isClosed: Bool { !channel.isActive }

    func waitClosed(timeout: Duration = .seconds(5)) async -> Bool {
        await TransportTesting.wait(timeout: timeout) { isClosed }
    }

    /// The next whole frame received, waiting up to `timeout`; nil if none came.
    func readFrame(timeout: Duration = .seconds(5)) async throws -> MeshFrame? {
        var frame: MeshFrame?
        var failure: (any Error)?
        _ = await TransportTesting.wait(timeout: timeout) {
            inbox.bytes.withLock { bytes in
                do {
                    frame = try MeshFrameCodec.readFrame(from: &bytes, maxFrameBytes: MeshFrameCodec.defaultMaxFrameBytes)
                } catch {
                    failure = error
                }
            }
            return frame != nil || failure != nil
        }
        if let failure { throw failure }
        return frame
    }

    func close() async {
        try? await channel.close()
    }
}
