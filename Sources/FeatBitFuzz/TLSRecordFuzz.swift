#if FUZZING
@testable import AgentTLS
import NIOCore
import NIOEmbedded

/// What a TLS client sends once its connection has left NIOSSL (`TLS13RecordLayer`), and the records NIOSSL passes
/// before that (`TLS13OffloadTracker`, `TLSRecordReader`). The input is a script, after a first byte that picks the
/// cipher suite, of steps `[op, length (2 bytes), payload]`:
/// - op % 4 == 0: raw bytes onto the wire;
/// - op % 4 == 1: a record the client protects properly: content type `payload[0]`, content the rest;
/// - op % 4 == 2: what is on the wire so far arrives as one read;
/// - op % 4 == 3: the agent writes the payload to the client.
/// Invariants: until the first raw byte or non-data record, every byte of application data the client sent arrives in
/// order and the connection stays open; whatever the agent sends, the client can open, in order, following the
/// agent's KeyUpdates.
enum TLSRecordFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let cipher = TLS13Cipher.allCases[Int(first) % TLS13Cipher.allCases.count]
        let secretBytes = cipher == .aes256GCM ? 48 : 32
        var client = TLS13TrafficKey(cipher: cipher, secret: [UInt8](repeating: 0x11, count: secretBytes))
        var clientReader = TLS13TrafficKey(cipher: cipher, secret: [UInt8](repeating: 0x22, count: secretBytes))
        let layer = TLS13RecordLayer(read: client, write: clientReader)
        let channel = EmbeddedChannel(handler: layer)
        // An embedded channel is active once connected, as the SDK's socket is.
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var wire: [UInt8] = []
        var allWire: [UInt8] = []
        var valid = true
        var expected: [UInt8] = []
        var received: [UInt8] = []
        var sent: [UInt8] = []

        func deliver() {
            guard !wire.isEmpty else { return }
            allWire += wire
            if channel.isActive { _ = try? channel.writeInbound(ByteBuffer(bytes: wire)) }
            wire.removeAll()
            while let plain = try? channel.readInbound(as: ByteBuffer.self) { received += plain.readableBytesView }
        }

        var index = 1
        while index + 3 <= input.count {
            let op = input[index]
            let length = min(Int(input[index + 1]) << 8 | Int(input[index + 2]), input.count - index - 3)
            let payload = Array(input[(index + 3)..<(index + 3 + length)])
            index += 3 + length
            switch op % 4 {
            case 0:
                wire += payload
                if !payload.isEmpty { valid = false }
            case 1:
                guard let type = payload.first, payload.count - 1 <= TLS13TrafficKey.maxPlaintext else { continue }
                let content = Array(payload.dropFirst())
                var record = ByteBuffer()
                guard (try? content.withUnsafeBytes({ try client.seal($0, type: type, into: &record) })) != nil else { continue }
                wire += record.readableBytesView
                if type == 23 && valid {
                    expected += content
                } else if type == 22 && content.count == 5 && content[0...3] == [24, 0, 0, 1] && content[4] <= 1 {
                    client.update()  // a KeyUpdate: the agent must follow it
                } else {
                    valid = false
                }
            case 2:
                deliver()
            default:
                if channel.isActive {
                    sent += payload
                    channel.writeAndFlush(ByteBuffer(bytes: payload), promise: nil)
                }
            }
        }
        deliver()
        if valid {
            fuzzCheck(received == expected, "application data lost or changed: \(received.count) of \(expected.count) bytes")
            fuzzCheck(channel.isActive, "a valid stream closed the connection")
        }

        // Everything the agent wrote opens at the client, KeyUpdates followed; its data is what it was asked to send.
        var out = ByteBuffer()
        while var buffer = try? channel.readOutbound(as: ByteBuffer.self) { out.writeBuffer(&buffer) }
        var opened: [UInt8] = []
        while out.readableBytes >= 5 {
            let header = out.readBytes(length: 5)!
            let length = Int(header[3]) << 8 | Int(header[4])
            fuzzCheck(header[0] == 23 && length <= TLS13TrafficKey.maxCiphertext, "the agent wrote a malformed record header")
            guard let body = out.readBytes(length: length) else { return fuzzCheck(false, "the agent wrote a partial record") }
            guard let record = try? clientReader.open(header: header, body: body) else {
                return fuzzCheck(false, "the agent wrote a record the client cannot open")
            }
            switch record.type {
            case 23: opened += record.content
            case 22:
                fuzzCheck(record.content.count == 5 && record.content[0] == 24 && record.content[4] == 0, "not a KeyUpdate")
                clientReader.update()
            default:
                fuzzCheck(record.type == 21 && record.content.count == 2, "the agent wrote content type \(record.type)")
            }
        }
        fuzzCheck(out.readableBytes == 0, "the agent's output ends inside a record")
        fuzzCheck(sent.starts(with: opened), "the agent's data arrived changed")
        if valid { fuzzCheck(opened == sent, "the agent's data was cut short on an open connection") }
        // finish() throws an error the pipeline caught before it closes anything: take that first.
        try? channel.throwIfErrorCaught()
        _ = try? channel.finish(acceptAlreadyClosed: true)

        // The same bytes as NIOSSL's traffic, either way: split into records the same however they arrive.
        var tracker = TLS13OffloadTracker(log: log)
        tracker.inbound(ByteBuffer(bytes: allWire))
        tracker.outbound(ByteBuffer(bytes: allWire))
        tracker.finish()
        var whole = TLSRecordReader()
        var split = TLSRecordReader()
        let wholeRecords = allWire.withUnsafeBytes { whole.feed($0, collectEncryptedUpTo: 64, collectHandshake: true) }
        let cut = allWire.count / 2
        var splitRecords = allWire[..<cut].withUnsafeBytes { split.feed($0, collectEncryptedUpTo: 64, collectHandshake: true) }
        if splitRecords != nil, let rest = allWire[cut...].withUnsafeBytes({ split.feed($0, collectEncryptedUpTo: 64, collectHandshake: true) }) {
            splitRecords! += rest
        } else {
            splitRecords = nil
        }
        fuzzCheck(wholeRecords?.map(\.type) == splitRecords?.map(\.type)
                  && wholeRecords?.map(\.body) == splitRecords?.map(\.body), "the record reader depends on how bytes arrive")
    }

    static let log = TLS13SecretLog(capacity: 16)
}
#endif
