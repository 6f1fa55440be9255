import Dispatch
import Synchronization

/// The single writer of the agent's data (architecture: "the one writer").
///
/// Every source turns its input into a `Change`; `apply` validates nothing more (parsing did), merges it with the
/// timestamp rule, assigns the next sequence number, makes it durable through the journal, publishes the new snapshot,
/// and only then tells the change feed's subscribers. Readers call `snapshot` without waiting for the writer.
public final class DataStore: Sendable {
    private struct WriterState {
        var subscribers: [Int: @Sendable (AppliedChange) -> Void] = [:]
        var nextSubscriberId = 0
    }

    private let current: Mutex<DataSnapshot>
    /// The published snapshot's sequence, readable without the lock (set after the snapshot is published).
    private let publishedSequence: Atomic<UInt64>
    /// Serialises writers; held across the whole apply (merge, journal, publish, notify) so the feed is ordered.
    private let writer = Mutex(WriterState())
    private let journal: (any ChangeJournal)?
    /// Where `applyOnWriterThread` runs `apply`.
    private let writerQueue = DispatchQueue(label: "featbit-agent.store-writer")
    /// Where replaced snapshots are let go (see `retire`).
    private static let retirement = DispatchQueue(label: "featbit-agent.store-retire", qos: .utility)

    public init(initial: DataSnapshot = .empty, journal: (any ChangeJournal)? = nil) {
        self.current = Mutex(initial)
        self.publishedSequence = Atomic(initial.sequence)
        self.journal = journal
    }

    /// The sequence of the current snapshot, one atomic load: hot paths that cache what they built from a snapshot
    /// check it to know nothing changed, without copying the snapshot. A snapshot with this sequence or a newer one
    /// is already published when it is read.
    public var sequence: UInt64 {
        publishedSequence.load(ordering: .acquiring)
    }

    /// The current snapshot; cheap (copies a few references).
    public var snapshot: DataSnapshot {
        current.withLock { $0 }
    }

    /// Registers a change-feed subscriber; returns a token for `unsubscribe`. Subscribers run on the writer's thread
    /// and must only hand the change on (enqueue), never block.
    @discardableResult
    public func subscribe(_ handler: @escaping @Sendable (AppliedChange) -> Void) -> Int {
        writer.withLock { state in
            let id = state.nextSubscriberId
            state.nextSubscriberId += 1
            state.subscribers[id] = handler
            return id
        }
    }

    public func unsubscribe(_ token: Int) {
        _ = writer.withLock { $0.subscribers.removeValue(forKey: token) }
    }

    /// Applies a change. Returns what changed, or `nil` when nothing did (e.g. a duplicate push), in which case no
    /// sequence number is used and nobody is notified.
    @discardableResult
    public func apply(_ change: Change) -> AppliedChange? {
        apply(change, metadata: [:]).change
    }

    /// Applies a change and makes `metadata` durable in the same transaction. With `evenIfUnchanged`, the metadata is
    /// written also when the change alters nothing (a replicated patch of duplicates still moves the node's
    /// replication position); without it, a change that alters nothing writes nothing (a duplicate upstream push).
    public func apply(_ change: Change, metadata: [String: String?], evenIfUnchanged: Bool = true) -> ApplyOutcome {
        writer.withLock { state in
            let before = current.withLock { $0 }
            guard let applied = Self.merge(change, into: before) else {
                let write = evenIfUnchanged && !metadata.isEmpty
                let durable = !write ? journal != nil : journal?.persistMetadata(metadata) ?? false
                return ApplyOutcome(change: nil, durable: durable)
            }
            let durable = journal?.persist(applied, metadata: metadata) ?? false
            current.withLock { $0 = applied.snapshot }
            publishedSequence.store(applied.snapshot.sequence, ordering: .releasing)
            Self.retire(before)
            for subscriber in state.subscribers.values { subscriber(applied) }
            return ApplyOutcome(change: applied, durable: durable)
        }
    }

    /// Keeps a replaced snapshot a second longer, then lets it go on a utility thread. Whoever drops the last
    /// reference frees what only it held: after a full resync of a large tenant that is every item (100,000 flags
    /// took ~300 ms to free), and without this it was often a request or push on an SDK event loop that had read the
    /// snapshot a moment before — a stall of every socket on that loop. Requests hold a snapshot for far less.
    private static func retire(_ snapshot: DataSnapshot) {
        retirement.asyncAfter(deadline: .now() + 1) { withExtendedLifetime(snapshot) {} }
    }

    /// `apply`, run on the store's own writer thread. With a journal, `apply` waits for a database commit (an fsync);
    /// async callers (HTTP handlers, the upstream client, the data-file watcher) use this so that wait blocks the
    /// writer thread instead of a Swift concurrency pool thread — there is one per core, serving every HTTP request.
    @discardableResult
    public func applyOnWriterThread(_ change: Change) async -> AppliedChange? {
        await applyOnWriterThread(change, metadata: [:]).change
    }

    /// `apply(_:metadata:)` on the writer thread. Calls made in order from one thread are applied in that order.
    public func applyOnWriterThread(_ change: Change, metadata: [String: String?],
                                    evenIfUnchanged: Bool = true) async -> ApplyOutcome {
        await withCheckedContinuation { continuation in
            writerQueue.async {
                continuation.resume(returning: self.apply(change, metadata: metadata, evenIfUnchanged: evenIfUnchanged))
            }
        }
    }

    /// Enqueues `apply(_:metadata:)` on the writer thread now (so calls keep their order) and calls `completion` there.
    public func enqueueApply(_ change: Change, metadata: [String: String?],
                             completion: @escaping @Sendable (ApplyOutcome) -> Void) {
        writerQueue.async { completion(self.apply(change, metadata: metadata)) }
    }

    /// Pure merge: the applied change, or `nil` if the change alters nothing.
    static func merge(_ change: Change, into before: DataSnapshot) -> AppliedChange? {
        switch change {
        case .replace(let environments):
            return replace(with: environments, before: before)
        case .replicatedReplace(let environments):
            return replace(with: environments, before: before, keepingNewer: true)
        case .upsert(let environments):
            return upsert(environments, before: before)
        }
    }

    /// - Parameter keepingNewer: a replicated snapshot never moves an item back: where the node holds a newer version
    ///   of an item than the snapshot, it keeps its own (an upstream `rp_full` replaces as is).
    private static func replace(with environments: [EnvironmentData], before: DataSnapshot,
                                keepingNewer: Bool = false) -> AppliedChange? {
        // Entities are indexed by their own envId (spec §3.5); secrets by the item they came with.
        var secrets: [String: [SecretRecord]] = [:]
        var flags: [String: [String: DataItem]] = [:]
        var segments: [String: [String: DataItem]] = [:]
        var envIds: Set<String> = []
        for env in environments {
            envIds.insert(env.envId)
            if let s = env.secrets { secrets[env.envId, default: []].append(contentsOf: s) }
            for item in env.flags { keepNewest(item, in: &flags[item.envId, default: [:]]); envIds.insert(item.envId) }
            for item in env.segments { keepNewest(item, in: &segments[item.envId, default: [:]]); envIds.insert(item.envId) }
        }
        // An item the source sent in a version that was refused: the version held keeps serving.
        for ref in environments.flatMap(\.refused) {
            switch ref.kind {
            case .flag:
                guard flags[ref.envId]?[ref.id] == nil, let held = before.environments[ref.envId]?.flags[ref.id] else { continue }
                flags[ref.envId, default: [:]][ref.id] = held
            case .segment:
                guard segments[ref.envId]?[ref.id] == nil, let held = before.environments[ref.envId]?.segments[ref.id] else {
                    continue
                }
                segments[ref.envId, default: [:]][ref.id] = held
            }
            envIds.insert(ref.envId)
        }
        if keepingNewer {
            for (envId, items) in flags {
                for (id, item) in items {
                    if let held = before.environments[envId]?.flags[id], held.updatedAt > item.updatedAt { flags[envId]?[id] = held }
                }
            }
            for (envId, items) in segments {
                for (id, item) in items {
                    if let held = before.environments[envId]?.segments[id], held.updatedAt > item.updatedAt {
                        segments[envId]?[id] = held
                    }
                }
            }
        }
        var newEnvironments: [String: EnvironmentSnapshot] = [:]
        var deltas: [EnvironmentDelta] = []
        for envId in envIds.sorted() {
            let newFlags = flags[envId] ?? [:]
            let newSegments = segments[envId] ?? [:]
            let newSecrets = dedupSecrets(secrets[envId] ?? [])
            let old = before.environments[envId]
            if let old, old.secrets == newSecrets, sameItems(old.flags, newFlags), sameItems(old.segments, newSegments) {
                newEnvironments[envId] = old
                continue
            }
            let snapshot = EnvironmentSnapshot(envId: envId, secrets: newSecrets, flags: newFlags, segments: newSegments)
            newEnvironments[envId] = snapshot
            let changedFlags = snapshot.sortedFlags.filter { item in !(old?.flags[item.id]?.isDuplicate(of: item) ?? false) }
            let changedSegments = snapshot.sortedSegments.filter { item in
                !(old?.segments[item.id]?.isDuplicate(of: item) ?? false)
            }
            let removedSomething = old.map { old in
                old.flags.keys.contains { newFlags[$0] == nil } || old.segments.keys.contains { newSegments[$0] == nil }
            } ?? false
            deltas.append(EnvironmentDelta(envId: envId, flags: changedFlags, segments: changedSegments,
                                           needsFull: removedSomething))
        }
        let removed = before.environments.keys.filter { !envIds.contains($0) }.sorted()
        if deltas.isEmpty, removed.isEmpty, before.isInitialised { return nil }
        let sequence = before.sequence + 1
        let snapshot = DataSnapshot(environments: newEnvironments, isInitialised: true, sequence: sequence)
        return AppliedChange(sequence: sequence, kind: .replace, deltas: deltas, removedEnvIds: removed, snapshot: snapshot)
    }

    private static func upsert(_ environments: [EnvironmentData], before: DataSnapshot) -> AppliedChange? {
        var changedFlags: [String: [String: DataItem]] = [:]
        var changedSegments: [String: [String: DataItem]] = [:]
        for env in environments {
            for item in env.flags {
                let stored = changedFlags[item.envId]?[item.id] ?? before.environments[item.envId]?.flags[item.id]
                if Self.shouldReplace(stored: stored, with: item) { changedFlags[item.envId, default: [:]][item.id] = item }
            }
            for item in env.segments {
                let stored = changedSegments[item.envId]?[item.id] ?? before.environments[item.envId]?.segments[item.id]
                if Self.shouldReplace(stored: stored, with: item) {
                    changedSegments[item.envId, default: [:]][item.id] = item
                }
            }
        }
        let touched = Set(changedFlags.keys).union(changedSegments.keys)
        guard !touched.isEmpty else { return nil }
        var newEnvironments = before.environments
        var deltas: [EnvironmentDelta] = []
        let ascending = EnvironmentSnapshot.ascending
        for envId in touched.sorted() {
            let f = (changedFlags[envId] ?? [:]).values.sorted(by: ascending)
            let s = (changedSegments[envId] ?? [:]).values.sorted(by: ascending)
            // Patched in place of the changed items: the cost follows the change, not the environment's size.
            let old = before.environments[envId]
                ?? EnvironmentSnapshot(envId: envId, secrets: [], flags: [:], segments: [:])
            newEnvironments[envId] = old.upserting(flags: f, segments: s)
            deltas.append(EnvironmentDelta(envId: envId, flags: f, segments: s, needsFull: false))
        }
        let sequence = before.sequence + 1
        // An upsert never touches secrets (spec §3.5): the secret index carries over.
        let snapshot = DataSnapshot(environments: newEnvironments, isInitialised: before.isInitialised, sequence: sequence,
                                    sameSecretsAs: before)
        return AppliedChange(sequence: sequence, kind: .upsert, deltas: deltas, removedEnvIds: [], snapshot: snapshot)
    }

    /// The upsert rule of spec §3.5: insert if absent; replace if stored `updatedAt` ≤ incoming; but an identical
    /// item (same version, same bytes) is a duplicate and changes nothing.
    static func shouldReplace(stored: DataItem?, with incoming: DataItem) -> Bool {
        guard let stored else { return true }
        if stored.isDuplicate(of: incoming) { return false }
        return stored.updatedAt <= incoming.updatedAt
    }

    private static func keepNewest(_ item: DataItem, in items: inout [String: DataItem]) {
        if let existing = items[item.id], existing.updatedAt > item.updatedAt { return }
        items[item.id] = item
    }

    private static func dedupSecrets(_ secrets: [SecretRecord]) -> [SecretRecord] {
        var seen: Set<String> = []
        return secrets.filter { seen.insert($0.value).inserted }
    }

    private static func sameItems(_ a: [String: DataItem], _ b: [String: DataItem]) -> Bool {
        guard a.count == b.count else { return false }
        for (id, item) in a {
            guard let other = b[id], other.isDuplicate(of: item) else { return false }
        }
        return true
    }
}
