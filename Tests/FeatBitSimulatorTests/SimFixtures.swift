import AgentCore
import Foundation
import Synchronization
@testable import FeatBitSimulatorCore

enum SimFixtures {
    static let envA = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
    static let serverSecretA = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"
    static let clientSecretA = "0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"
    static let envB = "8dc61769-5af3-4d9f-8cb3-d7342e24c3eb"
    static let serverSecretB = "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w"
    /// A second server secret of env A (any 22-char header + env A's encoded id).
    static let serverSecretA2 = "AAAAAAAAAAAAAAAAAAAAAA-JtrIvNK-k-bARYicOTNQA"
    static let apiKey = "rp-MDcwNTEzNDExNzQ3MQtXO7IPcN6U-z5fAktj18CQ"
    static let patchCursor: Int64 = 1674885300000

    static var sharedFixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../shared/fixtures").standardized
    }

    static func golden(_ name: String) throws -> VerifyNode {
        try VerifyParser.parse(file: sharedFixtures.appendingPathComponent("featbit-golden/DataSyncTests.\(name).verified.txt"))
    }

    static func secret(_ type: String, _ value: String, env: String = envA, envKey: String = "dev") -> JSONValue {
        .object(["type": .string(type), "projectKey": .string("webapp"), "envId": .string(env),
                 "envKey": .string(envKey), "value": .string(value)])
    }

    /// FeatBit's fake data set (env webapp/dev with one server and one client secret) as a bootstrap body.
    static func fakeDataBootstrap(extraSecrets: [JSONValue] = []) throws -> JSONValue {
        let dir = sharedFixtures.appendingPathComponent("featbit-fake-data")
        let flags = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("flags.json")))
        let segments = try JSONValue.parse(Data(contentsOf: dir.appendingPathComponent("segments.json")))
        return .object([
            "eventType": .string("rp_full"),
            "items": .array([.object([
                "envId": .string(envA),
                "secrets": .array([secret("server", serverSecretA), secret("client", clientSecretA)] + extraSecrets),
                "featureFlags": flags, "segments": segments,
            ])]),
        ])
    }

    static func fakeData(extraSecrets: [JSONValue] = []) throws -> SimulatorData {
        try SimulatorData(bootstrap: fakeDataBootstrap(extraSecrets: extraSecrets))
    }

    static func iso(_ ms: Int64) -> String { FeatBitTimestamp.iso8601(milliseconds: ms) }

    static func flagJSON(id: String, env: String = envA, key: String, updatedAt: Int64, enabled: Bool = true) -> JSONValue {
        .object([
            "id": .string(id), "envId": .string(env), "key": .string(key), "name": .string(key),
            "variationType": .string("boolean"),
            "variations": .array([
                .object(["id": .string("v-true"), "name": .string("True"), "value": .string("true")]),
                .object(["id": .string("v-false"), "name": .string("False"), "value": .string("false")]),
            ]),
            "targetUsers": .array([]), "rules": .array([]), "isEnabled": .bool(enabled),
            "disabledVariationId": .string("v-false"),
            "fallthrough": .object(["dispatchKey": .null, "includedInExpt": .bool(true), "variations": .array([
                .object(["id": .string("v-true"), "rollout": .array([.integer(0), .integer(1)]), "exptRollout": .integer(1)]),
            ])]),
            "exptIncludeAllTargets": .bool(true), "tags": .array([]), "isArchived": .bool(false),
            "updatedAt": .string(iso(updatedAt)),
        ])
    }

    static func flag(id: String, env: String = envA, key: String, updatedAt: Int64, enabled: Bool = true) -> DataItem {
        try! DataItem(kind: .flag, json: flagJSON(id: id, env: env, key: key, updatedAt: updatedAt, enabled: enabled))
    }

    static func segment(id: String, env: String = envA, updatedAt: Int64) -> DataItem {
        try! DataItem(kind: .segment, json: .object([
            "id": .string(id), "envId": .string(env), "name": .string("seg \(id)"), "included": .array([]),
            "excluded": .array([]), "rules": .array([]), "isArchived": .bool(false), "updatedAt": .string(iso(updatedAt)),
        ]))
    }

    /// Two environments: A (fake data, plus a second server secret if asked) and B (one server secret, one flag).
    static func twoEnvironments(secondServerSecretForA: Bool = false) throws -> SimulatorData {
        var data = SimulatorData()
        var items = try DataSetParser.parseBootstrap(fakeDataBootstrap(
            extraSecrets: secondServerSecretForA ? [secret("server", serverSecretA2)] : []))
        items.append(EnvironmentData(
            envId: envB,
            secrets: [SecretRecord(type: .server, projectKey: "webapp", envId: envB, envKey: "prod", value: serverSecretB)],
            flags: [flag(id: "bbbbbbbb-0000-4000-8000-000000000001", env: envB, key: "b-flag", updatedAt: 1_700_000_000_000)],
            segments: []))
        data.replace(with: items)
        return data
    }

    static func parse(_ bytes: [UInt8]) -> JSONValue { try! JSONValue.parse(bytes) }
}

/// A connection without a socket: what the simulator queues for it is collected.
final class FakeSocket: Sendable {
    let stream: AsyncStream<SimConnection.Outgoing>
    let continuation: AsyncStream<SimConnection.Outgoing>.Continuation
    let aborted = Mutex(false)

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: SimConnection.Outgoing.self)
    }

    func open(_ simulator: Simulator, kind: SimConnection.Kind) -> SimConnection {
        simulator.open(kind: kind, continuation: continuation) { self.aborted.withLock { $0 = true } }
    }

    /// Everything queued so far (the stream is finished first, so call it once, at the end).
    func drain() async -> [SimConnection.Outgoing] {
        continuation.finish()
        var out: [SimConnection.Outgoing] = []
        for await item in stream { out.append(item) }
        return out
    }
}

extension SimConnection.Outgoing {
    var json: JSONValue? {
        if case .text(let bytes) = self { return try? JSONValue.parse(bytes) }
        return nil
    }
}
