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
    /// empty), in ascending `updatedAt` order. Segments are resolved in the same snapshot.
    ///
    /// `flagModel`/`segmentModel` map a stored item to its model; pass cached models to avoid re-parsing (the
    /// defaults parse). Segment models are resolved at most once per call.
    public static func reply(
        to timestamp: Int64, user: EndUser, in env: EnvironmentSnapshot?,
        flagModel: (DataItem) -> FlagModel = { FlagModel(item: $0) },
        segmentModel: (DataItem) -> SegmentModel = { SegmentModel(item: $0) }
    ) -> [UInt8] {
        let eventType: SDKPayload.EventType = timestamp == 0 ? .full : .patch
        let items = selectFlags(after: timestamp, in: env)
        return withSegmentResolver(env, segmentModel) { segments in
            dataSync(eventType: eventType, user: user, flags: items.map(flagModel), segments: segments)
        }
    }

    /// The body of `POST /api/public/sdk/client/latest-all?timestamp=T` (spec §6.2): the `reply` message, or an
    /// empty body when `T > 0` and no flag changed.
    public static func latestAllBody(
        timestamp: Int64, user: EndUser, in env: EnvironmentSnapshot?,
        flagModel: (DataItem) -> FlagModel = { FlagModel(item: $0) },
        segmentModel: (DataItem) -> SegmentModel = { SegmentModel(item: $0) }
    ) -> [UInt8] {
        if timestamp != 0 && selectFlags(after: timestamp, in: env).isEmpty { return [] }
        return reply(to: timestamp, user: user, in: env, flagModel: flagModel, segmentModel: segmentModel)
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
        guard let env else { return [] }
        return timestamp == 0 ? env.sortedFlags : env.sortedFlags.filter { $0.updatedAt > timestamp }
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

/// Resolves segment ids of one environment snapshot to models, each built at most once per call.
func withSegmentResolver<R>(
    _ env: EnvironmentSnapshot?, _ segmentModel: (DataItem) -> SegmentModel,
    _ body: ((String) -> SegmentModel?) -> R
) -> R {
    withoutActuallyEscaping(segmentModel) { build in
        let memo = SegmentMemo(env: env, build: build)
        return body(memo.model)
    }
}

private final class SegmentMemo {
    let env: EnvironmentSnapshot?
    let build: (DataItem) -> SegmentModel
    var resolved: [String: SegmentModel?] = [:]

    init(env: EnvironmentSnapshot?, build: @escaping (DataItem) -> SegmentModel) {
        self.env = env
        self.build = build
    }

    func model(_ id: String) -> SegmentModel? {
        if let known = resolved[id] { return known }
        let model = env?.segments[id].map(build)
        resolved[id] = .some(model)
        return model
    }
}
