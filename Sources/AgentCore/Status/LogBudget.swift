import Synchronization

/// How many lines of one kind may be logged per time window; the rest are counted and the count is reported with the
/// next line that is logged. For lines anyone who can reach a port can cause (failed TLS handshakes from scanners or
/// plaintext clients, failed admin logins from many addresses): their log volume must not be theirs to choose.
public final class LogBudget: Sendable {
    public let linesPerWindow: Int
    public let window: Duration
    private struct State {
        var windowStart: ContinuousClock.Instant
        var used = 0
        var suppressed = 0
    }
    private let state: Mutex<State>

    public init(linesPerWindow: Int = 20, window: Duration = .seconds(10)) {
        self.linesPerWindow = max(1, linesPerWindow)
        self.window = window
        state = Mutex(State(windowStart: .now))
    }

    /// `nil` when this line is over budget (it is counted); otherwise how many lines were left out before it.
    public func take(now: ContinuousClock.Instant = .now) -> Int? {
        state.withLock { state in
            if now - state.windowStart >= window {
                state.windowStart = now
                state.used = 0
            }
            guard state.used < linesPerWindow else {
                state.suppressed += 1
                return nil
            }
            state.used += 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
    }
}
