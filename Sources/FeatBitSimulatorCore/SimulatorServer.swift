import AgentCore
import AgentServer
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket

/// The simulator's one listening server: `/streaming` (WebSocket, one task per socket plus a writer task), the
/// evaluation-server HTTP endpoints an agent uses, and the `/control/` API.
///
/// Down mode (`POST /control/down`): every socket is dropped without a close frame and every request outside
/// `/control/` — WebSocket upgrades included — is answered with HTTP 503 until `POST /control/up`. The listening
/// socket stays open (the control API lives on the same port).
public enum SimulatorServer {
    public static func makeApplication(
        simulator: Simulator,
        host: String = "127.0.0.1",
        port: Int = 0,
        logger: Logger,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        application(simulator: simulator, server: serverBuilder(simulator: simulator), host: host, port: port,
                    logger: logger, onServerRunning: onServerRunning)
    }

    /// The same server speaking HTTPS and WSS only (a FeatBit server behind a certificate, e.g. from a private CA).
    public static func makeApplication(
        simulator: Simulator,
        host: String = "127.0.0.1",
        port: Int = 0,
        tls: TLSConfiguration,
        logger: Logger,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        application(simulator: simulator, server: try .tls(serverBuilder(simulator: simulator), tlsConfiguration: tls),
                    host: host, port: port, logger: logger, onServerRunning: onServerRunning)
    }

    static func serverBuilder(simulator: Simulator) -> HTTPServerBuilder {
        .http1WebSocketUpgrade(
            configuration: .init(
                http1: .init(),
                ws: .init(maxFrameSize: 16 * 1024 * 1024, autoPing: .disabled, closeTimeout: .seconds(5))
            )
        ) { head, channel, logger in
            guard isStreamingPath(head.path ?? ""), simulator.isUp else { return .dontUpgrade }
            let query = lowercasedQuery(head.path ?? "")
            return .upgrade([:]) { inbound, outbound, _ in
                await serveSocket(simulator: simulator, query: query, channel: channel, inbound: inbound,
                                  outbound: outbound, logger: logger)
            }
        }
    }

    static func application(
        simulator: Simulator, server: HTTPServerBuilder, host: String, port: Int, logger: Logger,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void
    ) -> some ApplicationProtocol {
        let router = SimulatorRoutes(simulator: simulator, logger: logger).buildRouter()
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: "featbit-sim", reuseAddress: true),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    /// `/streaming` or `/streaming/...` (the path starts with that segment, spec §2.1), case-insensitively.
    static func isStreamingPath(_ pathAndQuery: String) -> Bool {
        let path = pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let lower = path.lowercased()
        return lower == "/streaming" || lower.hasPrefix("/streaming/")
    }

    /// Query parameters with lowercased names (values untouched); the first occurrence of a name wins.
    static func lowercasedQuery(_ pathAndQuery: String) -> [String: String] {
        var result: [String: String] = [:]
        for (name, value) in URI(pathAndQuery).queryParameters {
            let key = String(name).lowercased()
            if result[key] == nil { result[key] = String(value) }
        }
        return result
    }

    static func serveSocket(
        simulator: Simulator, query: [String: String], channel: any Channel, inbound: WebSocketInboundStream,
        outbound: WebSocketOutboundWriter, logger: Logger
    ) async {
        let kind: SimConnection.Kind
        switch simulator.validateHandshake(query: query) {
        case .success(let accepted):
            kind = accepted
        case .failure(.invalid(let reason)):
            logger.info("streaming handshake rejected", metadata: ["reason": "\(reason)", "close": "4003"])
            try? await outbound.close(WebSocketErrorCode(codeNumber: 4003), reason: "invalid request, close by server")
            return
        case .failure(.unavailable(let reason)):
            logger.info("streaming handshake unavailable", metadata: ["reason": "\(reason)", "close": "1011"])
            try? await outbound.close(.unexpectedServerError, reason: "service unavailable, close by server")
            return
        }
        let (stream, continuation) = AsyncStream.makeStream(of: SimConnection.Outgoing.self)
        let connection = simulator.open(kind: kind, continuation: continuation) {
            channel.close(mode: .all, promise: nil)
        }
        logger.info("streaming connection opened", metadata: ["id": "\(connection.id)", "type": "\(kind.typeName)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await outgoing in stream {
                    do {
                        switch outgoing {
                        case .text(let bytes):
                            // One frame per message, whatever its size (the real server never fragments).
                            try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text,
                                                                            data: ByteBuffer(bytes: bytes))))
                        case .close(let code, let reason):
                            try await outbound.close(WebSocketErrorCode(codeNumber: code), reason: reason)
                            return
                        }
                    } catch {
                        return
                    }
                }
            }
            do {
                for try await message in inbound.messages(maxSize: 16 * 1024 * 1024) {
                    switch message {
                    case .text(let text): simulator.handleMessage(Array(text.utf8), from: connection)
                    case .binary(let buffer): simulator.handleMessage(Array(buffer.readableBytesView), from: connection)
                    }
                }
            } catch {
                logger.debug("streaming connection read error", metadata: ["id": "\(connection.id)", "error": "\(error)"])
            }
            simulator.closed(connection)
            continuation.finish()
            await group.waitForAll()
        }
        logger.info("streaming connection closed", metadata: ["id": "\(connection.id)"])
    }
}

/// The HTTP routes: evaluation-server endpoints and the control API.
struct SimulatorRoutes: Sendable {
    let simulator: Simulator
    let logger: Logger

    static let maxBodyBytes = 64 * 1024 * 1024

    func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self, options: .caseInsensitive)
        router.add(middleware: DownMiddleware(simulator: simulator))
        router.get("/streaming") { _, _ in Response.empty(.unauthorized) }
        router.post("/api/public/agent/register") { request, _ in try await register(request) }
        router.post("/api/public/insight/track") { request, _ in try await track(request) }
        router.get("/api/public/sdk/server/latest-all") { request, _ in serverLatestAll(request) }
        router.get("/health/liveness") { _, _ in Response.text("Healthy") }

        router.get("/control/state") { _, _ in Response.json(simulator.stateJSON()) }
        router.get("/control/data") { _, _ in Response.json(simulator.data.backupJSON()) }
        router.get("/control/connections") { _, _ in Response.json(simulator.connectionsJSON()) }
        router.put("/control/flags") { request, _ in try await upsert(request, kind: .flag) }
        router.put("/control/segments") { request, _ in try await upsert(request, kind: .segment) }
        router.post("/control/bootstrap") { request, _ in try await bootstrap(request) }
        router.get("/control/insights") { request, _ in
            Response.json(simulator.insightsJSON(clear: request.uri.queryParameters.get("clear") == "true"))
        }
        router.get("/control/agent-status") { _, _ in Response.json(simulator.agentStatusJSON()) }
        router.get("/control/registration-failures") { _, _ in Response.json(simulator.registrationFailures.json) }
        router.post("/control/registration-failures") { request, _ in
            try await addFailure(request) { simulator.addRegistrationFailure($0) }
        }
        router.delete("/control/registration-failures") { _, _ in
            simulator.clearRegistrationFailures()
            return Response.json(.object(["pending": .integer(0)]))
        }
        router.get("/control/insight-failures") { _, _ in Response.json(simulator.insightFailures.json) }
        router.post("/control/insight-failures") { request, _ in
            try await addFailure(request) { simulator.addInsightFailure($0) }
        }
        router.delete("/control/insight-failures") { _, _ in
            simulator.clearInsightFailures()
            return Response.json(.object(["pending": .integer(0)]))
        }
        router.post("/control/down") { _, _ in
            let dropped = simulator.down()
            logger.info("simulator down", metadata: ["dropped": "\(dropped)"])
            return Response.json(.object(["up": .bool(false), "dropped": .integer(Int64(dropped))]))
        }
        router.post("/control/up") { _, _ in
            simulator.up()
            logger.info("simulator up")
            return Response.json(.object(["up": .bool(true)]))
        }
        router.post("/control/close-relay-proxies") { request, _ in try await closeConnections(request) }
        router.post("/control/send-raw") { request, _ in try await sendRaw(request) }
        return router
    }

    // MARK: - Evaluation-server endpoints

    /// `POST /api/public/agent/register` (spec §3.2).
    private func register(_ request: Request) async throws -> Response {
        if let injected = try await Self.injectFault(simulator.beginRegistration()) { return injected }
        guard simulator.isKnownRelayProxyKey(request.headers[.authorization]) else { return Response.empty(.unauthorized) }
        let body = try await request.body.collect(upTo: 1024 * 1024)
        guard let json = try? JSONValue.parse(body.readableBytesView), let agentId = json.stringValue,
              !agentId.allSatisfy(\.isWhitespace)
        else {
            return Response.error("the body must be the agent id as a JSON string", status: .badRequest)
        }
        simulator.register(agentId: agentId)
        logger.info("agent registered", metadata: ["agentId": "\(agentId)"])
        if request.headers[.accept]?.contains("application/json") ?? false {
            return Response.json(.string(agentId))
        }
        return Response.text(agentId)
    }

    /// `POST /api/public/insight/track` (spec §4.4, §6.3).
    private func track(_ request: Request) async throws -> Response {
        if let injected = try await Self.injectFault(simulator.beginInsight()) { return injected }
        guard let authorization = request.headers[.authorization], SecretCodec.envId(fromSecret: authorization) != nil
        else { return Response.empty(.unauthorized) }
        let body = try await request.body.collect(upTo: Self.maxBodyBytes)
        guard let json = try? JSONValue.parse(body.readableBytesView) else {
            return Response.error("the body is not JSON", status: .badRequest)
        }
        simulator.recordInsight(authorization: authorization, body: json)
        return Response.empty(.ok)
    }

    /// `GET /api/public/sdk/server/latest-all?timestamp=N` (spec §6.1).
    private func serverLatestAll(_ request: Request) -> Response {
        guard let envId = SecretCodec.envId(fromSecret: request.headers[.authorization]) else {
            return Response.empty(.unauthorized)
        }
        let text = request.uri.queryParameters.get("timestamp")
        guard let timestamp = text.map({ Int64($0) }) ?? 0 else { return Response.text("invalid timestamp", status: .badRequest) }
        let body = simulator.data.serverLatestAll(envId: envId.featbitString, timestamp: timestamp)
        return body.isEmpty ? Response.empty(.ok) : Response.json(body)
    }

    // MARK: - Control API

    /// `PUT /control/flags` / `PUT /control/segments`: one entity or an array of them; `?touch=true` stamps each
    /// with a fresh `updatedAt`. Upserted, then pushed.
    private func upsert(_ request: Request, kind: ItemKind) async throws -> Response {
        let json: JSONValue
        switch try await Self.jsonBody(request) {
        case .parsed(let value): json = value
        case .rejected(let response): return response
        }
        let touch = ["true", "1"].contains(request.uri.queryParameters.get("touch")?.lowercased() ?? "")
        var entities: [JSONValue] = json.arrayValue ?? [json]
        if touch {
            var stamp = simulator.touchTimestamp()
            for index in entities.indices {
                guard case .object(var members) = entities[index] else { continue }
                members["updatedAt"] = .string(FeatBitTimestamp.iso8601(milliseconds: stamp))
                entities[index] = .object(members)
                stamp += 1
            }
        }
        var items: [DataItem] = []
        for (index, entity) in entities.enumerated() {
            do {
                items.append(try DataItem(kind: kind, json: entity))
            } catch {
                return Response.error("[\(index)]: \(error)", status: .badRequest)
            }
        }
        let counts: Simulator.PushCounts
        do {
            counts = try simulator.upsert(items)
        } catch {
            return Response.error(error.description, status: .notFound)
        }
        logger.info("entities upserted", metadata: ["kind": "\(kind.rawValue)", "count": "\(items.count)"])
        let data = simulator.data
        return Response.json(.object([
            "items": .array(items.map { item in
                .object(["id": .string(item.id), "envId": .string(item.envId), "updatedAt": .integer(item.updatedAt)])
            }),
            "pushes": counts.json,
            "dataVersion": .integer(data.version),
            "revision": .integer(Int64(data.revision)),
        ]))
    }

    /// `POST /control/bootstrap`: replaces the data set; pushes nothing.
    private func bootstrap(_ request: Request) async throws -> Response {
        let json: JSONValue
        switch try await Self.jsonBody(request) {
        case .parsed(let value): json = value
        case .rejected(let response): return response
        }
        let environments: [EnvironmentData]
        do {
            environments = try DataSetParser.parseBootstrap(json)
        } catch {
            return Response.error(error.description, status: .badRequest)
        }
        simulator.replace(with: environments)
        let data = simulator.data
        logger.info("bootstrap applied", metadata: ["environments": "\(data.envOrder.count)"])
        return Response.json(.object([
            "environments": .integer(Int64(data.envOrder.count)), "flags": .integer(Int64(data.flagCount)),
            "segments": .integer(Int64(data.segmentCount)), "dataVersion": .integer(data.version),
            "revision": .integer(Int64(data.revision)),
        ]))
    }

    private func addFailure(_ request: Request, add: (FailurePlan) -> Void) async throws -> Response {
        let json: JSONValue
        switch try await Self.jsonBody(request) {
        case .parsed(let value): json = value
        case .rejected(let response): return response
        }
        do {
            let plan = try FailurePlan(json: json)
            add(plan)
            return Response.json(plan.json)
        } catch {
            return Response.error(error.description, status: .badRequest)
        }
    }

    /// `POST /control/close-relay-proxies {"code": 4003, "reason"?: "…", "type"?: "relay-proxy"|"server"|"client"|"all"}`.
    private func closeConnections(_ request: Request) async throws -> Response {
        let json: JSONValue
        switch try await Self.jsonBody(request, allowEmpty: true) {
        case .parsed(let value): json = value
        case .rejected(let response): return response
        }
        let code = json["code"].flatMap(FailurePlan.int) ?? 1000
        guard (1000...4999).contains(code) else { return Response.error("\"code\" must be 1000...4999", status: .badRequest) }
        let reason = json["reason"]?.stringValue ?? "close by server"
        let type = Self.connectionType(json["type"]?.stringValue ?? "relay-proxy")
        let closed = simulator.close(type: type, code: code, reason: reason)
        logger.info("connections closed", metadata: ["code": "\(code)", "count": "\(closed)"])
        return Response.json(.object(["closed": .integer(Int64(closed))]))
    }

    /// `POST /control/send-raw {"text": "…", "type"?: "relay-proxy"|"server"|"client"|"all"}`.
    private func sendRaw(_ request: Request) async throws -> Response {
        let json: JSONValue
        switch try await Self.jsonBody(request) {
        case .parsed(let value): json = value
        case .rejected(let response): return response
        }
        guard let text = json["text"]?.stringValue else { return Response.error("missing \"text\"", status: .badRequest) }
        let type = Self.connectionType(json["type"]?.stringValue ?? "relay-proxy")
        let sent = simulator.sendRaw(Array(text.utf8), type: type)
        return Response.json(.object(["sent": .integer(Int64(sent)), "bytes": .integer(Int64(text.utf8.count))]))
    }

    static func connectionType(_ text: String) -> String? { text == "all" ? nil : text }

    // MARK: - Helpers

    enum JSONBody {
        case parsed(JSONValue)
        case rejected(Response)
    }

    static func jsonBody(_ request: Request, allowEmpty: Bool = false) async throws -> JSONBody {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            return .rejected(Response.error("request body is larger than \(maxBodyBytes) bytes", status: .contentTooLarge))
        }
        if allowEmpty && body.readableBytes == 0 { return .parsed(.object([:])) }
        do {
            return .parsed(try JSONValue.parse(body.readableBytesView))
        } catch {
            return .rejected(Response.error(error.description, status: .badRequest))
        }
    }

    /// Waits out an injected delay; returns the injected response to answer instead, or nil to handle normally.
    static func injectFault(_ outcome: Simulator.FaultOutcome) async throws -> Response? {
        switch outcome {
        case .injected(let response, let delay):
            try await sleep(delay)
            return injected(response)
        case .delayed(let delay):
            try await sleep(delay)
            return nil
        case .normal:
            return nil
        }
    }

    static func sleep(_ millis: Int) async throws {
        if millis > 0 { try await Task.sleep(for: .milliseconds(millis)) }
    }

    static func injected(_ injected: InjectedResponse) -> Response {
        var headers = HTTPFields()
        for (name, value) in injected.headers {
            switch name.lowercased() {
            case "content-type": headers[.contentType] = value
            case "retry-after": headers[.retryAfter] = value
            default: continue
            }
        }
        headers[.contentLength] = String(injected.body.utf8.count)
        return Response(status: .init(code: injected.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: injected.body)))
    }
}

/// While the simulator is down, everything but `/control/` answers 503.
struct DownMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let simulator: Simulator

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        if !simulator.isUp && !request.uri.path.lowercased().hasPrefix("/control/") {
            return Response.error("simulator is down", status: .serviceUnavailable)
        }
        return try await next(request, context)
    }
}
