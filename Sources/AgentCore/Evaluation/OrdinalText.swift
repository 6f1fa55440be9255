#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// .NET `StringComparison.Ordinal` semantics on Swift strings.
///
/// Swift's `==`, `hasPrefix`, `contains` and `Set<String>` use Unicode canonical equivalence (`"é"` precomposed equals
/// `"e\u{301}"`); .NET compares code units. Comparing UTF-8 bytes gives the same answers as comparing UTF-16 code
/// units for every valid string, so these helpers work on `utf8`.
enum Ordinal {
    @inline(__always)
    static func withBytes<R>(_ s: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = s.utf8.withContiguousStorageIfAvailable(body) { return r }
        let copy = Array(s.utf8)
        return copy.withUnsafeBufferPointer(body)
    }

    static func equals(_ a: String, _ b: String) -> Bool {
        withBytes(a) { pa in
            withBytes(b) { pb in
                pa.count == pb.count && (pa.count == 0 || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0)
            }
        }
    }

    static func hasPrefix(_ s: String, _ prefix: String) -> Bool {
        withBytes(s) { ps in
            withBytes(prefix) { pp in
                pp.count <= ps.count && (pp.count == 0 || memcmp(ps.baseAddress!, pp.baseAddress!, pp.count) == 0)
            }
        }
    }

    static func hasSuffix(_ s: String, _ suffix: String) -> Bool {
        withBytes(s) { ps in
            withBytes(suffix) { pp in
                pp.count <= ps.count
                    && (pp.count == 0 || memcmp(ps.baseAddress! + (ps.count - pp.count), pp.baseAddress!, pp.count) == 0)
            }
        }
    }

    /// Ordinal substring test (UTF-8 is self-synchronising, so a byte match is a scalar match).
    static func contains(_ s: String, _ needle: String) -> Bool {
        withBytes(s) { ps in
            withBytes(needle) { pn in
                let n = pn.count
                if n == 0 { return true }
                if n > ps.count { return false }
                let first = pn[0]
                let last = ps.count - n
                var i = 0
                while i <= last {
                    guard let hit = memchr(ps.baseAddress! + i, Int32(first), last - i + 1) else { return false }
                    let at = ps.baseAddress!.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    if memcmp(ps.baseAddress! + at, pn.baseAddress!, n) == 0 { return true }
                    i = at + 1
                }
                return false
            }
        }
    }

    /// `string.IsNullOrWhiteSpace` (Unicode White_Space, which is what `char.IsWhiteSpace` tests).
    static func isBlank(_ s: String?) -> Bool {
        guard let s else { return true }
        for byte in s.utf8 where byte != 0x20 && !(0x09...0x0D).contains(byte) {
            if byte < 0x80 { return false }
            return s.unicodeScalars.allSatisfy { $0.properties.isWhitespace }
        }
        return true
    }
}

/// A string hashed and compared by its UTF-8 bytes (ordinal), for set membership.
struct OrdinalKey: Hashable, Sendable {
    let text: String

    init(_ text: String) { self.text = text }

    static func == (a: OrdinalKey, b: OrdinalKey) -> Bool { Ordinal.equals(a.text, b.text) }

    func hash(into hasher: inout Hasher) {
        Ordinal.withBytes(text) { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// An immutable set of strings with ordinal membership: a linear scan for short lists, hashing for long ones.
struct OrdinalSet: Sendable {
    private let small: [String]
    private let large: Set<OrdinalKey>?

    static let linearLimit = 8

    init<S: Sequence>(_ items: S) where S.Element == String {
        let all = Array(items)
        if all.count <= Self.linearLimit {
            small = all
            large = nil
        } else {
            small = []
            large = Set(all.map(OrdinalKey.init))
        }
    }

    var isEmpty: Bool { small.isEmpty && (large?.isEmpty ?? true) }

    func contains(_ s: String) -> Bool {
        if let large { return large.contains(OrdinalKey(s)) }
        for item in small where Ordinal.equals(item, s) { return true }
        return false
    }
}
