import Foundation
import Synchronization

/// A rule's regular expression, compiled by ICU (`NSRegularExpression`) at its first search and kept: a compiled
/// expression takes kilobytes, and most flags' regex conditions of a large tenant are never evaluated (server SDKs
/// evaluate for themselves; earlier conditions fail first). `NSRegularExpression` is immutable and documented
/// thread-safe for matching but is not `Sendable` on Linux, hence the unchecked conformance.
public final class CompiledRegex: @unchecked Sendable {
    public let pattern: String
    /// `nil` until the first search; then the expression, or `.some(nil)` when ICU rejects the pattern.
    private let compiled = Mutex<NSRegularExpression??>(nil)

    public init(_ pattern: String) {
        self.pattern = pattern
    }

    private var regex: NSRegularExpression? {
        compiled.withLock { stored in
            if let stored { return stored }
            let made = try? NSRegularExpression(pattern: pattern, options: [])
            stored = .some(made)
            return made
        }
    }

    /// CPU time one search may take. The text is a user attribute an SDK sends (up to 64 KiB over a socket, 1 MiB over
    /// HTTP) and evaluation runs on the socket's event loop: unbounded, an unanchored `[a-z]+@corp\.com` over 60,000
    /// letters takes ~20 s (every start position is tried), stalling every SDK on that loop. Thread CPU time, not wall
    /// time, so a busy machine does not cut off an ordinary search.
    public static let searchBudgetNanos: UInt64 = 10_000_000

    /// Unanchored search, like .NET `Regex.IsMatch(input, pattern)`; `nil` when it ran out of `searchBudgetNanos` or
    /// the pattern is not one ICU compiles (then the condition matches neither MatchRegex nor NotMatchRegex).
    public func isMatch(_ input: String) -> Bool? {
        guard let regex else { return nil }
        var matched = false
        var timedOut = false
        var deadline: UInt64 = 0
        var callbacks = 0
        regex.enumerateMatches(in: input, options: [.reportProgress],
                               range: NSRange(location: 0, length: input.utf16.count)) { result, _, stop in
            if result != nil {
                matched = true
                stop.pointee = true
                return
            }
            // The clock is a system call: an ordinary search ends before it is ever read; a long one reads it every
            // 64 progress reports, with the budget counted from the first reading.
            callbacks += 1
            guard callbacks % 64 == 0 else { return }
            let now = Self.threadCPUNanos()
            if deadline == 0 {
                deadline = now + Self.searchBudgetNanos
            } else if now > deadline {
                timedOut = true
                stop.pointee = true
            }
        }
        return matched ? true : (timedOut ? nil : false)
    }

    private static func threadCPUNanos() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// The operators of spec §5.3, with the exact `op` spellings FeatBit stores.
public enum ConditionOperator: String, Sendable, CaseIterable {
    case lessThan = "LessThan"
    case lessEqualThan = "LessEqualThan"
    case biggerThan = "BiggerThan"
    case biggerEqualThan = "BiggerEqualThan"
    case equal = "Equal"
    case notEqual = "NotEqual"
    case contains = "Contains"
    case notContain = "NotContain"
    case startsWith = "StartsWith"
    case endsWith = "EndsWith"
    case matchRegex = "MatchRegex"
    case notMatchRegex = "NotMatchRegex"
    case isOneOf = "IsOneOf"
    case notOneOf = "NotOneOf"
    case isTrue = "IsTrue"
    case isFalse = "IsFalse"
}

/// One rule condition, compiled once at parse time: numbers parsed, regexes compiled, lists decoded.
struct Condition: Sendable {
    enum Test: Sendable {
        /// Never matches: unknown operator, `null` condition value, unparseable numeric value, invalid list JSON,
        /// invalid segment list. (An invalid regex is found at its first search and never matches either.)
        case never
        /// `user <op> ruleValue` with `ruleValue` already parsed (not NaN); `accept` lists the wanted
        /// `CompareTo` results.
        case numeric(ruleValue: Double, acceptLess: Bool, acceptEqual: Bool, acceptGreater: Bool)
        case equal(String, negate: Bool)
        case contains(String, negate: Bool)
        case startsWith(String)
        case endsWith(String)
        case regex(CompiledRegex, negate: Bool)
        case oneOf(OrdinalSet, negate: Bool)
        /// `NotOneOf` whose list JSON is `null`: true for any non-null user value.
        case always
        case isTrue
        case isFalse
        /// "User is in segment" / "User is not in segment" (flag rules only, spec §5.3.1).
        case segment(ids: [String], negate: Bool)
    }

    /// `nil` when the property is blank (its user value is then `""`).
    let property: String?
    let test: Test

    /// Compiles a condition object. `allowSegments` is false inside segment rules, where .NET only knows plain
    /// operators (a segment-membership property there is an ordinary attribute name with a `null` op → never).
    init(json: JSONValue, allowSegments: Bool) {
        let propertyText = json["property"]?.stringValue
        let value = json["value"]?.stringValue
        if allowSegments, let propertyText,
           propertyText == SegmentCondition.isInSegment || propertyText == SegmentCondition.isNotInSegment {
            property = propertyText
            let negate = propertyText == SegmentCondition.isNotInSegment
            if let value, let ids = Condition.decodeStringList(value), let list = ids {
                test = .segment(ids: list.compactMap { $0 }, negate: negate)
            } else {
                test = .never
            }
            return
        }
        property = Ordinal.isBlank(propertyText) ? nil : propertyText
        guard let opText = json["op"]?.stringValue, let op = ConditionOperator(rawValue: opText), let value else {
            test = .never
            return
        }
        test = Condition.compile(op, value)
    }

    static func compile(_ op: ConditionOperator, _ value: String) -> Test {
        switch op {
        case .lessThan, .lessEqualThan, .biggerThan, .biggerEqualThan:
            guard let rule = DotNetNumber.parseDouble(value), !rule.isNaN else { return .never }
            return .numeric(
                ruleValue: rule,
                acceptLess: op == .lessThan || op == .lessEqualThan,
                acceptEqual: op == .lessEqualThan || op == .biggerEqualThan,
                acceptGreater: op == .biggerThan || op == .biggerEqualThan)
        case .equal: return .equal(value, negate: false)
        case .notEqual: return .equal(value, negate: true)
        case .contains: return .contains(value, negate: false)
        case .notContain: return .contains(value, negate: true)
        case .startsWith: return .startsWith(value)
        case .endsWith: return .endsWith(value)
        case .matchRegex, .notMatchRegex:
            return .regex(CompiledRegex(value), negate: op == .notMatchRegex)
        case .isOneOf, .notOneOf:
            guard let decoded = decodeStringList(value) else { return .never }
            guard let list = decoded else { return op == .notOneOf ? .always : .never }
            return .oneOf(OrdinalSet(list.compactMap { $0 }), negate: op == .notOneOf)
        case .isTrue: return .isTrue
        case .isFalse: return .isFalse
        }
    }

    /// `JsonSerializer.Deserialize<List<string>>(text)`: `.some(nil)` for the literal `null`, `.some(list)` for an
    /// array of strings and nulls, `nil` (invalid) for anything else.
    static func decodeStringList(_ text: String) -> [String?]?? {
        guard let json = try? JSONValue.parse(text) else { return nil }
        switch json {
        case .null:
            return .some(nil)
        case .array(let elements):
            var list: [String?] = []
            list.reserveCapacity(elements.count)
            for element in elements {
                switch element {
                case .string(let s): list.append(s)
                case .null: list.append(nil)
                default: return nil
                }
            }
            return .some(list)
        default:
            return nil
        }
    }

    /// A plain (non-segment) condition against `user`, with the .NET null wrapper: a `nil` user value never matches.
    @inline(__always)
    func matchesPlain(_ user: EndUser) -> Bool {
        let userValue: String?
        if let property { userValue = user.value(ofNonBlank: property) } else { userValue = "" }
        guard let userValue else { return false }
        switch test {
        case .never, .segment:
            return false
        case .always:
            return true
        case .numeric(let rule, let less, let equal, let greater):
            guard let u = DotNetNumber.parseDouble(userValue), !u.isNaN else { return false }
            return u < rule ? less : (u > rule ? greater : equal)
        case .equal(let v, let negate):
            return Ordinal.equals(userValue, v) != negate
        case .contains(let v, let negate):
            return Ordinal.contains(userValue, v) != negate
        case .startsWith(let v):
            return Ordinal.hasPrefix(userValue, v)
        case .endsWith(let v):
            return Ordinal.hasSuffix(userValue, v)
        case .regex(let regex, let negate):
            // A search that runs out of time, or an invalid pattern, matches neither MatchRegex nor NotMatchRegex.
            guard let matched = regex.isMatch(userValue) else { return false }
            return matched != negate
        case .oneOf(let set, let negate):
            return set.contains(userValue) != negate
        case .isTrue:
            return EndUser.asciiCaseInsensitiveEquals(userValue, "true")
        case .isFalse:
            return EndUser.asciiCaseInsensitiveEquals(userValue, "false")
        }
    }
}
