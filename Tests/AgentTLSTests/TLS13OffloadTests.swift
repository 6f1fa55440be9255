import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

@testable import AgentTLS

/// A quiet TLS 1.3 connection leaves NIOSSL for `TLS13RecordLayer`, and a real TLS client (NIOSSL's, BoringSSL) on
/// the other end never notices: every byte in both directions, close_notify both ways, a forged record refused.
/// Connections the record layer cannot take exactly (TLS 1.2) stay with NIOSSL.
@Suite struct TLS13OffloadTests {
    typealias Server = TLSIdlePagesTests.EchoServer

    /// Waits until the server's newest connection has left NIOSSL (or 10 s).
    static func offloaded(_ server: Server) async throws -> Bool {
        let channel = try serverChannel(server)
        return try await TLSIdlePagesTests.eventually {
            let handlers = try? channel.eventLoop.submit {
                !hasNIOSSL(channel) && (try? channel.pipeline.syncOperations.handler(type: TLS13RecordLayer.self)) != nil
            }.wait()
            return handlers == true
        }
    }

    /// Whether NIOSSL is still in the channel's pipeline (on its event loop).
    static func hasNIOSSL(_ channel: any Channel) -> Bool {
        (try? channel.pipeline.syncOperations.handler(type: NIOSSLHandler.self)) != nil
    }

    static func serverChannel(_ server: Server) throws -> any Channel {
        try #require(server.accepted.withLockedValue { $0.last?.channel })
    }

    @Test func aQuietTLS13ConnectionLeavesNIOSSLAndEveryByteStillArrivesWhole() async throws {
        let log = TLS13SecretLog()
        try await TLSIdlePagesTests.withEchoServer(offload: log) { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { client.close() }
            let first = TLSIdlePagesTests.pattern(count: 300, seed: 1)
            #expect(try await client.roundTrip(first) == first)
            #expect(try await Self.offloaded(server), "NIOSSL replaced after the quiet time")
            #expect(log.count == 0, "the secrets left the log when the connection took them")
            // Sizes around the record limit (16 KiB), and writes of many records, each way.
            for (index, size) in [1, 16_383, 16_384, 16_385, 70_000, 300_000].enumerated() {
                let message = TLSIdlePagesTests.pattern(count: size, seed: 20 + index)
                #expect(try await client.roundTrip(message) == message, "\(size) bytes echoed whole")
            }
            #expect(client.errors.withLockedValue { $0 }.isEmpty)
        }
    }

    @Test func aTLS12ConnectionStaysWithNIOSSL() async throws {
        let log = TLS13SecretLog()
        try await TLSIdlePagesTests.withEchoServer(offload: log) { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki, maximumTLSVersion: .tlsv12)
            defer { client.close() }
            let message = TLSIdlePagesTests.pattern(count: 2_000, seed: 3)
            #expect(try await client.roundTrip(message) == message)
            try await Task.sleep(for: .milliseconds(Int64(TLSIdlePagesTests.quiet.nanoseconds / 1_000_000) * 4))
            let channel = try Self.serverChannel(server)
            let stillNIOSSL = try await channel.eventLoop.submit { Self.hasNIOSSL(channel) }.get()
            #expect(stillNIOSSL)
            #expect(try await client.roundTrip(message) == message)
            #expect(log.count == 0)
        }
    }

    /// A client that stops reading while the agent writes to it: the connection stays on NIOSSL while ciphertext is
    /// queued behind the full socket, gets every byte once it reads again, and only then leaves NIOSSL. Then the same
    /// again with the record layer in charge: its records queue behind the full socket and arrive whole.
    @Test func aSlowReaderGetsEveryQueuedByteBeforeAndAfterTheOffload() async throws {
        let log = TLS13SecretLog()
        // The messages are made before the connection (4 MB of pattern take seconds under TSan), the large write
        // goes in pieces (the client encrypts each before sending it), and the quiet time is long: the pause before
        // the server sees the write cannot move the connection before the test means it to.
        let messages = (0..<2).map { TLSIdlePagesTests.pattern(count: 4 << 20, seed: 11 + $0) }
        let quiet = TimeAmount.seconds(2)
        try await TLSIdlePagesTests.withEchoServer(quiet: quiet, offloadQuiet: quiet, offload: log) { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki, smallBuffers: true)
            defer { client.close() }
            #expect(try await client.roundTrip([1, 2, 3]) == [1, 2, 3])
            let channel = try Self.serverChannel(server)
            for (round, onNIOSSL) in [(0, true), (1, false)] {
                try await client.channel.setOption(.autoRead, value: false).get()
                let message = messages[round]
                for start in stride(from: 0, to: message.count, by: 64 << 10) {
                    client.send(Array(message[start..<min(message.count, start + (64 << 10))]))
                }
                try await Task.sleep(for: .milliseconds(onNIOSSL ? 5_000 : 500))
                #expect(try await server.queuedBytes() > 0, "round \(round): the test needs writes still queued")
                let hasNIOSSL = try await channel.eventLoop.submit { Self.hasNIOSSL(channel) }.get()
                #expect(hasNIOSSL == onNIOSSL, onNIOSSL ? "not moved while ciphertext is queued" : "moved before round 1")
                #expect(try await client.receive(count: message.count) == message, "round \(round): every byte as sent")
                if onNIOSSL {
                    #expect(try await Self.offloaded(server), "moved once the socket drained and went quiet")
                }
            }
            #expect(client.errors.withLockedValue { $0 }.isEmpty)
        }
    }

    @Test func closeNotifyIsAnsweredAndSentAfterTheOffload() async throws {
        let log = TLS13SecretLog()
        try await TLSIdlePagesTests.withEchoServer(offload: log) { server in
            // The client closes: its close_notify reaches the record layer, which answers and closes the socket.
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { client.close() }
            #expect(try await client.roundTrip([1, 2, 3]) == [1, 2, 3])
            #expect(try await Self.offloaded(server))
            let serverSide = try Self.serverChannel(server)
            try await client.channel.close()
            #expect(try await TLSIdlePagesTests.eventually { !serverSide.isActive }, "the server's socket closed")

            // The server closes: the client gets a close_notify it can open, so NIOSSL reports no error (neither an
            // unclean shutdown nor a record it cannot open).
            let second = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { second.close() }
            #expect(try await second.roundTrip([4, 5, 6]) == [4, 5, 6])
            #expect(try await Self.offloaded(server))
            try await Self.serverChannel(server).close()
            #expect(try await TLSIdlePagesTests.eventually { !second.channel.isActive })
            let errors = second.errors.withLockedValue { $0 }
            #expect(errors.isEmpty, "errors: \(errors)")
        }
    }

    @Test func aForgedRecordEndsTheConnectionWithBadRecordMAC() async throws {
        let log = TLS13SecretLog()
        try await TLSIdlePagesTests.withEchoServer(offload: log) { server in
            let client = try await TLSTestClient.connect(port: server.port, pki: server.pki)
            defer { client.close() }
            #expect(try await client.roundTrip([7, 8, 9]) == [7, 8, 9])
            #expect(try await Self.offloaded(server))
            // An application-data record with the right shape and a wrong tag, written beneath the client's TLS.
            let forged: [UInt8] = [23, 3, 3, 0, 20] + [UInt8](repeating: 0x5A, count: 20)
            try await client.channel.eventLoop.submit {
                let tls = try client.channel.pipeline.syncOperations.context(handlerType: NIOSSLClientHandler.self)
                tls.writeAndFlush(NIOAny(ByteBuffer(bytes: forged)), promise: nil)
            }.get()
            #expect(try await TLSIdlePagesTests.eventually { !client.channel.isActive }, "the server closed the socket")
            let errors = client.errors.withLockedValue { $0 }
            // The alert itself opened at the client: it names the alert it received, not a record it could not open.
            #expect(errors.contains { $0.contains("ALERT_BAD_RECORD_MAC") }, "the client was told why: \(errors)")
        }
    }

    // MARK: - The parts

    @Test func theRecordReaderFindsTheSameRecordsHoweverTheBytesArrive() throws {
        let stream: [UInt8] = [22, 3, 1, 0, 3, 1, 2, 3] + [23, 3, 3, 0, 0] + [23, 3, 3, 0, 2, 9, 9] + [20, 3, 3, 0, 1, 1]
        var whole = TLSRecordReader()
        let all = try #require(stream.withUnsafeBytes { whole.feed($0, collectEncryptedUpTo: 100, collectHandshake: true) })
        #expect(all.map(\.type) == [22, 23, 23, 20])
        #expect(all.map(\.body) == [[1, 2, 3], [], [9, 9], nil])
        #expect(whole.atBoundary)
        var bytewise = TLSRecordReader()
        var found: [TLSRecordReader.Record] = []
        for (index, byte) in stream.enumerated() {
            found += try #require([byte].withUnsafeBytes { bytewise.feed($0, collectEncryptedUpTo: 100, collectHandshake: true) })
            if index == 9 { #expect(!bytewise.atBoundary, "inside a header") }
        }
        #expect(found.map(\.type) == all.map(\.type))
        #expect(found.map(\.body) == all.map(\.body))
        var limited = TLSRecordReader()
        let small = try #require(stream.withUnsafeBytes { limited.feed($0, collectEncryptedUpTo: 1, collectHandshake: false) })
        #expect(small.map(\.body) == [nil, [], nil, nil], "bodies over the limit are not kept")
        var overflowing = TLSRecordReader()
        #expect([UInt8]([23, 3, 3, 0x41, 0x01]).withUnsafeBytes { overflowing.feed($0, collectEncryptedUpTo: 0, collectHandshake: false) } == nil)
    }

    @Test func theSecretLogKeepsOnlyTheApplicationSecretsUntilTaken() {
        let log = TLS13SecretLog(capacity: 2)
        let random = String(repeating: "ab", count: 32)
        let secret = String(repeating: "01", count: 32)
        log.record(ByteBuffer(string: "CLIENT_HANDSHAKE_TRAFFIC_SECRET \(random) \(secret)\n"))
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(random) \(secret)\n"))
        #expect(log.take(random: [UInt8](repeating: 0xAB, count: 32)) == nil, "not before both secrets are there")
        log.record(ByteBuffer(string: "SERVER_TRAFFIC_SECRET_0 \(random) \(String(repeating: "02", count: 32))\n"))
        let taken = log.take(random: [UInt8](repeating: 0xAB, count: 32))
        #expect(taken?.client == [UInt8](repeating: 1, count: 32))
        #expect(taken?.server == [UInt8](repeating: 2, count: 32))
        #expect(log.count == 0, "taken once")
        // Malformed lines are ignored; beyond the capacity new handshakes are not kept.
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(random) zz\n"))
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 abcd \(secret)\n"))
        #expect(log.count == 0)
        for byte in ["01", "02", "03"] {
            log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(String(repeating: byte, count: 32)) \(secret)\n"))
        }
        #expect(log.count == 2)
        log.forget(random: [UInt8](repeating: 1, count: 32))
        #expect(log.count == 1)
    }

    /// Secrets nobody claimed (a client whose ClientHello the agent never read whole) do not stay for good.
    @Test func unclaimedSecretsAreDroppedAfterTheirLifetime() async throws {
        let log = TLS13SecretLog(capacity: 100, unclaimedLifetime: .milliseconds(50))
        let secret = String(repeating: "01", count: 32)
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(String(repeating: "0a", count: 32)) \(secret)\n"))
        try await Task.sleep(for: .milliseconds(80))
        log.record(ByteBuffer(string: "CLIENT_TRAFFIC_SECRET_0 \(String(repeating: "0b", count: 32)) \(secret)\n"))
        #expect(log.count == 1, "the old entry went when the next handshake arrived")
        log.record(ByteBuffer(string: "SERVER_TRAFFIC_SECRET_0 \(String(repeating: "0b", count: 32)) \(secret)\n"))
        #expect(log.take(random: [UInt8](repeating: 0x0B, count: 32)) != nil)
    }

    /// Protect and open agree, the sequence and a KeyUpdate move both sides alike, and a record opened under the wrong
    /// sequence, key or header does not open.
    @Test func aTrafficKeyOpensOnlyWhatTheSameKeyAtTheSameSequenceSealed() throws {
        for cipher in TLS13Cipher.allCases {
            let secret = [UInt8](repeating: 7, count: cipher == .aes256GCM ? 48 : 32)
            var sender = TLS13TrafficKey(cipher: cipher, secret: secret)
            var receiver = TLS13TrafficKey(cipher: cipher, secret: secret)
            for round in 0..<3 {
                let message = TLSIdlePagesTests.pattern(count: 100 + round, seed: round)
                var record = ByteBuffer()
                try message.withUnsafeBytes { try sender.seal($0, type: 23, into: &record) }
                let bytes = Array(record.readableBytesView)
                #expect(bytes.count == 5 + message.count + 1 + 16)
                let opened = try receiver.open(header: Array(bytes[..<5]), body: Array(bytes[5...]))
                #expect(opened.type == 23 && opened.content == message, "\(cipher) round \(round)")
                // The same record again (sequence moved on) does not open.
                #expect(throws: TLS13RecordError.badRecordMAC) { try receiver.open(header: Array(bytes[..<5]), body: Array(bytes[5...])) }
            }
            sender.update()
            var record = ByteBuffer()
            try [UInt8]([1]).withUnsafeBytes { try sender.seal($0, type: 23, into: &record) }
            let bytes = Array(record.readableBytesView)
            var stale = receiver
            #expect(throws: TLS13RecordError.badRecordMAC) { try stale.open(header: Array(bytes[..<5]), body: Array(bytes[5...])) }
            receiver.update()
            var header = Array(bytes[..<5])
            header[2] = 1
            #expect(throws: TLS13RecordError.badRecordMAC) { try receiver.open(header: header, body: Array(bytes[5...])) }
            #expect(try receiver.open(header: Array(bytes[..<5]), body: Array(bytes[5...])).content == [1])
        }
    }
}
