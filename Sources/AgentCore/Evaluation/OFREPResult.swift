/// OpenFeature resolution reasons an OFREP success carries (OFREP `evaluationSuccess.reason`).
///
/// `ERROR` is never sent in a success: an evaluation FeatBit cannot serve is answered as a failure with an
/// `errorCode`, and the OpenFeature SDK then reports reason `ERROR` with the caller's default value.
public enum OFREPReason: String, Sendable {
    /// Every user gets this value: the flag has no individual targets and no rules, and its default rule serves one
    /// variation to everyone.
    case staticValue = "STATIC"
    /// An individual target, or a rule serving one variation to everyone it matches.
    case targetingMatch = "TARGETING_MATCH"
    /// A percentage rollout (of a matched rule, or of the default rule) picked the variation by the user's bucket.
    case split = "SPLIT"
    /// The flag is off: its disabled variation.
    case disabled = "DISABLED"
    /// The flag has targeting, none of it matched, and the default rule serves one variation to everyone.
    case defaultValue = "DEFAULT"
}

/// One flag evaluated for one user, in OFREP's terms: FeatBit's result and how OFREP reports it.
public struct OFREPResult: Sendable {
    public let flag: FlagModel
    public let result: EvaluationResult
    public let reason: OFREPReason
    /// Set when FeatBit's evaluation gives no variation to serve (a rollout that leaves the user's bucket uncovered,
    /// or a variation id the flag does not define): the .NET evaluator serves an empty variation there and the
    /// FeatBit SDKs fall back to the code default, so OFREP answers a `GENERAL` failure and the caller gets its
    /// default too.
    public let failure: OFREPFailure?

    /// Evaluates `flag` (not archived: archived flags are not found for OFREP) for `user`.
    public init(flag: FlagModel, user: EndUser, segments: (String) -> SegmentModel?) {
        let decided = Evaluator.decide(flag: flag, user: user, segments: segments)
        self.flag = flag
        self.result = decided.result
        self.reason = Self.reason(flag, decided.step)
        if let id = decided.result.variationId, !id.isEmpty {
            failure = nil
        } else {
            failure = OFREPFailure(.general, "FeatBit serves no variation of this flag for this user (\(Self.describe(flag, decided.step)) "
                + "does not cover the user's bucket or names a variation the flag does not define)")
        }
    }

    /// Served: the variation id is known and non-empty.
    public var isServed: Bool { failure == nil }

    static func reason(_ flag: FlagModel, _ step: EvaluationStep) -> OFREPReason {
        switch step {
        case .archived, .disabled:
            return .disabled
        case .targeted:
            return .targetingMatch
        case .rule(let index):
            return flag.rules[index].splitsUsers ? .split : .targetingMatch
        case .defaultRule:
            if flag.defaultRule.splitsUsers { return .split }
            return flag.targets.isEmpty && flag.rules.isEmpty ? .staticValue : .defaultValue
        }
    }

    private static func describe(_ flag: FlagModel, _ step: EvaluationStep) -> String {
        switch step {
        case .archived: return "the flag is archived"
        case .disabled: return "its disabled variation"
        case .targeted: return "its individual target"
        case .rule(let index): return "rule \"\(flag.rules[index].name)\""
        case .defaultRule: return "its default rule"
        }
    }

    // MARK: - JSON

    /// `{"key":…,"value":…,"reason":…,"variant":<variation id>,"metadata":{…}}` for a served result, else the
    /// failure object `{"key":…,"errorCode":…,"errorDetails":…}`.
    ///
    /// `metadata` traces the result back to FeatBit: `flagId` and `envId` (the flag in the portal), `matchReason`
    /// (FeatBit's own reason: `targeted`, `default`, `flag disabled` or the matched rule's name), `flagVersion` (the
    /// flag's `updatedAt` in Unix ms) and `sendToExperiment` (whether FeatBit's experiments count this evaluation).
    public func write(envId: String, into out: inout [UInt8]) {
        if let failure {
            Self.writeFailure(failure, key: flag.key, into: &out)
            return
        }
        out.append(contentsOf: #"{"key":"#.utf8)
        JSONWriter.writeString(flag.key, into: &out)
        out.append(contentsOf: #","value":"#.utf8)
        Self.writeValue(result.value ?? "", variationType: flag.variationType, into: &out)
        out.append(contentsOf: #","reason":""#.utf8)
        out.append(contentsOf: reason.rawValue.utf8)
        out.append(contentsOf: #"","variant":"#.utf8)
        JSONWriter.writeString(result.variationId ?? "", into: &out)
        out.append(contentsOf: #","metadata":{"flagId":"#.utf8)
        JSONWriter.writeString(flag.id, into: &out)
        out.append(contentsOf: #","envId":"#.utf8)
        JSONWriter.writeString(envId, into: &out)
        out.append(contentsOf: #","matchReason":"#.utf8)
        JSONWriter.writeString(result.matchReason, into: &out)
        out.append(contentsOf: #","flagVersion":"#.utf8)
        out.append(contentsOf: String(flag.updatedAt).utf8)
        out.append(contentsOf: #","sendToExperiment":"#.utf8)
        out.append(contentsOf: (result.sendToExperiment ? "true" : "false").utf8)
        out.append(contentsOf: "}}".utf8)
    }

    /// `{"key":…,"errorCode":…,"errorDetails":…}` (OFREP `evaluationFailure` / `flagNotFound`).
    public static func writeFailure(_ failure: OFREPFailure, key: String, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"key":"#.utf8)
        JSONWriter.writeString(key, into: &out)
        writeFailureMembers(failure, into: &out)
    }

    /// `{"errorCode":…,"errorDetails":…}` (OFREP `bulkEvaluationFailure`).
    public static func writeBulkFailure(_ failure: OFREPFailure, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        writeFailureMembers(failure, into: &out, leadingComma: false)
    }

    private static func writeFailureMembers(_ failure: OFREPFailure, into out: inout [UInt8], leadingComma: Bool = true) {
        if leadingComma { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: #""errorCode":""#.utf8)
        out.append(contentsOf: failure.code.rawValue.utf8)
        out.append(contentsOf: #"","errorDetails":"#.utf8)
        JSONWriter.writeString(failure.details, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// A variation value (always a string in FeatBit) as the JSON value of the flag's `variationType`, the way the
    /// FeatBit SDKs cast it (fb-python-sdk `cast_variation_by_flag_type`):
    ///
    /// * `boolean`: `true`/`false` when the text is that JSON literal;
    /// * `number`: a decimal number (`42`, `-3.5`, `.5`, `1e3`, surrounding whitespace allowed) as a JSON integer
    ///   when it is integral and fits 64 bits (an OpenFeature integer), else as a JSON float;
    /// * `json`: the text itself when it is one JSON document (an object for OpenFeature's object type; arrays and
    ///   scalars are sent as they are);
    /// * `string` and anything else: the text as a JSON string.
    ///
    /// Text that does not read as its type is sent as a JSON string, as the FeatBit SDKs then return the raw text;
    /// a typed OpenFeature call reports `TYPE_MISMATCH` for it.
    public static func writeValue(_ value: String, variationType: String?, into out: inout [UInt8]) {
        switch variationType {
        case "boolean":
            if case .bool(let flag)? = parseJSON(value) {
                out.append(contentsOf: (flag ? "true" : "false").utf8)
                return
            }
        case "number":
            if let number = decimalNumber(value) {
                if number == number.rounded(), number >= -9.223372036854775808e18, number < 9.223372036854775808e18 {
                    out.append(contentsOf: String(Int64(number)).utf8)
                } else {
                    JSONWriter.writeDouble(number, into: &out)
                }
                return
            }
        case "json":
            if parseJSON(value) != nil {
                out.append(contentsOf: value.utf8)
                return
            }
        default:
            break
        }
        JSONWriter.writeString(value, into: &out)
    }

    private static func parseJSON(_ text: String) -> JSONValue? {
        var text = text
        return text.withUTF8 { JSONReader.parse(UnsafeRawBufferPointer($0)) }
    }

    /// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?` with optional surrounding ASCII whitespace, as a
    /// finite double; `nil` for anything else (hex, `inf`, `nan`, digit separators).
    static func decimalNumber(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        var start = 0, end = bytes.count
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        while start < end, isSpace(bytes[start]) { start += 1 }
        while end > start, isSpace(bytes[end - 1]) { end -= 1 }
        var i = start
        func digits() -> Int {
            let from = i
            while i < end, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - from
        }
        if i < end, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
        var mantissa = digits()
        if i < end, bytes[i] == UInt8(ascii: ".") {
            i += 1
            mantissa += digits()
        }
        guard mantissa > 0 else { return nil }
        if i < end, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < end, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { return nil }
        }
        guard i == end, let number = Double(String(decoding: bytes[start..<end], as: UTF8.self)), number.isFinite else {
            return nil
        }
        return number
    }
}

extension FlagRule {
    /// True when the rollout can give different users different variations: more than one distinct variation is
    /// reachable by some bucket. An entry covering everyone (`[0, ~1]`) ends the walk, "no one" entries (`[0, 0]`)
    /// are skipped, as `Evaluator.isInRollout` decides them.
    var splitsUsers: Bool {
        var reachable: String? = nil
        for entry in rollout where entry.isValid && !(entry.lo == 0 && entry.hi == 0) && entry.hi >= entry.lo {
            if let seen = reachable, !Ordinal.equals(seen, entry.variation.id) { return true }
            reachable = entry.variation.id
            if entry.lo == 0 && 1 - entry.hi < 1e-5 { return false }
        }
        return false
    }
}
