import AgentCore
import NIOCore
import NIOSSL
import Synchronization

/// The TLS 1.3 application traffic secrets of the SDK port's handshakes, from BoringSSL's key log (NIOSSL's
/// `keyLogCallback`), kept in memory only until the connection they belong to takes them (`TLS13Offload`), a moment
/// after its handshake. They are never written anywhere. Connections are told apart by their ClientHello random, the
/// key log's own key.
public final class TLS13SecretLog: Sendable {
    public static let shared = TLS13SecretLog()

    public struct Secrets: Sendable {
        public var client: [UInt8]?
        public var server: [UInt8]?
        var logged = ContinuousClock.now
    }

    /// Beyond this many handshakes not yet claimed, new secrets are dropped: those connections stay on NIOSSL.
    let capacity: Int
    /// Secrets no connection claimed within this time are dropped. A connection claims its secrets within a round
    /// trip of its handshake, and forgets them when it closes or stops following its records; this bounds what a
    /// client that never lets the agent read its ClientHello random (so nothing can forget it) leaves behind.
    let unclaimedLifetime: Duration
    private struct State {
        var entries: [[UInt8]: Secrets] = [:]
        var lastSweep = ContinuousClock.now
    }
    private let state: Mutex<State>

    init(capacity: Int = 65_536, unclaimedLifetime: Duration = .seconds(60)) {
        self.capacity = capacity
        self.unclaimedLifetime = unclaimedLifetime
        self.state = Mutex(State())
    }

    /// The callback to set as `TLSConfiguration.keyLogCallback`.
    public var callback: NIOSSLKeyLogCallback {
        { [self] line in record(line) }
    }

    /// Takes one key-log line (`LABEL <client random, hex> <secret, hex>`); only the two application traffic secrets
    /// are kept.
    func record(_ line: ByteBuffer) {
        let text = String(buffer: line)
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 3 else { return }
        let isClient: Bool
        switch fields[0] {
        case "CLIENT_TRAFFIC_SECRET_0": isClient = true
        case "SERVER_TRAFFIC_SECRET_0": isClient = false
        default: return
        }
        guard let random = Hex.decode(String(fields[1])), random.count == 32,
              let secret = Hex.decode(String(fields[2])), secret.count == 32 || secret.count == 48 else { return }
        let now = ContinuousClock.now
        state.withLock { state in
            if state.entries[random] == nil {
                // Sweep what nobody claimed, at most once per lifetime, when a new handshake arrives.
                if now - state.lastSweep >= unclaimedLifetime {
                    state.lastSweep = now
                    state.entries = state.entries.filter { now - $0.value.logged < unclaimedLifetime }
                }
                guard state.entries.count < capacity else { return }
            }
            if isClient {
                state.entries[random, default: Secrets()].client = secret
            } else {
                state.entries[random, default: Secrets()].server = secret
            }
        }
    }

    /// Both secrets of the handshake with this ClientHello random, removed from the log; nil until both are there.
    func take(random: [UInt8]) -> (client: [UInt8], server: [UInt8])? {
        state.withLock { state in
            guard let found = state.entries[random], let client = found.client, let server = found.server else { return nil }
            state.entries[random] = nil
            return (client, server)
        }
    }

    /// Forgets the handshake with this random (its connection closed or left TLS 1.3 offload).
    func forget(random: [UInt8]) {
        _ = state.withLock { $0.entries.removeValue(forKey: random) }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
