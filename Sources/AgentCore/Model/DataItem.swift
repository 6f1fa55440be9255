/// Whether an item is a feature flag or a segment.
public enum ItemKind: String, Sendable, Codable {
    case flag
    case segment
}

/// A flag or segment as FeatBit sent it: the JSON kept verbatim (unknown fields preserved), its compact bytes
/// serialised once, and the fields the agent indexes on (spec §3.5: `id`, `envId`, `updatedAt` are mandatory).
public struct DataItem: Sendable {
    public let kind: ItemKind
    public let id: String
    /// Lowercase GUID text of the entity's own `envId`.
    public let envId: String
    /// `updatedAt` in Unix milliseconds, truncated.
    public let updatedAt: Int64
    public let json: JSONValue
    /// The compact JSON of `json`, written into payloads without re-serialising.
    public let encoded: [UInt8]
    /// Flags only: the public key.
    public let key: String?
    /// Flags only: the raw `value` texts of its segment conditions, for the fan-out of spec §3.7.
    let segmentConditionValues: [String?]
    /// Flags only: the evaluation-ready model, parsed once when the item arrives.
    public let flagModel: FlagModel?
    /// Segments only: the evaluation-ready model.
    public let segmentModel: SegmentModel?

    /// Builds an item from its JSON; throws a reason naming the missing or malformed field.
    public init(kind: ItemKind, json: JSONValue) throws(DataSetError) {
        guard case .object = json else { throw DataSetError("is not a JSON object") }
        guard let id = json["id"]?.stringValue, !id.isEmpty else { throw DataSetError("missing or non-string \"id\"") }
        guard let envText = json["envId"]?.stringValue else { throw DataSetError("missing or non-string \"envId\"") }
        guard let envId = GUIDText.normalise(envText) else { throw DataSetError("\"envId\" is not a GUID: \(envText)") }
        guard let updatedText = json["updatedAt"]?.stringValue else {
            throw DataSetError("missing or non-string \"updatedAt\"")
        }
        guard let updatedAt = FeatBitTimestamp.milliseconds(fromISO8601: updatedText) else {
            throw DataSetError("\"updatedAt\" is not an ISO-8601 timestamp: \(updatedText)")
        }
        self.kind = kind
        self.id = id
        self.envId = envId
        self.updatedAt = updatedAt
        self.json = json
        self.encoded = JSONWriter.bytes(json)
        if kind == .flag {
            self.key = json["key"]?.stringValue
            var values: [String?] = []
            for rule in json["rules"]?.arrayValue ?? [] {
                for condition in rule["conditions"]?.arrayValue ?? [] {
                    let property = condition["property"]?.stringValue
                    if property == SegmentCondition.isInSegment || property == SegmentCondition.isNotInSegment {
                        values.append(condition["value"]?.stringValue)
                    }
                }
            }
            self.segmentConditionValues = values
            self.flagModel = FlagModel(json: json, updatedAt: updatedAt)
            self.segmentModel = nil
        } else {
            self.key = nil
            self.segmentConditionValues = []
            self.flagModel = nil
            self.segmentModel = SegmentModel(json: json, updatedAt: updatedAt)
        }
    }

    /// Whether this flag has a segment condition naming `segmentId` (spec §3.7: a substring test on the raw list
    /// text; a condition without a value counts as a reference, as in the official agent).
    public func references(segmentId: String) -> Bool {
        segmentConditionValues.contains { value in value.map { $0.contains(segmentId) } ?? true }
    }

    /// Same entity, same version, same content: a duplicate push (spec §3.3) that must not be applied twice.
    func isDuplicate(of other: DataItem) -> Bool {
        updatedAt == other.updatedAt && encoded == other.encoded
    }
}

/// The `property` values that mark a segment-membership condition (spec §5.3.1).
public enum SegmentCondition {
    public static let isInSegment = "User is in segment"
    public static let isNotInSegment = "User is not in segment"
}

/// GUID text handling for ids that arrive as strings.
public enum GUIDText {
    /// The lowercase hyphenated form of a GUID string, or `nil` if it is not one.
    public static func normalise(_ text: String) -> String? {
        guard text.utf8.count == 36, let uuid = UUID(uuidString: text) else { return nil }
        return uuid.featbitString
    }
}

import Foundation
