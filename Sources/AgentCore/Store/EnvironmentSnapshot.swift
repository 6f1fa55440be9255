import Crypto
import Synchronization

/// The immutable state of one environment: secrets, flags and segments by id and in `updatedAt` order, its version
/// and digest, and its server-SDK `full` payload serialised at most once (every server SDK asking for a full sync gets
/// the same bytes).
///
/// A change of a few items (`upserting`) costs in proportion to the change, not to the environment: the ordered lists
/// are patched by binary search, the digest combines per-item hashes, and the `full` payload is only written when
/// somebody asks for it. Large tenants hold thousands of flags per environment and change one at a time.
public struct EnvironmentSnapshot: Sendable {
    public let envId: String
    public let secrets: [SecretRecord]
    public let flags: [String: DataItem]
    public let segments: [String: DataItem]
    /// Flags in ascending `updatedAt` order (ties by id), the order pushes and payloads use (spec §3.7).
    public let sortedFlags: [DataItem]
    public let sortedSegments: [DataItem]
    /// Max `updatedAt` over flags and segments; 0 for an environment without entities.
    public let version: Int64
    /// Segment models by id, for evaluating client SDK flags.
    public let segmentModels: [String: SegmentModel]
    /// 8 bytes: a SHA-256 over the secrets combined (XOR) with every flag's and segment's `versionHash` (kind, id,
    /// `updatedAt`): two copies of an environment with equal versions but different items (a missed deletion) differ
    /// here.
    public var digest: [UInt8] {
        let value = secretsHash ^ itemsHash
        return (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
    }

    private let secretsHash: UInt64
    private let itemsHash: UInt64
    private let fullMessage: LazyBytes
    /// Flags by public key, compared ordinally, for evaluating one flag by key (OFREP). FeatBit keeps keys unique in
    /// an environment; should a data set hold two flags with one key, a live flag wins over an archived one, then the
    /// more recently updated. Items, not models, so indexing builds no model.
    private let flagsByKey: [OrdinalKey: DataItem]
    /// Whether two flags share a key (then every flag change rebuilds `flagsByKey`; otherwise it is patched).
    private let hasKeyCollisions: Bool

    /// `{"messageType":"data-sync","data":{"eventType":"full",…}}` for server SDKs, written at its first use.
    public var serverFullMessage: [UInt8] {
        fullMessage.value { SDKPayload.serverDataSync(eventType: .full, flags: sortedFlags, segments: sortedSegments) }
    }

    public init(envId: String, secrets: [SecretRecord], flags: [String: DataItem], segments: [String: DataItem]) {
        let sortedFlags = flags.values.sorted(by: Self.ascending)
        let sortedSegments = segments.values.sorted(by: Self.ascending)
        var itemsHash: UInt64 = 0
        for item in sortedFlags { itemsHash ^= item.versionHash }
        for item in sortedSegments { itemsHash ^= item.versionHash }
        let (byKey, collisions) = Self.keyIndex(sortedFlags)
        self.init(envId: envId, secrets: secrets, flags: flags, segments: segments, sortedFlags: sortedFlags,
                  sortedSegments: sortedSegments, segmentModels: segments.compactMapValues(\.segmentModel),
                  secretsHash: Self.secretsHash(secrets), itemsHash: itemsHash, flagsByKey: byKey,
                  hasKeyCollisions: collisions)
    }

    private init(envId: String, secrets: [SecretRecord], flags: [String: DataItem], segments: [String: DataItem],
                 sortedFlags: [DataItem], sortedSegments: [DataItem], segmentModels: [String: SegmentModel],
                 secretsHash: UInt64, itemsHash: UInt64, flagsByKey: [OrdinalKey: DataItem], hasKeyCollisions: Bool) {
        self.envId = envId
        self.secrets = secrets
        self.flags = flags
        self.segments = segments
        self.sortedFlags = sortedFlags
        self.sortedSegments = sortedSegments
        self.version = max(sortedFlags.last?.updatedAt ?? 0, sortedSegments.last?.updatedAt ?? 0)
        self.segmentModels = segmentModels
        self.secretsHash = secretsHash
        self.itemsHash = itemsHash
        self.fullMessage = LazyBytes()
        self.flagsByKey = flagsByKey
        self.hasKeyCollisions = hasKeyCollisions
    }

    /// The flag whose public key is `key` (ordinal comparison), if the environment holds one.
    public func flagModel(key: String) -> FlagModel? {
        flagsByKey[OrdinalKey(key)]?.flagModel
    }

    /// This environment with `changedFlags` and `changedSegments` put in place of the items with their ids (or added):
    /// the same value as building it from all items, in time proportional to the change (plus copying references).
    public func upserting(flags changedFlags: [DataItem], segments changedSegments: [DataItem]) -> EnvironmentSnapshot {
        var flags = self.flags
        var segments = self.segments
        var sortedFlags = self.sortedFlags
        var sortedSegments = self.sortedSegments
        var segmentModels = self.segmentModels
        var itemsHash = self.itemsHash
        var flagsByKey = self.flagsByKey
        var rebuildKeys = hasKeyCollisions
        for item in changedFlags {
            let old = flags[item.id]
            Self.put(item, into: &flags, sorted: &sortedFlags, hash: &itemsHash)
            guard !rebuildKeys else { continue }
            // Keys are unique so far: the old item's key entry goes, the new item's comes, unless that makes two.
            if let old { flagsByKey[OrdinalKey(old.key ?? "")] = nil }
            let key = OrdinalKey(item.key ?? "")
            if flagsByKey[key] != nil { rebuildKeys = true } else { flagsByKey[key] = item }
        }
        var hasKeyCollisions = self.hasKeyCollisions
        if rebuildKeys, !changedFlags.isEmpty { (flagsByKey, hasKeyCollisions) = Self.keyIndex(sortedFlags) }
        for item in changedSegments {
            Self.put(item, into: &segments, sorted: &sortedSegments, hash: &itemsHash)
            segmentModels[item.id] = item.segmentModel
        }
        return EnvironmentSnapshot(envId: envId, secrets: secrets, flags: flags, segments: segments,
                                   sortedFlags: sortedFlags, sortedSegments: sortedSegments, segmentModels: segmentModels,
                                   secretsHash: secretsHash, itemsHash: itemsHash, flagsByKey: flagsByKey,
                                   hasKeyCollisions: hasKeyCollisions)
    }

    /// Flags by key, the later of two with one key winning unless it is archived and the earlier is not (models are
    /// built only for such pairs); and whether any key is shared.
    private static func keyIndex(_ sortedFlags: [DataItem]) -> ([OrdinalKey: DataItem], Bool) {
        var byKey: [OrdinalKey: DataItem] = [:]
        byKey.reserveCapacity(sortedFlags.count)
        var collisions = false
        for item in sortedFlags {
            let key = OrdinalKey(item.key ?? "")
            if let held = byKey[key] {
                collisions = true
                if item.flagModel?.isArchived == true && held.flagModel?.isArchived != true { continue }
            }
            byKey[key] = item
        }
        return (byKey, collisions)
    }

    /// Puts `item` in place of the item with its id (or adds it) in both indexes and the combined hash.
    private static func put(_ item: DataItem, into byId: inout [String: DataItem], sorted: inout [DataItem],
                            hash: inout UInt64) {
        if let old = byId.updateValue(item, forKey: item.id) {
            hash ^= old.versionHash
            remove(old, from: &sorted)
        }
        hash ^= item.versionHash
        insert(item, into: &sorted)
    }

    static let ascending: @Sendable (DataItem, DataItem) -> Bool = { ($0.updatedAt, $0.id) < ($1.updatedAt, $1.id) }

    /// The first index whose item does not sort before `item`.
    private static func lowerBound(of item: DataItem, in sorted: [DataItem]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if ascending(sorted[middle], item) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private static func insert(_ item: DataItem, into sorted: inout [DataItem]) {
        sorted.insert(item, at: lowerBound(of: item, in: sorted))
    }

    private static func remove(_ item: DataItem, from sorted: inout [DataItem]) {
        let index = lowerBound(of: item, in: sorted)
        if index < sorted.count, sorted[index] === item {
            sorted.remove(at: index)
        } else if let found = sorted.firstIndex(where: { $0 === item }) {
            sorted.remove(at: found)
        }
    }

    private static func secretsHash(_ secrets: [SecretRecord]) -> UInt64 {
        var hasher = SHA256()
        for secret in secrets.sorted(by: { $0.value < $1.value }) {
            hasher.update(data: Array("s \(secret.type.rawValue) \(secret.value)\n".utf8))
        }
        return hasher.finalize().withUnsafeBytes { raw in raw.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }

    /// Flags and segments strictly newer than `timestamp` (the patch filter of spec §2.4.1).
    public func items(after timestamp: Int64) -> (flags: [DataItem], segments: [DataItem]) {
        guard timestamp > 0 else { return (sortedFlags, sortedSegments) }
        return (sortedFlags.filter { $0.updatedAt > timestamp }, sortedSegments.filter { $0.updatedAt > timestamp })
    }

    /// `projectKey:envKey` of the first secret, as the status `serves` field lists it.
    public var servesLabel: String? {
        secrets.first.map { "\($0.projectKey):\($0.envKey)" }
    }
}

/// Bytes computed at their first use and kept: one per environment snapshot, shared by its copies.
final class LazyBytes: Sendable {
    private let storage = Mutex<[UInt8]?>(nil)

    func value(_ make: () -> [UInt8]) -> [UInt8] {
        storage.withLock { stored in
            if let stored { return stored }
            let made = make()
            stored = made
            return made
        }
    }
}
