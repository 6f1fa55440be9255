/// Builders for what client SDKs receive (spec §2.4.2, §6.2): every selected flag evaluated for the user and reduced
/// to a `ClientSdkFlag`.
public enum ClientPayload {
    /// `{"messageType":"data-sync","data":{"eventType":…,"userKeyId":…,"featureFlags":[…]}}` from flags already
    /// evaluated.
    public static func dataSync(
        eventType: SDKPayload.EventType, userKeyId: String, evaluated: [(flag: FlagModel, result: EvaluationResult)]
    ) -> [UInt8] {
        var out = header(eventType: eventType, userKeyId: userKeyId, flagCount: evaluated.count)
        for (index, entry) in evaluated.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeFlag(entry.flag, entry.result, into: &out)
        }
        out.append(contentsOf: "]}}".utf8)
        return out
    }

    /// The same message, evaluating `flags` (in the given order) for `user`.
    public static func dataSync(
        eventType: SDKPayload.EventType, user: EndUser, flags: [FlagModel], segments: (String) -> SegmentModel?
    ) -> [UInt8] {
        var out = header(eventType: eventType, userKeyId: user.keyId, flagCount: flags.count)
        for (index, flag) in flags.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeFlag(flag, Evaluator.evaluate(flag: flag, user: user, segments: segments), into: &out)
        }
        out.append(contentsOf: "]}}".utf8)
        return out
    }

    /// The reply to a client SDK's `data-sync {"timestamp": T, "user": …}` (spec §2.4): `full` with every flag of
    /// the environment for 0, else a `patch` with the flags whose `updatedAt` is strictly greater (always sent, even
    /// empty), in ascending `updatedAt` order, evaluated with the snapshot's cached flag and segment models.
    public static func reply(to timestamp: Int64, user: EndUser, in env: EnvironmentSnapshot?) -> [UInt8] {
        message(timestamp: timestamp, user: user, flags: selectFlags(after: timestamp, in: env), in: env)
    }

    /// The body of `POST /api/public/sdk/client/latest-all?timestamp=T` (spec §6.2): the `reply` message, or an
    /// empty body when `T > 0` and no flag changed.
    public static func latestAllBody(timestamp: Int64, user: EndUser, in env: EnvironmentSnapshot?) -> [UInt8] {
        let flags = selectFlags(after: timestamp, in: env)
        if timestamp != 0 && flags.isEmpty { return [] }
        return message(timestamp: timestamp, user: user, flags: flags, in: env)
    }

    private static func message(timestamp: Int64, user: EndUser, flags: [DataItem], in env: EnvironmentSnapshot?) -> [UInt8] {
        dataSync(eventType: timestamp == 0 ? .full : .patch, user: user, flags: flags.compactMap(\.flagModel),
                 segments: { env?.segmentModels[$0] })
    }

    /// One `ClientSdkFlag`: `{"id":key,"variation":…,"variationType":…,"variationId":…,"matchReason":…,
    /// "variationOptions":[{id,value}…],"sendToExperiment":…,"timestamp":…}`.
    public static func writeFlag(_ flag: FlagModel, _ result: EvaluationResult, into out: inout [UInt8]) {
        out.append(contentsOf: flag.clientHead)
        writeOptionalString(result.value, into: &out)
        out.append(contentsOf: flag.clientTypePart)
        writeOptionalString(result.variationId, into: &out)
        out.append(contentsOf: #","matchReason":"#.utf8)
        JSONWriter.writeString(result.matchReason, into: &out)
        out.append(contentsOf: flag.clientOptionsPart)
        out.append(contentsOf: (result.sendToExperiment ? "true" : "false").utf8)
        out.append(contentsOf: flag.clientTail)
    }

    static func selectFlags(after timestamp: Int64, in env: EnvironmentSnapshot?) -> [DataItem] {
        env?.items(after: timestamp).flags ?? []
    }

    static func header(eventType: SDKPayload.EventType, userKeyId: String, flagCount: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + flagCount * 400)
        out.append(contentsOf: #"{"messageType":"data-sync","data":{"eventType":""#.utf8)
        out.append(contentsOf: eventType.rawValue.utf8)
        out.append(contentsOf: #"","userKeyId":"#.utf8)
        JSONWriter.writeString(userKeyId, into: &out)
        out.append(contentsOf: #","featureFlags":["#.utf8)
        return out
    }

    static func writeOptionalString(_ s: String?, into out: inout [UInt8]) {
        if let s { JSONWriter.writeString(s, into: &out) } else { out.append(contentsOf: "null".utf8) }
    }
}
