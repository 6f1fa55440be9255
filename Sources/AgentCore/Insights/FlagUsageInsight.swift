/// Flag-usage insights the agent records itself for evaluations it serves (OFREP): the body a FeatBit SDK would post
/// to `/api/public/insight/track` after the same evaluations (spec §4.4), so FeatBit's analytics and experiments see
/// those users like any other. It goes through the same `InsightSink`, so `InsightsMode` applies to it.
public enum FlagUsageInsight {
    /// `[{"user":{keyId,name,customizedProperties},"variations":[{"featureFlagKey":…,"variation":{"id":…,"value":…},
    /// "sendToExperiment":…,"timestamp":…},…]}]`; empty when nothing was evaluated.
    public static func body(user: EndUser, evaluations: [(flag: FlagModel, result: EvaluationResult)],
                            timestamp: Int64) -> [UInt8] {
        guard !evaluations.isEmpty else { return [] }
        var out: [UInt8] = Array(#"[{"user":"#.utf8)
        out.reserveCapacity(160 + evaluations.count * 160)
        writeUser(user, into: &out)
        out.append(contentsOf: #","variations":["#.utf8)
        let stamp = Array(String(timestamp).utf8)
        for (index, evaluation) in evaluations.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"featureFlagKey":"#.utf8)
            JSONWriter.writeString(evaluation.flag.key, into: &out)
            out.append(contentsOf: #","variation":{"id":"#.utf8)
            ClientPayload.writeOptionalString(evaluation.result.variationId, into: &out)
            out.append(contentsOf: #","value":"#.utf8)
            ClientPayload.writeOptionalString(evaluation.result.value, into: &out)
            out.append(contentsOf: #"},"sendToExperiment":"#.utf8)
            out.append(contentsOf: (evaluation.result.sendToExperiment ? "true" : "false").utf8)
            out.append(contentsOf: #","timestamp":"#.utf8)
            out.append(contentsOf: stamp)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}]".utf8)
        return out
    }

    /// `{"keyId":…,"name":…,"customizedProperties":[{"name":…,"value":…},…]}` (spec §4.3; `null`s written, as .NET
    /// does), in the user's property order, straight into bytes: this runs for every OFREP evaluation.
    static func writeUser(_ user: EndUser, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"keyId":"#.utf8)
        JSONWriter.writeString(user.keyId, into: &out)
        out.append(contentsOf: #","name":"#.utf8)
        ClientPayload.writeOptionalString(user.name, into: &out)
        out.append(contentsOf: #","customizedProperties":["#.utf8)
        for (index, property) in user.customizedProperties.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"name":"#.utf8)
            ClientPayload.writeOptionalString(property.name, into: &out)
            out.append(contentsOf: #","value":"#.utf8)
            ClientPayload.writeOptionalString(property.value, into: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: "]}".utf8)
    }
}
