/// Where a peer listens for mesh connections. Only used to dial: a peer is identified by the node id it proves in the
/// handshake, never by its address.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    /// The peer's mesh port; 0 means "not known yet": the peer is not dialed until `PeerTransport.updateAddress`.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
