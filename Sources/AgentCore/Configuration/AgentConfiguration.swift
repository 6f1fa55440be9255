/// The agent's configuration, built and validated once at start (agent-interface.md). The rest of the program gets
/// typed, already-valid values. Precedence per key: command-line option > environment > config file > default.
public struct AgentConfiguration: Sendable, Equatable {
    public enum InsightsMode: String, Sendable, CaseIterable {
        case forward, anonymize, local, drop
    }

    public enum LogLevel: String, Sendable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    public var mode: AgentMode
    public var apiKey: String?
    public var agentId: String
    public var streamingUri: String?
    public var forwardEvents: Bool
    public var eventUri: String?
    public var insightsMode: InsightsMode
    public var insightsAllowProperties: [String]
    public var port: Int
    public var bindAddress: String
    /// `nil` when `DbPath=none`.
    public var dbPath: String?
    public var dataFile: String?
    public var nodeId: String
    public var tokenExpirySeconds: Int
    public var logLevel: LogLevel
    /// The mesh, when `Peers` is set; `nil` for a single node.
    public var cluster: ClusterConfiguration?
    /// `TlsCertFile` and `TlsKeyFile`: when set, the port speaks HTTPS and WSS only.
    public var tls: TLSFiles?
    /// `UpstreamCaFile`: a CA trusted, besides the system's, for `wss://`/`https://` to the FeatBit server.
    public var upstreamCaFile: String?
    /// `AdminAuthFailureLimit`: failed admin authentications one source address may make before the admin API answers
    /// 429 (one more comes back every 6 s); 0 turns the limit off.
    public var adminAuthFailureLimit: Int = 10
    /// `ReleaseCodePagesAfterSeconds`: when the agent unmaps the code pages start-up touched (`CodePages`); 0: never.
    public var releaseCodePagesAfterSeconds: Int = 30

    /// A PEM certificate chain and its private key (paths; read, matched and watched by the server).
    public struct TLSFiles: Sendable, Equatable {
        public var certFile: String
        public var keyFile: String

        public init(certFile: String, keyFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// One configuration key: its environment/config-file name, its option, default and meaning. The README table
    /// and `--help` are written from these.
    public struct Key: Sendable, Hashable {
        public let name: String
        public let option: String
        public let defaultText: String
        public let help: String
    }

    /// Largest accepted `Streaming__TokenExpirySeconds` (one year).
    public static let maxTokenExpirySeconds = 31_536_000

    public static let keys: [Key] = [
        Key(name: "Mode", option: "mode", defaultText: "auto if StreamingUri is set, else offline",
            help: "auto (sync from FeatBit), manual (bootstrap API only) or offline (DataFile, db or the embedded demo)"),
        Key(name: "ApiKey", option: "api-key", defaultText: "required in auto and manual",
            help: "relay-proxy key (rp-…): upstream credential and the key of /api/public/proxy/*"),
        Key(name: "AgentId", option: "agent-id", defaultText: "hostname", help: "id registered upstream in auto mode"),
        Key(name: "StreamingUri", option: "streaming-uri", defaultText: "-", help: "ws:// or wss:// base of the FeatBit evaluation server"),
        Key(name: "UpstreamCaFile", option: "upstream-ca-file", defaultText: "- (system trust store)",
            help: "PEM CA certificate(s) trusted, besides the system's, for wss:// and https:// to the FeatBit server"),
        Key(name: "ForwardEvents", option: "forward-events", defaultText: "true", help: "false is the same as InsightsMode=drop"),
        Key(name: "EventUri", option: "event-uri", defaultText: "StreamingUri as http(s)", help: "base URL insights are forwarded to"),
        Key(name: "InsightsMode", option: "insights-mode", defaultText: "forward", help: "forward, anonymize, local or drop"),
        Key(name: "InsightsAllowProperties", option: "insights-allow-properties", defaultText: "empty",
            help: "comma list of custom user properties that anonymize keeps"),
        Key(name: "Port", option: "port", defaultText: "6100", help: "HTTP and WebSocket port for SDKs and the admin API"),
        Key(name: "BindAddress", option: "bind", defaultText: "0.0.0.0", help: "address to listen on"),
        Key(name: "TlsCertFile", option: "tls-cert-file", defaultText: "- (plain HTTP)",
            help: "PEM certificate chain: the port then speaks HTTPS and WSS only; reloaded when the file changes"),
        Key(name: "TlsKeyFile", option: "tls-key-file", defaultText: "required with TlsCertFile",
            help: "PEM private key of TlsCertFile (unencrypted); reloaded when the file changes"),
        Key(name: "DbPath", option: "db", defaultText: "./featbit.db", help: "SQLite file every change is made durable in; none disables"),
        Key(name: "DataFile", option: "data-file", defaultText: "-", help: "JSON data set (bootstrap/backup format) loaded at start and watched (offline mode)"),
        Key(name: "NodeId", option: "node-id", defaultText: "hostname", help: "unique id of this node in a mesh"),
        Key(name: "ClusterAddress", option: "cluster-address", defaultText: "- (single node)", help: "host:port this node listens on for peers"),
        Key(name: "Peers", option: "peers", defaultText: "-", help: "comma list of nodeId@host:port of the other nodes"),
        Key(name: "ClusterSecret", option: "cluster-secret", defaultText: "required with Peers", help: "shared secret of the mesh (at least 8 characters)"),
        Key(name: "ClusterHeartbeatMs", option: "cluster-heartbeat-ms", defaultText: "500 (LAN profile: 200)",
            help: "how often each node sends its state to every peer, ms"),
        Key(name: "ClusterElectionTimeoutMs", option: "cluster-election-timeout-ms", defaultText: "5000 (LAN profile: 1500)",
            help: "a leader not heard for this long (randomised up to twice it) is replaced, ms"),
        Key(name: "ClusterRole", option: "cluster-role", defaultText: "voter",
            help: "voter, or witness (votes only: never leads, holds no data)"),
        Key(name: "ClusterTlsCertFile", option: "cluster-tls-cert-file", defaultText: "- (peer links not encrypted)",
            help: "PEM certificate of this node for mutual TLS between peers (with ClusterTlsKeyFile and ClusterTlsCaFile)"),
        Key(name: "ClusterTlsKeyFile", option: "cluster-tls-key-file", defaultText: "required with ClusterTlsCertFile",
            help: "PEM private key of ClusterTlsCertFile"),
        Key(name: "ClusterTlsCaFile", option: "cluster-tls-ca-file", defaultText: "required with ClusterTlsCertFile",
            help: "PEM CA that signs every node's certificate; a peer without one is refused"),
        Key(name: "Streaming__TokenExpirySeconds", option: "token-expiry-seconds", defaultText: "30", help: "SDK token validity window, seconds"),
        Key(name: "AdminAuthFailureLimit", option: "admin-auth-failure-limit", defaultText: "10",
            help: "failed admin authentications per source address before 429 (one more every 6 s); 0: no limit"),
        Key(name: "ReleaseCodePagesAfterSeconds", option: "release-code-pages-after-seconds", defaultText: "30",
            help: "seconds after start when the code pages start-up touched are unmapped (lower idle RSS); 0: never"),
        Key(name: "LogLevel", option: "log-level", defaultText: "info", help: "trace, debug, info, notice, warning, error"),
    ]

    /// A problem with one key, printed as one line before exiting with code 2.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public let key: String
        public let message: String
        public var description: String { "\(key): \(message)" }
    }

    /// Every problem found, in key order of discovery.
    public struct Problems: Error, Sendable, Equatable {
        public let list: [Problem]
    }

    /// Whether the URL's host is an IPv4 or bracketed IPv6 literal.
    static func hostIsIPAddress(_ url: String) -> Bool {
        guard let schemeEnd = url.range(of: "://") else { return false }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@").last ?? authority[...]
        if hostPort.hasPrefix("[") { return true }
        let host = hostPort.split(separator: ":", maxSplits: 1).first ?? hostPort
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isNumber) }
    }

    /// Resolves and validates. `options` and `environment` are keyed by the key names above; `file` holds the
    /// config file's members.
    public static func resolve(
        options: [String: String],
        environment: [String: String],
        file: [String: JSONValue],
        hostname: String
    ) -> Result<AgentConfiguration, Problems> {
        var problems: [Problem] = []
        let known = Set(keys.map(\.name))
        for name in file.keys.sorted() where !known.contains(name) {
            problems.append(Problem(key: name, message: "unknown key in the config file"))
        }
        func raw(_ name: String) -> String? {
            if let v = options[name] { return v }
            if let v = environment[name] { return v }
            switch file[name] {
            case .string(let s)?: return s
            case .integer(let i)?: return String(i)
            case .bool(let b)?: return String(b)
            case .number(let d)?: return String(d)
            case .null?, nil: return nil
            case .array?, .object?:
                problems.append(Problem(key: name, message: "must be a string, number or boolean in the config file"))
                return nil
            }
        }
        func value(_ name: String) -> String? {
            guard let v = raw(name)?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }

        let streamingUri = value("StreamingUri")
        let mode: AgentMode
        if let text = value("Mode") {
            if let m = AgentMode(rawValue: text) {
                mode = m
            } else {
                problems.append(Problem(key: "Mode", message: "\"\(text)\" is not one of auto, manual, offline"))
                mode = .offline
            }
        } else {
            mode = streamingUri == nil ? .offline : .auto
        }

        let apiKey = value("ApiKey")
        if apiKey == nil, mode != .offline {
            problems.append(Problem(key: "ApiKey", message: "is required in \(mode.rawValue) mode"))
        }

        if let uri = streamingUri {
            if !(uri.hasPrefix("ws://") || uri.hasPrefix("wss://")) || uri.count <= 6 {
                problems.append(Problem(key: "StreamingUri", message: "\"\(uri)\" is not a ws:// or wss:// URL"))
            } else if uri.hasPrefix("wss://"), Self.hostIsIPAddress(uri) {
                // The WebSocket client sends the host as TLS SNI, which may not be an IP address (RFC 6066 §3).
                problems.append(Problem(key: "StreamingUri", message: "\"\(uri)\": wss:// needs a host name, not an IP address (TLS server name indication); use a DNS name in the server's certificate"))
            }
        } else if mode == .auto {
            problems.append(Problem(key: "StreamingUri", message: "is required in auto mode"))
        }

        var forwardEvents = true
        if let text = value("ForwardEvents") {
            switch text.lowercased() {
            case "true", "1", "yes": forwardEvents = true
            case "false", "0", "no": forwardEvents = false
            default: problems.append(Problem(key: "ForwardEvents", message: "\"\(text)\" is not true or false"))
            }
        }

        var eventUri = value("EventUri")
        if let uri = eventUri {
            if !(uri.hasPrefix("http://") || uri.hasPrefix("https://")) {
                problems.append(Problem(key: "EventUri", message: "\"\(uri)\" is not an http:// or https:// URL"))
            }
        } else if let s = streamingUri {
            eventUri = s.hasPrefix("wss://") ? "https://" + s.dropFirst(6) : s.hasPrefix("ws://") ? "http://" + s.dropFirst(5) : nil
        }

        var insightsMode = InsightsMode.forward
        if let text = value("InsightsMode") {
            if let m = InsightsMode(rawValue: text) { insightsMode = m } else {
                problems.append(Problem(key: "InsightsMode", message: "\"\(text)\" is not one of forward, anonymize, local, drop"))
            }
        }
        if !forwardEvents { insightsMode = .drop }
        let allow = (value("InsightsAllowProperties") ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }

        var port = 6100
        if let text = value("Port") {
            if let p = Int(text), (1...65535).contains(p) { port = p } else {
                problems.append(Problem(key: "Port", message: "\"\(text)\" is not a port number (1-65535)"))
            }
        }

        var tokenExpiry = 30
        if let text = value("Streaming__TokenExpirySeconds") {
            // Bounded so the window in milliseconds cannot overflow; a year is already far more than any SDK needs.
            if let t = Int(text), (1...Self.maxTokenExpirySeconds).contains(t) { tokenExpiry = t } else {
                problems.append(Problem(key: "Streaming__TokenExpirySeconds",
                                        message: "\"\(text)\" is not a number of seconds from 1 to \(Self.maxTokenExpirySeconds)"))
            }
        }

        var adminAuthFailureLimit = 10
        if let text = value("AdminAuthFailureLimit") {
            if let n = Int(text), (0...1_000_000).contains(n) { adminAuthFailureLimit = n } else {
                problems.append(Problem(key: "AdminAuthFailureLimit", message: "\"\(text)\" is not a number from 0 to 1000000"))
            }
        }

        var releaseCodePagesAfterSeconds = 30
        if let text = value("ReleaseCodePagesAfterSeconds") {
            if let n = Int(text), (0...86_400).contains(n) { releaseCodePagesAfterSeconds = n } else {
                problems.append(Problem(key: "ReleaseCodePagesAfterSeconds", message: "\"\(text)\" is not a number of seconds from 0 to 86400"))
            }
        }

        var logLevel = LogLevel.info
        if let text = value("LogLevel") {
            if let l = LogLevel(rawValue: text.lowercased()) { logLevel = l } else {
                problems.append(Problem(key: "LogLevel", message: "\"\(text)\" is not one of trace, debug, info, notice, warning, error, critical"))
            }
        }

        let dbText = value("DbPath") ?? "./featbit.db"
        let dbPath: String? = dbText.lowercased() == "none" ? nil : dbText

        if insightsMode == .local && dbPath == nil {
            problems.append(Problem(key: "InsightsMode", message: "local keeps insights in featbit.db; DbPath must not be none"))
        }

        var tls: TLSFiles?
        switch (value("TlsCertFile"), value("TlsKeyFile")) {
        case (let cert?, let key?): tls = TLSFiles(certFile: cert, keyFile: key)
        case (_?, nil): problems.append(Problem(key: "TlsKeyFile", message: "is required with TlsCertFile"))
        case (nil, _?): problems.append(Problem(key: "TlsCertFile", message: "is required with TlsKeyFile"))
        case (nil, nil): tls = nil
        }

        let nodeId = value("NodeId") ?? hostname
        let cluster = ClusterConfiguration.resolve(nodeId: nodeId, value: value, dbPath: dbPath, problems: &problems)

        let configuration = AgentConfiguration(
            mode: mode, apiKey: apiKey, agentId: value("AgentId") ?? hostname, streamingUri: streamingUri,
            forwardEvents: forwardEvents, eventUri: eventUri, insightsMode: insightsMode,
            insightsAllowProperties: allow, port: port, bindAddress: value("BindAddress") ?? "0.0.0.0",
            dbPath: dbPath, dataFile: value("DataFile"), nodeId: nodeId,
            tokenExpirySeconds: tokenExpiry, logLevel: logLevel, cluster: cluster, tls: tls,
            upstreamCaFile: value("UpstreamCaFile"), adminAuthFailureLimit: adminAuthFailureLimit,
            releaseCodePagesAfterSeconds: releaseCodePagesAfterSeconds
        )
        return problems.isEmpty ? .success(configuration) : .failure(Problems(list: problems))
    }
}

import Foundation
