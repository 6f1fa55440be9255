import Crypto

/// The `matchReason` texts of the .NET evaluator (spec §5.1); a matched rule's reason is its `name`.
public enum MatchReason {
    public static let flagArchived = "flag archived"
    public static let flagDisabled = "flag disabled"
    public static let targeted = "targeted"
    public static let defaultRule = "default"
}

/// The outcome of evaluating one flag for one user.
public struct EvaluationResult: Sendable, Equatable {
    /// `nil` only for an archived flag; `""` when a rollout matched no range.
    public let variationId: String?
    public let value: String?
    public let matchReason: String
    public let sendToExperiment: Bool

    public init(variationId: String?, value: String?, matchReason: String, sendToExperiment: Bool) {
        self.variationId = variationId
        self.value = value
        self.matchReason = matchReason
        self.sendToExperiment = sendToExperiment
    }

    init(_ variation: FlagVariation, _ reason: String, _ sendToExperiment: Bool) {
        self.init(variationId: variation.id, value: variation.value, matchReason: reason,
                  sendToExperiment: sendToExperiment)
    }
}

/// The step of the evaluation order (spec §5.1) that chose a result.
public enum EvaluationStep: Sendable, Equatable {
    case archived
    case disabled
    case targeted
    /// The rule at this index of the flag's `rules` matched.
    case rule(Int)
    /// No target or rule matched: the default rule (`fallthrough` in the flag JSON).
    case defaultRule
}

/// The .NET flag evaluator (spec §5; `featbit: modules/evaluation-server/src/Domain/Evaluation/*.cs`, HEAD), made
/// total: where .NET throws on malformed data this returns a defined result instead (see `FlagModel`, `Condition`).
public enum Evaluator {
    /// Evaluates `flag` for `user`. `segments` resolves a segment id to its model; an id it cannot resolve is a
    /// segment the user is not a member of (.NET throws there; Python treats it as non-matching).
    public static func evaluate(
        flag: FlagModel, user: EndUser, segments: (String) -> SegmentModel?
    ) -> EvaluationResult {
        decide(flag: flag, user: user, segments: segments).result
    }

    /// `evaluate`, also saying which step chose the result: a matched rule's reason is only its name, which may be
    /// anything (even `default`), so callers that map reasons to another vocabulary (OFREP) need the step itself.
    public static func decide(
        flag: FlagModel, user: EndUser, segments: (String) -> SegmentModel?
    ) -> (result: EvaluationResult, step: EvaluationStep) {
        // 1. archived [HEAD]
        if flag.isArchived {
            return (EvaluationResult(variationId: nil, value: nil, matchReason: MatchReason.flagArchived,
                                     sendToExperiment: false), .archived)
        }
        // 2. disabled
        if !flag.isEnabled {
            return (EvaluationResult(flag.disabledVariation, MatchReason.flagDisabled, false), .disabled)
        }
        // 3. individual targeting
        for target in flag.targets where target.keyIds.contains(user.keyId) {
            return (EvaluationResult(target.variation, MatchReason.targeted, flag.exptIncludeAllTargets), .targeted)
        }
        // 4. rules, in order
        for (index, rule) in flag.rules.enumerated() where matches(rule, user, segments) {
            return (rollout(flag, rule, user), .rule(index))
        }
        // 5. fallthrough
        return (rollout(flag, flag.defaultRule, user), .defaultRule)
    }

    /// `evaluate` with the segments of the flag's environment in a dictionary keyed by segment id.
    public static func evaluate(flag: FlagModel, user: EndUser, segments: [String: SegmentModel]) -> EvaluationResult {
        evaluate(flag: flag, user: user, segments: { segments[$0] })
    }

    static func matches(_ rule: FlagRule, _ user: EndUser, _ segments: (String) -> SegmentModel?) -> Bool {
        for condition in rule.conditions {
            if case .segment(let ids, let negate) = condition.test {
                // inAny: the list is non-empty and some listed segment matches the user (spec §5.3.1)
                var inAny = false
                for id in ids {
                    if let segment = segments(id), segment.matches(user) {
                        inAny = true
                        break
                    }
                }
                if inAny == negate { return false }
            } else if !condition.matchesPlain(user) {
                return false
            }
        }
        return true
    }

    /// `RolloutUserVariation` (spec §5.4, §5.5).
    static func rollout(_ flag: FlagModel, _ rule: FlagRule, _ user: EndUser) -> EvaluationResult {
        let dispatchValue: String
        if let key = rule.dispatchKey {
            dispatchValue = user.value(of: key) ?? ""
        } else {
            dispatchValue = user.keyId
        }
        return Ordinal.withBytes(dispatchValue) { valueBytes in
            flag.keyUTF8.withUnsafeBufferPointer { keyBytes in
                let dispatch = DispatchKey(parts: [UnsafeRawBufferPointer(keyBytes), UnsafeRawBufferPointer(valueBytes)])
                var selected = FlagVariation.empty
                var width = 0.0
                var exptRollout = 0.0
                var bucket: Double? = nil
                for entry in rule.rollout where entry.isValid {
                    let hit = isInRollout(entry.lo, entry.hi) {
                        if let bucket { return bucket }
                        let b = dispatch.bucket()
                        bucket = b
                        return b
                    }
                    if hit {
                        selected = entry.variation
                        width = entry.hi - entry.lo
                        exptRollout = entry.exptRollout
                        break
                    }
                }
                let send: Bool
                if flag.exptIncludeAllTargets {
                    send = true
                } else if !rule.includedInExpt {
                    send = false
                } else if exptRollout == 0 || width == 0 {
                    send = false
                } else {
                    let upper = min(exptRollout / width, 1.0)
                    send = isInRollout(0, upper) { dispatch.bucket(prefix: "expt") }
                }
                return EvaluationResult(selected, rule.name, send)
            }
        }
    }

    /// .NET `DispatchAlgorithm.IsInRollout` with the bucket computed only when needed: `[0, ~1]` is everyone,
    /// `[0, 0]` no one, otherwise the closed interval `lo ≤ bucket ≤ hi`.
    @inline(__always)
    static func isInRollout(_ lo: Double, _ hi: Double, bucket: () -> Double) -> Bool {
        if lo == 0 && 1 - hi < 1e-5 { return true }
        if lo == 0 && hi == 0 { return false }
        let b = bucket()
        return lo <= b && b <= hi
    }

    /// .NET `DispatchAlgorithm.IsInRollout(key, [lo, hi])`.
    public static func isInRollout(key: String, lo: Double, hi: Double) -> Bool {
        isInRollout(lo, hi) { bucket(of: key) }
    }

    /// `|Int32LE(MD5(UTF-8 key)[0..<4]) / -2147483648.0|`, in [0, 1] (spec §5.4).
    public static func bucket(of key: String) -> Double {
        Ordinal.withBytes(key) { DispatchKey(parts: [UnsafeRawBufferPointer($0)]).bucket() }
    }
}

/// A dispatch key given as byte parts (flag key, attribute value), hashed without concatenating them.
struct DispatchKey {
    let parts: [UnsafeRawBufferPointer]

    func bucket(prefix: StaticString? = nil) -> Double {
        var md5 = Insecure.MD5()
        if let prefix {
            md5.update(bufferPointer: UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
        }
        for part in parts where part.count > 0 { md5.update(bufferPointer: part) }
        let digest = md5.finalize()
        let n = digest.withUnsafeBytes { raw -> Int32 in
            Int32(bitPattern: UInt32(raw[0]) | UInt32(raw[1]) << 8 | UInt32(raw[2]) << 16 | UInt32(raw[3]) << 24)
        }
        return abs(Double(n) / -2147483648.0)
    }
}
