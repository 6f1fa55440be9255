import Synchronization

/// How the agent gets its data (agent-interface.md `Mode`).
public enum AgentMode: String, Sendable, CaseIterable {
    /// Sync from the FeatBit evaluation server.
    case auto
    /// Data only through the bootstrap API.
    case manual
    /// Like manual, plus a `DataFile` loaded at start and watched.
    case offline
}

/// The upstream synchronisation state of spec §7.2.
public enum SyncState: String, Sendable {
    case none = "None"
    case starting = "Starting"
    case stable = "Stable"
    case interrupted = "Interrupted"
    case stopped = "Stopped"
}

/// `/health/readiness` answers.
public enum Readiness: String, Sendable {
    case healthy = "Healthy"
    case degraded = "Degraded"
    case unhealthy = "Unhealthy"

    public var httpStatus: Int { self == .unhealthy ? 503 : 200 }

    /// Readiness from the mode, whether a data set is held and the sync state (agent-interface.md, spec §6.7):
    /// no data → unhealthy; auto mode in sync → healthy; auto mode serving possibly stale data → degraded;
    /// manual/offline with data → healthy unless the data is known to be stale.
    public static func evaluate(mode: AgentMode, hasData: Bool, syncState: SyncState, dataMayBeStale: Bool) -> Readiness {
        guard hasData else { return .unhealthy }
        switch mode {
        case .auto:
            return syncState == .stable && !dataMayBeStale ? .healthy : .degraded
        case .manual, .offline:
            return dataMayBeStale ? .degraded : .healthy
        }
    }
}

/// The mutable, shared facts that status, readiness and the upstream status report read: sync state, last sync,
/// and problems an operator must see (e.g. the db cannot be written).
public final class AgentStatusBoard: Sendable {
    public struct Values: Sendable {
        public var syncState: SyncState
        public var lastSyncedAt: Int64?
        /// Times the upstream connection was lost and redialled since start (`featbit_agent_upstream_reconnects_total`).
        public var upstreamReconnects: Int = 0
        /// True while the data held may be older than the source's (loaded from disk, upstream not yet confirmed).
        public var dataMayBeStale: Bool = false
        /// Problems by area (e.g. `"db"`), shown in status.
        public var problems: [String: String] = [:]
        /// In a mesh, the node's own verdict (leader: upstream stable; follower: caught up with a leader); it replaces
        /// the single-node rule while a data set is held.
        public var meshReadiness: Readiness?
    }

    private let state: Mutex<Values>
    public let mode: AgentMode

    public init(mode: AgentMode) {
        self.mode = mode
        self.state = Mutex(Values(syncState: mode == .auto ? .starting : .none))
    }

    public var values: Values { state.withLock { $0 } }

    public func update(_ body: (inout Values) -> Void) {
        state.withLock { body(&$0) }
    }

    public func readiness(hasData: Bool) -> Readiness {
        let v = values
        if hasData, let mesh = v.meshReadiness { return mesh }
        return Readiness.evaluate(mode: mode, hasData: hasData, syncState: v.syncState, dataMayBeStale: v.dataMayBeStale)
    }
}
