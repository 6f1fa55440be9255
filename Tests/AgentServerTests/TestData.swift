import AgentCore
import Foundation

/// FeatBit's own fake data set (shared/fixtures) and small data sets built for tests.
enum TestData {
    static let envId = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
    static let serverSecret = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"
    static let clientSecret = "0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"
    /// A well-formed secret of an environment the agent does not hold.
    static let unknownSecret = "v3faJy3RCUO8d-EJiVdN6waRfGjfNan02Ms9c0LiTD6w"
    /// Well formed, naming `envId` (the public part of a secret), but not a secret the environment has.
    static let forgedSecret = "Zm9yZ2VkLXNlY3JldC0xMg" + serverSecret.dropFirst(22)

    static var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/fixtures").standardized
    }

    static func fixture(_ path: String) throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: fixtures.appendingPathComponent(path)))
    }

    static var secrets: JSONValue {
        .array([
            .object(["type": .string("server"), "projectKey": .string("webapp"), "envId": .string(envId), "envKey": .string("dev"), "value": .string(serverSecret)]),
            .object(["type": .string("client"), "projectKey": .string("webapp"), "envId": .string(envId), "envKey": .string("dev"), "value": .string(clientSecret)]),
        ])
    }

    /// The fake data set as a bootstrap body, with the flags optionally edited.
    static func fakeBootstrapBody(editFlags: (inout [JSONValue]) -> Void = { _ in }) throws -> String {
        guard case .array(var flags) = try fixture("featbit-fake-data/flags.json") else { throw TestFailure("flags.json") }
        editFlags(&flags)
        let body: JSONValue = .object([
            "eventType": .string("rp_full"),
            "items": .array([.object([
                "envId": .string(envId), "secrets": secrets, "featureFlags": .array(flags),
                "segments": try fixture("featbit-fake-data/segments.json"),
            ])]),
        ])
        return JSONWriter.string(body)
    }

    static func fakeEnvironments() throws -> [EnvironmentData] {
        try DataSetParser.parseBootstrap(try JSONValue.parse(try fakeBootstrapBody()))
    }

    static func dataSync(_ timestamp: Int64) -> String {
        #"{"messageType": "data-sync", "data": {"timestamp": \#(timestamp)}}"#
    }
}

extension JSONValue {
    func with(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members[key] = value
        return .object(members)
    }
}
