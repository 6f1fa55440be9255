/// A message from the FeatBit evaluation server on the relay-proxy WebSocket (spec §3.3, §3.5).
public enum UpstreamMessage: Sendable {
    /// `rp_full`: replace everything held (invalid items refused: the versions held of them stay).
    case full(DataSetParser.Parsed)
    /// `rp_patch` or a pushed `patch`: upsert by `(id, envId)` (invalid items refused).
    case patch(DataSetParser.Parsed)
    /// Anything that is not a `data-sync` (pong, …): ignored.
    case ignored(messageType: String)

    public enum Rejection: Error, Sendable, CustomStringConvertible {
        case notJSON(String)
        case malformed(String)
        case unknownEventType(String)

        public var description: String {
            switch self {
            case .notJSON(let reason): return "not JSON: \(reason)"
            case .malformed(let reason): return reason
            case .unknownEventType(let type): return "unknown data-sync eventType \"\(type)\""
            }
        }
    }

    public static func parse<Bytes: Collection>(_ bytes: Bytes) -> Result<UpstreamMessage, Rejection> where Bytes.Element == UInt8 {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            return .failure(.notJSON(error.description))
        }
        guard let type = json["messageType"]?.stringValue else { return .failure(.malformed("message has no \"messageType\"")) }
        guard type == "data-sync" else { return .success(.ignored(messageType: type)) }
        guard let data = json["data"], case .object = data else { return .failure(.malformed("data-sync without a \"data\" object")) }
        guard let eventType = data["eventType"]?.stringValue else { return .failure(.malformed("data-sync without \"eventType\"")) }
        do throws(DataSetError) {
            switch eventType {
            case "rp_full", "rp-full":
                guard let items = data["items"] else { throw DataSetError("missing \"items\"") }
                // rp_full always carries each environment's secrets (spec §3.5); an item without them would wipe them.
                return .success(.full(try DataSetParser.parseItems(items, from: .fullSync)))
            case "rp_patch", "rp-patch":
                guard let items = data["items"] else { throw DataSetError("missing \"items\"") }
                // Patches never touch secrets (spec §3.5): theirs are not even read.
                return .success(.patch(try DataSetParser.parseItems(items, from: .patch)))
            case "patch", "full":
                return .success(.patch(try DataSetParser.parseLoosePatch(data)))
            default:
                return .failure(.unknownEventType(eventType))
            }
        } catch {
            return .failure(.malformed(error.description))
        }
    }
}

/// Messages the agent sends upstream (spec §3.4, §3.6).
public enum UpstreamRequest {
    /// The data-sync request after every (re)connect: timestamp 0 while nothing is held, else the overall version and
    /// each environment's, so only what was missed comes back.
    public static func dataSync(for snapshot: DataSnapshot, forceFull: Bool = false) -> [UInt8] {
        let version = snapshot.version
        if forceFull || version == 0 {
            return Array(#"{"messageType":"data-sync","data":{"timestamp":0}}"#.utf8)
        }
        let envs: [JSONValue] = snapshot.sortedEnvIds.map { id in
            .object(["envId": .string(id), "timestamp": .integer(snapshot.environments[id]?.version ?? 0)])
        }
        return JSONWriter.bytes(.object([
            "messageType": .string("data-sync"),
            "data": .object(["timestamp": .integer(version), "envs": .array(envs)]),
        ]))
    }

    /// `{"messageType":"ping","data":{}}`, the keep-alive every 15 s.
    public static let ping: [UInt8] = Array(#"{"messageType":"ping","data":{}}"#.utf8)

    /// `rp-agent-status`, whose `status` is a JSON-encoded string (spec §3.6).
    public static func agentStatus(agentId: String, snapshot: DataSnapshot, syncState: SyncState, lastSyncedAt: Int64?,
                                   now: Int64) -> [UInt8] {
        let status = JSONWriter.string(.object([
            "serves": .string(snapshot.serves), "dataVersion": .integer(snapshot.version),
            "syncState": .string(syncState.rawValue),
            "lastSyncedAt": lastSyncedAt.map { .string(FeatBitTimestamp.iso8601(milliseconds: $0)) } ?? .null,
            "reportedAt": .string(FeatBitTimestamp.iso8601(milliseconds: now)),
        ]))
        return JSONWriter.bytes(.object([
            "messageType": .string("rp-agent-status"),
            "data": .object(["agentId": .string(agentId), "status": .string(status)]),
        ]))
    }
}
