import AgentCore
import AgentServer
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import TestSupport
import WSClient

/// An agent server started in-process on 127.0.0.1 and a free port, with helpers to talk to it as an SDK would.
/// `withTestAgent` always stops it.
struct TestAgent: Sendable {
    let port: Int
    let store: DataStore
    let hub: StreamingHub
    let status: AgentStatusBoard
    static let apiKey = "rp-MDcwNTEzNDExNzQ3MQtXO7IPcN6U-z5fAktj18CQ"

    var baseURL: String { "http://127.0.0.1:\(port)" }

    static var logger: Logger {
        var logger = Logger(label: "test-agent")
        logger.logLevel = .critical
        return logger
    }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A token for `secret` as the Python SDK builds it, optionally shifted in time.
    static func token(_ secret: String, skewMillis: Int64 = 0) -> String {
        StreamingToken.encode(secret: secret, timestamp: nowMillis() + skewMillis, position: 10)
    }

    func streamingURL(type: String = "server", secret: String = TestData.serverSecret, token: String? = nil) -> String {
        "ws://127.0.0.1:\(port)/streaming?type=\(type)&token=\(token ?? Self.token(secret))"
    }

    // MARK: HTTP

    func http(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: String? = nil) async throws -> HTTPResult {
        try await httpRequest(method, baseURL + path, headers: headers, body: body)
    }

    func bootstrap(_ body: String, apiKey: String = TestAgent.apiKey) async throws -> HTTPResult {
        try await http(.POST, "/api/public/proxy/bootstrap", headers: [("Authorization", apiKey)], body: body)
    }
}

/// Runs `body` against a fresh in-process agent; the server is shut down afterwards whatever happens.
func withTestAgent<T: Sendable>(
    initial: [EnvironmentData]? = nil,
    settings: StreamingHub.Settings = .init(),
    insights: (any InsightSink)? = nil,
    forwardEvents: Bool = true,
    _ body: @Sendable (TestAgent) async throws -> T
) async throws -> T {
    let store = DataStore()
    if let initial { store.apply(.replace(initial)) }
    let status = AgentStatusBoard(mode: .manual)
    let hub = StreamingHub(store: store, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, settings: settings,
                           logger: TestAgent.logger)
    var routeSettings = AgentRoutes.Settings(apiKey: TestAgent.apiKey)
    routeSettings.forwardEvents = forwardEvents
    let routes = AgentRoutes(hub: hub, status: status, settings: routeSettings, insights: insights,
                             metrics: nil, logger: TestAgent.logger)
    hub.start()
    defer { hub.stop() }
    return try await withRunningServer(logger: TestAgent.logger, { onPort in
        AgentServerFactory.makeApplication(routes: routes, hub: hub, bindAddress: "127.0.0.1", port: 0,
                                           logger: TestAgent.logger, onServerRunning: { onPort($0) })
    }) { port in
        try await body(TestAgent(port: port, store: store, hub: hub, status: status))
    }
}

typealias TestFailure = TestServerFailure

/// What an SDK connection saw.
struct SocketTranscript: Sendable {
    var messages: [String] = []
    var closeCode: WebSocketErrorCode?
    var closeReason: String?
    var jsonMessages: [JSONValue] { messages.compactMap { try? JSONValue.parse($0) } }
}

/// Opens a WebSocket to the agent, sends `send` in order, collects text messages until `until` says stop (or the
/// server closes, or `timeout` passes), then closes normally.
func sdkSession(
    url: String,
    send: [String] = [],
    timeout: Duration = .seconds(5),
    until: @escaping @Sendable ([String]) -> Bool = { _ in false },
    afterSend: (@Sendable (WebSocketOutboundWriter) async throws -> Void)? = nil
) async throws -> SocketTranscript {
    let collected = Locked(SocketTranscript())
    let closeFrame = Locked<WebSocketCloseFrame?>(nil)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            let close = try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 22),
                                                          logger: TestAgent.logger) { inbound, outbound, _ in
                for message in send { try await outbound.write(.text(message)) }
                try await afterSend?(outbound)
                for try await message in inbound.messages(maxSize: 1 << 22) {
                    guard case .text(let text) = message else { continue }
                    let done = collected.withLock { transcript -> Bool in
                        transcript.messages.append(text)
                        return until(transcript.messages)
                    }
                    if done { break }
                }
                try? await outbound.close(.normalClosure, reason: nil)
            }
            closeFrame.withLock { $0 = close }
        }
        group.addTask {
            // Past the timeout the socket is abandoned (cancelled) with what was collected so far.
            try await Task.sleep(for: timeout)
        }
        try await group.next()
        group.cancelAll()
    }
    let close = closeFrame.withLock { $0 }
    return collected.withLock { transcript in
        transcript.closeCode = close?.closeCode
        transcript.closeReason = close?.reason
        return transcript
    }
}
