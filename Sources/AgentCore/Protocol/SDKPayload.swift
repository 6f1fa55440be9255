/// Builders for the `data-sync` messages sent to SDKs (spec §2.4), written from the items' pre-serialised bytes.
public enum SDKPayload {
    public enum EventType: String, Sendable {
        case full
        case patch
    }

    /// `{"messageType":"data-sync","data":{"eventType":…,"featureFlags":[…],"segments":[…]}}` for server SDKs.
    public static func serverDataSync(eventType: EventType, flags: [DataItem], segments: [DataItem]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + flags.reduce(0) { $0 + $1.encoded.count + 1 } + segments.reduce(0) { $0 + $1.encoded.count + 1 })
        out.append(contentsOf: #"{"messageType":"data-sync","data":{"eventType":""#.utf8)
        out.append(contentsOf: eventType.rawValue.utf8)
        out.append(contentsOf: #"","featureFlags":"#.utf8)
        writeItems(flags, into: &out)
        out.append(contentsOf: #","segments":"#.utf8)
        writeItems(segments, into: &out)
        out.append(contentsOf: "}}".utf8)
        return out
    }

    /// A JSON array of items from their pre-serialised bytes.
    public static func writeItems(_ items: [DataItem], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: item.encoded)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// The reply a server SDK gets to `data-sync {"timestamp": T}`: `full` for 0, else a patch of everything newer
    /// (always sent, empty or not).
    public static func serverReply(to timestamp: Int64, in env: EnvironmentSnapshot?) -> [UInt8] {
        guard let env else {
            return serverDataSync(eventType: timestamp == 0 ? .full : .patch, flags: [], segments: [])
        }
        if timestamp == 0 { return env.serverFullMessage }
        let (flags, segments) = env.items(after: timestamp)
        return serverDataSync(eventType: .patch, flags: flags, segments: segments)
    }

    /// The body of `GET /api/public/sdk/server/latest-all?timestamp=T` (spec §6.2): the `serverReply` message, or an
    /// empty body when `T > 0` and nothing changed (or the environment is unknown).
    public static func serverLatestAllBody(timestamp: Int64, in env: EnvironmentSnapshot?) -> [UInt8] {
        guard timestamp > 0 else { return serverReply(to: timestamp, in: env) }
        guard let (flags, segments) = env?.items(after: timestamp), !flags.isEmpty || !segments.isEmpty else { return [] }
        return serverDataSync(eventType: .patch, flags: flags, segments: segments)
    }

    /// `{"messageType":"pong","data":{}}`, exactly (spec §2.3).
    public static let pong: [UInt8] = Array(#"{"messageType":"pong","data":{}}"#.utf8)

    /// `{"messageType":"echo","data":<data>}`.
    public static func echo(_ data: JSONValue) -> [UInt8] {
        var out: [UInt8] = Array(#"{"messageType":"echo","data":"#.utf8)
        JSONWriter.write(data, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}
