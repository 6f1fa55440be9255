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
    }

    /// Beyond this many handshakes not yet claimed, new secrets are dropped: those connections stay on NIOSSL.
    let capacity: Int
    private let entries: Mutex<[[UInt8]: Secrets]>

    init(capacity: Int = 65_536) {
        self.capacity = capacity
        self.entries = Mutex([:])
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
        entries.withLock { entries in
            guard entries[random] != nil || entries.count < capacity else { return }
            if isClient { entries[random, default: Secrets()].client = secret } else { entries[random, default: Secrets()].server = secret }
        }
    }

    /// Both secrets of the handshake with this ClientHello random, removed from the log; nil until both are there.
    func take(random: [UInt8]) -> (client: [UInt8], server: [UInt8])? {
        entries.withLock { entries in
            guard let found = entries[random], let client = found.client, let server = found.server else { return nil }
            entries[random] = nil
            return (client, server)
        }
    }

    /// Forgets the handshake with this random (its connection closed or left TLS 1.3 offload).
    func forget(random: [UInt8]) {
        _ = entries.withLock { $0.removeValue(forKey: random) }
    }

    var count: Int { entries.withLock { $0.count } }
}
