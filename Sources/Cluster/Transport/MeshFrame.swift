import NIOCore

/// One frame of the peer protocol after its length prefix is stripped (cluster-design §3.2):
/// `u32 BE length (of what follows) | u8 type | u8 flags | payload`.
struct MeshFrame: Sendable, Hashable {
    var type: UInt8
    var flags: UInt8
    var payload: ByteBuffer

    /// `HELLO`, the first frame each side sends.
    static let helloType: UInt8 = 0x01
    /// `AUTH`, each side's proof, sent once it has the other side's `HELLO`.
    static let authType: UInt8 = 0x02
    /// The first frames of a connection are the handshake (`HELLO`, `AUTH`); they are capped lower than messages.
    static let handshakeFrameCount = 2
}
