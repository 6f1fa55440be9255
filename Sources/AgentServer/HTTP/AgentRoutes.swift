import AgentCore
import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus

/// The HTTP API (spec §6): SDK endpoints, OpenFeature's OFREP (`OFREPRoutes`), the admin API under
/// `/api/public/proxy/` and its `/api/proxy/` alias, health, metrics, with CORS open to any origin as the official agent.
public struct AgentRoutes: Sendable {
    public struct Settings: Sendable {
        public var apiKey: String?
        public var forwardEvents: Bool = true
        /// `InsightsMode` as configured (`ForwardEvents=false` reads `drop`), shown in status.
        public var insightsMode: String = "forward"
        /// This node's id in status (`cluster.nodeId`).
        public var nodeId: String = ProcessInfo.processInfo.hostName
        /// Largest accepted request body (bootstrap data sets can be large).
        public var maxBodyBytes: Int = 64 * 1024 * 1024
        /// In a mesh: the `cluster` section of status.
        public var clusterStatus: (@Sendable () -> JSONValue)?
        /// In a mesh: applies a bootstrap body on the leader (this node or forwarded) and answers `(status, body)`.
        public var bootstrap: (@Sendable ([UInt8]) async -> (status: Int, body: [UInt8]))?
        /// How failed admin authentications are limited per source.
        public var adminAuth = AdminAuth.Settings()
        public init(apiKey: String?) { self.apiKey = apiKey }
    }

    let hub: StreamingHub
    let status: AgentStatusBoard
    let settings: Settings
    let insights: (any InsightSink)?
    let metrics: PrometheusCollectorRegistry?
    let clock: @Sendable () -> Int64
    let logger: Logger
    let adminAuth: AdminAuth

    public init(hub: StreamingHub, status: AgentStatusBoard, settings: Settings, insights: (any InsightSink)?,
                metrics: PrometheusCollectorRegistry?, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.hub = hub
        self.status = status
        self.settings = settings
        self.insights = insights
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.adminAuth = AdminAuth(apiKey: settings.apiKey, settings: settings.adminAuth, logger: logger)
    }

    var store: DataStore { hub.store }

    public func buildRouter() -> Router<AgentRequestContext> {
        let router = Router(context: AgentRequestContext.self, options: .caseInsensitive)
        router.add(middleware: CORSMiddleware(
            allowOrigin: .all,
            // X-API-Key and If-None-Match: what OFREP web providers send (OFREPRoutes).
            allowHeaders: [.accept, .authorization, .contentType, .origin, .userAgent, OFREPRoutes.apiKeyHeader, .ifNoneMatch],
            allowMethods: [.get, .post, .put, .delete, .head, .options, .patch]
        ))
        router.get("/health/liveness") { _, _ in Response.text("Healthy") }
        router.get("/health/readiness") { _, _ in
            let readiness = status.readiness(hasData: store.snapshot.isInitialised)
            return Response.text(readiness.rawValue, status: .init(code: readiness.httpStatus))
        }
        router.get("/api/public/sdk/server/latest-all") { request, _ in serverLatestAll(request) }
        router.post("/api/public/sdk/client/latest-all") { request, context in
            try await clientLatestAll(request, context: context)
        }
        router.post("/api/public/featureflag/evaluate") { request, context in
            try await evaluateFlags(request, context: context)
        }
        router.post("/api/public/insight/track") { request, context in
            try await trackInsights(request, context: context)
        }
        OFREPRoutes(store: store, insights: settings.forwardEvents ? insights : nil, clock: clock).register(on: router)
        for prefix in ["/api/public/proxy", "/api/proxy"] {
            router.get("\(prefix)/status") { request, context in
                admin(request, context) ?? adminStatus(request)
            }
            router.get("\(prefix)/backup") { request, context in
                admin(request, context) ?? adminBackup(request)
            }
            router.post("\(prefix)/bootstrap") { request, context in
                if let refusal = admin(request, context) { return refusal }
                return try await adminBootstrap(request, context: context)
            }
        }
        router.get("/ui") { _, _ in StatusPage.response() }
        router.get("/openapi.yaml") { _, _ in OpenAPIDocument.response() }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            metrics?.emit(into: &buffer)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        return router
    }

    // MARK: - SDK endpoints

    private func serverLatestAll(_ request: Request) -> Response {
        let snapshot = store.snapshot
        guard let envId = Self.environmentId(request, in: snapshot) else { return Response.empty(.unauthorized) }
        guard let timestamp = Self.timestamp(request) else { return Response.text("invalid timestamp", status: .badRequest) }
        let env = snapshot.environments[envId]
        let body = SDKPayload.serverLatestAllBody(timestamp: timestamp, in: env)
        return body.isEmpty ? Response.empty(.ok) : Response.json(body)
    }

    private func clientLatestAll(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard let envId = Self.environmentId(request, in: store.snapshot) else { return Response.empty(.unauthorized) }
        guard let timestamp = Self.timestamp(request) else { return Response.text("invalid timestamp", status: .badRequest) }
        let body = try await request.body.collect(upTo: 1024 * 1024)
        guard let json = try? JSONValue.parse(body.readableBytesView) else {
            return Response.error("request body is not a JSON end user", status: .badRequest)
        }
        guard let user = EndUser.parse(json) else { return Response.text("invalid end user", status: .badRequest) }
        let env = store.snapshot.environments[envId]
        let reply = ClientPayload.latestAllBody(timestamp: timestamp, user: user, in: env)
        return reply.isEmpty ? Response.empty(.ok) : Response.json(reply)
    }

    private func evaluateFlags(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard let envId = Self.environmentId(request, in: store.snapshot) else { return Response.empty(.unauthorized) }
        let body = try await request.body.collect(upTo: 1024 * 1024)
        let env = store.snapshot.environments[envId]
        switch EvaluateAPI.answer(bodyBytes: Array(body.readableBytesView), in: env) {
        case .success(let bytes): return Response.json(bytes)
        case .failure(let failure): return Response.text(failure.text, status: .badRequest)
        }
    }

    private func trackInsights(_ request: Request, context: AgentRequestContext) async throws -> Response {
        guard settings.forwardEvents else { return Response.empty(.ok) }
        guard let authorization = request.headers[.authorization], Self.environmentId(request, in: store.snapshot) != nil else {
            return Response.empty(.unauthorized)
        }
        let body = try await request.body.collect(upTo: 4 * 1024 * 1024)
        insights?.accept(body: Array(body.readableBytesView), authorization: authorization)
        return Response.empty(.ok)
    }

    // MARK: - Admin endpoints

    /// `nil` when the request carries the `ApiKey`; else its answer: 401, or 429 once its source failed too often.
    private func admin(_ request: Request, _ context: AgentRequestContext) -> Response? {
        switch adminAuth.check(authorization: request.headers[.authorization], source: AdminAuth.source(of: context),
                               path: request.uri.path) {
        case .admitted:
            return nil
        case .refused:
            return Response.empty(.unauthorized)
        case .limited(let seconds):
            return Response(status: .tooManyRequests, headers: [.retryAfter: String(seconds)])
        }
    }

    private func adminStatus(_ request: Request) -> Response {
        let snapshot = store.snapshot
        let values = status.values
        let counts = hub.connectionCounts
        var body: [String: JSONValue] = [
            "serves": .string(snapshot.serves),
            "dataVersion": .integer(snapshot.version),
            "syncState": .string(values.syncState.rawValue),
            "lastSyncedAt": values.lastSyncedAt.map { .string(FeatBitTimestamp.iso8601(milliseconds: $0)) } ?? .null,
            "reportedAt": .string(FeatBitTimestamp.iso8601(milliseconds: clock())),
            "mode": .string(status.mode.rawValue),
            "readiness": .string(status.readiness(hasData: snapshot.isInitialised).rawValue),
            "sequence": .integer(Int64(snapshot.sequence)),
            "connections": .object(["server": .integer(Int64(counts.server)), "client": .integer(Int64(counts.client))]),
            "upstream": .object([
                "state": .string(values.syncState.rawValue),
                "lastSyncedAt": values.lastSyncedAt.map { .string(FeatBitTimestamp.iso8601(milliseconds: $0)) } ?? .null,
                "reconnects": .integer(Int64(values.upstreamReconnects)),
            ]),
            "insights": Self.insightsStatus(mode: settings.insightsMode, counts: insights?.counts ?? InsightCounts()),
            "cluster": settings.clusterStatus?() ?? .object([
                "nodeId": .string(settings.nodeId), "role": .string("standalone"), "term": .integer(0),
                "leaderId": .string(settings.nodeId), "peers": .array([]),
            ]),
        ]
        if !values.problems.isEmpty {
            body["problems"] = .object(values.problems.mapValues { .string($0) })
        }
        return Response.json(JSONWriter.bytes(.object(body)))
    }

    private static func insightsStatus(mode: String, counts: InsightCounts) -> JSONValue {
        .object([
            "mode": .string(mode), "accepted": .integer(Int64(counts.accepted)),
            "forwarded": .integer(Int64(counts.forwarded)), "stored": .integer(Int64(counts.stored)),
            "dropped": .integer(Int64(counts.dropped)), "pending": .integer(Int64(counts.pending)),
        ])
    }

    private func adminBackup(_ request: Request) -> Response {
        Response.json(store.snapshot.backupJSON())
    }

    private func adminBootstrap(_ request: Request, context: AgentRequestContext) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: settings.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            return Response.error("request body is larger than \(settings.maxBodyBytes) bytes", status: .contentTooLarge)
        } catch {
            // The client went away or broke the framing mid-body: its fault, and nothing was applied.
            logger.warning("bootstrap body could not be read", metadata: [
                "event": "bootstrap-rejected", "reason": "body unreadable: \(error)",
            ])
            return Response.error("the request body could not be read", status: .badRequest)
        }
        let bytes = Array(body.readableBytesView)
        let answer: (status: Int, body: [UInt8])
        if let bootstrap = settings.bootstrap {
            answer = await bootstrap(bytes)
        } else {
            let store = self.store
            answer = await Self.applyBootstrap(bytes, store: store, logger: logger) { change in
                .applied(await store.applyOnWriterThread(change))
            } ?? (503, [])
        }
        return Response(status: .init(code: answer.status), headers: [.contentType: "application/json; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// What applying a bootstrap's change did.
    public enum BootstrapApplied: Sendable {
        case applied(AppliedChange?)
        /// Not applied here (in a mesh: this node does not lead).
        case notApplied
    }

    /// Validates a bootstrap body and applies it: `(400, error)` for a bad body, `(200, {serves, dataVersion})` once
    /// applied, `nil` when `apply` did not apply it.
    public static func applyBootstrap(_ body: [UInt8], store: DataStore, logger: Logger,
                                      apply: (Change) async -> BootstrapApplied) async -> (status: Int, body: [UInt8])? {
        let environments: [EnvironmentData]
        do {
            let json = try JSONValue.parse(body)
            environments = try DataSetParser.parseBootstrap(json)
        } catch let error as JSONValue.ParseError {
            logger.warning("bootstrap rejected", metadata: ["event": "bootstrap-rejected", "reason": "\(error)"])
            return (400, JSONWriter.bytes(.object(["error": .string(error.description)])))
        } catch let error as DataSetError {
            logger.warning("bootstrap rejected; still serving the data held", metadata: [
                "event": "bootstrap-rejected", "reason": "\(error)", "problems": "\(error.problems.count)",
            ])
            // Every problem with its JSON path, so an operator's tooling can point at each.
            let problems: [JSONValue] = error.problems.map { problem in
                .object(["path": problem.path.map(JSONValue.string) ?? .null, "reason": .string(problem.reason)])
            }
            return (400, JSONWriter.bytes(.object([
                "error": .string(error.description), "problems": .array(problems),
            ])))
        } catch {
            return (400, JSONWriter.bytes(.object(["error": .string("\(error)")])))
        }
        guard case .applied(let applied) = await apply(.replace(environments)) else { return nil }
        let snapshot = store.snapshot
        logger.info("bootstrap applied", metadata: [
            "event": "bootstrap-applied", "environments": "\(environments.count)",
            "changed": "\(applied != nil)", "dataVersion": "\(snapshot.version)", "sequence": "\(snapshot.sequence)",
        ])
        return (200, JSONWriter.bytes(.object([
            "serves": .string(snapshot.serves), "dataVersion": .integer(snapshot.version),
        ])))
    }

    // MARK: - Helpers

    /// The environment an SDK endpoint serves for the request's `Authorization`: the one embedded in the secret
    /// (spec §1.5), once the secret is one this agent holds (compared in constant time). FeatBit's evaluation server
    /// checks only the secret's shape, so anyone who knows an environment's id could forge one and read its flags,
    /// rules and targeted user keys; the agent holds every secret and checks it. Either type works on either
    /// endpoint, as there.
    static func environmentId(_ request: Request, in snapshot: DataSnapshot) -> String? {
        request.headers[.authorization].flatMap(snapshot.environmentId(ofHeldSecret:))
    }

    private static func timestamp(_ request: Request) -> Int64? {
        guard let text = request.uri.queryParameters.get("timestamp") else { return 0 }
        return Int64(text)
    }
}
