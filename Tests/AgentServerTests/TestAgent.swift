import AgentCore
import AgentServer
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
import WSClient
import NIOWebSocket
import AgentServer

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

    struct HTTPResult: Sendable {
        let status: Int
        let body: String
        let headers: HTTPHeaders
        var json: JSONValue? { try? JSONValue.parse(body) }
    }

    func http(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: String? = nil) async throws -> HTTPResult {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return HTTPResult(status: Int(response.status.code), body: String(buffer: bytes), headers: response.headers)
    }

    func bootstrap(_ body: String, apiKey: String = TestAgent.apiKey) async throws -> HTTPResult {
        try await http(.POST, "/api/public/proxy/bootstrap", headers: [("Authorization", apiKey)], body: body)
    }
}

/// Runs `body` against a fresh in-process agent; the server is shut down afterwards whatever happens.
func withTestAgent<T: Sendable>(
    initial: [EnvironmentData]? = nil,
    settings: StreamingHub.Settings = .init(),
    _ body: @Sendable (TestAgent) async throws -> T
) async throws -> T {
    let store = DataStore()
    if let initial { store.apply(.replace(initial)) }
    let status = AgentStatusBoard(mode: .manual)
    let hub = StreamingHub(store: store, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, settings: settings,
                           logger: TestAgent.logger)
    let routes = AgentRoutes(hub: hub, status: status, settings: .init(apiKey: TestAgent.apiKey), insights: nil,
                             metrics: nil, logger: TestAgent.logger)
    let portBox = Mutex<Int?>(nil)
    let app = AgentServerFactory.makeApplication(routes: routes, hub: hub, bindAddress: "127.0.0.1", port: 0,
                                                 logger: TestAgent.logger) { port in
        portBox.withLock { $0 = port }
    }
    hub.start()
    let group = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: TestAgent.logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        defer { hub.stop() }
        var port: Int?
        for _ in 0..<500 {
            port = portBox.withLock { $0 }
            if port != nil { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard let port else {
            await group.triggerGracefulShutdown()
            throw TestFailure("server did not start within 5 s")
        }
        do {
            let result = try await body(TestAgent(port: port, store: store, hub: hub, status: status))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

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

/// A value behind a lock that closures and tasks can share.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T { try mutex.withLock { try body(&$0) } }
}
