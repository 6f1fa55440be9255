import AgentCore

/// What `FeatBitDatabase.open` found in featbit.db: the data set, ready for `DataStore(initial:)`, and the metadata.
public struct LoadedState: Sendable {
    /// Every environment held, with its secrets (never `nil` here), flags and segments.
    public var environments: [EnvironmentData]
    /// Sequence number of the last change written (0 for a fresh db).
    public var sequence: UInt64
    /// Whether a full data set had arrived when the db was last written.
    public var isInitialised: Bool
    /// Version (max `updatedAt`, ms) of each environment as stored.
    public var environmentVersions: [String: Int64]
    /// Key/value metadata (agent id, last sync, the mesh's replication position (Cluster's `MeshData` keys)...).
    public var metadata: [String: String]
    /// Set when a corrupt or foreign file was found at the path and moved aside before a fresh db was created.
    public var movedAsideTo: String?
    /// Rows that could not be turned back into items (tampered JSON); they are dropped and rewritten on the next
    /// full write.
    public var skippedItems: Int

    public static let empty = LoadedState(environments: [], sequence: 0, isInitialised: false, environmentVersions: [:],
                                          metadata: [:], movedAsideTo: nil, skippedItems: 0)

    public var isEmpty: Bool { environments.isEmpty && sequence == 0 }

    /// The snapshot to start a `DataStore` from: serves at once, continues the sequence numbering.
    public func snapshot() -> DataSnapshot {
        var result: [String: EnvironmentSnapshot] = [:]
        result.reserveCapacity(environments.count)
        for env in environments {
            var flags: [String: DataItem] = [:]
            flags.reserveCapacity(env.flags.count)
            for item in env.flags { flags[item.id] = item }
            var segments: [String: DataItem] = [:]
            segments.reserveCapacity(env.segments.count)
            for item in env.segments { segments[item.id] = item }
            result[env.envId] = EnvironmentSnapshot(envId: env.envId, secrets: env.secrets ?? [], flags: flags,
                                                    segments: segments)
        }
        return DataSnapshot(environments: result, isInitialised: isInitialised, sequence: sequence)
    }
}

/// Whether featbit.db accepts writes.
public enum DatabaseHealth: Sendable, Equatable {
    case healthy
    /// Writes fail (disk full, read-only, I/O error): the agent serves from memory, retries every 10 s, and rewrites
    /// the whole state once a write succeeds again.
    case failing(String)

    public var isHealthy: Bool { self == .healthy }
}

/// Why the agent runs without featbit.db.
public enum DatabaseUnavailableReason: Sendable, Equatable {
    /// `DbPath` is `none`.
    case disabled
    /// The directory or filesystem is read-only, permission is denied, the disk is full or an I/O error occurred.
    case unwritable
    /// The file was written by a newer agent (schema version `found` > `supported`); it is left untouched.
    case newerSchema(found: Int, supported: Int)
    /// Another process holds the database locked.
    case busy
    /// Anything else, including a bad file that could not be moved aside.
    case failed

    /// Stable token for logs and metrics.
    public var event: String {
        switch self {
        case .disabled: "db-disabled"
        case .unwritable: "db-unwritable"
        case .newerSchema: "db-newer-schema"
        case .busy: "db-busy"
        case .failed: "db-open-failed"
        }
    }
}

/// The agent runs from memory: why, in words for status and logs, and what could still be read from the file.
public struct DatabaseUnavailable: Sendable {
    public let reason: DatabaseUnavailableReason
    public let message: String
    /// Data read from a file that cannot be written (e.g. a read-only filesystem): serve it, but nothing is saved.
    public let salvaged: LoadedState?
}

/// The result of `FeatBitDatabase.open`.
public enum OpenOutcome: Sendable {
    /// The db is open and writable; `LoadedState` is what it held (empty for a fresh file).
    case ready(FeatBitDatabase, LoadedState)
    /// No persistence for this run.
    case unavailable(DatabaseUnavailable)

    public var database: FeatBitDatabase? {
        if case .ready(let db, _) = self { return db }
        return nil
    }

    /// What to start serving from: the loaded state, or what could be salvaged, or nothing.
    public var loaded: LoadedState {
        switch self {
        case .ready(_, let state): state
        case .unavailable(let unavailable): unavailable.salvaged ?? .empty
        }
    }

    public var unavailable: DatabaseUnavailable? {
        if case .unavailable(let u) = self { return u }
        return nil
    }
}

/// Well-known metadata keys.
public enum MetadataKey {
    public static let agentId = "agentId"
    public static let lastSyncedAt = "lastSyncedAt"
    public static let insightsSecret = "insightsHmacSecret"
    /// Written by every open (proves the file is writable); ISO-8601 UTC.
    public static let openedAt = "db.openedAt"
}

/// An insight kept in `local_insights`.
public struct LocalInsight: Sendable, Equatable {
    public let id: Int64
    /// Unix milliseconds.
    public let timestamp: Int64
    public let envId: String?
    public let body: [UInt8]
}
