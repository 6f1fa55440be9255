#if FUZZING
import AgentCore
@testable import Cluster
import NIOCore

/// The bytes a peer sends on a mesh connection (cluster-design §3.2): frames as `MeshFrameDecoder` splits them
/// (`MeshFrameCodec.readFrame`), each decoded as a message.
enum MeshFrameFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        var buffer = ByteBuffer(bytes: input)
        for _ in 0..<64 {
            guard let frame = try? MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 20) else { return }
            guard let message = try? MeshFrameCodec.decode(type: frame.type, flags: frame.flags, payload: frame.payload)
            else { continue }
            // A message that decodes encodes to a frame that decodes to the same message, and encoding is then a
            // fixed point (the first encoding may differ from the input's bytes: JSON spacing and member order).
            var encoded = MeshFrameCodec.encode(message)
            let bytes = Array(encoded.readableBytesView)
            guard let again = try? MeshFrameCodec.readFrame(from: &encoded, maxFrameBytes: .max),
                  let decoded = try? MeshFrameCodec.decode(type: again.type, flags: again.flags, payload: again.payload)
            else { fuzzCheck(false, "an encoded \(message) does not decode"); return }
            fuzzCheck(decoded == message, "\(message) decodes back as \(decoded)")
            fuzzCheck(encoded.readableBytes == 0, "an encoded message leaves bytes after its frame")
            fuzzCheck(Array(MeshFrameCodec.encode(decoded).readableBytesView) == bytes, "encoding is not a fixed point")
        }
    }
}

/// The handshake of an accepted mesh connection fed the peer's frames: it must refuse or go on, never crash, and
/// never establish a peer without its proof (the fuzzer does not hold the secret).
enum MeshHandshakeFuzz {
    static let identity = MeshHandshake.Identity(
        clusterId: "fuzz", nodeId: "n1", secret: Array("secret".utf8), incarnation: 1,
        voters: ["n1", "n2", "n3"], peers: ["n2", "n3"])

    static func run(_ input: UnsafeRawBufferPointer) {
        var handshake = MeshHandshake(role: .acceptor, identity: identity, expectedPeer: nil, bulk: false,
                                      nonce: Array(repeating: 7, count: MeshHandshake.nonceBytes))
        var buffer = ByteBuffer(bytes: input)
        for _ in 0..<4 {
            guard let frame = try? MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: MeshFrameCodec.maxHandshakeFrameBytes)
            else { return }
            switch handshake.receive(frame) {
            case .sendAuth:
                continue
            case .established(let hello):
                fuzzCheck(false, "established \(hello.nodeId) without the cluster secret")
            case .refuse:
                return
            }
        }
    }
}
#endif
