/// What one applied change did to one environment: the items whose stored value changed, in ascending `updatedAt`
/// order (the order SDK pushes must follow, spec §3.7).
public struct EnvironmentDelta: Sendable {
    public let envId: String
    public let flags: [DataItem]
    public let segments: [DataItem]
    /// Items were removed or secrets changed: only a `full` message can tell SDKs (a replace did it).
    public let needsFull: Bool

    public var isEmpty: Bool { flags.isEmpty && segments.isEmpty && !needsFull }
}

/// An entry of the change feed: a change the store applied (and made durable), with its sequence number.
/// Subscribers (SDK fan-out, replication, metrics) get these in sequence order and never query the store mid-change.
public struct AppliedChange: Sendable {
    public enum Kind: String, Sendable {
        case replace
        case upsert
    }

    public let sequence: UInt64
    public let kind: Kind
    /// Environments whose data changed; environments a change left as they were are absent.
    public let deltas: [EnvironmentDelta]
    /// Environments that a replace removed.
    public let removedEnvIds: [String]
    /// The state after the change.
    public let snapshot: DataSnapshot
}

/// Makes applied changes durable before anyone sees them (implemented by the Persistence module).
/// It reports its own failures (log line, status, metric); the store keeps serving from memory regardless.
public protocol ChangeJournal: Sendable {
    /// Writes the change and `metadata` in one transaction. Returns whether both are durable.
    func persist(_ change: AppliedChange, metadata: [String: String?]) -> Bool
    /// Writes only `metadata` (a change that altered no data still moves the mesh's replication position).
    /// Returns whether it is durable.
    func persistMetadata(_ metadata: [String: String?]) -> Bool
}

/// What `DataStore.apply` did: the applied change (`nil` when nothing changed) and whether the change and its
/// metadata are durable (always `false` without a journal).
public struct ApplyOutcome: Sendable {
    public let change: AppliedChange?
    public let durable: Bool
}
