import Crypto
import Foundation
import NIOCore

/// The AEAD of a TLS 1.3 cipher suite (RFC 8446 §B.4), the suites BoringSSL negotiates.
public enum TLS13Cipher: Sendable, CaseIterable {
    case aes128GCM
    case aes256GCM
    case chaCha20Poly1305

    var keyBytes: Int { self == .aes128GCM ? 16 : 32 }

    /// The suites whose hash makes traffic secrets of this length (SHA-256: 32 bytes, SHA-384: 48).
    static func candidates(secretBytes: Int) -> [TLS13Cipher] {
        switch secretBytes {
        case 32: [.aes128GCM, .chaCha20Poly1305]
        case 48: [.aes256GCM]
        default: []
        }
    }

    /// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, under the suite's hash.
    func expandLabel(secret: [UInt8], label: String, length: Int) -> [UInt8] {
        let fullLabel = Array("tls13 \(label)".utf8)
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xFF), UInt8(fullLabel.count)]
        info += fullLabel
        info.append(0)  // context: empty
        let prk = SymmetricKey(data: secret)
        let output: SymmetricKey = switch self {
        case .aes128GCM, .chaCha20Poly1305: HKDF<SHA256>.expand(pseudoRandomKey: prk, info: info, outputByteCount: length)
        case .aes256GCM: HKDF<SHA384>.expand(pseudoRandomKey: prk, info: info, outputByteCount: length)
        }
        return output.withUnsafeBytes { Array($0) }
    }
}

/// A TLS 1.3 record-protection error (RFC 8446 §5): the connection cannot go on.
public enum TLS13RecordError: Error, Equatable, CustomStringConvertible {
    /// A record failed authentication (alert `bad_record_mac`).
    case badRecordMAC
    /// A record or message that has no place on an established connection (alert `unexpected_message`).
    case unexpectedMessage(String)
    /// A record longer than the protocol allows (alert `record_overflow`).
    case recordOverflow(Int)
    /// The peer sent an alert other than `close_notify`.
    case alertReceived(level: UInt8, description: UInt8)
    /// 2^64 records in one direction under one key.
    case sequenceExhausted

    public var description: String {
        switch self {
        case .badRecordMAC: "TLS record failed authentication (bad_record_mac)"
        case .unexpectedMessage(let what): "unexpected TLS message: \(what)"
        case .recordOverflow(let length): "TLS record of \(length) bytes is longer than allowed"
        case .alertReceived(let level, let description): "TLS alert received (level \(level), description \(description))"
        case .sequenceExhausted: "TLS record sequence number exhausted"
        }
    }

    /// The alert description this error is answered with.
    var alertDescription: UInt8 {
        switch self {
        case .badRecordMAC: 20
        case .unexpectedMessage: 10
        case .recordOverflow: 22
        case .alertReceived, .sequenceExhausted: 80  // internal_error; not sent for a received alert
        }
    }
}

/// One direction's traffic protection of an established TLS 1.3 connection: the secret (for KeyUpdate), the key and
/// IV derived from it, and the record sequence number (RFC 8446 §5.2-5.3, §7.2-7.3).
///
/// The three are kept inline (no allocation of their own), since an idle SDK socket holds two of these for its life;
/// the `SymmetricKey` is made for each record.
struct TLS13TrafficKey {
    static let maxPlaintext = 16_384
    /// Ciphertext may exceed the plaintext limit by 256 bytes (content type, padding, tag).
    static let maxCiphertext = maxPlaintext + 256
    private static let keyOffset = 48
    private static let ivOffset = 80

    let cipher: TLS13Cipher
    /// The secret at 0 (32 or 48 bytes), the key at 48 (16 or 32), the IV at 80 (12).
    private var material = InlineArray<92, UInt8>(repeating: 0)
    private let secretBytes: UInt8
    private(set) var sequence: UInt64

    init(cipher: TLS13Cipher, secret: [UInt8], sequence: UInt64 = 0) {
        self.cipher = cipher
        self.secretBytes = UInt8(secret.count)
        self.sequence = sequence
        let key = cipher.expandLabel(secret: secret, label: "key", length: cipher.keyBytes)
        let iv = cipher.expandLabel(secret: secret, label: "iv", length: 12)
        for (index, byte) in secret.prefix(Self.keyOffset).enumerated() { material[index] = byte }
        for (index, byte) in key.enumerated() { material[Self.keyOffset + index] = byte }
        for (index, byte) in iv.enumerated() { material[Self.ivOffset + index] = byte }
    }

    var secret: [UInt8] { material.span.withUnsafeBytes { Array($0.prefix(Int(secretBytes))) } }

    private var key: SymmetricKey {
        material.span.withUnsafeBytes { bytes in
            SymmetricKey(data: UnsafeRawBufferPointer(rebasing: bytes[Self.keyOffset..<(Self.keyOffset + cipher.keyBytes)]))
        }
    }

    /// The next generation of this direction's secret (after a KeyUpdate), with the sequence back at 0.
    mutating func update() {
        self = TLS13TrafficKey(cipher: cipher, secret: cipher.expandLabel(secret: secret, label: "traffic upd", length: Int(secretBytes)))
    }

    /// A record passed that someone else protected or opened (NIOSSL, while it was in charge).
    mutating func skip() {
        sequence += 1
    }

    private func nonce() -> [UInt8] {
        var nonce = material.span.withUnsafeBytes { Array($0[Self.ivOffset..<(Self.ivOffset + 12)]) }
        for index in 0..<8 {
            nonce[11 - index] ^= UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(index)))
        }
        return nonce
    }

    /// Protects `content` as one record of `type` and appends it (header, ciphertext, tag) to `out`.
    mutating func seal(_ content: UnsafeRawBufferPointer, type: UInt8, into out: inout ByteBuffer) throws {
        guard sequence < UInt64.max else { throw TLS13RecordError.sequenceExhausted }
        var inner = [UInt8]()
        inner.reserveCapacity(content.count + 1)
        inner += content
        inner.append(type)
        let length = inner.count + 16
        let header: [UInt8] = [23, 3, 3, UInt8(length >> 8), UInt8(length & 0xFF)]
        let nonce = nonce()
        out.writeBytes(header)
        switch cipher {
        case .aes128GCM, .aes256GCM:
            let box = try AES.GCM.seal(inner, using: key, nonce: AES.GCM.Nonce(data: nonce), authenticating: header)
            box.ciphertext.withUnsafeBytes { _ = out.writeBytes($0) }
            box.tag.withUnsafeBytes { _ = out.writeBytes($0) }
        case .chaCha20Poly1305:
            let box = try ChaChaPoly.seal(inner, using: key, nonce: ChaChaPoly.Nonce(data: nonce), authenticating: header)
            box.ciphertext.withUnsafeBytes { _ = out.writeBytes($0) }
            box.tag.withUnsafeBytes { _ = out.writeBytes($0) }
        }
        sequence += 1
    }

    /// Opens the record whose 5-byte header and body (ciphertext and tag) are given; answers its content type and
    /// content, padding removed. Nothing changes when the record does not authenticate.
    mutating func open(header: [UInt8], body: [UInt8]) throws -> (type: UInt8, content: [UInt8]) {
        guard sequence < UInt64.max else { throw TLS13RecordError.sequenceExhausted }
        guard body.count >= 17 else { throw TLS13RecordError.badRecordMAC }
        let ciphertext = body[..<(body.count - 16)]
        let tag = body[(body.count - 16)...]
        let nonce = nonce()
        let plain: Data
        do {
            switch cipher {
            case .aes128GCM, .aes256GCM:
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                plain = try AES.GCM.open(box, using: key, authenticating: header)
            case .chaCha20Poly1305:
                let box = try ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: nonce), ciphertext: ciphertext, tag: tag)
                plain = try ChaChaPoly.open(box, using: key, authenticating: header)
            }
        } catch {
            throw TLS13RecordError.badRecordMAC
        }
        // TLSInnerPlaintext: content, the real content type, then zero padding.
        guard let typeIndex = plain.lastIndex(where: { $0 != 0 }) else {
            throw TLS13RecordError.unexpectedMessage("record with no content type")
        }
        guard typeIndex - plain.startIndex <= Self.maxPlaintext else {
            throw TLS13RecordError.recordOverflow(typeIndex - plain.startIndex)
        }
        sequence += 1
        return (plain[typeIndex], Array(plain[plain.startIndex..<typeIndex]))
    }
}
