/// Everything the agent serves, as one immutable value. Readers take the current snapshot and never see a change
/// half-applied; the store replaces it copy-on-write.
public struct DataSnapshot: Sendable {
    public let environments: [String: EnvironmentSnapshot]
    /// Every secret held, by the environment id embedded in its text (spec §1.1): the public part of a secret finds
    /// the few candidates, which are then compared in constant time (`secret(matching:)`).
    private let secretsByEmbeddedEnv: [UUID: [SecretRecord]]
    /// False until the first data set arrives (then SDKs get data instead of 1011).
    public let isInitialised: Bool
    /// Sequence number of the last applied change (0 before any).
    public let sequence: UInt64

    public static let empty = DataSnapshot(environments: [:], isInitialised: false, sequence: 0)

    /// - Parameter previous: a snapshot whose environments hold exactly the same secrets (a change that only upserts
    ///   flags and segments): its secret index is shared instead of built again over every environment.
    public init(environments: [String: EnvironmentSnapshot], isInitialised: Bool, sequence: UInt64,
                sameSecretsAs previous: DataSnapshot? = nil) {
        self.environments = environments
        if let previous {
            self.secretsByEmbeddedEnv = previous.secretsByEmbeddedEnv
        } else {
            var index: [UUID: [SecretRecord]] = [:]
            for env in environments.values {
                for secret in env.secrets {
                    guard let embedded = SecretCodec.envId(fromSecret: secret.value) else { continue }
                    index[embedded, default: []].append(secret)
                }
            }
            self.secretsByEmbeddedEnv = index
        }
        self.isInitialised = isInitialised
        self.sequence = sequence
        self.version = environments.values.reduce(0) { max($0, $1.version) }
    }

    /// The record of a secret this agent holds, compared in constant time; `nil` for any other text.
    public func secret(matching presented: String) -> SecretRecord? {
        held(presented)?.record
    }

    /// The environment id embedded in `presented` (spec §1.5: what the SDK HTTP endpoints serve), when it is a secret
    /// this agent holds; the secret is decoded once.
    public func environmentId(ofHeldSecret presented: String) -> String? {
        held(presented)?.embedded.featbitString
    }

    private func held(_ presented: String) -> (record: SecretRecord, embedded: UUID)? {
        guard let embedded = SecretCodec.envId(fromSecret: presented),
              let candidates = secretsByEmbeddedEnv[embedded] else { return nil }
        var found: SecretRecord?
        // Every candidate compared, whichever matches: how many there are is the only thing the time tells.
        for candidate in candidates where ConstantTime.equals(candidate.value, presented) { found = candidate }
        return found.map { ($0, embedded) }
    }

    /// Max `updatedAt` over everything held (the agent's `dataVersion`), computed once per snapshot.
    public let version: Int64

    /// Environment ids in a stable order.
    public var sortedEnvIds: [String] { environments.keys.sorted() }

    /// Comma-joined `projectKey:envKey` of every environment that has secrets (status `serves`).
    public var serves: String {
        environments.values
            .compactMap(\.servesLabel)
            .sorted()
            .joined(separator: ",")
    }

    /// The backup/bootstrap body: one item per environment that has secrets (spec §6.5).
    public func backupJSON() -> [UInt8] {
        Self.itemsBody(eventType: "rp_full", sortedEnvIds.compactMap { envId in
            guard let env = environments[envId], !env.secrets.isEmpty else { return nil }
            return ItemsEntry(envId: envId, secrets: env.secrets, flags: env.sortedFlags, segments: env.sortedSegments)
        })
    }

    /// One item of an `items` body.
    public struct ItemsEntry: Sendable {
        public var envId: String
        public var secrets: [SecretRecord]
        public var flags: [DataItem]
        public var segments: [DataItem]

        public init(envId: String, secrets: [SecretRecord], flags: [DataItem], segments: [DataItem]) {
            self.envId = envId
            self.secrets = secrets
            self.flags = flags
            self.segments = segments
        }
    }

    /// `{"eventType": …, "items": [{envId, secrets, featureFlags, segments}, …]}`: the shape of `rp_full`/`rp_patch`
    /// items, bootstrap and backup bodies, and the mesh's replication payloads.
    public static func itemsBody(eventType: String, _ entries: [ItemsEntry]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"eventType":"#.utf8)
        JSONWriter.writeString(eventType, into: &out)
        out.append(contentsOf: #","items":["#.utf8)
        for (index, entry) in entries.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"envId":"#.utf8)
            JSONWriter.writeString(entry.envId, into: &out)
            out.append(contentsOf: #","secrets":"#.utf8)
            JSONWriter.write(.array(entry.secrets.map(\.json)), into: &out)
            out.append(contentsOf: #","featureFlags":"#.utf8)
            SDKPayload.writeItems(entry.flags, into: &out)
            out.append(contentsOf: #","segments":"#.utf8)
            SDKPayload.writeItems(entry.segments, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
        return out
    }
}

import Foundation
