/// A variation as evaluation returns it: only `{id, value}` (spec §5.1).
public struct FlagVariation: Sendable, Equatable {
    public let id: String
    public let value: String

    public init(id: String, value: String) {
        self.id = id
        self.value = value
    }

    /// .NET `Variation.Empty`: what a rollout yields when no range contains the bucket, and what this agent uses
    /// for a variation id the flag does not define (where .NET throws).
    public static let empty = FlagVariation(id: "", value: "")
}

/// One entry of a rollout (`rules[].variations` / `fallthrough.variations`).
struct RolloutEntry: Sendable {
    /// The referenced variation, resolved at parse time; `.empty` for an unknown id.
    let variation: FlagVariation
    let lo: Double
    let hi: Double
    /// False when `rollout` is not an array of exactly two numbers (.NET throws); such an entry never matches.
    let isValid: Bool
    let exptRollout: Double
}

/// A targeting rule, or the fallthrough (no conditions, reason `default`).
struct FlagRule: Sendable {
    let name: String
    /// `nil` when the JSON `dispatchKey` is null, blank or not a string (then `keyId` is used).
    let dispatchKey: String?
    let includedInExpt: Bool
    let conditions: [Condition]
    let rollout: [RolloutEntry]
    let hasSegmentConditions: Bool
}

/// An evaluation-ready view of one flag JSON, built once (regexes compiled, lists decoded, variations resolved,
/// client-payload fragments pre-serialised). Never fails: missing or ill-typed fields take the defaults documented
/// on each property, and a malformed condition is a non-match.
public final class FlagModel: Sendable {
    public let id: String
    /// `""` when absent.
    public let key: String
    /// As stored; `nil` when absent or not a string (the client payload then says `"string"`).
    public let variationType: String?
    public let variations: [FlagVariation]
    /// Missing → false.
    public let isArchived: Bool
    /// Missing or not a boolean → false (the flag then serves its disabled variation).
    public let isEnabled: Bool
    /// Missing → false.
    public let exptIncludeAllTargets: Bool
    public let tags: [String]
    /// `updatedAt` in Unix ms (truncated); 0 when absent or unparseable.
    public let updatedAt: Int64

    let disabledVariation: FlagVariation
    let targets: [(keyIds: OrdinalSet, variation: FlagVariation)]
    let rules: [FlagRule]
    let defaultRule: FlagRule
    let keyUTF8: [UInt8]

    /// `{"id":<key>,"variation":`
    let clientHead: [UInt8]
    /// `,"variationType":<type>,"variationId":`
    let clientTypePart: [UInt8]
    /// `,"variationOptions":[…],"sendToExperiment":`
    let clientOptionsPart: [UInt8]
    /// `,"timestamp":<updatedAt>}`
    let clientTail: [UInt8]

    /// Builds the model from a flag document. `updatedAt` overrides the document's own timestamp (a `DataItem`
    /// already has it parsed).
    public init(json: JSONValue, updatedAt: Int64? = nil) {
        id = json["id"]?.stringValue ?? ""
        key = json["key"]?.stringValue ?? ""
        variationType = json["variationType"]?.stringValue
        isArchived = json["isArchived"]?.boolValue ?? false
        isEnabled = json["isEnabled"]?.boolValue ?? false
        exptIncludeAllTargets = json["exptIncludeAllTargets"]?.boolValue ?? false
        tags = (json["tags"]?.arrayValue ?? []).compactMap(\.stringValue)
        self.updatedAt = updatedAt
            ?? json["updatedAt"]?.stringValue.flatMap(FeatBitTimestamp.milliseconds(fromISO8601:))
            ?? 0

        var variations: [FlagVariation] = []
        for element in json["variations"]?.arrayValue ?? [] {
            guard let id = element["id"]?.stringValue else { continue }
            variations.append(FlagVariation(id: id, value: element["value"]?.stringValue ?? ""))
        }
        self.variations = variations
        func resolve(_ id: String?) -> FlagVariation {
            guard let id else { return .empty }
            return variations.first { Ordinal.equals($0.id, id) } ?? .empty
        }

        disabledVariation = resolve(json["disabledVariationId"]?.stringValue)
        targets = (json["targetUsers"]?.arrayValue ?? []).map { target in
            let keyIds = (target["keyIds"]?.arrayValue ?? []).compactMap(\.stringValue)
            return (OrdinalSet(keyIds), resolve(target["variationId"]?.stringValue))
        }

        func rule(_ json: JSONValue?, name: String?, allowConditions: Bool) -> FlagRule {
            let dispatch = json?["dispatchKey"]?.stringValue
            let conditions = allowConditions
                ? (json?["conditions"]?.arrayValue ?? []).map { Condition(json: $0, allowSegments: true) }
                : []
            let rollout = (json?["variations"]?.arrayValue ?? []).map { entry -> RolloutEntry in
                let bounds = entry["rollout"]?.arrayValue?.compactMap(\.doubleValue) ?? []
                let valid = bounds.count == 2 && entry["rollout"]?.arrayValue?.count == 2
                return RolloutEntry(
                    variation: resolve(entry["id"]?.stringValue),
                    lo: valid ? bounds[0] : 0,
                    hi: valid ? bounds[1] : 0,
                    isValid: valid,
                    exptRollout: entry["exptRollout"]?.doubleValue ?? 0)
            }
            return FlagRule(
                name: name ?? json?["name"]?.stringValue ?? "",
                dispatchKey: Ordinal.isBlank(dispatch) ? nil : dispatch,
                includedInExpt: json?["includedInExpt"]?.boolValue ?? false,
                conditions: conditions,
                rollout: rollout,
                hasSegmentConditions: conditions.contains { if case .segment = $0.test { true } else { false } })
        }
        rules = (json["rules"]?.arrayValue ?? []).map { rule($0, name: nil, allowConditions: true) }
        defaultRule = rule(json["fallthrough"], name: MatchReason.defaultRule, allowConditions: false)
        keyUTF8 = Array(key.utf8)

        var head: [UInt8] = Array(#"{"id":"#.utf8)
        JSONWriter.writeString(key, into: &head)
        head.append(contentsOf: #","variation":"#.utf8)
        clientHead = head
        var typePart: [UInt8] = Array(#","variationType":"#.utf8)
        JSONWriter.writeString(variationType ?? "string", into: &typePart)
        typePart.append(contentsOf: #","variationId":"#.utf8)
        clientTypePart = typePart
        var options: [UInt8] = Array(#","variationOptions":["#.utf8)
        for (index, variation) in variations.enumerated() {
            if index > 0 { options.append(UInt8(ascii: ",")) }
            options.append(contentsOf: #"{"id":"#.utf8)
            JSONWriter.writeString(variation.id, into: &options)
            options.append(contentsOf: #","value":"#.utf8)
            JSONWriter.writeString(variation.value, into: &options)
            options.append(UInt8(ascii: "}"))
        }
        options.append(contentsOf: #"],"sendToExperiment":"#.utf8)
        clientOptionsPart = options
        clientTail = Array(#","timestamp":\#(self.updatedAt)}"#.utf8)
    }

    /// The model of a stored flag (its `updatedAt` already parsed by `DataItem`).
    public convenience init(item: DataItem) {
        self.init(json: item.json, updatedAt: item.updatedAt)
    }

    /// Ids of the segments this flag's rules refer to (for callers that pre-resolve segments).
    public var referencedSegmentIds: [String] {
        var ids: [String] = []
        for rule in rules {
            for condition in rule.conditions {
                if case .segment(let list, _) = condition.test { ids.append(contentsOf: list) }
            }
        }
        return ids
    }
}

/// An evaluation-ready view of one segment JSON (spec §4.2, §5.3.1).
public final class SegmentModel: Sendable {
    public let id: String
    /// Not consulted by evaluation (.NET ignores it too).
    public let isArchived: Bool
    /// 0 when absent or unparseable.
    public let updatedAt: Int64
    let included: OrdinalSet
    let excluded: OrdinalSet
    /// Each rule's conditions (plain operators only).
    let rules: [[Condition]]

    public init(json: JSONValue, updatedAt: Int64? = nil) {
        id = json["id"]?.stringValue ?? ""
        isArchived = json["isArchived"]?.boolValue ?? false
        self.updatedAt = updatedAt
            ?? json["updatedAt"]?.stringValue.flatMap(FeatBitTimestamp.milliseconds(fromISO8601:))
            ?? 0
        included = OrdinalSet((json["included"]?.arrayValue ?? []).compactMap(\.stringValue))
        excluded = OrdinalSet((json["excluded"]?.arrayValue ?? []).compactMap(\.stringValue))
        rules = (json["rules"]?.arrayValue ?? []).map { rule in
            (rule["conditions"]?.arrayValue ?? []).map { Condition(json: $0, allowSegments: false) }
        }
    }

    public convenience init(item: DataItem) {
        self.init(json: item.json, updatedAt: item.updatedAt)
    }

    /// Excluded → false; else included → true; else true iff some rule has all its conditions matching
    /// (an empty rule matches).
    public func matches(_ user: EndUser) -> Bool {
        if excluded.contains(user.keyId) { return false }
        if included.contains(user.keyId) { return true }
        for conditions in rules where conditions.allSatisfy({ $0.matchesPlain(user) }) {
            return true
        }
        return false
    }
}
