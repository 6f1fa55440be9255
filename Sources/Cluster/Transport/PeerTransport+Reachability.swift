extension PeerTransport {
    /// Which of a peer's connections have completed their handshake, for status (`peers[].reachable`) and tests.
    public struct Reachability: Sendable, Hashable {
        /// Our control connection to the peer (what we send on).
        public var outbound: Bool
        /// The peer's control connection to us (what we hear it on).
        public var inbound: Bool
        /// Our on-demand snapshot connection to the peer.
        public var bulk: Bool

        public init(outbound: Bool, inbound: Bool, bulk: Bool = false) {
            self.outbound = outbound
            self.inbound = inbound
            self.bulk = bulk
        }
    }
}
