/// The mesh part of the configuration (agent-interface.md: `NodeId`, `ClusterAddress`, `Peers`, `ClusterSecret`, and
/// the timing keys), validated with the rest.
public struct ClusterConfiguration: Sendable, Equatable {
    /// One entry of `Peers`: `nodeId@host:port`.
    public struct Peer: Sendable, Equatable {
        public var nodeId: String
        public var host: String
        public var port: Int

        public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public var nodeId: String
    public var listenHost: String
    public var listenPort: Int
    public var peers: [Peer]
    public var secret: String
    public var heartbeatMs: Int
    public var electionTimeoutMs: Int
    public var isWitness: Bool
    /// Mutual TLS between peers (`ClusterTlsCertFile`, `ClusterTlsKeyFile`, `ClusterTlsCaFile`), when set.
    public var tls: TLSFiles?

    /// This node's PEM certificate and key, and the CA every peer's certificate must be signed by.
    public struct TLSFiles: Sendable, Equatable {
        public var certFile: String
        public var keyFile: String
        public var caFile: String
    }

    public static let defaultHeartbeatMs = 500
    public static let defaultElectionTimeoutMs = 5_000

    /// Parses `host:port` or `[v6]:port`.
    public static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace), let port = Int(portText), (1...65535).contains(port) else {
            return nil
        }
        return (String(host), port)
    }

    /// The keys of mutual TLS between peers: all three or none.
    static let tlsKeys = ["ClusterTlsCertFile", "ClusterTlsKeyFile", "ClusterTlsCaFile"]

    /// Reads the cluster keys; `nil` without `Peers` (a single node). Every problem names its key.
    static func resolve(nodeId: String, value: (String) -> String?, dbPath: String?,
                        problems: inout [AgentConfiguration.Problem]) -> ClusterConfiguration? {
        func problem(_ key: String, _ message: String) { problems.append(.init(key: key, message: message)) }
        let peersText = value("Peers")
        let addressText = value("ClusterAddress")
        guard let peersText else {
            if addressText != nil { problem("ClusterAddress", "is set but Peers is empty; set Peers to form a mesh, or remove it") }
            if value("ClusterSecret") != nil { problem("ClusterSecret", "is set but Peers is empty") }
            for key in tlsKeys where value(key) != nil { problem(key, "is set but Peers is empty") }
            return nil
        }
        var peers: [Peer] = []
        var seen: Set<String> = []
        for entry in peersText.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            guard let at = entry.firstIndex(of: "@") else {
                problem("Peers", "\"\(entry)\" is not nodeId@host:port")
                continue
            }
            let id = String(entry[..<at])
            guard !id.isEmpty, !id.contains(where: { $0.isWhitespace || $0 == "@" }) else {
                problem("Peers", "\"\(entry)\" has an empty or invalid node id")
                continue
            }
            guard let address = parseAddress(String(entry[entry.index(after: at)...])) else {
                problem("Peers", "\"\(entry)\" does not end in a valid host:port (port 1-65535)")
                continue
            }
            if id == nodeId { problem("Peers", "lists this node's own NodeId \"\(nodeId)\"; Peers holds the OTHER nodes") }
            if !seen.insert(id).inserted { problem("Peers", "lists node id \"\(id)\" twice") }
            peers.append(Peer(nodeId: id, host: address.host, port: address.port))
        }
        if peers.isEmpty { problem("Peers", "lists no node") }
        if nodeId.isEmpty || nodeId.contains(where: { $0.isWhitespace || $0 == "@" || $0 == "," }) {
            problem("NodeId", "\"\(nodeId)\" is not a valid node id (no spaces, '@' or ',')")
        }
        var listen: (host: String, port: Int) = ("0.0.0.0", 0)
        if let addressText {
            if let parsed = parseAddress(addressText) { listen = parsed } else {
                problem("ClusterAddress", "\"\(addressText)\" is not host:port (port 1-65535)")
            }
        } else {
            problem("ClusterAddress", "is required with Peers (host:port this node listens on for peers)")
        }
        let secret = value("ClusterSecret") ?? ""
        if secret.isEmpty {
            problem("ClusterSecret", "is required with Peers: peers prove it to each other")
        } else if secret.count < 8 {
            problem("ClusterSecret", "is shorter than 8 characters")
        }
        if dbPath == nil {
            problem("DbPath", "must not be none in a mesh: a node's votes and replicated data must be durable")
        }
        func milliseconds(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) -> Int {
            guard let text = value(key) else { return fallback }
            guard let ms = Int(text), range.contains(ms) else {
                problem(key, "\"\(text)\" is not a number of milliseconds from \(range.lowerBound) to \(range.upperBound)")
                return fallback
            }
            return ms
        }
        let heartbeat = milliseconds("ClusterHeartbeatMs", defaultHeartbeatMs, 10...60_000)
        let election = milliseconds("ClusterElectionTimeoutMs", defaultElectionTimeoutMs, 100...600_000)
        if election < 3 * heartbeat {
            problem("ClusterElectionTimeoutMs", "\(election) must be at least 3 heartbeats (ClusterHeartbeatMs = \(heartbeat))")
        }
        var isWitness = false
        if let role = value("ClusterRole") {
            switch role.lowercased() {
            case "voter": isWitness = false
            case "witness": isWitness = true
            default: problem("ClusterRole", "\"\(role)\" is not voter or witness")
            }
        }
        var tls: TLSFiles?
        let tlsValues = tlsKeys.map(value)
        if tlsValues.contains(where: { $0 != nil }) {
            for (key, text) in zip(tlsKeys, tlsValues) where text == nil {
                problem(key, "is required with \(zip(tlsKeys, tlsValues).filter { $0.1 != nil }.map(\.0).joined(separator: " and ")): mutual TLS needs all three")
            }
            if let cert = tlsValues[0], let key = tlsValues[1], let ca = tlsValues[2] {
                tls = TLSFiles(certFile: cert, keyFile: key, caFile: ca)
            }
        }
        return ClusterConfiguration(nodeId: nodeId, listenHost: listen.host, listenPort: listen.port, peers: peers,
                                    secret: secret, heartbeatMs: heartbeat, electionTimeoutMs: election, isWitness: isWitness,
                                    tls: tls)
    }
}
