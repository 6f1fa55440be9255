/// The life cycle of one SDK connection on `/streaming`, as a pure state machine (no I/O, no clock): the network
/// layer feeds it events and performs the actions it returns.
///
/// Spec: §1.4 (handshake outcome), §2.2 (framing: bad messages get no reply and keep the connection), §2.3/§2.4
/// (replies), §2.5 (pushes), §2.6 (close codes).
public struct SDKSession: Sendable {
    public enum State: Sendable, Equatable {
        /// Accepted; `user` is the client SDK's current user (set by its data-sync).
        case open(type: HandshakeValidator.ConnectionType, envId: String, user: EndUser?)
        /// A close was sent or decided; nothing more is written.
        case closed
    }

    public enum Action: Sendable, Equatable {
        /// Write one text message.
        case send([UInt8])
        /// Write a Close frame with this code and reason, then close.
        case close(code: UInt16, reason: String)
        /// Add the connection to the fan-out of this environment.
        case register(envId: String, type: HandshakeValidator.ConnectionType)
        /// Note a rejected input (log line, metric); the connection stays open.
        case ignored(InboundMessage.Rejection)
        /// A client data-sync without a valid user: no reply, a log line (spec §2.3).
        case invalidUser
    }

    public static let invalidRequestCode: UInt16 = 4003
    public static let invalidRequestReason = "invalid request, close by server"
    public static let unavailableCode: UInt16 = 1011
    public static let unavailableReason = "service unavailable, close by server"
    public static let goingAwayCode: UInt16 = 1001

    public private(set) var state: State

    /// Builds a session from the handshake outcome and returns what to do first.
    public static func start(_ outcome: HandshakeValidator.Outcome) -> (SDKSession, [Action]) {
        switch outcome {
        case .valid(let type, let envId, _):
            return (SDKSession(state: .open(type: type, envId: envId, user: nil)), [.register(envId: envId, type: type)])
        case .invalid:
            return (SDKSession(state: .closed), [.close(code: invalidRequestCode, reason: invalidRequestReason)])
        case .unavailable:
            return (SDKSession(state: .closed), [.close(code: unavailableCode, reason: unavailableReason)])
        }
    }

    /// A complete text (or binary) message from the SDK.
    public mutating func receive<Bytes: Collection>(
        _ bytes: Bytes,
        snapshot: @autoclosure () -> DataSnapshot
    ) -> [Action] where Bytes.Element == UInt8 {
        guard case .open(let type, let envId, _) = state else { return [] }
        let message: InboundMessage
        switch InboundMessage.parse(bytes) {
        case .success(let m): message = m
        case .failure(let rejection): return [.ignored(rejection)]
        }
        switch message {
        case .ping:
            return [.send(SDKPayload.pong)]
        case .echo(let data):
            return [.send(SDKPayload.echo(data))]
        case .agentStatus:
            return []
        case .dataSync(let timestamp, let user):
            // Only a data-sync reads the data set (pings, the bulk of SDK traffic, never take the store's lock).
            let env = snapshot().environments[envId]
            switch type {
            case .server:
                return [.send(SDKPayload.serverReply(to: timestamp, in: env))]
            case .client:
                // Each client data-sync (re)attaches its user: that is how "identify" works.
                guard let userJSON = user, let endUser = EndUser.parse(userJSON) else { return [.invalidUser] }
                state = .open(type: type, envId: envId, user: endUser)
                return [.send(ClientSDKResponder.reply(to: timestamp, user: endUser, in: env))]
            }
        }
    }

    /// A change to this client session's environment: the push evaluated for its user (spec §2.5, §3.7). Server
    /// sessions are written the shared, pre-serialised frames instead and never come here.
    public func push(_ plan: ClientPushPlan) -> [Action] {
        // Clients that have not identified yet are skipped (spec §2.5).
        guard case .open(.client, _, let user?) = state, let message = plan.message(for: user) else { return [] }
        return [.send(message)]
    }

    /// The SDK sent a Close frame: echo its code (spec §2.6).
    public mutating func peerClosed(code: UInt16?) -> [Action] {
        guard case .open = state else { return [] }
        state = .closed
        return [.close(code: code ?? 1000, reason: "")]
    }

    /// The agent is shutting down: close with 1001.
    public mutating func shutdown() -> [Action] {
        guard case .open = state else { return [] }
        state = .closed
        return [.close(code: Self.goingAwayCode, reason: "agent shutting down")]
    }

    /// The SDK broke the WebSocket framing or sent a message over the size limit: close with `code` (1002, 1009).
    public mutating func refuse(code: UInt16, reason: String) -> [Action] {
        guard case .open = state else { return [] }
        state = .closed
        return [.close(code: code, reason: reason)]
    }

    /// The connection could not keep up with its pushes.
    public mutating func slowConsumer() -> [Action] {
        guard case .open = state else { return [] }
        state = .closed
        return [.close(code: 1008, reason: "slow consumer, reconnect and resync")]
    }
}

/// Client-SDK replies and pushes, evaluated for the connection's user with the items' cached models.
public enum ClientSDKResponder {
    /// The reply to a client `data-sync` (spec §2.4.2).
    public static func reply(to timestamp: Int64, user: EndUser, in env: EnvironmentSnapshot?) -> [UInt8] {
        ClientPayload.reply(to: timestamp, user: user, in: env)
    }

    /// What a change means for client SDKs (spec §2.5, §3.7), worked out once per change and environment: the
    /// changed flags plus the flags that reference a changed segment, or everything after a replace that removed
    /// items. Each client session then only evaluates it for its own user.
    public static func plan(_ delta: EnvironmentDelta, snapshot: DataSnapshot) -> ClientPushPlan {
        guard let env = snapshot.environments[delta.envId] else { return .nothing }
        if delta.needsFull { return .full(env) }
        var flags: [String: DataItem] = [:]
        for flag in delta.flags { flags[flag.id] = env.flags[flag.id] ?? flag }
        if !delta.segments.isEmpty {
            for flag in env.sortedFlags where flags[flag.id] == nil {
                if delta.segments.contains(where: { flag.references(segmentId: $0.id) }) { flags[flag.id] = flag }
            }
        }
        guard !flags.isEmpty else { return .nothing }
        let ordered = flags.values.sorted { ($0.updatedAt, $0.id) < ($1.updatedAt, $1.id) }
        return .patch(flags: ordered.compactMap(\.flagModel), segments: env.segmentModels)
    }
}

/// A change as client SDKs see it; see `ClientSDKResponder.plan`.
public enum ClientPushPlan: Sendable {
    /// No flag of the environment is affected: client SDKs get nothing.
    case nothing
    /// Items were removed: a `full` of every flag.
    case full(EnvironmentSnapshot)
    /// A `patch` of these flags, in ascending `updatedAt` order.
    case patch(flags: [FlagModel], segments: [String: SegmentModel])

    /// The message for one user, or `nil` when there is nothing to send.
    public func message(for user: EndUser) -> [UInt8]? {
        switch self {
        case .nothing:
            return nil
        case .full(let env):
            return ClientSDKResponder.reply(to: 0, user: user, in: env)
        case .patch(let flags, let segments):
            return ClientPayload.dataSync(eventType: .patch, user: user, flags: flags, segments: { segments[$0] })
        }
    }
}

/// The server-SDK pushes for a delta, serialised once per environment and change (spec §2.5, §3.7).
///
/// A `full` when items were removed; otherwise patches of the changed items in ascending `updatedAt` order. SDKs
/// apply a message's flags before its segments, and python-sdk 1.1.7 drops any item older than the newest it has
/// applied, so a flag newer than a segment of the same change goes in a later message.
extension EnvironmentDelta {
    public func serverPushMessages(in snapshot: DataSnapshot) -> [[UInt8]] {
        if needsFull {
            return snapshot.environments[envId].map { [$0.serverFullMessage] } ?? []
        }
        var messages: [[UInt8]] = []
        var flagRun: [DataItem] = []
        var segmentRun: [DataItem] = []
        var f = flags.startIndex, s = segments.startIndex
        while f < flags.endIndex || s < segments.endIndex {
            let takeFlag = s == segments.endIndex || (f < flags.endIndex && flags[f].updatedAt <= segments[s].updatedAt)
            if takeFlag {
                if !segmentRun.isEmpty {
                    messages.append(SDKPayload.serverDataSync(eventType: .patch, flags: flagRun, segments: segmentRun))
                    flagRun = []
                    segmentRun = []
                }
                flagRun.append(flags[f])
                f += 1
            } else {
                segmentRun.append(segments[s])
                s += 1
            }
        }
        if !flagRun.isEmpty || !segmentRun.isEmpty {
            messages.append(SDKPayload.serverDataSync(eventType: .patch, flags: flagRun, segments: segmentRun))
        }
        return messages
    }
}
