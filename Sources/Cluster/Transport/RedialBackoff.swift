import NIOCore

/// Jittered exponential backoff between redials of one outbound connection (cluster-design §3.2: "redial with jittered
/// backoff capped at E"). Attempt n waits a random time in [d/2, d], d = min(minimum · 2ⁿ, maximum); a successful
/// handshake resets it, so a connection that was up is redialed after about `minimum`.
struct RedialBackoff: Sendable {
    let minimum: TimeAmount
    let maximum: TimeAmount
    /// Failed attempts since the last success.
    private(set) var failures = 0

    init(minimum: TimeAmount, maximum: TimeAmount) {
        self.minimum = max(minimum, .nanoseconds(1))
        self.maximum = max(maximum, self.minimum)
    }

    /// The wait before the next dial; counts one more failure.
    mutating func next(using generator: inout some RandomNumberGenerator) -> TimeAmount {
        // Past 2^40 · minimum every realistic cap is reached; stopping there keeps the shift from overflowing.
        let exponent = min(failures, 40)
        let (scaled, overflow) = minimum.nanoseconds.multipliedReportingOverflow(by: Int64(1) << exponent)
        let ceiling = overflow ? maximum.nanoseconds : min(scaled, maximum.nanoseconds)
        failures += 1
        return .nanoseconds(Int64.random(in: (ceiling / 2)...ceiling, using: &generator))
    }

    mutating func reset() {
        failures = 0
    }
}
