import AgentCore
import Foundation
import GRDB
import Logging
import Metrics
import Synchronization

/// featbit.db: the agent's durable copy of everything it serves (SQLite via GRDB, WAL, `synchronous=FULL`).
///
/// It is the store's `ChangeJournal`: `DataStore` calls `persist` with its writer lock held, before it publishes the
/// change, so a change is committed to disk before any SDK or peer sees it. A failed write never stops the agent: it
/// logs `db-write-failed` once, reports itself unhealthy (status problem `db`, metric), keeps serving from memory, and
/// rewrites the whole current state at the next successful write or retry.
///
/// Other writes (metadata, local insights) go through the same lock, so everything the db does is serialised.
public final class FeatBitDatabase: ChangeJournal, Sendable {
    public let path: String
    private let queue: DatabaseQueue
    private let logger: Logger
    private let status: AgentStatusBoard?
    private let onHealthChange: (@Sendable (DatabaseHealth) -> Void)?
    private let healthHandler = Mutex<(@Sendable (DatabaseHealth) -> Void)?>(nil)
    private let state: Mutex<WriterState>
    private let metadataCache: Mutex<[String: String]>
    /// Test hook: when set, every write fails with this error before touching SQLite (used only where a real
    /// filesystem fault cannot be produced).
    let injectedWriteError = Mutex<DatabaseError?>(nil)

    private struct WriterState {
        var closed = false
        var health: DatabaseHealth = .healthy
        /// Sequence number of the state the file holds.
        var storedSequence: UInt64
        /// The newest state that could not be written; the next successful write rewrites it whole.
        var pending: DataSnapshot?
        /// Failed writes since the last success.
        var failedWrites = 0
    }

    private enum Transition {
        case failed(String)
        case recovered(missedWrites: Int)
    }

    static let healthyGauge = Gauge(label: "featbit_agent_db_healthy")
    static let writeFailures = Counter(label: "featbit_agent_db_write_failures_total")

    init(path: String, queue: DatabaseQueue, storedSequence: UInt64, metadata: [String: String], logger: Logger,
         status: AgentStatusBoard?, onHealthChange: (@Sendable (DatabaseHealth) -> Void)?) {
        self.path = path
        self.queue = queue
        self.logger = logger
        self.status = status
        self.onHealthChange = onHealthChange
        self.state = Mutex(WriterState(storedSequence: storedSequence))
        self.metadataCache = Mutex(metadata)
        Self.healthyGauge.record(1)
    }

    // MARK: - State

    /// Also tell `handler` when writes start failing or succeed again (after the whole state was rewritten).
    public func setHealthHandler(_ handler: @escaping @Sendable (DatabaseHealth) -> Void) {
        healthHandler.withLock { $0 = handler }
    }

    /// Whether writes currently succeed.
    public var health: DatabaseHealth {
        state.withLock { $0.health }
    }

    /// Sequence number of the state held in the file.
    public var storedSequence: UInt64 {
        state.withLock { $0.storedSequence }
    }

    /// Closes the file (checkpointing the WAL into it). Later writes are ignored (persist) or throw (others).
    public func close() {
        state.withLock { s in
            guard !s.closed else { return }
            s.closed = true
            do {
                try queue.close()
            } catch {
                logger.warning("featbit.db did not close cleanly: \(error)", metadata: ["event": "db-close-failed"])
            }
        }
    }

    // MARK: - ChangeJournal

    public func persist(_ change: AppliedChange) {
        persist(change, metadata: [:])
    }

    public func persistMetadata(_ metadata: [String: String?]) -> Bool {
        (try? setMetadata(metadata)) != nil
    }

    /// Writes a change, and optionally metadata in the same transaction (e.g. the mesh's applied term and sequence).
    /// Returns whether the change is durable.
    @discardableResult
    public func persist(_ change: AppliedChange, metadata: [String: String?]) -> Bool {
        var transition: Transition?
        let ok = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            // Incremental only when the file holds exactly the state before this change.
            let incremental = s.pending == nil && change.sequence == s.storedSequence &+ 1
            do {
                try performWrite { db in
                    if incremental {
                        try DataWrites.writeIncremental(db, change)
                    } else {
                        try DataWrites.writeAll(db, change.snapshot)
                    }
                    try DataWrites.writeMetadata(db, metadata)
                }
                s.storedSequence = change.sequence
                s.pending = nil
                transition = succeeded(&s)
                return true
            } catch {
                s.pending = change.snapshot
                transition = failed(&s, error, writing: "change \(change.sequence)")
                return false
            }
        }
        if ok, !metadata.isEmpty { updateCache(metadata) }
        report(transition)
        return ok
    }

    /// Retries a failed write now: rewrites the whole pending state (or probes the file when only a metadata or
    /// insight write failed). Returns whether the db is healthy afterwards.
    @discardableResult
    public func retryNow() -> Bool {
        var transition: Transition?
        let healthy = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            guard case .failing = s.health else { return true }
            let pending = s.pending
            do {
                try performWrite { db in
                    if let pending {
                        try DataWrites.writeAll(db, pending)
                    } else {
                        try DataWrites.touch(db)
                    }
                }
                if let pending { s.storedSequence = pending.sequence }
                s.pending = nil
                transition = succeeded(&s)
                return true
            } catch {
                transition = failed(&s, error, writing: "retry")
                return false
            }
        }
        report(transition)
        return healthy
    }

    /// Retries failed writes every `interval` until the task is cancelled (run it in the agent's service group).
    /// The writes run on a Dispatch thread, never on the caller's executor.
    public func runRetryLoop(interval: Duration = .seconds(10)) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            guard case .failing = health else { continue }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    self.retryNow()
                    continuation.resume()
                }
            }
        }
    }

    // MARK: - Metadata

    /// A metadata value (from memory: what was last made durable).
    public func metadata(_ key: String) -> String? {
        metadataCache.withLock { $0[key] }
    }

    public var allMetadata: [String: String] {
        metadataCache.withLock { $0 }
    }

    /// Writes one metadata value durably (`nil` removes it). Throws when it could not be written: a caller that must
    /// not act on an undurable value (e.g. a vote) must not go on.
    public func setMetadata(_ key: String, _ value: String?) throws {
        try setMetadata([key: value])
    }

    /// Writes several metadata values in one transaction.
    public func setMetadata(_ entries: [String: String?]) throws {
        try write("metadata") { db in try DataWrites.writeMetadata(db, entries) }
        updateCache(entries)
    }

    private func updateCache(_ entries: [String: String?]) {
        metadataCache.withLock { cache in
            for (key, value) in entries { cache[key] = value }
        }
    }

    // MARK: - Local insights

    /// Appends insights in one transaction.
    public func appendInsights(_ rows: [(timestamp: Int64, envId: String?, body: [UInt8])]) throws {
        guard !rows.isEmpty else { return }
        try write("insights") { db in
            let statement = try db.cachedStatement(
                sql: "INSERT INTO local_insights (timestamp, env_id, body) VALUES (?, ?, ?)")
            for row in rows {
                try statement.execute(arguments: [row.timestamp, row.envId, Data(row.body)])
            }
        }
    }

    public func insightCount() throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM local_insights") ?? 0 }
    }

    /// The oldest insights, oldest first.
    public func oldestInsights(limit: Int) throws -> [LocalInsight] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, timestamp, env_id, body FROM local_insights ORDER BY id LIMIT ?",
                             arguments: [limit]).map { row in
                LocalInsight(id: row[0], timestamp: row[1], envId: row[2], body: [UInt8](row[3] as Data))
            }
        }
    }

    /// Deletes insights up to and including `id` (after they were forwarded).
    public func deleteInsights(throughId id: Int64) throws {
        try write("insights") { db in try db.execute(sql: "DELETE FROM local_insights WHERE id <= ?", arguments: [id]) }
    }

    /// Retention: keeps only the newest `keepNewest` insights. Returns how many were deleted.
    @discardableResult
    public func pruneInsights(keepNewest: Int) throws -> Int {
        try write("insights") { db in
            try db.execute(sql: """
                DELETE FROM local_insights WHERE id <= (
                    SELECT id FROM local_insights ORDER BY id DESC LIMIT 1 OFFSET ?)
                """, arguments: [max(0, keepNewest)])
            return db.changesCount
        }
    }

    // MARK: - Maintenance

    /// `PRAGMA integrity_check`: "ok" for a sound file.
    public func integrityCheck() throws -> String {
        try read { db in
            try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ")
        }
    }

    /// Writes a consistent copy of the db to `destination` (e.g. to seed another machine): written to a temporary
    /// file next to it, synced, then renamed over it, so an existing file there is never left half-written.
    public func exportCopy(to destination: String) throws {
        let temporary = destination + ".tmp-\(UUID().uuidString.prefix(8))"
        do {
            try queue.writeWithoutTransaction { db in try db.execute(sql: "VACUUM INTO ?", arguments: [temporary]) }
            try DatabaseFiles.fsync(path: temporary)
            try DatabaseFiles.rename(temporary, to: destination)
            try? DatabaseFiles.fsyncDirectory(of: destination)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    // MARK: - Writing

    /// The connection, for tests.
    var queueForTests: DatabaseQueue { queue }

    private func read<T>(_ body: (Database) throws -> T) throws -> T {
        try queue.read(body)
    }

    /// One transaction for a non-data write; on success, also resyncs pending data.
    private func write<T: Sendable>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        var transition: Transition?
        defer { report(transition) }
        return try state.withLock { s throws -> T in
            guard !s.closed else { throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "featbit.db is closed") }
            let result: T
            do {
                result = try performWrite(body)
            } catch {
                transition = failed(&s, error, writing: what)
                throw error
            }
            if let pending = s.pending {
                do {
                    try performWrite { db in try DataWrites.writeAll(db, pending) }
                    s.storedSequence = pending.sequence
                    s.pending = nil
                } catch {
                    transition = failed(&s, error, writing: "resync")
                    return result
                }
            }
            transition = succeeded(&s)
            return result
        }
    }

    private func performWrite<T>(_ body: (Database) throws -> T) throws -> T {
        if let injected = injectedWriteError.withLock({ $0 }) { throw injected }
        return try queue.write(body)
    }

    /// Called with the lock held after a write failed.
    private func failed(_ s: inout WriterState, _ error: any Error, writing what: String) -> Transition? {
        s.failedWrites += 1
        Self.writeFailures.increment()
        let reason = Self.describe(error)
        if case .failing = s.health {
            s.health = .failing(reason)
            logger.debug("featbit.db write still failing", metadata: [
                "event": "db-write-failed", "write": "\(what)", "error": "\(reason)", "failures": "\(s.failedWrites)",
            ])
            return nil
        }
        s.health = .failing(reason)
        return .failed(reason)
    }

    /// Called with the lock held after a write succeeded.
    private func succeeded(_ s: inout WriterState) -> Transition? {
        guard case .failing = s.health, s.pending == nil else { return nil }
        let missed = s.failedWrites
        s.health = .healthy
        s.failedWrites = 0
        return .recovered(missedWrites: missed)
    }

    /// Logs, sets status and metrics, and calls the health handler; outside the lock.
    private func report(_ transition: Transition?) {
        guard let transition else { return }
        switch transition {
        case .failed(let reason):
            let message = "cannot write featbit.db at \(path) (\(reason)); serving from memory, retrying every 10 s"
            logger.error("\(message)", metadata: ["event": "db-write-failed", "path": "\(path)", "error": "\(reason)"])
            Self.healthyGauge.record(0)
            status?.update { $0.problems["db"] = message }
            onHealthChange?(.failing(reason))
            healthHandler.withLock { $0 }?(.failing(reason))
        case .recovered(let missed):
            logger.notice("featbit.db writable again; rewrote the whole current state", metadata: [
                "event": "db-write-recovered", "path": "\(path)", "failedWrites": "\(missed)",
            ])
            Self.healthyGauge.record(1)
            status?.update { $0.problems["db"] = nil }
            onHealthChange?(.healthy)
            healthHandler.withLock { $0 }?(.healthy)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError {
            return "SQLite error \(error.extendedResultCode.rawValue): \(error.message ?? "\(error.resultCode)")"
        }
        return "\(error)"
    }
}

/// The SQL of the data writes.
enum DataWrites {
    /// Writes only what the change changed; valid when the file holds the state the change was applied to.
    static func writeIncremental(_ db: Database, _ change: AppliedChange) throws {
        let snapshot = change.snapshot
        switch change.kind {
        case .replace:
            for envId in change.removedEnvIds { try deleteEnvironment(db, envId) }
            for delta in change.deltas {
                try deleteEnvironment(db, delta.envId)
                if let env = snapshot.environments[delta.envId] {
                    try insertEnvironment(db, env, sequence: change.sequence)
                }
            }
        case .upsert:
            for delta in change.deltas {
                guard let env = snapshot.environments[delta.envId] else { continue }
                try upsertEnvironmentRow(db, env, sequence: change.sequence)
                for item in delta.flags { try upsertItem(db, item) }
                for item in delta.segments { try upsertItem(db, item) }
            }
        }
        try writeStoreState(db, snapshot)
    }

    /// Replaces everything the file holds with `snapshot` (one transaction: all or nothing).
    static func writeAll(_ db: Database, _ snapshot: DataSnapshot) throws {
        try db.execute(sql: "DELETE FROM items; DELETE FROM secrets; DELETE FROM environments;")
        for envId in snapshot.sortedEnvIds {
            try insertEnvironment(db, snapshot.environments[envId]!, sequence: snapshot.sequence)
        }
        try writeStoreState(db, snapshot)
    }

    static func writeMetadata(_ db: Database, _ entries: [String: String?]) throws {
        for (key, value) in entries {
            if let value {
                try db.cachedStatement(sql: """
                    INSERT INTO metadata (key, value) VALUES (?, ?)
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value
                    """).execute(arguments: [key, value])
            } else {
                try db.cachedStatement(sql: "DELETE FROM metadata WHERE key = ?").execute(arguments: [key])
            }
        }
    }

    /// A tiny write that proves the file accepts writes.
    static func touch(_ db: Database) throws {
        try db.execute(sql: "UPDATE store_state SET updated_at = ? WHERE id = 1", arguments: [nowMillis()])
    }

    private static func writeStoreState(_ db: Database, _ snapshot: DataSnapshot) throws {
        try db.cachedStatement(sql: "UPDATE store_state SET sequence = ?, initialised = ?, updated_at = ? WHERE id = 1")
            .execute(arguments: [Int64(bitPattern: snapshot.sequence), snapshot.isInitialised, nowMillis()])
    }

    private static func deleteEnvironment(_ db: Database, _ envId: String) throws {
        try db.cachedStatement(sql: "DELETE FROM items WHERE env_id = ?").execute(arguments: [envId])
        try db.cachedStatement(sql: "DELETE FROM secrets WHERE env_id = ?").execute(arguments: [envId])
        try db.cachedStatement(sql: "DELETE FROM environments WHERE env_id = ?").execute(arguments: [envId])
    }

    private static func insertEnvironment(_ db: Database, _ env: EnvironmentSnapshot, sequence: UInt64) throws {
        try upsertEnvironmentRow(db, env, sequence: sequence)
        let secret = try db.cachedStatement(sql: """
            INSERT INTO secrets (env_id, position, type, project_key, env_key, value) VALUES (?, ?, ?, ?, ?, ?)
            """)
        for (position, s) in env.secrets.enumerated() {
            try secret.execute(arguments: [env.envId, position, s.type.rawValue, s.projectKey, s.envKey, s.value])
        }
        for item in env.sortedFlags { try upsertItem(db, item) }
        for item in env.sortedSegments { try upsertItem(db, item) }
    }

    private static func upsertEnvironmentRow(_ db: Database, _ env: EnvironmentSnapshot, sequence: UInt64) throws {
        try db.cachedStatement(sql: """
            INSERT INTO environments (env_id, version, sequence) VALUES (?, ?, ?)
            ON CONFLICT (env_id) DO UPDATE SET version = excluded.version, sequence = excluded.sequence
            """).execute(arguments: [env.envId, env.version, Int64(bitPattern: sequence)])
    }

    private static func upsertItem(_ db: Database, _ item: DataItem) throws {
        try db.cachedStatement(sql: """
            INSERT INTO items (env_id, kind, id, updated_at, json) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (env_id, kind, id) DO UPDATE SET updated_at = excluded.updated_at, json = excluded.json
            """).execute(arguments: [
                item.envId, item.kind.rawValue, item.id, item.updatedAt, String(decoding: item.encoded, as: UTF8.self),
            ])
    }

    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
