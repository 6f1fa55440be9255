@testable import Cluster
import Foundation
import NIOCore
import Testing

@Suite struct TransportFrameTests {
    static let binary: [UInt8] = Array(0...255) + Array(repeating: 0x7B, count: 100)

    /// One of every message, with edge values: max integers, nil and non-nil optionals, non-ASCII text, raw bytes.
    static let everyMessage: [MeshMessage] = [
        .state(PeerStateMessage(
            term: .max, role: .preCandidate, leaderId: "n-ü", applied: MeshPosition(term: 3, seq: .max),
            fullEpoch: MeshPosition(term: 2, seq: 9), data: DataSummary(dataVersion: .min, digest: "00ff", hasData: true),
            upstreamState: .interrupted, upstreamReachable: true, voters: ["a", "b", "c"], incarnation: .max,
            storageHealthy: false)),
        .state(TransportTesting.state(term: 0)),
        .preVote(VoteRequest(term: 5, voters: ["a", "b"], transfer: false)),
        .preVoteResponse(VoteResponse(term: 6, granted: false, reason: "leader \"heard\"\n")),
        .vote(VoteRequest(term: 7, voters: [], transfer: true)),
        .voteResponse(VoteResponse(term: 7, granted: true)),
        .patch(ReplicationMessage(position: MeshPosition(term: 7, seq: 8), prevSeq: 7, fullEpoch: .zero, catchup: false,
                                  payload: binary)),
        .patch(ReplicationMessage(position: .zero, prevSeq: 0, fullEpoch: .zero, catchup: true, payload: [])),
        .snapshot(ReplicationMessage(position: MeshPosition(term: 9, seq: 1), prevSeq: 0,
                                     fullEpoch: MeshPosition(term: 9, seq: 1), catchup: true, payload: binary)),
        .ack(AckMessage(term: 4, applied: MeshPosition(term: 4, seq: 40))),
        .catchup(CatchupRequest(term: 3, applied: MeshPosition(term: 3, seq: 2), fullEpoch: .zero, data: .empty,
                                envs: [EnvironmentVersion(envId: "env-1", timestamp: 1_700_000_000_000),
                                       EnvironmentVersion(envId: "", timestamp: .min)])),
        .timeoutNow(term: 12),
        .leave(term: .max),
        .forwardBootstrap(ForwardedBootstrap(requestId: .max, body: binary)),
        .forwardBootstrapResult(ForwardedBootstrapResult(requestId: 1, status: 503, body: Array("{\"ok\":false}".utf8))),
        .forwardBootstrapResult(ForwardedBootstrapResult(requestId: 2, status: 200, body: [])),
    ]

    /// Every case of `MeshMessage` appears in `everyMessage` (a new case must get a round-trip test).
    @Test func everyCaseIsCovered() {
        let covered = Set(Self.everyMessage.map(\.frameType))
        #expect(covered == [0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31, 0x40, 0x41])
    }

    /// A message as a test argument, named by its type in the test output.
    struct Case: Sendable, CustomTestStringConvertible {
        let message: MeshMessage
        var testDescription: String { message.name }
    }

    @Test(arguments: everyMessage.map(Case.init))
    func roundTrip(_ testCase: Case) throws {
        let message = testCase.message
        var buffer = MeshFrameCodec.encode(message)
        let encodedLength = buffer.readableBytes
        let frame = try #require(try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: MeshFrameCodec.defaultMaxFrameBytes))
        #expect(buffer.readableBytes == 0)
        #expect(frame.type == message.frameType)
        #expect(frame.flags == 0)
        #expect(frame.payload.readableBytes == encodedLength - 6)
        #expect(try MeshFrameCodec.decode(type: frame.type, flags: frame.flags, payload: frame.payload) == message)
    }

    @Test func framesDecodeBackToBackFromOneBuffer() throws {
        var buffer = ByteBuffer()
        for message in Self.everyMessage {
            var frame = MeshFrameCodec.encode(message)
            buffer.writeBuffer(&frame)
        }
        var decoded: [MeshMessage] = []
        while let frame = try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 20) {
            decoded.append(try MeshFrameCodec.decode(type: frame.type, flags: frame.flags, payload: frame.payload))
        }
        #expect(decoded == Self.everyMessage)
        #expect(buffer.readableBytes == 0)
    }

    @Test func replicationBytesTravelRawInTheBody() throws {
        let payload = [UInt8](repeating: 0xFF, count: 1000)
        let message = MeshMessage.snapshot(ReplicationMessage(position: MeshPosition(term: 1, seq: 2), prevSeq: 1,
                                                              fullEpoch: .zero, catchup: false, payload: payload))
        var buffer = MeshFrameCodec.encode(message)
        let frame = try #require(try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 20))
        var payloadBuffer = frame.payload
        let headerLength = payloadBuffer.readInteger(as: UInt32.self) ?? 0
        let header = payloadBuffer.readString(length: Int(headerLength)) ?? ""
        #expect(!header.contains("payload"))
        #expect(header.contains("\"position\""))
        #expect(payloadBuffer.readBytes(length: payloadBuffer.readableBytes) == payload)
    }

    @Test func termOnlyMessagesCarryATermObject() throws {
        for message in [MeshMessage.timeoutNow(term: 42), .leave(term: 42)] {
            var buffer = MeshFrameCodec.encode(message)
            let frame = try #require(try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 20))
            var payload = frame.payload
            let headerLength = payload.readInteger(as: UInt32.self) ?? 0
            #expect(payload.readString(length: Int(headerLength)) == #"{"term":42}"#)
            #expect(payload.readableBytes == 0)
        }
    }

    @Test func handshakeFramesRoundTrip() throws {
        let hello = MeshHello(proto: 1, clusterId: "c", nodeId: "n1", incarnation: .max, voters: ["n1", "n2"],
                              nonce: String(repeating: "ab", count: 32), bulk: true)
        var buffer = MeshFrameCodec.encode(hello)
        let helloFrame = try #require(try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 16))
        #expect(helloFrame.type == MeshFrame.helloType)
        #expect(try MeshFrameCodec.decodeHello(helloFrame) == hello)

        let auth = MeshAuth(hmac: String(repeating: "0f", count: 32))
        buffer = MeshFrameCodec.encode(auth)
        let authFrame = try #require(try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 16))
        #expect(authFrame.type == MeshFrame.authType)
        #expect(try MeshFrameCodec.decodeAuth(authFrame) == auth)
    }

    // MARK: - Bad input

    @Test func anIncompleteFrameIsNotConsumed() throws {
        let whole = MeshFrameCodec.encode(Self.everyMessage[0])
        for cut in 0..<whole.readableBytes {
            var partial = whole.getSlice(at: whole.readerIndex, length: cut)!
            #expect(try MeshFrameCodec.readFrame(from: &partial, maxFrameBytes: 1 << 20) == nil)
            #expect(partial.readableBytes == cut)
        }
    }

    @Test func anOversizedLengthIsRefusedFromItsLengthFieldAlone() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(16 << 20) + 1)
        #expect(throws: MeshFrameError.frameTooLarge(length: (16 << 20) + 1, limit: 16 << 20)) {
            try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 16 << 20)
        }
        var huge = ByteBuffer()
        huge.writeInteger(UInt32.max)
        #expect(throws: MeshFrameError.self) { try MeshFrameCodec.readFrame(from: &huge, maxFrameBytes: 16 << 20) }
    }

    @Test func aLengthTooShortForTypeAndFlagsIsRefused() {
        for length: UInt32 in [0, 1] {
            var buffer = ByteBuffer()
            buffer.writeInteger(length)
            buffer.writeBytes([0x10, 0, 0, 0])
            #expect(throws: MeshFrameError.frameTooShort(length: Int(length))) {
                try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 20)
            }
        }
    }

    @Test func unknownTypesAndFlagsAreRefused() throws {
        let payload = Self.payload(header: #"{"term":1}"#)
        #expect(throws: MeshFrameError.unknownType(0x99)) {
            try MeshFrameCodec.decode(type: 0x99, flags: 0, payload: payload)
        }
        #expect(throws: MeshFrameError.unknownType(MeshFrame.helloType)) {
            try MeshFrameCodec.decode(type: MeshFrame.helloType, flags: 0, payload: payload)
        }
        #expect(throws: MeshFrameError.unsupportedFlags(type: 0x30, flags: 1)) {
            try MeshFrameCodec.decode(type: 0x30, flags: 1, payload: payload)
        }
        #expect(try MeshFrameCodec.decode(type: 0x30, flags: 0, payload: payload) == .timeoutNow(term: 1))
    }

    @Test func malformedPayloadsAreRefused() {
        // Header length past the end.
        var short = ByteBuffer()
        short.writeInteger(UInt32(100))
        short.writeString("{}")
        #expect(throws: MeshFrameError.truncatedPayload(type: 0x30)) {
            try MeshFrameCodec.decode(type: 0x30, flags: 0, payload: short)
        }
        // No header length at all.
        #expect(throws: MeshFrameError.truncatedPayload(type: 0x30)) {
            try MeshFrameCodec.decode(type: 0x30, flags: 0, payload: ByteBuffer(bytes: [0, 0]))
        }
        // Not JSON, wrong shape, missing field, wrong type, negative unsigned.
        for header in ["not json", "[1,2]", "{}", #"{"term":"1"}"#, #"{"term":-1}"#, #"{"term":1.5}"#] {
            #expect(throws: MeshFrameError.self) {
                try MeshFrameCodec.decode(type: 0x31, flags: 0, payload: Self.payload(header: header))
            }
        }
        #expect(throws: MeshFrameError.self) {
            try MeshFrameCodec.decode(type: 0x10, flags: 0, payload: Self.payload(header: #"{"term":1}"#))
        }
        // A body on a message that has none.
        #expect(throws: MeshFrameError.unexpectedBody(type: 0x31, bytes: 3)) {
            try MeshFrameCodec.decode(type: 0x31, flags: 0, payload: Self.payload(header: #"{"term":1}"#, body: [1, 2, 3]))
        }
    }

    @Test func theErrorOfAnInvalidHeaderIsOneShortLine() throws {
        do {
            _ = try MeshFrameCodec.decode(type: 0x22, flags: 0, payload: Self.payload(header: #"{"term":1}"#))
            Issue.record("decoded an ACK without `applied`")
        } catch {
            let text = "\(error)"
            #expect(text.contains("0x22"))
            #expect(text.contains("applied"))
            #expect(!text.contains("\n"))
        }
    }

    /// Random bytes never crash the framing or the decoding: each input ends in a frame, an error, or "need more".
    @Test func randomBytesNeverCrash() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3000 {
            let count = Int.random(in: 0...64, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0 ... .max, using: &generator) }
            if round % 3 == 0, bytes.count >= 6 {
                // A plausible length field and a known type, so the payload parsing gets exercised too.
                let length = UInt32(bytes.count - 4)
                bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: length.bigEndian, Array.init))
                bytes[4] = [0x10, 0x11, 0x20, 0x21, 0x30, 0x40, 0x41][round % 7]
                bytes[5] = 0
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let frame = try MeshFrameCodec.readFrame(from: &buffer, maxFrameBytes: 1 << 16) {
                    _ = try? MeshFrameCodec.decode(type: frame.type, flags: frame.flags, payload: frame.payload)
                }
            } catch {
                #expect(error is MeshFrameError)
            }
        }
    }

    static func payload(header: String, body: [UInt8] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(header.utf8.count))
        buffer.writeString(header)
        buffer.writeBytes(body)
        return buffer
    }
}
