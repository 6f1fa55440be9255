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
    /// Flags only: the model and the segment references, derived from `encoded` when first needed.
    private let derived: DerivedFlagParts?
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
        derived?.model(encoded: encoded, updatedAt: updatedAt)
    }

    /// The item's JSON, parsed again from `encoded` (which was written from a parsed value, so it parses).
    public var json: JSONValue {
        (try? JSONValue.parse(encoded)) ?? .null
    }

    /// Builds an item from its JSON; throws a reason naming the missing or malformed field.
    public convenience init(kind: ItemKind, json: JSONValue) throws(DataSetError) {
        guard case .object = json else { throw DataSetError("is not a JSON object") }
        try self.init(kind: kind, encoded: JSONWriter.bytes(json), id: json["id"]?.stringValue,
                      envId: json["envId"]?.stringValue, updatedAt: json["updatedAt"]?.stringValue,
                      key: json["key"]?.stringValue, segmentModel: { SegmentModel(json: json, updatedAt: $0) })
    }

    /// A flag as featbit.db stored it: `encoded` are the bytes `JSONWriter` wrote for it. They are checked to be one
    /// JSON object and read for the indexed fields only; the model and segment references wait for their first use.
    /// A cold start reads a large tenant's flags this way several times faster than through a parse tree.
    public convenience init(storedFlag encoded: [UInt8]) throws(DataSetError) {
        let fields = encoded.withUnsafeBytes { JSONReader.topLevelStrings($0, keys: Self.indexedKeys) }
        guard let fields else { throw DataSetError("is not a JSON object") }
        try self.init(kind: .flag, encoded: encoded, id: fields["id"], envId: fields["envId"],
                      updatedAt: fields["updatedAt"], key: fields["key"], segmentModel: { _ in nil })
    }

    private static let indexedKeys: Set<String> = ["id", "envId", "updatedAt", "key"]

    private init(kind: ItemKind, encoded: [UInt8], id: String?, envId envText: String?, updatedAt updatedText: String?,
                 key: String?, segmentModel: (Int64) -> SegmentModel?) throws(DataSetError) {
        guard let id, !id.isEmpty else { throw DataSetError("missing or not a non-empty string", path: "id") }
        guard let envText else { throw DataSetError("missing or not a string", path: "envId") }
        guard let envId = GUIDText.normalise(envText) else { throw DataSetError("is not a GUID: \(envText)", path: "envId") }
        guard let updatedText else { throw DataSetError("missing or not a string", path: "updatedAt") }
        guard let updatedAt = FeatBitTimestamp.milliseconds(fromISO8601: updatedText) else {
            throw DataSetError("is not an ISO-8601 timestamp: \(updatedText)", path: "updatedAt")
        }
        self.kind = kind
        self.id = id
        self.envId = envId
        self.updatedAt = updatedAt
        self.encoded = encoded
        self.versionHash = Self.versionHash(kind: kind, id: id, updatedAt: updatedAt)
        if kind == .flag {
            self.key = key
            self.derived = DerivedFlagParts()
            self.segmentModel = nil
        } else {
            self.key = nil
            self.derived = nil
            self.segmentModel = segmentModel(updatedAt)
        }
    }

    /// Whether this flag has a segment condition naming `segmentId` (spec §3.7: a substring test on the raw list
    /// text; a condition without a value counts as a reference, as in the official agent).
    public func references(segmentId: String) -> Bool {
        guard let derived else { return false }
        return derived.segmentConditionValues(encoded: encoded).contains { value in
            value.map { $0.contains(segmentId) } ?? true
        }
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

/// What a flag derives from its JSON when first needed: its model, and the raw `value` texts of its segment
/// conditions (the fan-out of spec §3.7). Concurrent first users wait for the one build.
private final class DerivedFlagParts: Sendable {
    private let model = Mutex<FlagModel?>(nil)
    private let conditionValues = Mutex<[String?]?>(nil)

    func model(encoded: [UInt8], updatedAt: Int64) -> FlagModel {
        model.withLock { stored in
            if let stored { return stored }
            let built = FlagModel(json: (try? JSONValue.parse(encoded)) ?? .null, updatedAt: updatedAt)
            stored = built
            return built
        }
    }

    func segmentConditionValues(encoded: [UInt8]) -> [String?] {
        conditionValues.withLock { stored in
            if let stored { return stored }
            let values = Self.read(encoded)
            stored = values
            return values
        }
    }

    /// `encoded` is JSONWriter's output, which writes these property names as they are: a flag without the common
    /// prefix of both has no segment condition and needs no parse.
    private static let marker = Array("\"User is ".utf8)

    private static func read(_ encoded: [UInt8]) -> [String?] {
        guard encoded.firstRange(of: marker) != nil, let json = try? JSONValue.parse(encoded) else { return [] }
        var values: [String?] = []
        for rule in json["rules"]?.arrayValue ?? [] {
            for condition in rule["conditions"]?.arrayValue ?? [] {
                let property = condition["property"]?.stringValue
                if property == SegmentCondition.isInSegment || property == SegmentCondition.isNotInSegment {
                    values.append(condition["value"]?.stringValue)
                }
            }
        }
        return values
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
