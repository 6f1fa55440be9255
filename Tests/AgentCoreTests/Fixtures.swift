import Foundation
@testable import AgentCore

/// Small builders for flags, segments and data sets used across tests.
enum Fixtures {
    static let envA = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
    static let serverSecretA = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"
    static let clientSecretA = "0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"
    static let envB = "8dc61769-5af3-4d9f-8cb3-d7342e24c3eb"
    static let serverSecretB = "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w"

    static func iso(_ ms: Int64) -> String { FeatBitTimestamp.iso8601(milliseconds: ms) }

    static func flagJSON(id: String, env: String = envA, key: String? = nil, updatedAt: Int64, extra: [String: JSONValue] = [:]) -> JSONValue {
        var members: [String: JSONValue] = [
            "id": .string(id), "envId": .string(env), "key": .string(key ?? "flag-\(id)"), "name": .string("Flag \(id)"),
            "variationType": .string("boolean"),
            "variations": .array([
                .object(["id": .string("v-true"), "name": .string("True"), "value": .string("true")]),
                .object(["id": .string("v-false"), "name": .string("False"), "value": .string("false")]),
            ]),
            "targetUsers": .array([]), "rules": .array([]), "isEnabled": .bool(true),
            "disabledVariationId": .string("v-false"),
            "fallthrough": .object(["dispatchKey": .null, "includedInExpt": .bool(true), "variations": .array([
                .object(["id": .string("v-true"), "rollout": .array([.integer(0), .integer(1)]), "exptRollout": .integer(1)]),
            ])]),
            "exptIncludeAllTargets": .bool(true), "tags": .array([]), "isArchived": .bool(false),
            "updatedAt": .string(iso(updatedAt)),
        ]
        for (k, v) in extra { members[k] = v }
        return .object(members)
    }

    static func segmentJSON(id: String, env: String = envA, updatedAt: Int64) -> JSONValue {
        .object([
            "id": .string(id), "envId": .string(env), "name": .string("Segment \(id)"), "included": .array([]),
            "excluded": .array([]), "rules": .array([]), "isArchived": .bool(false), "updatedAt": .string(iso(updatedAt)),
        ])
    }

    static func flag(_ id: String, env: String = envA, updatedAt: Int64, extra: [String: JSONValue] = [:]) -> DataItem {
        try! DataItem(kind: .flag, json: flagJSON(id: id, env: env, updatedAt: updatedAt, extra: extra))
    }

    static func segment(_ id: String, env: String = envA, updatedAt: Int64) -> DataItem {
        try! DataItem(kind: .segment, json: segmentJSON(id: id, env: env, updatedAt: updatedAt))
    }

    static func secrets(env: String = envA) -> [SecretRecord] {
        if env == envA {
            return [
                SecretRecord(type: .server, projectKey: "webapp", envId: envA, envKey: "dev", value: serverSecretA),
                SecretRecord(type: .client, projectKey: "webapp", envId: envA, envKey: "dev", value: clientSecretA),
            ]
        }
        return [SecretRecord(type: .server, projectKey: "webapp", envId: envB, envKey: "prod", value: serverSecretB)]
    }

    static func environment(_ env: String = envA, flags: [DataItem], segments: [DataItem] = [], secrets: [SecretRecord]? = nil) -> EnvironmentData {
        EnvironmentData(envId: env, secrets: secrets ?? Self.secrets(env: env), flags: flags, segments: segments)
    }

    static var fakeDataDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/fixtures/featbit-fake-data").standardized
    }

    /// FeatBit's own fake data set as a bootstrap body.
    static func fakeDataBootstrap() throws -> JSONValue {
        let flags = try JSONValue.parse(Data(contentsOf: fakeDataDirectory.appendingPathComponent("flags.json")))
        let segments = try JSONValue.parse(Data(contentsOf: fakeDataDirectory.appendingPathComponent("segments.json")))
        return .object([
            "eventType": .string("rp_full"),
            "items": .array([.object([
                "envId": .string(envA),
                "secrets": .array(secrets().map(\.json)),
                "featureFlags": flags, "segments": segments,
            ])]),
        ])
    }
}

/// Records every change the store journals, to check durable-before-visible ordering.
final class RecordingJournal: ChangeJournal, @unchecked Sendable {
    private let lock = NSLock()
    private var _sequences: [UInt64] = []
    private var _metadata: [[String: String?]] = []
    var sequences: [UInt64] { lock.withLock { _sequences } }
    /// Metadata written, per write (with a change or alone).
    var metadataWrites: [[String: String?]] { lock.withLock { _metadata } }
    /// When false, every write fails (a full disk).
    var writable = true
    func persist(_ change: AppliedChange, metadata: [String: String?]) -> Bool {
        lock.withLock {
            _sequences.append(change.sequence)
            if !metadata.isEmpty { _metadata.append(metadata) }
            return writable
        }
    }
    func persistMetadata(_ metadata: [String: String?]) -> Bool {
        lock.withLock {
            _metadata.append(metadata)
            return writable
        }
    }
}

/// A journal whose commits wait while its gate is closed (at most 10 s each), like a slow disk.
final class GatedJournal: ChangeJournal, @unchecked Sendable {
    private let lock = NSLock()
    private var _sequences: [UInt64] = []
    private var closed = false
    private var gaveUp = 0
    private let gate = DispatchSemaphore(value: 0)
    var sequences: [UInt64] { lock.withLock { _sequences } }
    /// Commits that stopped waiting because the gate stayed closed for 10 s.
    var commitsThatGaveUp: Int { lock.withLock { gaveUp } }

    func closeGate() { lock.withLock { closed = true } }

    func openGate() {
        lock.withLock { closed = false }
        for _ in 0..<64 { gate.signal() }
    }

    func persist(_ change: AppliedChange, metadata: [String: String?]) -> Bool {
        if lock.withLock({ closed }), gate.wait(timeout: .now() + 10) == .timedOut {
            lock.withLock { gaveUp += 1 }
        }
        lock.withLock { _sequences.append(change.sequence) }
        return true
    }

    func persistMetadata(_ metadata: [String: String?]) -> Bool { true }
}
