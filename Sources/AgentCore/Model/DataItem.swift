/// Whether an item is a feature flag or a segment.
public enum ItemKind: String, Sendable, Codable {
    case flag
    case segment
}

/// A flag or segment as FeatBit sent it: its compact JSON bytes serialised once (unknown fields preserved), the
/// fields the agent indexes on (spec §3.5: `id`, `envId`, `updatedAt` are mandatory) and its evaluation model.
///
/// A class, so the indexes of a snapshot (by id, in `updatedAt` order) and every snapshot that shares the item hold
/// one reference, not a copy of its fields. The parse tree is not kept: `json` parses `encoded` again when asked
/// (backups and payloads use `encoded`; only tools and tests read `json`). A large tenant's flags then cost their
/// JSON bytes plus their models.
public final class DataItem: Sendable {
    public let kind: ItemKind
    public let id: String
    /// Lowercase GUID text of the entity's own `envId`.
    public let envId: String
    /// `updatedAt` in Unix milliseconds, truncated.
    public let updatedAt: Int64
    /// The compact JSON of the item, written into payloads without re-serialising.
    public let encoded: [UInt8]
    /// Flags only: the public key.
    public let key: String?
    /// Flags only: the raw `value` texts of its segment conditions, for the fan-out of spec §3.7.
    let segmentConditionValues: [String?]
    /// Flags only: the evaluation-ready model, built at its first use and kept (see `flagModel`).
    private let lazyFlagModel: LazyFlagModel?
    /// Segments only: the evaluation-ready model.
    public let segmentModel: SegmentModel?
    /// 64 bits of SHA-256 over kind, id and `updatedAt`: an environment's digest combines these, so a change updates
    /// it in time that does not depend on the environment's size.
    public let versionHash: UInt64

    /// Flags only: the evaluation-ready model (regexes compiled, lists decoded), built from `encoded` the first time a
    /// client SDK, the evaluate API or OFREP needs it, then kept. Server SDKs evaluate for themselves, so a tenant
    /// served only to server SDKs never pays for models (a model is several times its flag's JSON), and a cold start
    /// does not build thousands of them before serving.
    public var flagModel: FlagModel? {
        lazyFlagModel?.model(encoded: encoded, updatedAt: updatedAt)
    }

    /// The item's JSON, parsed again from `encoded` (which was written from a parsed value, so it parses).
    public var json: JSONValue {
        (try? JSONValue.parse(encoded)) ?? .null
    }

    /// Builds an item from its JSON; throws a reason naming the missing or malformed field. `encoded`: the bytes
    /// `JSONWriter` already wrote for this `json` (a featbit.db row), so a cold start does not write them again.
    public init(kind: ItemKind, json: JSONValue, encoded: [UInt8]? = nil) throws(DataSetError) {
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
        self.encoded = encoded ?? JSONWriter.bytes(json)
        self.versionHash = Self.versionHash(kind: kind, id: id, updatedAt: updatedAt)
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
            self.lazyFlagModel = LazyFlagModel()
            self.segmentModel = nil
        } else {
            self.key = nil
            self.segmentConditionValues = []
            self.lazyFlagModel = nil
            self.segmentModel = SegmentModel(json: json, updatedAt: updatedAt)
        }
    }

    /// Whether this flag has a segment condition naming `segmentId` (spec §3.7: a substring test on the raw list
    /// text; a condition without a value counts as a reference, as in the official agent).
    public func references(segmentId: String) -> Bool {
        segmentConditionValues.contains { value in value.map { $0.contains(segmentId) } ?? true }
    }

    static func versionHash(kind: ItemKind, id: String, updatedAt: Int64) -> UInt64 {
        let digest = SHA256.hash(data: Array("\(kind == .flag ? "f" : "g") \(id) \(updatedAt)\n".utf8))
        return digest.withUnsafeBytes { raw in raw.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }

    /// Same entity, same version, same content: a duplicate push (spec §3.3) that must not be applied twice.
    func isDuplicate(of other: DataItem) -> Bool {
        updatedAt == other.updatedAt && encoded == other.encoded
    }
}

/// A flag's model, built once on first use; concurrent first users wait for the one build.
private final class LazyFlagModel: Sendable {
    private let storage = Mutex<FlagModel?>(nil)

    func model(encoded: [UInt8], updatedAt: Int64) -> FlagModel {
        storage.withLock { stored in
            if let stored { return stored }
            let built = FlagModel(json: (try? JSONValue.parse(encoded)) ?? .null, updatedAt: updatedAt)
            stored = built
            return built
        }
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

import Crypto
import Foundation
import Synchronization
