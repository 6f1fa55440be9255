import NIOCore
import Testing
@testable import AgentServer

/// Server pushes are written as whole frames built once per event loop (`ServerFrame`), past NIO's frame encoder:
/// their bytes must be what RFC 6455 §5.2 (and that encoder) gives for a final, unmasked text frame.
@Suite struct ServerFrameTests {
    @Test(arguments: [
        (0, [0x81, 0x00]),
        (125, [0x81, 125]),
        (126, [0x81, 126, 0x00, 126]),
        (65535, [0x81, 126, 0xFF, 0xFF]),
        (65536, [0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
    ] as [(Int, [UInt8])])
    func headerAndPayload(length: Int, header: [UInt8]) {
        let text = (0..<length).map { UInt8(ascii: "a") + UInt8($0 % 26) }
        let frame = ServerFrame(text: text)
        #expect(Array(frame.encoded.readableBytesView) == header + text)
        #expect(Array(frame.payload.readableBytesView) == text)
    }
}
