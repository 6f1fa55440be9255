/// The `/streaming` handshake check of spec §1.4, in its order; the first failure decides.
public enum HandshakeValidator {
    /// The connection types an agent serves (`relay-proxy` is the evaluation server's alone).
    public enum ConnectionType: String, Sendable {
        case server
        case client
    }

    public enum Outcome: Sendable, Equatable {
        case valid(type: ConnectionType, envId: String, secret: SecretRecord)
        /// Close 4003 `invalid request, close by server`.
        case invalid(reason: String)
        /// Close 1011 `service unavailable, close by server` (no data set yet; the SDK should retry).
        case unavailable(reason: String)
    }

    /// Default token window (`Streaming__TokenExpirySeconds`).
    public static let defaultTokenExpiryMillis: Int64 = 30_000

    /// Validates the query of an upgrade request against the current data.
    /// - Parameters:
    ///   - query: query parameters with lowercase names (names are case-insensitive, values are not)
    public static func validate(
        query: [String: String],
        nowMillis: Int64,
        snapshot: DataSnapshot,
        tokenExpiryMillis: Int64 = defaultTokenExpiryMillis
    ) -> Outcome {
        guard let typeText = query["type"], let type = ConnectionType(rawValue: typeText) else {
            return .invalid(reason: "unsupported type")
        }
        guard ["", "1", "2"].contains(query["version"] ?? "") else { return .invalid(reason: "unsupported version") }
        guard let tokenText = query["token"], !tokenText.allSatisfy(\.isWhitespace) else {
            return .invalid(reason: "missing token")
        }
        guard let token = StreamingToken.decode(tokenText) else { return .invalid(reason: "malformed token") }
        guard SecretCodec.envId(fromSecret: token.secret) != nil else { return .invalid(reason: "malformed secret") }
        let (skew, overflow) = nowMillis.subtractingReportingOverflow(token.timestamp)
        if overflow || skew.magnitude > UInt64(tokenExpiryMillis) {
            return .invalid(reason: "token expired")
        }
        guard snapshot.isInitialised else { return .unavailable(reason: "no data set yet") }
        guard let secret = snapshot.secret(matching: token.secret) else { return .invalid(reason: "unknown secret") }
        guard secret.type.rawValue == type.rawValue else { return .invalid(reason: "secret type mismatch") }
        return .valid(type: type, envId: secret.envId, secret: secret)
    }
}
