import Crypto
import Foundation

/// Data protection for insights (`InsightsMode=anonymize`): each user's `keyId` and `name` become a keyed
/// HMAC-SHA256 (hex), so FeatBit still counts distinct users and experiments still work, but cannot learn who they
/// are; custom properties are dropped unless allow-listed. Everything else of the insight is kept, so the FeatBit
/// server still receives well-formed insights (spec §4.4).
public struct InsightAnonymizer: Sendable {
    private let key: [UInt8]
    private let allowedProperties: Set<String>

    public init(key: [UInt8], allowedProperties: [String]) {
        self.key = key
        self.allowedProperties = Set(allowedProperties)
    }

    /// A fresh random 256-bit key (kept in featbit.db so hashes stay stable across restarts).
    public static func newKey() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// Lowercase hex of HMAC-SHA256(key, value). Two per insight, so the hex is written from a table (`String(format:)`
    /// per byte cost ~30 µs a value).
    public func pseudonym(_ value: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array(value.utf8), using: SymmetricKey(data: key))
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in code {
            hex.append(Self.hexDigits[Int(byte >> 4)])
            hex.append(Self.hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Rewrites an insight array (the body of `POST /api/public/insight/track`). `nil` if it is not a JSON array.
    public func anonymize(_ body: JSONValue) -> JSONValue? {
        guard case .array(let insights) = body else { return nil }
        return .array(insights.map(anonymizeInsight))
    }

    /// One insight object with its user pseudonymised.
    public func anonymizeInsight(_ insight: JSONValue) -> JSONValue {
        guard case .object(var members) = insight, case .object(var user)? = members["user"] else { return insight }
        for (name, value) in user {
            switch name.lowercased() {
            case "keyid", "name":
                if case .string(let text) = value { user[name] = .string(pseudonym(text)) }
            case "customizedproperties":
                if case .array(let properties) = value {
                    user[name] = .array(properties.filter { property in
                        property["name"]?.stringValue.map(allowedProperties.contains) ?? false
                    })
                }
            default:
                break
            }
        }
        members["user"] = .object(user)
        return .object(members)
    }
}
