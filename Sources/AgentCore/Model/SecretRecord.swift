/// One SDK secret of an environment, as FeatBit sends it to relay proxies (`SecretWithValue`, spec §1.1).
public struct SecretRecord: Sendable, Hashable, Codable {
    public enum SecretType: String, Sendable, Codable {
        case server
        case client
    }

    public var type: SecretType
    public var projectKey: String
    public var envId: String
    public var envKey: String
    public var value: String

    public init(type: SecretType, projectKey: String, envId: String, envKey: String, value: String) {
        self.type = type
        self.projectKey = projectKey
        self.envId = envId
        self.envKey = envKey
        self.value = value
    }

    public var json: JSONValue {
        .object([
            "type": .string(type.rawValue), "projectKey": .string(projectKey), "envId": .string(envId),
            "envKey": .string(envKey), "value": .string(value),
        ])
    }
}
