import NIOCore

/// Splits a mesh connection's bytes into `MeshFrame`s. The first two frames (the handshake) are capped at
/// `MeshFrameCodec.maxHandshakeFrameBytes`, later ones at `maxFrameBytes`; a length field over the cap, or too short to
/// hold a type, is an error (the connection handler logs it and closes) raised before the frame is buffered.
struct MeshFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = MeshFrame

    let maxFrameBytes: Int
    private var handshakeFramesLeft = MeshFrame.handshakeFrameCount

    init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let limit = handshakeFramesLeft > 0 ? min(maxFrameBytes, MeshFrameCodec.maxHandshakeFrameBytes) : maxFrameBytes
        guard let frame = try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: limit) else { return .needMoreData }
        if handshakeFramesLeft > 0 { handshakeFramesLeft -= 1 }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// At end of input, whole frames still count; a partial one goes with the connection.
    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}
