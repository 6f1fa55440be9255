/// Checks a flag or segment against what SDKs and the evaluator read from it (spec §4.1, §4.2, §5), before it is
/// stored or served. Every source uses it: bootstrap, DataFile, upstream `rp_full`/`rp_patch`/`patch`, and data
/// replicated from peers.
///
/// Checked: the type of every field an SDK or the evaluator reads; the fields they need present; `variationType`
/// one of FeatBit's four; `variations` a non-empty list with unique ids; every variation id referenced by targets,
/// rules, the fallthrough and the off-variation defined by the flag; rollouts two numbers with
/// `0 ≤ lo ≤ hi ≤ 1`; list-valued conditions (`IsOneOf`, `NotOneOf`, segment membership) JSON lists of strings.
///
/// Tolerated, as the spec defines them: an unknown operator (evaluates false, §5.3), a segment condition naming a
/// segment the data set does not hold yet (§5.3.1: a patch can bring a flag before its segment), a regular expression
/// this platform cannot compile (a non-match), `null` for `dispatchKey` and for a segment condition's `op`, and any
/// field nobody reads (kept and passed through unchanged: FeatBit adds fields over time).
///
/// `id`, `envId` and `updatedAt` are checked by `DataItem` itself (they index the store).
public enum ItemValidator {
    /// Rollout bounds may exceed [0, 1] by floating-point noise (percentages summed in a browser): up to this much.
    static let rolloutTolerance = 1e-9

    /// The variation types SDKs know how to cast to (spec §4.1).
    public static let variationTypes: Set<String> = ["boolean", "string", "number", "json"]

    /// Every problem of a flag or segment document, with paths relative to it (`variations[2].id`); empty if valid.
    public static func problems(_ kind: ItemKind, _ json: JSONValue) -> [DataSetError.Problem] {
        var check = Checker()
        switch kind {
        case .flag: check.flag(json)
        case .segment: check.segment(json)
        }
        return check.problems
    }

    /// The problems of one secret record (`type`, `value`, `envId`, `projectKey`, `envKey`).
    public static func secretProblems(_ json: JSONValue) -> [DataSetError.Problem] {
        var check = Checker()
        check.secret(json)
        return check.problems
    }
}

/// Walks one document and collects what is wrong with it.
private struct Checker {
    var problems: [DataSetError.Problem] = []

    private mutating func fail(_ path: String, _ reason: String) {
        problems.append(.init(path: path.isEmpty ? nil : path, reason: reason))
    }

    private static func join(_ base: String, _ field: String) -> String { base.isEmpty ? field : "\(base).\(field)" }

    private static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .number: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "an object"
        }
    }

    // MARK: Typed field access (each records its own problem and returns nil)

    enum Presence { case required, optional, nullable }

    private mutating func field(_ object: JSONValue, _ name: String, at base: String, _ presence: Presence,
                                expected: String, _ accept: (JSONValue) -> Bool) -> JSONValue? {
        let path = Self.join(base, name)
        guard let value = object[name] else {
            if presence == .required { fail(path, "missing (expected \(expected))") }
            return nil
        }
        if value.isNull, presence != .required { return nil }
        guard accept(value) else {
            fail(path, "expected \(expected), got \(Self.typeName(value))")
            return nil
        }
        return value
    }

    private mutating func string(_ object: JSONValue, _ name: String, at base: String,
                                 _ presence: Presence = .required) -> String? {
        field(object, name, at: base, presence, expected: "a string") { $0.stringValue != nil }?.stringValue
    }

    private mutating func bool(_ object: JSONValue, _ name: String, at base: String,
                               _ presence: Presence = .required) -> Bool? {
        field(object, name, at: base, presence, expected: "true or false") { $0.boolValue != nil }?.boolValue
    }

    private mutating func number(_ object: JSONValue, _ name: String, at base: String,
                                 _ presence: Presence = .required) -> Double? {
        field(object, name, at: base, presence, expected: "a number") { $0.doubleValue != nil }?.doubleValue
    }

    private mutating func list(_ object: JSONValue, _ name: String, at base: String,
                               _ presence: Presence = .required) -> [JSONValue]? {
        field(object, name, at: base, presence, expected: "a list") { $0.arrayValue != nil }?.arrayValue
    }

    private mutating func object(_ object: JSONValue, _ name: String, at base: String,
                                 _ presence: Presence = .required) -> JSONValue? {
        field(object, name, at: base, presence, expected: "an object") { $0.objectValue != nil }
    }

    /// Each element of a list that is an object, with its path; a non-object element is a problem.
    private mutating func objects(_ values: [JSONValue], at path: String) -> [(JSONValue, String)] {
        var result: [(JSONValue, String)] = []
        for (index, value) in values.enumerated() {
            let elementPath = "\(path)[\(index)]"
            if value.objectValue == nil {
                fail(elementPath, "expected an object, got \(Self.typeName(value))")
            } else {
                result.append((value, elementPath))
            }
        }
        return result
    }

    private mutating func strings(_ values: [JSONValue], at path: String) {
        for (index, value) in values.enumerated() where value.stringValue == nil {
            fail("\(path)[\(index)]", "expected a string, got \(Self.typeName(value))")
        }
    }

    // MARK: Documents

    mutating func flag(_ flag: JSONValue) {
        guard flag.objectValue != nil else { return fail("", "expected an object, got \(Self.typeName(flag))") }
        if let key = string(flag, "key", at: ""), key.isEmpty { fail("key", "must not be empty") }
        _ = string(flag, "name", at: "")
        if let type = string(flag, "variationType", at: ""), !ItemValidator.variationTypes.contains(type) {
            fail("variationType", "\"\(type)\" is not one of boolean, string, number, json")
        }
        for name in ["isEnabled", "isArchived", "exptIncludeAllTargets"] { _ = bool(flag, name, at: "") }
        if let tags = list(flag, "tags", at: "", .optional) { strings(tags, at: "tags") }

        // The variations, then everything that refers to one by id.
        var ids: Set<String>? = nil
        if let variations = list(flag, "variations", at: "") {
            if variations.isEmpty { fail("variations", "must not be empty") }
            var seen: Set<String> = []
            for (variation, path) in objects(variations, at: "variations") {
                if let id = string(variation, "id", at: path) {
                    if id.isEmpty { fail(Self.join(path, "id"), "must not be empty") }
                    if !seen.insert(id).inserted { fail(Self.join(path, "id"), "duplicate variation id \"\(id)\"") }
                }
                _ = string(variation, "value", at: path)
                _ = string(variation, "name", at: path, .nullable)
            }
            ids = seen
        }
        reference(string(flag, "disabledVariationId", at: ""), at: "disabledVariationId", in: ids)
        if let targets = list(flag, "targetUsers", at: "") {
            for (target, path) in objects(targets, at: "targetUsers") {
                if let keyIds = list(target, "keyIds", at: path) { strings(keyIds, at: Self.join(path, "keyIds")) }
                let idPath = Self.join(path, "variationId")
                reference(string(target, "variationId", at: path), at: idPath, in: ids)
            }
        }
        if let rules = list(flag, "rules", at: "") {
            for (rule, path) in objects(rules, at: "rules") {
                _ = string(rule, "id", at: path, .nullable)
                _ = string(rule, "name", at: path)
                if let conditions = list(rule, "conditions", at: path) {
                    for (condition, conditionPath) in objects(conditions, at: Self.join(path, "conditions")) {
                        self.condition(condition, at: conditionPath, allowSegments: true)
                    }
                }
                dispatch(rule, at: path, ids: ids)
            }
        }
        if let defaultRule = object(flag, "fallthrough", at: "") {
            dispatch(defaultRule, at: "fallthrough", ids: ids)
        }
    }

    /// A rule's or the fallthrough's dispatch settings and rollout.
    /// A variation id the flag must define; `ids` is nil when its variations could not be read (then only the list
    /// itself is reported).
    private mutating func reference(_ id: String?, at path: String, in ids: Set<String>?) {
        guard let id, let ids, !ids.contains(id) else { return }
        fail(path, "no variation has the id \"\(id)\"")
    }

    private mutating func dispatch(_ rule: JSONValue, at path: String, ids: Set<String>?) {
        _ = string(rule, "dispatchKey", at: path, .nullable)
        _ = bool(rule, "includedInExpt", at: path)
        guard let rollout = list(rule, "variations", at: path) else { return }
        for (entry, entryPath) in objects(rollout, at: Self.join(path, "variations")) {
            reference(string(entry, "id", at: entryPath), at: Self.join(entryPath, "id"), in: ids)
            _ = number(entry, "exptRollout", at: entryPath)
            guard let bounds = list(entry, "rollout", at: entryPath) else { continue }
            let rolloutPath = Self.join(entryPath, "rollout")
            let numbers = bounds.compactMap(\.doubleValue)
            guard bounds.count == 2, numbers.count == 2 else {
                fail(rolloutPath, "expected two numbers [from, to]")
                continue
            }
            let tolerance = ItemValidator.rolloutTolerance
            if !(numbers[0] >= -tolerance && numbers[1] <= 1 + tolerance && numbers[0] <= numbers[1]) {
                fail(rolloutPath, "[\(numbers[0]), \(numbers[1])] is not a range within [0, 1]")
            }
        }
    }

    /// `{property, op, value}` (spec §5.3): an unknown `op` is tolerated (it evaluates false); list-valued operators
    /// and segment conditions must carry a JSON list of strings, which the evaluator decodes.
    private mutating func condition(_ condition: JSONValue, at path: String, allowSegments: Bool) {
        let property = string(condition, "property", at: path)
        let op = string(condition, "op", at: path, .nullable)
        _ = string(condition, "id", at: path, .nullable)
        guard let value = string(condition, "value", at: path) else { return }
        // A membership test inside a segment's rule is not evaluated there (it never matches): tolerated as is.
        let isSegment = allowSegments
            && (property == SegmentCondition.isInSegment || property == SegmentCondition.isNotInSegment)
        guard isSegment || op == "IsOneOf" || op == "NotOneOf" else { return }
        let valid = (try? JSONValue.parse(value))?.arrayValue.map { $0.allSatisfy { $0.stringValue != nil } } ?? false
        if !valid { fail(Self.join(path, "value"), "expected the text of a JSON list of strings") }
    }

    mutating func segment(_ segment: JSONValue) {
        guard segment.objectValue != nil else {
            return fail("", "expected an object, got \(Self.typeName(segment))")
        }
        _ = string(segment, "name", at: "", .nullable)
        _ = bool(segment, "isArchived", at: "")
        for name in ["included", "excluded"] {
            if let keys = list(segment, name, at: "") { strings(keys, at: name) }
        }
        if let rules = list(segment, "rules", at: "") {
            for (rule, path) in objects(rules, at: "rules") {
                _ = string(rule, "id", at: path, .nullable)
                _ = string(rule, "name", at: path, .nullable)
                if let conditions = list(rule, "conditions", at: path) {
                    for (condition, conditionPath) in objects(conditions, at: Self.join(path, "conditions")) {
                        self.condition(condition, at: conditionPath, allowSegments: false)
                    }
                }
            }
        }
    }

    mutating func secret(_ secret: JSONValue) {
        guard secret.objectValue != nil else { return fail("", "expected an object, got \(Self.typeName(secret))") }
        if let type = string(secret, "type", at: ""), SecretRecord.SecretType(rawValue: type) == nil {
            fail("type", "\"\(type)\" is not server or client")
        }
        if let value = string(secret, "value", at: ""), SecretCodec.envId(fromSecret: value) == nil {
            fail("value", "is not a 44-character FeatBit secret")
        }
        if let envId = string(secret, "envId", at: "", .optional), GUIDText.normalise(envId) == nil {
            fail("envId", "is not a GUID")
        }
        _ = string(secret, "projectKey", at: "", .nullable)
        _ = string(secret, "envKey", at: "", .nullable)
    }
}
