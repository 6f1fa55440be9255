import AgentCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The OpenFeature Remote Evaluation Protocol (OFREP, `open-feature/protocol` `service/openapi.yaml`) on the agent's
/// port: any OpenFeature SDK with the generic OFREP provider evaluates flags through the agent, with no FeatBit SDK.
///
/// * `POST /ofrep/v1/evaluate/flags/{key}`: one flag (server providers, dynamic context).
/// * `POST /ofrep/v1/evaluate/flags`: every flag, with `ETag` / `If-None-Match` → 304 (web providers, static context).
///
/// Both need an SDK secret (server or client) of an environment the agent holds, sent as `Authorization: Bearer
/// <secret>`, `X-API-Key: <secret>` or bare `Authorization: <secret>` as the FeatBit SDKs send it; anything else is
/// 401 (503 before the agent has any data set, when no secret can be known). Each served evaluation is recorded as a
/// flag-usage insight of the user, through the same sink as SDK insights (so `InsightsMode` applies).
struct OFREPRoutes: Sendable {
    let store: DataStore
    /// `nil` when insights are not recorded (`ForwardEvents=false`).
    let insights: (any InsightSink)?
    let clock: @Sendable () -> Int64
    /// Largest request body: an evaluation context.
    static let maxBodyBytes = 1024 * 1024
    static let apiKeyHeader = HTTPField.Name("X-API-Key")!

    func register(on router: Router<AgentRequestContext>) {
        router.post("/ofrep/v1/evaluate/flags/:key") { request, context in
            try await evaluateFlag(request, context: context)
        }
        router.post("/ofrep/v1/evaluate/flags") { request, _ in
            try await evaluateFlags(request)
        }
    }

    private func evaluateFlag(_ request: Request, context: AgentRequestContext) async throws -> Response {
        let env: EnvironmentSnapshot, secret: String
        switch authenticate(request) {
        case .granted(let granted, let offered): (env, secret) = (granted, offered)
        case .refused(let response): return response
        }
        let rawKey = context.parameters.get("key") ?? ""
        let key = rawKey.contains("%") ? (rawKey.removingPercentEncoding ?? rawKey) : rawKey
        guard let body = try await collectBody(request) else { return Self.tooLarge }
        let answer = OFREPAnswer.single(flagKey: key, body: body.readableBytesView, in: env)
        record(answer, secret: secret)
        return Response.json(answer.body, status: .init(code: answer.status))
    }

    private func evaluateFlags(_ request: Request) async throws -> Response {
        let env: EnvironmentSnapshot, secret: String
        switch authenticate(request) {
        case .granted(let granted, let offered): (env, secret) = (granted, offered)
        case .refused(let response): return response
        }
        guard let body = try await collectBody(request) else { return Self.tooLarge }
        let ifNoneMatch = request.headers[values: .ifNoneMatch]
        let answer = OFREPAnswer.bulk(body: body.readableBytesView,
                                      ifNoneMatch: ifNoneMatch.isEmpty ? nil : ifNoneMatch.joined(separator: ","),
                                      in: env)
        record(answer, secret: secret)
        var headers: HTTPFields = [.accessControlExposeHeaders: "ETag"]
        if let etag = answer.etag { headers[.eTag] = etag }
        if answer.status == 304 {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: .init(code: answer.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    // MARK: - Authentication

    private enum Authentication {
        /// The environment evaluated, and the secret that opened it (insights are attributed to it).
        case granted(EnvironmentSnapshot, secret: String)
        case refused(Response)
    }

    private func authenticate(_ request: Request) -> Authentication {
        let snapshot = store.snapshot
        let candidates = Self.secrets(authorization: request.headers[values: .authorization],
                                      apiKey: request.headers[values: Self.apiKeyHeader])
        for secret in candidates {
            if let env = Self.environment(holding: secret, in: snapshot) { return .granted(env, secret: secret) }
        }
        if !snapshot.isInitialised {
            return .refused(Response.json(.object(["errorDetails": .string("the agent has no data set yet")]),
                                          status: .serviceUnavailable))
        }
        let details = candidates.isEmpty
            ? "an SDK secret is required: Authorization: Bearer <secret>, X-API-Key: <secret> or Authorization: <secret>"
            : "the secret is not an SDK secret of an environment this agent serves"
        return .refused(Response.json(.object(["errorDetails": .string(details)]), status: .unauthorized))
    }

    /// The environment whose secret this is (compared in constant time): the one its record names.
    static func environment(holding secret: String, in snapshot: DataSnapshot) -> EnvironmentSnapshot? {
        snapshot.secret(matching: secret).flatMap { snapshot.environments[$0.envId] }
    }

    /// The secrets a request offers, in order: each `Authorization` value without a `Bearer` scheme (any case),
    /// then each `X-API-Key` value; surrounding spaces and tabs trimmed, empty values skipped.
    static func secrets(authorization: [String], apiKey: [String]) -> [String] {
        var out: [String] = []
        for value in authorization {
            var text = trimmed(value.utf8[...])
            if text.count > 7, text.prefix(7).elementsEqual("bearer ".utf8, by: { $0 | 0x20 == $1 }) {
                text = trimmed(text.dropFirst(7))
            }
            if !text.isEmpty { out.append(String(decoding: text, as: UTF8.self)) }
        }
        for value in apiKey {
            let text = trimmed(value.utf8[...])
            if !text.isEmpty { out.append(String(decoding: text, as: UTF8.self)) }
        }
        return out
    }

    private static func trimmed(_ bytes: Substring.UTF8View) -> Substring.UTF8View {
        var bytes = bytes
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes = bytes.dropFirst() }
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes = bytes.dropLast() }
        return bytes
    }

    // MARK: - Helpers

    /// The body, or `nil` when it is larger than `maxBodyBytes`.
    private func collectBody(_ request: Request) async throws -> ByteBuffer? {
        do {
            return try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            return nil
        }
    }

    private static var tooLarge: Response {
        Response.json(.object(["errorDetails": .string("request body is larger than \(maxBodyBytes) bytes")]),
                      status: .contentTooLarge)
    }

    /// Records the served evaluations as one flag-usage insight of the user, authorised by the request's secret (the
    /// environment FeatBit attributes it to).
    private func record(_ answer: OFREPAnswer, secret: String) {
        guard let insights, insights.isRecording, let user = answer.user, !answer.served.isEmpty else { return }
        let body = FlagUsageInsight.body(user: user, evaluations: answer.served.map { ($0.flag, $0.result) },
                                         timestamp: clock())
        insights.accept(ownInsights: body, events: 1, authorization: secret)
    }
}
