import AgentCore
import Foundation
import Synchronization

/// One open `/streaming` connection. Everything sent to it goes through its queue, drained in order by the
/// socket's writer task, so replies and pushes never interleave within a message.
public final class SimConnection: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A relay proxy, with the server secrets its key resolved to when it connected (spec §3.3: pushes and
        /// `rp_patch` items follow this connect-time set).
        case relayProxy(key: String, secrets: [SecretRecord])
        case server(secret: SecretRecord)
        case client(secret: SecretRecord)

        public var typeName: String {
            switch self {
            case .relayProxy: return "relay-proxy"
            case .server: return "server"
            case .client: return "client"
            }
        }
    }

    public enum Outgoing: Sendable, Equatable {
        case text([UInt8])
        /// A close frame with this code and reason; nothing is sent after it.
        case close(code: Int, reason: String)
    }

    public let id: Int
    public let kind: Kind
    public let connectedAt: Int64
    private let continuation: AsyncStream<Outgoing>.Continuation
    private let abortHandler: @Sendable () -> Void
    private let mutable = Mutex(MutableState())

    struct MutableState {
        var user: EndUser?
        var lastDataSync: JSONValue?
        var messagesSent = 0
        var closed = false
    }

    public init(id: Int, kind: Kind, connectedAt: Int64, continuation: AsyncStream<Outgoing>.Continuation,
                abort: @escaping @Sendable () -> Void) {
        self.id = id
        self.kind = kind
        self.connectedAt = connectedAt
        self.continuation = continuation
        self.abortHandler = abort
    }

    /// Queues a text message (dropped once the connection is closing).
    public func send(_ bytes: [UInt8]) {
        let open = mutable.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.messagesSent += 1
            return true
        }
        if open { continuation.yield(.text(bytes)) }
    }

    /// Queues a close frame; later sends are dropped.
    public func close(code: Int, reason: String) {
        let wasOpen = mutable.withLock { state -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        if wasOpen {
            continuation.yield(.close(code: code, reason: reason))
            continuation.finish()
        }
    }

    /// Drops the TCP connection without a close frame (the peer sees 1006, like a server crash).
    public func abort() {
        mutable.withLock { $0.closed = true }
        continuation.finish()
        abortHandler()
    }

    var user: EndUser? {
        get { mutable.withLock { $0.user } }
    }

    func setUser(_ user: EndUser) { mutable.withLock { $0.user = user } }
    func recordDataSync(_ data: JSONValue) { mutable.withLock { $0.lastDataSync = data } }

    var envIds: [String] {
        switch kind {
        case .relayProxy(_, let secrets):
            var seen: [String] = []
            for s in secrets where !seen.contains(s.envId) { seen.append(s.envId) }
            return seen
        case .server(let secret), .client(let secret):
            return [secret.envId]
        }
    }

    var json: JSONValue {
        let state = mutable.withLock { $0 }
        var members: [String: JSONValue] = [
            "id": .integer(Int64(id)), "type": .string(kind.typeName), "connectedAt": .integer(connectedAt),
            "envIds": .array(envIds.map(JSONValue.string)), "messagesSent": .integer(Int64(state.messagesSent)),
            "lastDataSync": state.lastDataSync ?? .null,
        ]
        if case .relayProxy(let key, let secrets) = kind {
            members["apiKey"] = .string(key)
            members["serverSecrets"] = .integer(Int64(secrets.count))
        }
        if let user = state.user { members["user"] = user.json }
        return .object(members)
    }
}

/// The simulated FeatBit evaluation server: its data set, its open connections, what it recorded (agent
/// registrations, agent statuses, insight posts) and its injected failures. Thread-safe; every change and the
/// pushes it causes happen under one lock, so pushes reach each connection in change order.
public final class Simulator: Sendable {
    public struct Settings: Sendable {
        /// Accepted relay-proxy keys (`rp-…`); each is scoped to every environment.
        public var apiKeys: [String]
        public var tokenExpiryMillis: Int64 = 30_000
        public init(apiKeys: [String]) { self.apiKeys = apiKeys }
    }

    public enum HandshakeRejection: Error, Sendable, Equatable {
        /// Close 4003 `invalid request, close by server`.
        case invalid(String)
        /// Close 1011 `service unavailable, close by server`.
        case unavailable(String)
    }

    public struct InsightRecord: Sendable {
        public let authorization: String
        public let body: JSONValue
        public let receivedAt: Int64

        var json: JSONValue {
            .object(["authorization": .string(authorization), "body": body, "receivedAt": .integer(receivedAt)])
        }
    }

    public struct AgentStatusRecord: Sendable {
        public let agentId: String
        /// The `status` string as received (a JSON document encoded as a string, spec §3.6).
        public let status: String
        public let receivedAt: Int64
        public let connectionId: Int
        public let reports: Int

        var json: JSONValue {
            .object([
                "agentId": .string(agentId), "status": .string(status),
                "statusJSON": (try? JSONValue.parse(status)) ?? .null, "receivedAt": .integer(receivedAt),
                "connectionId": .integer(Int64(connectionId)), "reports": .integer(Int64(reports)),
            ])
        }
    }

    struct State {
        var data: SimulatorData
        var up = true
        var connections: [Int: SimConnection] = [:]
        var nextConnectionId = 1
        var connectionsOpened: [String: Int] = [:]
        var handshakeRejections = 0
        var registrationFailures = FailureQueue()
        var insightFailures = FailureQueue()
        var registrationRequests = 0
        var registrations = 0
        var registeredAgents: [String] = []
        var insightRequests = 0
        var insightPosts = 0
        var insights: [InsightRecord] = []
        var agentStatus: [String: AgentStatusRecord] = [:]
        var rpFullSent = 0
        var rpPatchSent = 0
        var pushesSent = 0
    }

    public let settings: Settings
    public let clock: @Sendable () -> Int64
    private let state: Mutex<State>

    public static let systemClock: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    public init(data: SimulatorData, settings: Settings, clock: @escaping @Sendable () -> Int64 = Simulator.systemClock) {
        self.settings = settings
        self.clock = clock
        self.state = Mutex(State(data: data))
    }

    public var data: SimulatorData { state.withLock { $0.data } }
    public var isUp: Bool { state.withLock { $0.up } }

    // MARK: - Handshake (spec §1.4)

    /// Validates the query of a `/streaming` upgrade (names lowercased) in the evaluation server's order.
    public func validateHandshake(query: [String: String]) -> Result<SimConnection.Kind, HandshakeRejection> {
        let result = Self.validate(query: query, data: data, settings: settings, now: clock())
        if case .failure = result { state.withLock { $0.handshakeRejections += 1 } }
        return result
    }

    static func validate(query: [String: String], data: SimulatorData, settings: Settings,
                         now: Int64) -> Result<SimConnection.Kind, HandshakeRejection> {
        guard let type = query["type"], ["server", "client", "relay-proxy"].contains(type) else {
            return .failure(.invalid("unsupported type"))
        }
        guard ["", "1", "2"].contains(query["version"] ?? "") else { return .failure(.invalid("unsupported version")) }
        guard let token = query["token"], !token.allSatisfy(\.isWhitespace) else {
            return .failure(.invalid("missing token"))
        }
        if type == "relay-proxy" {
            guard settings.apiKeys.contains(token) else { return .failure(.invalid("unknown relay-proxy key")) }
            let secrets = data.serverSecrets
            guard !secrets.isEmpty else { return .failure(.invalid("relay-proxy key has no server secret in scope")) }
            return .success(.relayProxy(key: token, secrets: secrets))
        }
        guard let decoded = StreamingToken.decode(token) else { return .failure(.invalid("malformed token")) }
        guard SecretCodec.envId(fromSecret: decoded.secret) != nil else { return .failure(.invalid("malformed secret")) }
        let (skew, overflow) = now.subtractingReportingOverflow(decoded.timestamp)
        if overflow || skew.magnitude > UInt64(settings.tokenExpiryMillis) {
            return .failure(.invalid("token expired"))
        }
        guard let secret = data.secret(decoded.secret) else { return .failure(.invalid("unknown secret")) }
        guard secret.type.rawValue == type else { return .failure(.invalid("secret type mismatch")) }
        return .success(type == "server" ? .server(secret: secret) : .client(secret: secret))
    }

    // MARK: - Connections

    /// Registers an accepted connection; `abort` must drop its TCP connection.
    public func open(kind: SimConnection.Kind, continuation: AsyncStream<SimConnection.Outgoing>.Continuation,
                     abort: @escaping @Sendable () -> Void) -> SimConnection {
        state.withLock { state in
            let connection = SimConnection(id: state.nextConnectionId, kind: kind, connectedAt: clock(),
                                           continuation: continuation, abort: abort)
            state.nextConnectionId += 1
            state.connections[connection.id] = connection
            state.connectionsOpened[kind.typeName, default: 0] += 1
            return connection
        }
    }

    public func closed(_ connection: SimConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: connection.id) }
    }

    public func connections(ofType type: String? = nil) -> [SimConnection] {
        state.withLock { state in
            state.connections.values.filter { type == nil || $0.kind.typeName == type }.sorted { $0.id < $1.id }
        }
    }

    /// Handles one inbound message (spec §2.2/§2.3): invalid JSON, a missing `messageType`/`data` or an unknown
    /// type is ignored; nothing is ever answered with an error.
    public func handleMessage(_ bytes: [UInt8], from connection: SimConnection) {
        guard let json = try? JSONValue.parse(bytes), let type = json["messageType"]?.stringValue,
              let data = json["data"] else { return }
        switch type.lowercased() {
        case "ping":
            connection.send(SDKPayload.pong)
        case "echo":
            connection.send(SDKPayload.echo(data))
        case "data-sync":
            guard let request = RelayProxyDataSyncRequest(data: data) else { return }
            connection.recordDataSync(data)
            state.withLock { state in
                switch connection.kind {
                case .relayProxy(_, let secrets):
                    connection.send(state.data.rpReply(to: request, connectionSecrets: secrets))
                    if request.timestamp == 0 { state.rpFullSent += 1 } else { state.rpPatchSent += 1 }
                case .server(let secret):
                    connection.send(state.data.serverReply(envId: secret.envId, timestamp: request.timestamp))
                case .client(let secret):
                    guard let userJSON = data["user"], let user = EndUser.parse(userJSON) else { return }
                    connection.setUser(user)
                    connection.send(state.data.clientReply(envId: secret.envId, timestamp: request.timestamp,
                                                           user: user))
                }
            }
        case "rp-agent-status":
            guard let agentId = data["agentId"]?.stringValue, let status = data["status"]?.stringValue else { return }
            let now = clock()
            state.withLock { state in
                let reports = (state.agentStatus[agentId]?.reports ?? 0) + 1
                state.agentStatus[agentId] = AgentStatusRecord(agentId: agentId, status: status, receivedAt: now,
                                                               connectionId: connection.id, reports: reports)
            }
        default:
            return
        }
    }

    // MARK: - Data changes

    public struct PushCounts: Sendable, Equatable {
        public var relayProxy = 0
        public var server = 0
        public var client = 0

        var json: JSONValue {
            .object(["relay-proxy": .integer(Int64(relayProxy)), "server": .integer(Int64(server)),
                     "client": .integer(Int64(client))])
        }
    }

    /// Upserts flags/segments and pushes each, in order, to every connection of its environment: relay proxies get
    /// one plain `patch` per server secret of that environment (duplicates, as the real server), server SDKs one
    /// `patch`, client SDKs the re-evaluated flags.
    @discardableResult
    public func upsert(_ items: [DataItem]) throws(SimulatorDataError) -> PushCounts {
        try state.withLock { (state: inout State) throws(SimulatorDataError) -> PushCounts in
            var candidate = state.data
            for item in items { try candidate.upsert(item) }
            state.data = candidate
            var counts = PushCounts()
            let connections = state.connections.values.sorted { $0.id < $1.id }
            for item in items {
                let message = SimulatorData.pushMessage(for: item)
                for connection in connections {
                    switch connection.kind {
                    case .relayProxy(_, let secrets):
                        for secret in secrets where secret.envId == item.envId {
                            connection.send(message)
                            counts.relayProxy += 1
                        }
                    case .server(let secret):
                        guard secret.envId == item.envId else { continue }
                        connection.send(message)
                        counts.server += 1
                    case .client(let secret):
                        guard secret.envId == item.envId, let user = connection.user,
                              let push = state.data.clientPush(for: item, user: user) else { continue }
                        connection.send(push)
                        counts.client += 1
                    }
                }
            }
            state.pushesSent += counts.relayProxy + counts.server + counts.client
            return counts
        }
    }

    /// Replaces the data set. Like the real server, nothing is pushed: connected relay proxies see it on their next
    /// (re)connect; server SDKs on their next data-sync.
    public func replace(with items: [EnvironmentData]) {
        state.withLock { $0.data.replace(with: items) }
    }

    /// The `updatedAt` to stamp on a touched entity: now, but always later than anything held (so every touched
    /// change is newer than the previous one, even within one millisecond).
    public func touchTimestamp() -> Int64 {
        let version = state.withLock { $0.data.version }
        return max(clock(), version + 1)
    }

    // MARK: - Up / down, closes, raw messages

    /// Goes down: every socket is dropped without a close frame; HTTP answers 503 until `up()`.
    @discardableResult
    public func down() -> Int {
        let dropped = state.withLock { state -> [SimConnection] in
            state.up = false
            defer { state.connections.removeAll() }
            return Array(state.connections.values)
        }
        for connection in dropped { connection.abort() }
        return dropped.count
    }

    public func up() { state.withLock { $0.up = true } }

    /// Sends a close frame with `code` to every connection of `type` (`nil` = all).
    @discardableResult
    public func close(type: String?, code: Int, reason: String) -> Int {
        let targets = state.withLock { state -> [SimConnection] in
            let targets = state.connections.values.filter { type == nil || $0.kind.typeName == type }
            for t in targets { state.connections.removeValue(forKey: t.id) }
            return targets
        }
        for connection in targets { connection.close(code: code, reason: reason) }
        return targets.count
    }

    /// Sends an arbitrary text message to every connection of `type` (`nil` = all).
    @discardableResult
    public func sendRaw(_ bytes: [UInt8], type: String?) -> Int {
        let targets = connections(ofType: type)
        for connection in targets { connection.send(bytes) }
        return targets.count
    }

    // MARK: - Agent registration (spec §3.2)

    /// What a registration or insight request meets: an injected failure, a delay, or nothing.
    public enum FaultOutcome: Sendable, Equatable {
        /// Answer this instead (after `delayMillis`).
        case injected(InjectedResponse, delayMillis: Int)
        /// Only wait, then handle normally.
        case delayed(Int)
        case normal
    }

    /// Counts a registration request and consumes one injected failure, if any.
    public func beginRegistration() -> FaultOutcome {
        state.withLock { state in
            state.registrationRequests += 1
            return Self.outcome(state.registrationFailures.next())
        }
    }

    static func outcome(_ plan: FailurePlan?) -> FaultOutcome {
        guard let plan else { return .normal }
        guard let status = plan.status else { return .delayed(plan.delayMillis) }
        return .injected(.forStatus(status, retryAfterSeconds: plan.retryAfterSeconds), delayMillis: plan.delayMillis)
    }

    /// Whether `authorization` is an accepted relay-proxy key (`rp-` prefix and known).
    public func isKnownRelayProxyKey(_ authorization: String?) -> Bool {
        guard let key = authorization, key.hasPrefix("rp-") else { return false }
        return settings.apiKeys.contains(key)
    }

    /// Records a successful registration (idempotent per agent id).
    public func register(agentId: String) {
        state.withLock { state in
            state.registrations += 1
            if !state.registeredAgents.contains(agentId) { state.registeredAgents.append(agentId) }
        }
    }

    public func addRegistrationFailure(_ plan: FailurePlan) { state.withLock { $0.registrationFailures.add(plan) } }
    public func clearRegistrationFailures() { state.withLock { $0.registrationFailures.clear() } }
    public var registrationFailures: FailureQueue { state.withLock { $0.registrationFailures } }

    // MARK: - Insights (spec §4.4, §6.3)

    public func beginInsight() -> FaultOutcome {
        state.withLock { state in
            state.insightRequests += 1
            return Self.outcome(state.insightFailures.next())
        }
    }

    public func recordInsight(authorization: String, body: JSONValue) {
        let now = clock()
        state.withLock { state in
            state.insightPosts += 1
            state.insights.append(InsightRecord(authorization: authorization, body: body, receivedAt: now))
        }
    }

    public func insights(clear: Bool) -> [InsightRecord] {
        state.withLock { state in
            defer { if clear { state.insights.removeAll() } }
            return state.insights
        }
    }

    public func addInsightFailure(_ plan: FailurePlan) { state.withLock { $0.insightFailures.add(plan) } }
    public func clearInsightFailures() { state.withLock { $0.insightFailures.clear() } }
    public var insightFailures: FailureQueue { state.withLock { $0.insightFailures } }

    // MARK: - Reports

    public var agentStatuses: [AgentStatusRecord] {
        state.withLock { Array($0.agentStatus.values) }.sorted { $0.agentId < $1.agentId }
    }

    public var registeredAgents: [String] { state.withLock { $0.registeredAgents } }

    /// The body of `GET /control/state`.
    public func stateJSON() -> JSONValue {
        state.withLock { state in
            var byType: [String: Int] = ["relay-proxy": 0, "server": 0, "client": 0]
            for connection in state.connections.values { byType[connection.kind.typeName, default: 0] += 1 }
            let int: (Int) -> JSONValue = { .integer(Int64($0)) }
            return .object([
                "up": .bool(state.up),
                "dataVersion": .integer(state.data.version),
                "revision": .integer(Int64(state.data.revision)),
                "environments": int(state.data.envOrder.count),
                "flags": int(state.data.flagCount),
                "segments": int(state.data.segmentCount),
                "connections": .object(byType.mapValues(int)),
                "connectionsOpened": .object(state.connectionsOpened.mapValues { .integer(Int64($0)) }),
                "handshakeRejections": int(state.handshakeRejections),
                "rpFullSent": int(state.rpFullSent),
                "rpPatchSent": int(state.rpPatchSent),
                "pushesSent": int(state.pushesSent),
                "registrationRequests": int(state.registrationRequests),
                "registrations": int(state.registrations),
                "registeredAgents": .array(state.registeredAgents.map(JSONValue.string)),
                "insightRequests": int(state.insightRequests),
                "insightPosts": int(state.insightPosts),
                "insightsHeld": int(state.insights.count),
                "agentStatuses": int(state.agentStatus.count),
                "pendingRegistrationFailures": int(state.registrationFailures.pending),
                "pendingInsightFailures": int(state.insightFailures.pending),
            ])
        }
    }

    public func connectionsJSON() -> JSONValue { .array(connections().map(\.json)) }
    public func insightsJSON(clear: Bool) -> JSONValue { .array(insights(clear: clear).map(\.json)) }
    public func agentStatusJSON() -> JSONValue { .array(agentStatuses.map(\.json)) }
}
