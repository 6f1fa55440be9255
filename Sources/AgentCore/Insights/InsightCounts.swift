/// Insight events counted since start, for the `insights` section of status (the same figures as the
/// `featbit_agent_insights_*_total` metrics).
public struct InsightCounts: Sendable, Equatable {
    /// Taken into the buffer.
    public var accepted: Int
    /// Sent to the FeatBit server (answered 2xx).
    public var forwarded: Int
    /// Kept in featbit.db (`local` mode).
    public var stored: Int
    /// Lost: buffer full, refused upstream, or dropped by the mode (`drop` counts posts, not events).
    public var dropped: Int
    /// Posts waiting to be sent or stored.
    public var pending: Int

    public init(accepted: Int = 0, forwarded: Int = 0, stored: Int = 0, dropped: Int = 0, pending: Int = 0) {
        self.accepted = accepted
        self.forwarded = forwarded
        self.stored = stored
        self.dropped = dropped
        self.pending = pending
    }
}
