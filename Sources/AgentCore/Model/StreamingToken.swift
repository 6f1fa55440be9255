/// The time-encoded connection token SDKs send in `/streaming?token=` (protocol spec §1.3).
public struct StreamingToken: Sendable, Equatable {
    /// The env secret embedded in the token.
    public let secret: String
    /// Unix milliseconds at which the SDK built the token.
    public let timestamp: Int64

    public init(secret: String, timestamp: Int64) {
        self.secret = secret
        self.timestamp = timestamp
    }

    private static let alphabet: [UInt8] = Array("QBWSPHDXZU".utf8)

    private static func digitValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "Q"): return 0
        case UInt8(ascii: "B"): return 1
        case UInt8(ascii: "W"): return 2
        case UInt8(ascii: "S"): return 3
        case UInt8(ascii: "P"): return 4
        case UInt8(ascii: "H"): return 5
        case UInt8(ascii: "D"): return 6
        case UInt8(ascii: "X"): return 7
        case UInt8(ascii: "Z"): return 8
        case UInt8(ascii: "U"): return 9
        default: return nil
        }
    }

    /// Decodes a run of token digits into a number no larger than `max`; an empty or all-blank run is 0.
    static func decodeNumber(_ chars: ArraySlice<UInt8>, max: UInt64) -> UInt64? {
        if chars.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return 0 }
        var value: UInt64 = 0
        for c in chars {
            guard let d = digitValue(c) else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            guard !o1, !o2, s <= max else { return nil }
            value = s
        }
        return value
    }

    /// Decodes a token; `nil` if it is malformed (the "Invalid" outcome of spec §1.4 step 5).
    public static func decode(_ token: String) -> StreamingToken? {
        let bytes = Array(token.utf8)
        guard bytes.count >= 5,
              let position = decodeNumber(bytes[0..<3], max: 255),
              let contentLength = decodeNumber(bytes[3..<5], max: 255)
        else { return nil }
        let payload = bytes[5...]
        let p = Int(position), n = Int(contentLength)
        guard payload.count >= p + n else { return nil }
        let start = payload.startIndex
        guard let ts = decodeNumber(payload[(start + p)..<(start + p + n)], max: UInt64(Int64.max)) else { return nil }
        var secret = Array(payload[start..<(start + p)]) + Array(payload[(start + p + n)...])
        if (payload.count - n) % 4 != 0 {
            while secret.count % 4 != 0 { secret.append(UInt8(ascii: "=")) }
        }
        guard secret.count == SecretCodec.secretLength, let text = String(bytes: secret, encoding: .utf8) else { return nil }
        return StreamingToken(secret: text, timestamp: Int64(ts))
    }

    /// Encodes a token the way the Python SDK does (13-digit timestamps, insertion point `p`). Counts bytes, as
    /// `decode` does: counted in Characters, "\r\n" is one and the two would disagree (found by fuzzing).
    public static func encode(secret: String, timestamp: Int64, position: Int) -> String {
        let timestamp = Swift.max(0, timestamp)  // SDKs send Unix milliseconds; a digit run has no sign
        var text = Array(secret.utf8)
        while text.last == UInt8(ascii: "=") { text.removeLast() }
        let t = String(timestamp)
        // At least 2 (as the SDKs do), never past the secret's end (a secret under 2 bytes, not a real one).
        let p = Swift.min(Swift.max(Swift.min(position, text.count - 1), 2), text.count)
        func enc(_ n: Int64, _ width: Int) -> [UInt8] {
            let digits = Array(String(n).utf8)
            let padded = [UInt8](repeating: UInt8(ascii: "0"), count: Swift.max(0, width - digits.count)) + digits
            return padded.suffix(width).map { alphabet[Int($0 - UInt8(ascii: "0"))] }
        }
        let bytes = enc(Int64(p), 3) + enc(Int64(t.utf8.count), 2) + text[0..<p] + enc(timestamp, t.utf8.count) + text[p...]
        return String(decoding: bytes, as: UTF8.self)
    }
}
