import Foundation

/// A message an SDK sent on `/streaming`, parsed per spec §2.2.
public enum InboundMessage: Sendable, Equatable {
    case ping
    case echo(JSONValue)
    /// `data-sync` with the requested timestamp and, for client SDKs, the raw `user` member.
    case dataSync(timestamp: Int64, user: JSONValue?)
    /// `rp-agent-status`: accepted and ignored by an agent.
    case agentStatus

    /// Why a message gets no reply. None of these closes the connection (spec §2.2).
    public enum Rejection: Error, Sendable, Equatable, CustomStringConvertible {
        case notJSON
        case missingMessageType
        case missingData
        case unknownMessageType(String)
        case invalidTimestamp

        public var description: String {
            switch self {
            case .notJSON: return "message is not JSON"
            case .missingMessageType: return "message has no string \"messageType\""
            case .missingData: return "message has no \"data\" member"
            case .unknownMessageType(let type): return "unknown messageType \"\(type)\""
            case .invalidTimestamp: return "data-sync \"timestamp\" is not a number"
            }
        }
    }

    public static func parse<Bytes: Collection>(_ bytes: Bytes) -> Result<InboundMessage, Rejection> where Bytes.Element == UInt8 {
        guard let json = try? JSONValue.parse(bytes), case .object(let members) = json else { return .failure(.notJSON) }
        guard let type = members["messageType"]?.stringValue else { return .failure(.missingMessageType) }
        // `data: null` counts as present; a missing `data` is ignored like the ELS does.
        guard let data = members["data"] else { return .failure(.missingData) }
        switch type.lowercased() {
        case "ping":
            return .success(.ping)
        case "echo":
            return .success(.echo(data))
        case "data-sync":
            guard let timestamp = dataSyncTimestamp(data) else { return .failure(.invalidTimestamp) }
            return .success(.dataSync(timestamp: timestamp, user: data["user"]))
        case "rp-agent-status":
            return .success(.agentStatus)
        default:
            return .failure(.unknownMessageType(type))
        }
    }

    /// Absent → 0; an integral number → it; a non-integral number → 0; anything else is an error (spec §2.3).
    static func dataSyncTimestamp(_ data: JSONValue) -> Int64? {
        guard case .object(let members) = data else {
            return data.isNull ? 0 : nil
        }
        guard let value = members["timestamp"] else { return 0 }
        switch value {
        case .integer(let i): return i
        case .number(let d): return d == d.rounded() && abs(d) < 9.2e18 ? Int64(d) : 0
        default: return nil
        }
    }
}
