import Synchronization

/// The bytes one connection holds for sending: accepted by `PeerTransport.send` (on any thread) and not yet taken by
/// the kernel, frames still on their way to the event loop included. The high-water mark itself is checked on the
/// event loop against the channel's unsent bytes (`MeshConnectionHandler.writeReserved`); this budget, at twice the
/// mark, is the memory bound that holds even when a sender outruns the event loop, so nothing can pile up without
/// limit behind a peer that does not read.
final class MeshOutboundBudget: Sendable {
    let limit: Int
    private let outstanding = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Reserves room for a frame of `bytes`; false when the connection already holds bytes and this frame would take
    /// it past the limit. An idle connection always takes one frame, so a frame bigger than the limit can still go.
    func reserve(_ bytes: Int) -> Bool {
        var current = outstanding.load(ordering: .relaxed)
        while true {
            if current > 0, current + bytes > limit { return false }
            let (exchanged, original) = outstanding.compareExchange(expected: current, desired: current + bytes,
                                                                    ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// The kernel took (or the closed connection dropped) a reserved frame.
    func release(_ bytes: Int) {
        outstanding.wrappingSubtract(bytes, ordering: .relaxed)
    }

    var bytes: Int { outstanding.load(ordering: .relaxed) }
}
