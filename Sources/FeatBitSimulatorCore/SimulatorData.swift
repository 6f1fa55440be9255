import AgentCore

/// One environment of the simulated evaluation server: its secrets and its flags and segments in insertion order
/// (the order of the data file, new entities appended), which is the order every payload uses.
public struct SimEnvironment: Sendable {
    public let envId: String
    public var secrets: [SecretRecord]
    public private(set) var flagIds: [String] = []
    public private(set) var flags: [String: DataItem] = [:]
    public private(set) var segmentIds: [String] = []
    public private(set) var segments: [String: DataItem] = [:]

    public init(envId: String, secrets: [SecretRecord]) {
        self.envId = envId
        self.secrets = secrets
    }

    public var orderedFlags: [DataItem] { flagIds.map { flags[$0]! } }
    public var orderedSegments: [DataItem] { segmentIds.map { segments[$0]! } }
    public var serverSecrets: [SecretRecord] { secrets.filter { $0.type == .server } }

    /// Max `updatedAt` (ms) over flags and segments; 0 when empty.
    public var version: Int64 {
        max(flags.values.map(\.updatedAt).max() ?? 0, segments.values.map(\.updatedAt).max() ?? 0)
    }

    /// Inserts or replaces unconditionally (the simulator is the source of truth: whatever is saved is pushed).
    public mutating func upsert(_ item: DataItem) {
        switch item.kind {
        case .flag:
            if flags.updateValue(item, forKey: item.id) == nil { flagIds.append(item.id) }
        case .segment:
            if segments.updateValue(item, forKey: item.id) == nil { segmentIds.append(item.id) }
        }
    }

    /// Flags and segments whose `updatedAt` is strictly greater than `timestamp` (spec §2.4.1).
    public func items(after timestamp: Int64) -> (flags: [DataItem], segments: [DataItem]) {
        (orderedFlags.filter { $0.updatedAt > timestamp }, orderedSegments.filter { $0.updatedAt > timestamp })
    }
}

public enum SimulatorDataError: Error, Sendable, CustomStringConvertible, Equatable {
    case unknownEnvironment(String)

    public var description: String {
        switch self {
        case .unknownEnvironment(let env): return "unknown environment \(env) (add it with /control/bootstrap first)"
        }
    }
}

/// The whole data set of the simulated evaluation server and the payloads built from it (spec §2.4, §3.5).
/// A plain value: the server keeps it behind a lock, the tests use it directly.
public struct SimulatorData: Sendable {
    public private(set) var environments: [String: SimEnvironment] = [:]
    /// Environment ids in data-file order.
    public private(set) var envOrder: [String] = []
    /// Incremented by every change (bootstrap or upsert).
    public private(set) var revision: UInt64 = 0

    public init() {}

    /// A data set from a bootstrap/backup body (`{"eventType":"rp_full","items":[…]}`).
    public init(bootstrap json: JSONValue) throws(DataSetError) {
        replace(with: try DataSetParser.parseBootstrap(json))
    }

    /// Replaces everything. Entities are filed under their own `envId`; secrets under the item they came with.
    public mutating func replace(with items: [EnvironmentData]) {
        var environments: [String: SimEnvironment] = [:]
        var order: [String] = []
        func env(_ id: String) -> SimEnvironment {
            environments[id] ?? SimEnvironment(envId: id, secrets: [])
        }
        for item in items {
            if environments[item.envId] == nil { order.append(item.envId) }
            var e = env(item.envId)
            for secret in item.secrets ?? [] where !e.secrets.contains(where: { $0.value == secret.value }) {
                e.secrets.append(secret)
            }
            environments[item.envId] = e
            for entity in item.flags + item.segments {
                if environments[entity.envId] == nil { order.append(entity.envId) }
                var target = env(entity.envId)
                target.upsert(entity)
                environments[entity.envId] = target
            }
        }
        self.environments = environments
        self.envOrder = order
        revision += 1
    }

    /// Upserts a flag or segment into its (existing) environment.
    public mutating func upsert(_ item: DataItem) throws(SimulatorDataError) {
        guard environments[item.envId] != nil else { throw .unknownEnvironment(item.envId) }
        environments[item.envId]!.upsert(item)
        revision += 1
    }

    /// Max `updatedAt` over everything.
    public var version: Int64 { environments.values.map(\.version).max() ?? 0 }

    public var orderedEnvironments: [SimEnvironment] { envOrder.map { environments[$0]! } }

    /// Secret text → record, across environments.
    public func secret(_ value: String) -> SecretRecord? {
        for env in orderedEnvironments {
            if let s = env.secrets.first(where: { $0.value == value }) { return s }
        }
        return nil
    }

    /// Every server secret, environment by environment: what a relay-proxy key scoped to all environments resolves
    /// to at connect time (spec §1.2, §3.3).
    public var serverSecrets: [SecretRecord] { orderedEnvironments.flatMap(\.serverSecrets) }

    public var flagCount: Int { environments.values.reduce(0) { $0 + $1.flags.count } }
    public var segmentCount: Int { environments.values.reduce(0) { $0 + $1.segments.count } }

    // MARK: - Relay-proxy payloads (spec §3.5)

    /// `rp_full`: one item per environment that has secrets, with both server and client secrets.
    public func rpFull() -> [UInt8] {
        var out: [UInt8] = Array(#"{"messageType":"data-sync","data":{"eventType":"rp_full","items":["#.utf8)
        var first = true
        for env in orderedEnvironments where !env.secrets.isEmpty {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            Self.writeItem(envId: env.envId, secrets: env.secrets, flags: env.orderedFlags,
                           segments: env.orderedSegments, into: &out)
        }
        out.append(contentsOf: "]}}".utf8)
        return out
    }

    /// `rp_patch`: one item per server secret the connection resolved at connect time (so an environment with
    /// k server secrets appears k times), `secrets: []`, entities newer than that environment's requested
    /// timestamp (an environment absent from `envs` gets everything).
    public func rpPatch(connectionSecrets: [SecretRecord], envTimestamps: [String: Int64]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"messageType":"data-sync","data":{"eventType":"rp_patch","items":["#.utf8)
        for (index, secret) in connectionSecrets.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let selected = environments[secret.envId]?.items(after: envTimestamps[secret.envId] ?? 0) ?? (flags: [], segments: [])
            Self.writeItem(envId: secret.envId, secrets: [], flags: selected.flags, segments: selected.segments,
                           into: &out)
        }
        out.append(contentsOf: "]}}".utf8)
        return out
    }

    /// The reply to a relay proxy's `data-sync`: top-level timestamp 0/absent → `rp_full`, else `rp_patch`.
    public func rpReply(to request: RelayProxyDataSyncRequest, connectionSecrets: [SecretRecord]) -> [UInt8] {
        request.timestamp == 0
            ? rpFull()
            : rpPatch(connectionSecrets: connectionSecrets, envTimestamps: request.envTimestamps)
    }

    /// The backup/bootstrap body of the whole data set (every environment, with or without secrets).
    public func backupJSON() -> [UInt8] {
        var out: [UInt8] = Array(#"{"eventType":"rp_full","items":["#.utf8)
        for (index, env) in orderedEnvironments.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            Self.writeItem(envId: env.envId, secrets: env.secrets, flags: env.orderedFlags,
                           segments: env.orderedSegments, into: &out)
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }

    // MARK: - Server-SDK payloads (spec §2.4.1)

    /// The reply to a server SDK's `data-sync {"timestamp": T}`: `full` for 0, else `patch` (always sent).
    public func serverReply(envId: String, timestamp: Int64) -> [UInt8] {
        let eventType: SDKPayload.EventType = timestamp == 0 ? .full : .patch
        let selected = environments[envId]?.items(after: timestamp) ?? (flags: [], segments: [])
        return SDKPayload.serverDataSync(eventType: eventType, flags: selected.flags, segments: selected.segments)
    }

    /// `GET /api/public/sdk/server/latest-all?timestamp=T`: the reply message, or empty when `T > 0` and nothing
    /// changed (spec §6.1).
    public func serverLatestAll(envId: String, timestamp: Int64) -> [UInt8] {
        if timestamp != 0 {
            let selected = environments[envId]?.items(after: timestamp) ?? (flags: [], segments: [])
            if selected.flags.isEmpty && selected.segments.isEmpty { return [] }
        }
        return serverReply(envId: envId, timestamp: timestamp)
    }

    /// What every server connection (and, once per server secret, every relay-proxy connection) of the entity's
    /// environment receives when it changes (spec §2.5).
    public static func pushMessage(for item: DataItem) -> [UInt8] {
        item.kind == .flag
            ? SDKPayload.serverDataSync(eventType: .patch, flags: [item], segments: [])
            : SDKPayload.serverDataSync(eventType: .patch, flags: [], segments: [item])
    }

    // MARK: - Client-SDK payloads (spec §2.4.2)

    /// The reply to a client SDK's `data-sync` for `user`: `full` (all flags) for 0, else `patch`.
    public func clientReply(envId: String, timestamp: Int64, user: EndUser) -> [UInt8] {
        let eventType: SDKPayload.EventType = timestamp == 0 ? .full : .patch
        let flags = environments[envId]?.items(after: timestamp).flags ?? []
        return clientMessage(envId: envId, eventType: eventType, user: user, flags: flags)
    }

    /// The push a client connection gets for a changed entity: the flag evaluated for its user, or for a segment
    /// the flags referencing it; `nil` when a segment affects no flag (spec §2.5).
    public func clientPush(for item: DataItem, user: EndUser) -> [UInt8]? {
        guard let env = environments[item.envId] else { return nil }
        let flags = item.kind == .flag ? [item] : env.orderedFlags.filter { $0.references(segmentId: item.id) }
        if flags.isEmpty { return nil }
        return clientMessage(envId: item.envId, eventType: .patch, user: user, flags: flags)
    }

    private func clientMessage(envId: String, eventType: SDKPayload.EventType, user: EndUser,
                               flags: [DataItem]) -> [UInt8] {
        let segments = environments[envId]?.segments ?? [:]
        return ClientPayload.dataSync(eventType: eventType, user: user, flags: flags.compactMap(\.flagModel),
                                      segments: { segments[$0]?.segmentModel })
    }

    // MARK: - Writing

    static func writeItem(envId: String, secrets: [SecretRecord], flags: [DataItem], segments: [DataItem],
                          into out: inout [UInt8]) {
        out.append(contentsOf: #"{"envId":"#.utf8)
        JSONWriter.writeString(envId, into: &out)
        out.append(contentsOf: #","secrets":"#.utf8)
        JSONWriter.write(.array(secrets.map(secretJSON)), into: &out)
        out.append(contentsOf: #","featureFlags":"#.utf8)
        SDKPayload.writeItems(flags, into: &out)
        out.append(contentsOf: #","segments":"#.utf8)
        SDKPayload.writeItems(segments, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// `SecretWithValue` (spec §1.1).
    public static func secretJSON(_ secret: SecretRecord) -> JSONValue {
        .object([
            "type": .string(secret.type.rawValue), "projectKey": .string(secret.projectKey),
            "envId": .string(secret.envId), "envKey": .string(secret.envKey), "value": .string(secret.value),
        ])
    }
}

/// A relay proxy's `data-sync` request (spec §3.4): the top-level timestamp and the per-environment ones.
public struct RelayProxyDataSyncRequest: Sendable, Equatable {
    public var timestamp: Int64
    public var envTimestamps: [String: Int64]

    public init(timestamp: Int64, envTimestamps: [String: Int64] = [:]) {
        self.timestamp = timestamp
        self.envTimestamps = envTimestamps
    }

    /// Reads `data`: `timestamp` absent → 0, integral number → it, non-integral → 0, anything else → `nil` (no
    /// reply, spec §2.3). `envs` entries without a GUID `envId` are skipped; a missing env timestamp is 0.
    public init?(data: JSONValue) {
        guard let timestamp = Self.timestamp(data["timestamp"]) else { return nil }
        if !data.isNull, data.objectValue == nil { return nil }
        self.timestamp = timestamp
        var envs: [String: Int64] = [:]
        for entry in data["envs"]?.arrayValue ?? [] {
            guard let text = entry["envId"]?.stringValue, let envId = GUIDText.normalise(text) else { continue }
            envs[envId] = Self.timestamp(entry["timestamp"]) ?? 0
        }
        self.envTimestamps = envs
    }

    static func timestamp(_ value: JSONValue?) -> Int64? {
        switch value {
        case nil: return 0
        case .integer(let i)?: return i
        case .number(let d)?: return d == d.rounded() && abs(d) < 9.2e18 ? Int64(d) : 0
        default: return nil
        }
    }
}
