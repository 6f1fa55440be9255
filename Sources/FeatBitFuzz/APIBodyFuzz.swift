#if FUZZING
import AgentCore

/// The request bodies of the HTTP API, against the demo data set; the first input byte picks the endpoint:
/// `POST /api/public/featureflag/evaluate`, OFREP single and bulk, `POST /api/public/sdk/client/latest-all`, and
/// `POST /api/public/insight/track` as `InsightsMode=anonymize` rewrites it.
enum APIBodyFuzz {
    static let environment = SDKHandshakeFuzz.snapshot.environments.values.first!
    static let anonymizer = InsightAnonymizer(key: Array(repeating: 1, count: 32), allowedProperties: ["plan"])

    static func run(_ input: UnsafeRawBufferPointer) {
        guard let selector = input.first else { return }
        let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())
        switch selector % 5 {
        case 0:
            if case .success(let reply) = EvaluateAPI.answer(bodyBytes: body, in: environment) {
                fuzzCheck((try? JSONValue.parse(reply))?.arrayValue != nil, "the evaluate answer is not a JSON array")
            }
        case 1:
            let answer = OFREPAnswer.single(flagKey: "welcome-banner", body: body, in: environment)
            fuzzCheck([200, 400, 404].contains(answer.status), "OFREP single answered \(answer.status)")
            fuzzCheck((try? JSONValue.parse(answer.body)) != nil, "the OFREP single answer is not JSON")
        case 2:
            let answer = OFREPAnswer.bulk(body: body, ifNoneMatch: nil, in: environment)
            fuzzCheck((try? JSONValue.parse(answer.body)) != nil, "the OFREP bulk answer is not JSON")
            // The entity tag of an answer makes the same request a 304.
            if answer.status == 200, let etag = answer.etag {
                let again = OFREPAnswer.bulk(body: body, ifNoneMatch: etag, in: environment)
                fuzzCheck(again.status == 304, "the same request with If-None-Match: \(etag) answered \(again.status)")
            }
        case 3:
            guard let json = JSONReader.parse(body), let user = EndUser.parse(json) else { return }
            let reply = ClientPayload.latestAllBody(timestamp: 0, user: user, in: environment)
            fuzzCheck((try? JSONValue.parse(reply)) != nil, "the client latest-all answer is not JSON")
        default:
            guard let json = JSONReader.parse(body), let anonymized = anonymizer.anonymize(json) else { return }
            let written = JSONWriter.bytes(anonymized)
            fuzzCheck((try? JSONValue.parse(written)) == anonymized, "an anonymized insight does not write back")
        }
    }
}
#endif
