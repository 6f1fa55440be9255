import Crypto

/// Comparisons of credentials whose time does not depend on where, or whether, the presented value differs from the
/// real one: an attacker timing failed attempts learns nothing about the secret.
public enum ConstantTime {
    /// Byte-wise equality that always reads every byte of equal-length inputs (the length itself is not secret: an
    /// SDK secret is 44 characters by definition).
    public static func equals(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard x.count == y.count else { return false }
                var difference: UInt8 = 0
                for index in 0..<x.count { difference |= x[index] ^ y[index] }
                return difference == 0
            }
        }
    }
}

/// A configured key (the admin `ApiKey`) held as its SHA-256 digest: a presented value is hashed and the digests are
/// compared in constant time, so neither the key's content nor its length shows in the time a refusal takes.
public struct CredentialDigest: Sendable {
    private let digest: [UInt8]

    public init(_ key: String) {
        digest = Array(SHA256.hash(data: Array(key.utf8)))
    }

    public func matches(_ presented: String?) -> Bool {
        guard let presented else { return false }
        let other = Array(SHA256.hash(data: Array(presented.utf8)))
        var difference: UInt8 = 0
        for index in 0..<digest.count { difference |= digest[index] ^ other[index] }
        return difference == 0
    }
}
