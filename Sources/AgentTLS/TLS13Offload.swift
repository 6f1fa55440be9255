import NIOCore

/// Follows one TLS connection's records in both directions while NIOSSL handles it, so that once the connection is
/// quiet the agent knows the exact state of its TLS 1.3 record layer: the cipher, both application traffic secrets
/// (from `TLS13SecretLog`) and both sequence numbers. `TLSIdlePages` then replaces NIOSSL with `TLS13RecordLayer`,
/// which keeps only that state: an idle TLS socket no longer holds BoringSSL's connection state nor NIOSSL's buffers.
///
/// Nothing here is guessed. The first application record of each direction is found by opening records with that
/// direction's secret at sequence 0 (records before it are under the handshake keys and do not open); after it every
/// encrypted record counts one. Small records from the client are opened as they pass, so a KeyUpdate the client sends
/// while NIOSSL is in charge (which would change both keys) is seen. Anything unexpected (TLS 1.2, no secrets, a
/// record that does not open, a KeyUpdate, a plaintext alert) makes the connection ineligible: it simply stays on
/// NIOSSL.
struct TLS13OffloadTracker {
    /// Client records up to this size are opened while NIOSSL is in charge: an unpadded KeyUpdate record is 22 bytes,
    /// a WebSocket frame from a client at least 23.
    static let checkedInboundBytes = 256
    /// Encrypted records per direction that may pass before the secrets are known (a TLS 1.2 connection never has
    /// them); beyond this the connection is ineligible and no longer followed.
    static let recordsWithoutSecrets = 8

    private(set) var eligible = true
    private(set) var random: [UInt8]?
    private var secrets: (client: [UInt8], server: [UInt8])?
    private var cipher: TLS13Cipher?
    private var inbound = TLSRecordReader()
    private var outbound = TLSRecordReader()
    private var readKey: TLS13TrafficKey?
    private var writeKey: TLS13TrafficKey?
    private var encryptedWithoutSecrets = 0
    let log: TLS13SecretLog

    init(log: TLS13SecretLog = .shared) {
        self.log = log
    }

    /// Both directions' keys, at the sequence numbers of the next records, when the connection can leave NIOSSL now:
    /// each direction's first application record found and both streams between records.
    var handover: (read: TLS13TrafficKey, write: TLS13TrafficKey)? {
        guard eligible, let readKey, let writeKey, inbound.atBoundary, outbound.atBoundary else { return nil }
        return (readKey, writeKey)
    }

    /// The secrets were claimed from the log (and so are no longer in it).
    var claimedSecrets: Bool { secrets != nil }

    /// Bytes from the socket, before NIOSSL reads them.
    mutating func inbound(_ buffer: ByteBuffer) {
        guard eligible else { return }
        let records = buffer.withUnsafeReadableBytes { bytes in
            inbound.feed(bytes, collectEncryptedUpTo: readKey == nil ? TLS13TrafficKey.maxCiphertext : Self.checkedInboundBytes,
                         collectHandshake: random == nil)
        }
        guard let records else { return ineligible() }
        for record in records where eligible {
            switch record.type {
            case 22:
                if random == nil {
                    // ClientHello: handshake type, 3-byte length, 2-byte legacy version, then the 32-byte random.
                    guard let body = record.body, body.count >= 38, body[0] == 1 else { return ineligible() }
                    random = Array(body[6..<38])
                }
            case 20:
                break  // ChangeCipherSpec, for middlebox compatibility: not protected, not counted
            case 23:
                if readKey == nil {
                    guard let (key, type) = firstApplicationRecord(record, client: true) else { continue }
                    guard type == 23 else { return ineligible() }
                    readKey = key
                } else if let body = record.body, body.count <= Self.checkedInboundBytes {
                    // Only application data may come from the client now; anything else (a KeyUpdate, an alert)
                    // and the connection stays with NIOSSL.
                    guard let opened = try? readKey!.open(header: record.header, body: body), opened.type == 23 else {
                        return ineligible()
                    }
                } else {
                    readKey!.skip()
                }
            default:
                return ineligible()
            }
        }
    }

    /// Bytes NIOSSL writes to the socket.
    mutating func outbound(_ buffer: ByteBuffer) {
        guard eligible else { return }
        let records = buffer.withUnsafeReadableBytes { bytes in
            outbound.feed(bytes, collectEncryptedUpTo: writeKey == nil ? TLS13TrafficKey.maxCiphertext : 0, collectHandshake: false)
        }
        guard let records else { return ineligible() }
        for record in records where eligible {
            switch record.type {
            case 22, 20:
                break  // ServerHello, ChangeCipherSpec
            case 23:
                if writeKey == nil {
                    guard let (key, type) = firstApplicationRecord(record, client: false) else { continue }
                    // The first records under the application key are NewSessionTickets (handshake) or data.
                    guard type == 22 || type == 23 else { return ineligible() }
                    writeKey = key
                } else {
                    writeKey!.skip()
                }
            default:
                return ineligible()
            }
        }
    }

    /// Called when the connection closes or leaves the tracker: secrets never claimed leave the log.
    mutating func finish() {
        if secrets == nil, let random { log.forget(random: random) }
        eligible = false
        secrets = nil
        readKey = nil
        writeKey = nil
    }

    /// The key (its sequence past `record`) and the content type when `record` opens under the client's or the
    /// server's application secret at sequence 0, that is when it is that direction's first application record;
    /// nil when it does not (a record under the handshake keys) or the secrets are not known yet.
    private mutating func firstApplicationRecord(_ record: TLSRecordReader.Record, client: Bool) -> (TLS13TrafficKey, UInt8)? {
        guard let body = record.body, claimSecrets(), let secrets else {
            countWithoutSecrets()
            return nil
        }
        let secret = client ? secrets.client : secrets.server
        for candidate in cipher.map({ [$0] }) ?? TLS13Cipher.candidates(secretBytes: secret.count) {
            var key = TLS13TrafficKey(cipher: candidate, secret: secret)
            guard let opened = try? key.open(header: record.header, body: body) else { continue }
            cipher = candidate
            return (key, opened.type)
        }
        return nil
    }

    private mutating func claimSecrets() -> Bool {
        if secrets != nil { return true }
        guard let random, let taken = log.take(random: random) else { return false }
        secrets = taken
        return true
    }

    private mutating func countWithoutSecrets() {
        encryptedWithoutSecrets += 1
        if encryptedWithoutSecrets > Self.recordsWithoutSecrets { ineligible() }
    }

    private mutating func ineligible() {
        finish()
    }
}

/// Splits a TLS byte stream into records (RFC 8446 §5.1), keeping a record's body only when asked to.
struct TLSRecordReader {
    struct Record {
        var type: UInt8
        var header: [UInt8]
        /// The body, when it was collected.
        var body: [UInt8]?
    }

    private var header: [UInt8] = []
    private var remaining = 0
    private var body: [UInt8]?
    private var collect = false

    var atBoundary: Bool { header.isEmpty && remaining == 0 }

    /// The records completed by `bytes`; nil when the stream is not TLS records (a length beyond the protocol's).
    mutating func feed(_ bytes: UnsafeRawBufferPointer, collectEncryptedUpTo encryptedLimit: Int,
                       collectHandshake: Bool) -> [Record]? {
        var records: [Record] = []
        var index = 0
        while index < bytes.count {
            if remaining == 0 {
                header.append(bytes[index])
                index += 1
                guard header.count == 5 else { continue }
                remaining = Int(header[3]) << 8 | Int(header[4])
                guard remaining <= TLS13TrafficKey.maxCiphertext else { return nil }
                let type = header[0]
                collect = (type == 23 && remaining <= encryptedLimit) || (type == 22 && collectHandshake)
                body = collect ? [] : nil
                body?.reserveCapacity(remaining)
                if remaining == 0 {
                    records.append(Record(type: type, header: header, body: body))
                    header.removeAll(keepingCapacity: false)
                    body = nil
                }
                continue
            }
            let take = min(remaining, bytes.count - index)
            if collect { body!.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + take)])) }
            index += take
            remaining -= take
            if remaining == 0 {
                records.append(Record(type: header[0], header: header, body: body))
                header.removeAll(keepingCapacity: false)
                body = nil
            }
        }
        return records
    }
}
