/// The upstream synchronisation life cycle (spec §7.2, §7.3) as a pure state machine: the client feeds it what
/// happened on the socket and gets back the state to report and how long to wait before the next connect.
///
/// Reconnects follow FeatBit's Fibonacci table (0, 1, 2, 3, 5, 8, 13, 21, 34, 55 s) but stay at 55 s instead of
/// wrapping back to 0, with ±20 % jitter so a fleet does not reconnect in step. A 4003 close (credentials refused)
/// is retried slowly instead of giving up, so fixing the key upstream heals the agent without a restart.
public struct UpstreamSync: Sendable {
    public static let schedule: [Double] = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55]
    /// Wait after upstream refused our credentials (4003).
    public static let refusedRetrySeconds: Double = 60

    public private(set) var state: SyncState = .starting
    public private(set) var lastSyncedAt: Int64?
    /// Failed connects or drops since the last applied data-sync.
    public private(set) var failures = 0
    /// Set while upstream refuses our credentials.
    public private(set) var refused = false

    public init() {}

    /// A data-sync message was applied: the link is healthy.
    public mutating func applied(now: Int64) {
        state = .stable
        lastSyncedAt = now
        failures = 0
        refused = false
    }

    /// Applying a data-sync message failed (malformed): keep the connection, report `Interrupted`.
    public mutating func applyFailed() {
        if state != .stopped { state = .interrupted }
    }

    /// The connect attempt failed or the socket closed. Returns the delay before the next attempt.
    public mutating func disconnected(closeCode: UInt16?, random: Double) -> Double {
        guard state != .stopped else { return 0 }
        state = .interrupted
        if closeCode == 4003 {
            refused = true
            return Self.refusedRetrySeconds * (0.8 + 0.4 * random)
        }
        let base = Self.schedule[min(failures, Self.schedule.count - 1)]
        failures += 1
        // A first reconnect still waits a little, so many agents dropped at once do not return in the same instant.
        return base == 0 ? 0.1 + 0.4 * random : base * (0.8 + 0.4 * random)
    }

    /// The agent is shutting down.
    public mutating func stop() {
        state = .stopped
    }
}
