import Crypto

/// The immutable state of one environment: secrets, flags and segments by id, its version, and its server-SDK
/// `full` payload serialised once (every server SDK asking for a full sync gets the same bytes).
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
    /// `{"messageType":"data-sync","data":{"eventType":"full",…}}` for server SDKs.
    public let serverFullMessage: [UInt8]
    /// Segment models by id, for evaluating client SDK flags.
    public let segmentModels: [String: SegmentModel]
    /// SHA-256 (first 8 bytes) over the secrets and every flag's and segment's `(id, updatedAt)`: two copies of an
    /// environment with equal versions but different items (a missed deletion) differ here. Computed once per
    /// rebuild of this environment, so comparing data sets costs per environment, not per item.
    public let digest: [UInt8]
    /// Flag models by public key, compared ordinally, for evaluating one flag by key (OFREP). FeatBit keeps keys
    /// unique in an environment; should a data set hold two flags with one key, a live flag wins over an archived
    /// one, then the more recently updated (`sortedFlags` is in ascending `updatedAt` order).
    private let flagModelsByKey: [OrdinalKey: FlagModel]

    public init(envId: String, secrets: [SecretRecord], flags: [String: DataItem], segments: [String: DataItem]) {
        self.envId = envId
        self.secrets = secrets
        self.flags = flags
        self.segments = segments
        let ascending: (DataItem, DataItem) -> Bool = { ($0.updatedAt, $0.id) < ($1.updatedAt, $1.id) }
        self.sortedFlags = flags.values.sorted(by: ascending)
        self.sortedSegments = segments.values.sorted(by: ascending)
        self.version = max(sortedFlags.last?.updatedAt ?? 0, sortedSegments.last?.updatedAt ?? 0)
        self.serverFullMessage = SDKPayload.serverDataSync(eventType: .full, flags: sortedFlags, segments: sortedSegments)
        self.segmentModels = segments.compactMapValues(\.segmentModel)
        var byKey: [OrdinalKey: FlagModel] = [:]
        byKey.reserveCapacity(flags.count)
        for model in sortedFlags.lazy.compactMap(\.flagModel) {
            let key = OrdinalKey(model.key)
            if let held = byKey[key], model.isArchived && !held.isArchived { continue }
            byKey[key] = model
        }
        self.flagModelsByKey = byKey
        var hasher = SHA256()
        for secret in secrets.sorted(by: { $0.value < $1.value }) {
            hasher.update(data: Array("s \(secret.type.rawValue) \(secret.value)\n".utf8))
        }
        for (tag, items) in [("f", sortedFlags), ("g", sortedSegments)] {
            for item in items { hasher.update(data: Array("\(tag) \(item.id) \(item.updatedAt)\n".utf8)) }
        }
        self.digest = Array(hasher.finalize().prefix(8))
    }

    /// The flag whose public key is `key` (ordinal comparison), if the environment holds one.
    public func flagModel(key: String) -> FlagModel? {
        flagModelsByKey[OrdinalKey(key)]
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
