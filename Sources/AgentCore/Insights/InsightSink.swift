/// Receives SDK usage events posted to `/api/public/insight/track`. Forwarding, anonymising or keeping them is the
/// insights pipeline's job; `accept` must never block the HTTP answer on the upstream.
public protocol InsightSink: Sendable {
    func accept(body: [UInt8], authorization: String)
}
