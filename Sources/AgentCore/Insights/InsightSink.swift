/// Receives SDK usage events posted to `/api/public/insight/track`. Forwarding, anonymising or keeping them is the
/// insights pipeline's job; `accept` must never block the HTTP answer on the upstream.
public protocol InsightSink: Sendable {
    func accept(body: [UInt8], authorization: String)
    /// What happened to the events so far (status).
    var counts: InsightCounts { get }
}

extension InsightSink {
    public var counts: InsightCounts { InsightCounts() }
}
