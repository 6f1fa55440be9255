import AgentTLS
import NIOCore

extension PeerTransport {
    /// Everything the transport needs, already validated by the configuration layer; `start()` checks what would
    /// make the transport unsafe or unable to work and throws `PeerTransportError.invalidSettings`.
    public struct Settings: Sendable {
        /// This node's id (`NodeId`).
        public var nodeId: NodeID
        /// Peers of another cluster are refused in the handshake.
        public var clusterId: String
        /// `ClusterSecret`: the HMAC key of the handshake. Must not be empty.
        public var secret: [UInt8]
        /// The address the mesh listener binds.
        public var listenHost: String
        /// The mesh port; 0 binds a free port (`start()` returns it).
        public var listenPort: Int
        /// Every other node of the cluster and where it listens. Only these ids are accepted in a handshake.
        public var peers: [NodeID: PeerAddress]
        /// This node's voter list (itself and its peers), announced in `HELLO`.
        public var voters: [NodeID]
        /// Random per process start, announced in `HELLO`.
        public var incarnation: UInt64

        /// Cap on a frame's length field; a peer sending more is disconnected before the frame is buffered.
        public var maxFrameBytes: Int = MeshFrameCodec.defaultMaxFrameBytes
        /// A connection whose unsent bytes would pass this is closed instead of buffering more (cluster-design §3.2:
        /// drop and resync by versions, never block). One frame is always accepted onto an empty buffer.
        public var outboundHighWaterBytes: Int = 8 << 20
        /// Time for TCP connect, and separately for the handshake, before the connection is given up.
        public var handshakeTimeout: TimeAmount = .seconds(5)
        /// First redial wait (jittered down to half of it).
        public var redialBackoffMin: TimeAmount = .milliseconds(50)
        /// Longest redial wait; about the election timeout E.
        public var redialBackoffMax: TimeAmount = .seconds(5)
        /// A bulk (snapshot) connection with nothing written for this long is closed.
        public var bulkIdleTimeout: TimeAmount = .seconds(30)
        /// TCP keepalive: idle time before the first probe, interval between probes, probes before the connection is
        /// dropped (Linux and Darwin; SO_KEEPALIVE alone elsewhere).
        public var keepAliveIdle: TimeAmount = .seconds(5)
        public var keepAliveInterval: TimeAmount = .seconds(1)
        public var keepAliveCount: Int = 3
        /// `TCP_USER_TIMEOUT` (Linux): how long sent data may stay unacknowledged before the kernel drops the
        /// connection, so a blackholed peer fails in seconds rather than ~15 min. About the election timeout E.
        /// Zero leaves the kernel default.
        public var userTimeout: TimeAmount = .seconds(5)
        /// Inbound connections still in their handshake at once; more are closed at accept.
        public var maxPendingHandshakes: Int = 64
        /// Mutual TLS on every peer link (`ClusterTls*`), beneath the `ClusterSecret` handshake; `nil`: plain TCP.
        public var tls: TLS?

        /// The two sides of mutual TLS: accepting peers and dialling them, each requiring the other's certificate.
        public struct TLS: Sendable {
            public var server: ReloadingTLSContext
            public var client: ReloadingTLSContext

            public init(server: ReloadingTLSContext, client: ReloadingTLSContext) {
                self.server = server
                self.client = client
            }
        }

        public init(nodeId: NodeID, clusterId: String, secret: [UInt8], listenHost: String, listenPort: Int,
                    peers: [NodeID: PeerAddress], voters: [NodeID], incarnation: UInt64) {
            self.nodeId = nodeId
            self.clusterId = clusterId
            self.secret = secret
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.peers = peers
            self.voters = voters
            self.incarnation = incarnation
        }

        /// Why these settings cannot run, or nil.
        var problem: String? {
            if nodeId.isEmpty { return "nodeId is empty" }
            if secret.isEmpty { return "secret is empty" }
            if peers[nodeId] != nil { return "peers include this node's own id" }
            if peers.keys.contains(where: \.isEmpty) { return "a peer id is empty" }
            if !(0...65535).contains(listenPort) { return "listenPort \(listenPort) is out of range" }
            if let bad = peers.first(where: { !(0...65535).contains($0.value.port) }) {
                return "port of peer \(bad.key) is out of range"
            }
            if maxFrameBytes < MeshFrameCodec.maxHandshakeFrameBytes || maxFrameBytes > Int(UInt32.max) {
                return "maxFrameBytes must be between \(MeshFrameCodec.maxHandshakeFrameBytes) and \(UInt32.max)"
            }
            if outboundHighWaterBytes <= 0 { return "outboundHighWaterBytes must be positive" }
            if handshakeTimeout <= .zero { return "handshakeTimeout must be positive" }
            if redialBackoffMin <= .zero || redialBackoffMax < redialBackoffMin {
                return "redial backoff must satisfy 0 < min <= max"
            }
            if bulkIdleTimeout <= .zero { return "bulkIdleTimeout must be positive" }
            if keepAliveIdle < .seconds(1) || keepAliveInterval < .seconds(1) || keepAliveCount < 1 {
                return "keepalive idle and interval must be at least 1 s and the count at least 1"
            }
            if userTimeout < .zero { return "userTimeout must not be negative" }
            if maxPendingHandshakes < 1 { return "maxPendingHandshakes must be at least 1" }
            return nil
        }
    }
}

/// Why the transport could not start.
public enum PeerTransportError: Error, Hashable, CustomStringConvertible {
    case invalidSettings(String)
    /// `start()` was called twice, or after `stop()`.
    case alreadyStarted
    /// `stop()` was called while `start()` was binding.
    case stopped
    /// The event loop group is not one NIOPosix bootstraps can use.
    case unsupportedEventLoopGroup

    public var description: String {
        switch self {
        case .invalidSettings(let problem): return "invalid mesh transport settings: \(problem)"
        case .alreadyStarted: return "the mesh transport was already started"
        case .stopped: return "the mesh transport was stopped while starting"
        case .unsupportedEventLoopGroup: return "the mesh transport needs a NIOPosix event loop group"
        }
    }
}
