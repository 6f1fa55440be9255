import Foundation

/// FeatBit's GUID text codec and environment-secret parsing (protocol spec §1.1).
///
/// A GUID is encoded from its .NET byte layout (first three groups little-endian), Base64 with `/`→`_` and `+`→`-`,
/// truncated to 22 characters. An env secret is `header(22) + encode(envId)(22)`.
public enum SecretCodec {
    /// Length of every environment secret.
    public static let secretLength = 44

    /// Encodes a UUID into FeatBit's 22-character form.
    public static func encode(_ uuid: UUID) -> String {
        let u = uuid.uuid
        let dotNetBytes: [UInt8] = [u.3, u.2, u.1, u.0, u.5, u.4, u.7, u.6,
                                    u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15]
        let base64 = Data(dotNetBytes).base64EncodedString()
        var out = ""
        out.reserveCapacity(22)
        for ch in base64.prefix(22) {
            switch ch {
            case "/": out.append("_")
            case "+": out.append("-")
            default: out.append(ch)
            }
        }
        return out
    }

    /// Decodes 22 characters into a UUID; `nil` where .NET would yield the empty GUID (any Base64 failure).
    public static func decode<S: StringProtocol>(_ text: S) -> UUID? {
        guard text.utf8.count == 22 else { return nil }
        var base64 = ""
        base64.reserveCapacity(24)
        for ch in text {
            switch ch {
            case "_": base64.append("/")
            case "-": base64.append("+")
            default: base64.append(ch)
            }
        }
        base64.append("==")
        guard let data = Data(base64Encoded: base64), data.count == 16 else { return nil }
        let b = [UInt8](data)
        return UUID(uuid: (b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
                           b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }

    /// `Secret.TryParse`: the env id embedded in a secret, or `nil` if the string is not a well-formed secret.
    /// Only the structure is checked; it does not prove the secret exists.
    public static func envId(fromSecret secret: String?) -> UUID? {
        guard let secret, secret.utf8.count == secretLength else { return nil }
        let utf8 = Array(secret.utf8)
        guard let tail = String(bytes: utf8[22..<44], encoding: .utf8), let id = decode(tail) else { return nil }
        return id == emptyUUID ? nil : id
    }

    static let emptyUUID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
}

extension UUID {
    /// The lowercase hyphenated form FeatBit uses on the wire.
    public var featbitString: String { uuidString.lowercased() }
}
