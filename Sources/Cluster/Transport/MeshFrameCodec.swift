import AgentCore
import Foundation
import NIOCore

/// Encodes and decodes the frames of mesh connections (cluster-design §3.2). Pure: no channel, no socket.
///
/// Frame: `u32 BE length (of what follows) | u8 type | u8 flags | payload`, with
/// payload `u32 BE headerLength | header JSON | body`. The header is the JSON of the message's struct; the bytes of a
/// `PATCH`/`SNAPSHOT` (`ReplicationMessage.payload`) and the body of a forwarded bootstrap travel raw in the body, so a
/// snapshot is never base64-encoded. Every other message has an empty body. No flag is defined yet (bit 0 is reserved
/// for deflate): a frame with any flag set is refused rather than misread.
public enum MeshFrameCodec {
    /// The default cap on a frame's length field (cluster-design §3.2).
    public static let defaultMaxFrameBytes = 16 << 20
    /// The cap on the handshake frames (`HELLO`, `AUTH`), whatever the message cap.
    public static let maxHandshakeFrameBytes = 64 << 10

    /// Bytes of the length field.
    static let lengthFieldBytes = 4
    /// The smallest length field: type and flags.
    static let minimumFrameLength = 2

    // MARK: - Messages

    /// The whole frame of `message`, length prefix included, ready to be written to a socket.
    public static func encode(_ message: MeshMessage) -> ByteBuffer {
        let type = message.frameType
        switch message {
        case .state(let m): return frame(type: type, header: m)
        case .preVote(let m), .vote(let m): return frame(type: type, header: m)
        case .preVoteResponse(let m), .voteResponse(let m): return frame(type: type, header: m)
        case .patch(let m), .snapshot(let m):
            return frame(type: type, header: ReplicationHeader(m), body: m.payload)
        case .ack(let m): return frame(type: type, header: m)
        case .catchup(let m): return frame(type: type, header: m)
        case .timeoutNow(let term), .leave(let term): return frame(type: type, header: TermHeader(term: term))
        case .forwardBootstrap(let m):
            return frame(type: type, header: BootstrapHeader(requestId: m.requestId), body: m.body)
        case .forwardBootstrapResult(let m):
            return frame(type: type, header: BootstrapResultHeader(requestId: m.requestId, status: m.status), body: m.body)
        }
    }

    /// The message of a frame whose length field was already read: its type, flags and payload.
    /// Throws `MeshFrameError` for an unknown type, a flag, a malformed payload or a header that is not the type's JSON.
    public static func decode(type: UInt8, flags: UInt8, payload: ByteBuffer) throws -> MeshMessage {
        guard flags == 0 else { throw MeshFrameError.unsupportedFlags(type: type, flags: flags) }
        var reader = try PayloadReader(type: type, payload: payload)
        let message: MeshMessage
        switch type {
        case 0x10: message = .state(try reader.header(PeerStateMessage.self))
        case 0x11: message = .preVote(try reader.header(VoteRequest.self))
        case 0x12: message = .preVoteResponse(try reader.header(VoteResponse.self))
        case 0x13: message = .vote(try reader.header(VoteRequest.self))
        case 0x14: message = .voteResponse(try reader.header(VoteResponse.self))
        case 0x20: message = .patch(try reader.header(ReplicationHeader.self).message(payload: reader.takeBody()))
        case 0x21: message = .snapshot(try reader.header(ReplicationHeader.self).message(payload: reader.takeBody()))
        case 0x22: message = .ack(try reader.header(AckMessage.self))
        case 0x23: message = .catchup(try reader.header(CatchupRequest.self))
        case 0x30: message = .timeoutNow(term: try reader.header(TermHeader.self).term)
        case 0x31: message = .leave(term: try reader.header(TermHeader.self).term)
        case 0x40:
            let header = try reader.header(BootstrapHeader.self)
            message = .forwardBootstrap(ForwardedBootstrap(requestId: header.requestId, body: reader.takeBody()))
        case 0x41:
            let header = try reader.header(BootstrapResultHeader.self)
            message = .forwardBootstrapResult(ForwardedBootstrapResult(requestId: header.requestId, status: header.status,
                                                                       body: reader.takeBody()))
        default:
            throw MeshFrameError.unknownType(type)
        }
        try reader.expectNoBody()
        return message
    }

    // MARK: - Handshake

    static func encode(_ hello: MeshHello) -> ByteBuffer { frame(type: MeshFrame.helloType, header: hello) }
    static func encode(_ auth: MeshAuth) -> ByteBuffer { frame(type: MeshFrame.authType, header: auth) }

    /// The `HELLO` of a handshake frame (its type is checked by the caller).
    static func decodeHello(_ frame: MeshFrame) throws -> MeshHello { try decodeHeaderOnly(MeshHello.self, frame) }
    /// The `AUTH` of a handshake frame (its type is checked by the caller).
    static func decodeAuth(_ frame: MeshFrame) throws -> MeshAuth { try decodeHeaderOnly(MeshAuth.self, frame) }

    private static func decodeHeaderOnly<T: Decodable>(_: T.Type, _ frame: MeshFrame) throws -> T {
        guard frame.flags == 0 else { throw MeshFrameError.unsupportedFlags(type: frame.type, flags: frame.flags) }
        let reader = try PayloadReader(type: frame.type, payload: frame.payload)
        let value = try reader.header(T.self)
        try reader.expectNoBody()
        return value
    }

    // MARK: - Framing

    /// Takes one whole frame off the front of `buffer`; nil (nothing consumed) while it is incomplete. The length field
    /// is checked against `maxFrameBytes` as soon as it is readable, so an oversized frame is refused before any of it
    /// is buffered.
    static func readFrame(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws -> MeshFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        // UInt32 always fits in Int on the 64-bit platforms this runs on; a 32-bit Int would refuse it as too large.
        let size = Int(exactly: length) ?? Int.max
        guard size >= minimumFrameLength else { throw MeshFrameError.frameTooShort(length: size) }
        guard size <= maxFrameBytes else { throw MeshFrameError.frameTooLarge(length: size, limit: maxFrameBytes) }
        guard buffer.readableBytes >= lengthFieldBytes + size else { return nil }
        buffer.moveReaderIndex(forwardBy: lengthFieldBytes)
        guard let type = buffer.readInteger(as: UInt8.self),
              let flags = buffer.readInteger(as: UInt8.self),
              let payload = buffer.readSlice(length: size - minimumFrameLength)
        else { return nil }
        return MeshFrame(type: type, flags: flags, payload: payload)
    }

    private static func frame(type: UInt8, header: some Encodable, body: [UInt8] = []) -> ByteBuffer {
        let json = headerJSON(header)
        let length = minimumFrameLength + 4 + json.count + body.count
        var buffer = ByteBufferAllocator().buffer(capacity: lengthFieldBytes + length)
        // Clamped, never trapping: a frame past 4 GiB cannot be expressed, and the receiver refuses the wrong length
        // (senders check `maxFrameBytes` long before that).
        buffer.writeInteger(UInt32(clamping: length), endianness: .big)
        buffer.writeInteger(type)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(clamping: json.count), endianness: .big)
        buffer.writeBytes(json)
        buffer.writeBytes(body)
        return buffer
    }

    /// JSON of a header. The mesh's header types hold only integers, strings, booleans and arrays of them, which
    /// `JSONEncoder` cannot fail on (it throws only for non-finite floats and invalid top-level values).
    private static func headerJSON(_ header: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(header)
        } catch {
            preconditionFailure("mesh header \(type(of: header)) cannot be encoded: \(error)")
        }
    }
}

/// Why a frame from a peer was refused. Every case closes the connection.
public enum MeshFrameError: Error, Hashable, CustomStringConvertible {
    /// The length field is above the cap (checked before the frame is buffered).
    case frameTooLarge(length: Int, limit: Int)
    /// The length field cannot even hold the type and flags.
    case frameTooShort(length: Int)
    case unknownType(UInt8)
    case unsupportedFlags(type: UInt8, flags: UInt8)
    /// The payload is shorter than its header length field says.
    case truncatedPayload(type: UInt8)
    /// The header is not the JSON of the type's struct.
    case invalidHeader(type: UInt8, detail: String)
    /// A message without a body carried one.
    case unexpectedBody(type: UInt8, bytes: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit): return "frame of \(length) bytes is over the \(limit)-byte limit"
        case .frameTooShort(let length): return "frame length \(length) is too short"
        case .unknownType(let type): return "unknown frame type \(hex(type))"
        case .unsupportedFlags(let type, let flags): return "frame type \(hex(type)) has unsupported flags \(hex(flags))"
        case .truncatedPayload(let type): return "frame type \(hex(type)) is truncated"
        case .invalidHeader(let type, let detail): return "frame type \(hex(type)) has an invalid header: \(detail)"
        case .unexpectedBody(let type, let bytes): return "frame type \(hex(type)) has \(bytes) unexpected body bytes"
        }
    }

    private func hex(_ byte: UInt8) -> String { "0x" + Hex.encode([byte]) }
}

/// Reads `u32 BE headerLength | header JSON | body` from a frame payload.
private struct PayloadReader {
    let type: UInt8
    private var header: ByteBuffer
    private var body: ByteBuffer

    init(type: UInt8, payload: ByteBuffer) throws {
        self.type = type
        var payload = payload
        guard let length = payload.readInteger(endianness: .big, as: UInt32.self),
              let headerLength = Int(exactly: length),
              let header = payload.readSlice(length: headerLength)
        else { throw MeshFrameError.truncatedPayload(type: type) }
        self.header = header
        self.body = payload
    }

    func header<T: Decodable>(_: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(header.readableBytesView))
        } catch {
            throw MeshFrameError.invalidHeader(type: type, detail: Self.describe(error))
        }
    }

    mutating func takeBody() -> [UInt8] {
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        return bytes
    }

    func expectNoBody() throws {
        guard body.readableBytes == 0 else { throw MeshFrameError.unexpectedBody(type: type, bytes: body.readableBytes) }
    }

    /// A one-line reason: `DecodingError`'s own description is long and multi-line.
    private static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \(path(context).isEmpty ? "" : path(context) + ".")\(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "wrong type at \(path(context))"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not JSON" : "bad value at \(path(context))"
        @unknown default: return "undecodable"
        }
    }
}

/// `PATCH`/`SNAPSHOT` header: the replication message without its bytes (they are the frame body).
private struct ReplicationHeader: Codable {
    var position: MeshPosition
    var prevSeq: UInt64
    var fullEpoch: MeshPosition
    var catchup: Bool

    init(_ message: ReplicationMessage) {
        position = message.position
        prevSeq = message.prevSeq
        fullEpoch = message.fullEpoch
        catchup = message.catchup
    }

    func message(payload: [UInt8]) -> ReplicationMessage {
        ReplicationMessage(position: position, prevSeq: prevSeq, fullEpoch: fullEpoch, catchup: catchup, payload: payload)
    }
}

/// `TIMEOUT_NOW` and `LEAVE`: `{"term": N}`.
private struct TermHeader: Codable {
    var term: UInt64
}

/// `FORWARD_BOOTSTRAP` header; the bootstrap body is the frame body.
private struct BootstrapHeader: Codable {
    var requestId: UInt64
}

/// `FORWARD_BOOTSTRAP_RESULT` header; the answer's body is the frame body.
private struct BootstrapResultHeader: Codable {
    var requestId: UInt64
    var status: Int
}
