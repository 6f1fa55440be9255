/// Receives SDK usage events posted to `/api/public/insight/track`. Forwarding, anonymising or keeping them is the
/// insights pipeline's job; `accept` must never block the HTTP answer on the upstream.
public protocol InsightSink: Sendable {
    func accept(body: [UInt8], authorization: String)
    /// What happened to the events so far (status).
    var counts: InsightCounts { get }
    /// Insights the agent built itself (OFREP evaluations): a well-formed JSON array of `events` insight objects,
    /// taken as they are instead of parsed again.
    func accept(ownInsights body: [UInt8], events: Int, authorization: String)
    /// False when whatever is accepted is discarded (`InsightsMode=drop`), so insights the agent builds itself need
    /// not be built at all.
    var isRecording: Bool { get }
}

extension InsightSink {
    public var counts: InsightCounts { InsightCounts() }

    public func accept(ownInsights body: [UInt8], events: Int, authorization: String) {
        accept(body: body, authorization: authorization)
    }

    public var isRecording: Bool { true }
}
