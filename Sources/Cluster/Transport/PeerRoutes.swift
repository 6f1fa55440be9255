import NIOCore
import Synchronization

/// The part of the connection state that `PeerTransport.send` and `reachability` read from any thread: for each peer,
/// the established connections to write to. Written only by `PeerConnections` on the transport's event loop; the
/// handlers in it are touched only there (`NIOLoopBound`).
final class PeerRoutes: Sendable {
    /// An established outbound connection: its handler (touched on the event loop only) and its byte budget
    /// (reserved by `send` on the caller's thread).
    struct Outbound: Sendable {
        var handler: NIOLoopBound<MeshConnectionHandler>
        var budget: MeshOutboundBudget
    }

    struct Entry: Sendable {
        var control: Outbound?
        var bulk: Outbound?
        var inbound = false
    }

    private let entries: Mutex<[NodeID: Entry]>

    init(peers: some Sequence<NodeID>) {
        entries = Mutex(Dictionary(uniqueKeysWithValues: peers.map { ($0, Entry()) }))
    }

    func entry(_ peer: NodeID) -> Entry? {
        entries.withLock { $0[peer] }
    }

    func update(_ peer: NodeID, _ change: (inout Entry) -> Void) {
        entries.withLock { entries in
            guard var entry = entries[peer] else { return }
            change(&entry)
            entries[peer] = entry
        }
    }

    func clear() {
        entries.withLock { entries in
            for peer in entries.keys { entries[peer] = Entry() }
        }
    }

    var reachability: [NodeID: PeerTransport.Reachability] {
        entries.withLock { entries in
            entries.mapValues { .init(outbound: $0.control != nil, inbound: $0.inbound, bulk: $0.bulk != nil) }
        }
    }
}
