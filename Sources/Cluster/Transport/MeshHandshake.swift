import AgentCore
import Crypto
import NIOCore

/// The handshake that opens every mesh connection (cluster-design §3.2), as a pure state machine: the connection
/// handler sends `hello` when the connection is up, feeds every frame to `receive` until it answers `.established`,
/// and performs what it answers.
///
/// Both sides send `HELLO{proto, clusterId, nodeId, incarnation, voters, nonce, bulk}`; on the other's `HELLO` each
/// checks it and sends `AUTH{hmac}`, `hmac` = HMAC-SHA256(ClusterSecret, `"fb-mesh" | clusterId | nonceDialer |
/// nonceAcceptor | idDialer | idAcceptor | senderRole`). The sender's role in the input is what stops a reflection: the
/// acceptor's proof, echoed back to it by a dialer that does not hold the secret, is an acceptor proof and not the
/// dialer proof the acceptor checks for. The nonces make each proof good for one connection only.
struct MeshHandshake {
    /// Which end of the TCP connection this side is.
    enum Role: String, Sendable {
        case dialer
        case acceptor

        var other: Role { self == .dialer ? .acceptor : .dialer }
    }

    /// Who this node is and whom it accepts.
    struct Identity: Sendable {
        var clusterId: String
        var nodeId: NodeID
        /// The cluster secret (HMAC key).
        var secret: [UInt8]
        var incarnation: UInt64
        /// This node's voter list, sorted.
        var voters: [NodeID]
        /// The node ids of the configured peers: the only ones accepted.
        var peers: Set<NodeID>
    }

    /// What the connection handler must do after a frame.
    enum Action: Sendable, Equatable {
        /// Write this proof to the peer; the handshake goes on.
        case sendAuth(MeshAuth)
        /// The peer proved who it is: this is its `HELLO`. Frames after this one are messages.
        case established(MeshHello)
        /// Log one line (event `mesh-handshake-refused`) and close. `peer` is the id the other side claimed, if any.
        case refuse(reason: String, peer: NodeID?)
    }

    /// The mesh protocol version this build speaks.
    static let protocolVersion = 1
    /// Bytes of randomness in a nonce.
    static let nonceBytes = 32

    let role: Role
    /// This side's `HELLO`, to send first.
    let hello: MeshHello
    private let identity: Identity
    /// For a dialer: the peer it meant to reach.
    private let expectedPeer: NodeID?
    private var state: State

    private enum State {
        case awaitingHello
        case awaitingAuth(MeshHello)
        case established(MeshHello)
        case refused
    }

    /// `nonce` must be `nonceBytes` fresh random bytes (`makeNonce`); tests pass fixed ones.
    init(role: Role, identity: Identity, expectedPeer: NodeID?, bulk: Bool, nonce: [UInt8]) {
        self.role = role
        self.identity = identity
        self.expectedPeer = expectedPeer
        self.hello = MeshHello(proto: Self.protocolVersion, clusterId: identity.clusterId, nodeId: identity.nodeId,
                               incarnation: identity.incarnation, voters: identity.voters.sorted(),
                               nonce: Hex.encode(nonce), bulk: role == .dialer && bulk)
        self.state = .awaitingHello
    }

    static func makeNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The node id the other side has claimed so far (not yet proven unless established).
    var claimedPeer: NodeID? {
        switch state {
        case .awaitingHello, .refused: return nil
        case .awaitingAuth(let hello), .established(let hello): return hello.nodeId
        }
    }

    var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    /// The next handshake frame from the other side.
    mutating func receive(_ frame: MeshFrame) -> Action {
        switch state {
        case .awaitingHello:
            guard frame.type == MeshFrame.helloType else {
                return refuse(frame.type == MeshFrame.authType ? "AUTH before HELLO" : "message before the handshake",
                              peer: nil)
            }
            let peerHello: MeshHello
            do {
                peerHello = try MeshFrameCodec.decodeHello(frame)
            } catch {
                return refuse("invalid HELLO: \(error)", peer: nil)
            }
            if let reason = check(peerHello) {
                return refuse(reason, peer: peerHello.nodeId)
            }
            state = .awaitingAuth(peerHello)
            return .sendAuth(MeshAuth(hmac: Hex.encode(proof(peerHello: peerHello, sender: role))))

        case .awaitingAuth(let peerHello):
            guard frame.type == MeshFrame.authType else {
                return refuse(frame.type == MeshFrame.helloType ? "second HELLO" : "message before AUTH",
                              peer: peerHello.nodeId)
            }
            let auth: MeshAuth
            do {
                auth = try MeshFrameCodec.decodeAuth(frame)
            } catch {
                return refuse("invalid AUTH: \(error)", peer: peerHello.nodeId)
            }
            let expected = proofInput(peerHello: peerHello, sender: role.other)
            // Constant-time comparison (swift-crypto), also for a proof of the wrong length or not hex at all.
            guard let presented = Hex.decode(auth.hmac),
                  HMAC<SHA256>.isValidAuthenticationCode(presented, authenticating: expected, using: key)
            else { return refuse("wrong proof (AUTH)", peer: peerHello.nodeId) }
            state = .established(peerHello)
            return .established(peerHello)

        case .established(let peerHello):
            return refuse("handshake frame after the handshake", peer: peerHello.nodeId)

        case .refused:
            return .refuse(reason: "handshake already refused", peer: nil)
        }
    }

    /// Why the other side's `HELLO` is refused, or nil. A different voter list is not a reason (cluster-design §3.9).
    private func check(_ peer: MeshHello) -> String? {
        if peer.proto != Self.protocolVersion { return "unsupported proto \(peer.proto)" }
        if peer.clusterId != identity.clusterId { return "different clusterId" }
        if peer.nodeId == identity.nodeId { return "peer claims this node's own id" }
        if let expectedPeer, peer.nodeId != expectedPeer { return "dialed \(expectedPeer) but reached \(peer.nodeId)" }
        if !identity.peers.contains(peer.nodeId) { return "unknown node id" }
        if !Hex.isLowercase(peer.nonce, byteCount: Self.nonceBytes) { return "invalid nonce" }
        if peer.nonce == hello.nonce { return "nonce reflected" }
        return nil
    }

    private var key: SymmetricKey { SymmetricKey(data: identity.secret) }

    private mutating func refuse(_ reason: String, peer: NodeID?) -> Action {
        state = .refused
        return .refuse(reason: reason, peer: peer)
    }

    private func proof(peerHello: MeshHello, sender: Role) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: proofInput(peerHello: peerHello, sender: sender), using: key))
    }

    private func proofInput(peerHello: MeshHello, sender: Role) -> [UInt8] {
        let (dialer, acceptor) = role == .dialer ? (hello, peerHello) : (peerHello, hello)
        return Self.proofInput(clusterId: identity.clusterId, dialerNonce: dialer.nonce, acceptorNonce: acceptor.nonce,
                               dialerId: dialer.nodeId, acceptorId: acceptor.nodeId, sender: sender)
    }

    /// `"fb-mesh" | clusterId | nonceDialer | nonceAcceptor | idDialer | idAcceptor | senderRole`. The nonces are fixed
    /// length hex and the ids are checked against the configuration before any proof is computed, so `|` inside an id
    /// cannot shift one field into another to an attacker's benefit.
    static func proofInput(clusterId: String, dialerNonce: String, acceptorNonce: String, dialerId: NodeID,
                           acceptorId: NodeID, sender: Role) -> [UInt8] {
        var input = Array("fb-mesh".utf8)
        for field in [clusterId, dialerNonce, acceptorNonce, dialerId, acceptorId, sender.rawValue] {
            input.append(UInt8(ascii: "|"))
            input.append(contentsOf: field.utf8)
        }
        return input
    }
}
