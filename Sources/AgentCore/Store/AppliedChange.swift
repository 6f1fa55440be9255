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
    func persist(_ change: AppliedChange)
}
