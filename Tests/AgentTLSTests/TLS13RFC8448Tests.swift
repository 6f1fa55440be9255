import AgentCore
import NIOCore
import NIOEmbedded
import Testing

@testable import AgentTLS

/// The offload against a published trace rather than against NIOSSL: RFC 8448 §3 ("Simple 1-RTT Handshake") gives
/// every record of one TLS 1.3 connection (TLS_AES_128_GCM_SHA256) with its secrets. The tracker follows the wire bytes
/// as NIOSSL would have passed them, hands over at the right sequence numbers, and the record layer then writes the
/// server's next records byte for byte as the RFC shows them.
@Suite struct TLS13RFC8448Tests {
    static func bytes(_ hex: String) -> [UInt8] {
        Hex.decode(hex.filter { !$0.isWhitespace })!
    }

    // RFC 8448 §3, the values it prints.
    static let clientRandom = bytes("cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7")
    static let clientApplicationSecret = bytes("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5")
    static let serverApplicationSecret = bytes("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43")

    /// {client} send handshake record: the ClientHello (record header, then the 196-byte message).
    static let clientHello = bytes("""
        16 03 01 00 c4
        01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7
        00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00 0a 00 14 00
        12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60
        e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20
        00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01
        00 1c 00 02 40 01
        """)
    /// {server} send handshake record: the ServerHello.
    static let serverHello = bytes("""
        16 03 03 00 5a 02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77
        2e d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1 56 d6 cc
        25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04
        """)
    /// {client} send handshake record: the client's Finished, under the client's handshake key.
    static let clientFinished = bytes("""
        17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03
        38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46
        """)
    /// {server} send handshake record: the NewSessionTicket, the server's first record under its application key.
    static let newSessionTicket = bytes("""
        17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80
        dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73
        53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29
        99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13
        46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12
        1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b f1 59 85 68 4f
        """)
    /// {client} send application_data record: 00 01 … 31.
    static let clientApplicationData = bytes("""
        17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4
        6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4
        """)
    /// {server} send application_data record: the same 50 bytes.
    static let serverApplicationData = bytes("""
        17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90
        e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d
        """)
    /// {client} and {server} send alert record: close_notify.
    static let clientCloseNotify = bytes("17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3")
    static let serverCloseNotify = bytes("17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9")
    static let payload = (0..<50).map { UInt8($0) }

    static func logLines(_ log: TLS13SecretLog) {
        let random = Hex.encode(clientRandom)
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(random) \(Hex.encode(clientApplicationSecret))\n"))
        log.record(ByteBuffer(string: "SERVER_TRAFFIC_SECRET_0 \(random) \(Hex.encode(serverApplicationSecret))\n"))
    }

    @Test func trafficKeysAreDerivedAsTheRFCPrintsThem() {
        func derived(_ secret: [UInt8]) -> (key: [UInt8], iv: [UInt8]) {
            (TLS13Cipher.aes128GCM.expandLabel(secret: secret, label: "key", length: 16),
             TLS13Cipher.aes128GCM.expandLabel(secret: secret, label: "iv", length: 12))
        }
        let server = derived(Self.serverApplicationSecret)
        #expect(server.key == Self.bytes("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"))
        #expect(server.iv == Self.bytes("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"))
        let client = derived(Self.clientApplicationSecret)
        #expect(client.key == Self.bytes("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"))
        #expect(client.iv == Self.bytes("5b 78 92 3d ee 08 57 90 33 e5 23 d9"))
    }

    /// The tracker sees the connection's bytes as they passed NIOSSL, the client's application record split across
    /// two reads; it finds each direction's first application record (skipping those under the handshake keys) and
    /// hands over keys that continue the trace exactly.
    @Test func theTrackerHandsOverWhereTheTraceContinuesAndTheRecordLayerWritesItByteForByte() throws {
        let log = TLS13SecretLog()
        Self.logLines(log)
        var tracker = TLS13OffloadTracker(log: log)
        tracker.inbound(ByteBuffer(bytes: Self.clientHello))
        // The server's encrypted flight (EncryptedExtensions … Finished, under the handshake key): its bytes do not
        // matter to the tracker beyond not opening under the application key.
        let flight: [UInt8] = [23, 3, 3, 0x02, 0xA2] + [UInt8](repeating: 0xD1, count: 0x2A2)
        tracker.outbound(ByteBuffer(bytes: Self.serverHello + flight))
        tracker.inbound(ByteBuffer(bytes: Self.clientFinished))
        #expect(tracker.handover == nil, "no application record yet")
        tracker.outbound(ByteBuffer(bytes: Self.newSessionTicket))
        #expect(tracker.handover == nil, "the client's first application record not yet seen")
        tracker.inbound(ByteBuffer(bytes: Self.clientApplicationData[..<30]))
        #expect(tracker.handover == nil, "in the middle of a record")
        tracker.inbound(ByteBuffer(bytes: Self.clientApplicationData[30...]))
        #expect(tracker.eligible)
        #expect(tracker.claimedSecrets && log.count == 0)
        let keys = try #require(tracker.handover)
        #expect(keys.read.cipher == .aes128GCM)
        #expect(keys.read.sequence == 1 && keys.write.sequence == 1)

        let channel = EmbeddedChannel(handler: TLS13RecordLayer(read: keys.read, write: keys.write))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeOutbound(ByteBuffer(bytes: Self.payload))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(written.readableBytesView) == Self.serverApplicationData, "the server's application record")
        // The client's close_notify is opened and answered with the server's, then the socket closes.
        try channel.writeInbound(ByteBuffer(bytes: Self.clientCloseNotify))
        let answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(answer.readableBytesView) == Self.serverCloseNotify, "the server's close_notify")
        #expect(!channel.isActive)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "no application data from an alert")
    }

    /// Without the server's secret in the log (the handshake was not TLS 1.3, or the log was full) the tracker gives
    /// up after a few records and the connection stays with NIOSSL.
    @Test func withoutItsSecretsAConnectionIsNeverHandedOver() {
        let log = TLS13SecretLog()
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(Hex.encode(Self.clientRandom)) \(Hex.encode(Self.clientApplicationSecret))\n"))
        var tracker = TLS13OffloadTracker(log: log)
        tracker.inbound(ByteBuffer(bytes: Self.clientHello))
        tracker.outbound(ByteBuffer(bytes: Self.serverHello))
        tracker.inbound(ByteBuffer(bytes: Self.clientFinished))
        tracker.outbound(ByteBuffer(bytes: Self.newSessionTicket))
        for _ in 0..<TLS13OffloadTracker.recordsWithoutSecrets {
            tracker.inbound(ByteBuffer(bytes: Self.clientApplicationData))
        }
        #expect(tracker.handover == nil)
        #expect(!tracker.eligible, "ineligible once more records passed than a handshake needs")
        #expect(log.count == 0, "its half of the secrets forgotten")
    }

    /// A record that opens under the client's application key but is not application data (here: its close_notify)
    /// while NIOSSL is in charge means NIOSSL changed state the tracker does not follow: never handed over.
    @Test func anAlertFromTheClientBeforeTheHandoverKeepsTheConnectionWithNIOSSL() {
        let log = TLS13SecretLog()
        Self.logLines(log)
        var tracker = TLS13OffloadTracker(log: log)
        tracker.inbound(ByteBuffer(bytes: Self.clientHello))
        tracker.outbound(ByteBuffer(bytes: Self.serverHello + Self.newSessionTicket))
        tracker.inbound(ByteBuffer(bytes: Self.clientFinished + Self.clientApplicationData))
        #expect(tracker.handover != nil)
        tracker.inbound(ByteBuffer(bytes: Self.clientCloseNotify))
        #expect(tracker.handover == nil && !tracker.eligible)
    }
}
