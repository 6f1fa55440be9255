import AgentCore
import AsyncHTTPClient
import TestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import Testing
import WSClient
@testable import FeatBitSimulatorCore

/// The simulator's server started in-process on 127.0.0.1 and a free port.
struct RunningSimulator: Sendable {
    let port: Int
    let simulator: Simulator

    static var logger: Logger {
        var logger = Logger(label: "featbit-sim-test")
        logger.logLevel = ProcessInfo.processInfo.environment["SIM_TEST_LOG"] == "1" ? .trace : .critical
        return logger
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var relayProxyURL: String { "ws://127.0.0.1:\(port)/streaming?type=relay-proxy&token=\(SimFixtures.apiKey)" }

    func http(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: String? = nil) async throws -> HTTPResult {
        try await httpRequest(method, base + path, headers: headers, body: body)
    }
}

func withSimulator<T: Sendable>(_ data: SimulatorData, _ body: @Sendable (RunningSimulator) async throws -> T) async throws -> T {
    let simulator = Simulator(data: data, settings: .init(apiKeys: [SimFixtures.apiKey]))
    return try await withRunningServer(logger: RunningSimulator.logger, { onPort in
        SimulatorServer.makeApplication(simulator: simulator, port: 0, logger: RunningSimulator.logger, onServerRunning: { onPort($0) })
    }) { port in
        try await body(RunningSimulator(port: port, simulator: simulator))
    }
}

typealias SimTestFailure = TestServerFailure

struct Transcript: Sendable {
    var messages: [String] = []
    var closeCode: WebSocketErrorCode?
    /// The error the client ended with (an abrupt TCP close may surface as one).
    var error: String?
}

/// Connects, sends `send`, runs `afterSend`, collects text messages until `until` holds, the server closes, or the
/// timeout passes.
func wsSession(url: String, send: [String] = [], timeout: Duration = .seconds(5),
               afterSend: @escaping @Sendable () async throws -> Void = {},
               until: @escaping @Sendable ([String]) -> Bool = { _ in false }) async throws -> Transcript {
    let collected = Locked(Transcript())
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          do {
            let close = try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 24),
                                                          logger: RunningSimulator.logger) { inbound, outbound, _ in
                for message in send { try await outbound.write(.text(message)) }
                try await afterSend()
                for try await message in inbound.messages(maxSize: 1 << 24) {
                    guard case .text(let text) = message else { continue }
                    let done = collected.withLock { t -> Bool in
                        t.messages.append(text)
                        return until(t.messages)
                    }
                    if done { break }
                }
                try? await outbound.close(.normalClosure, reason: nil)
            }
            collected.withLock { $0.closeCode = close?.closeCode }
          } catch is CancellationError {
          } catch {
            collected.withLock { $0.error = "\(error)" }
          }
        }
        group.addTask { try await Task.sleep(for: timeout) }
        try await group.next()
        group.cancelAll()
    }
    return collected.withLock { $0 }
}

/// What a raw WebSocket handshake got back: the HTTP status and the first frame after the response head.
struct RawUpgrade: Sendable {
    struct Frame: Sendable {
        let opcode: UInt8
        let payload: [UInt8]
        var closeCode: Int? { opcode == 0x8 && payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil }
        var reason: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
    }
    let status: Int
    let firstFrame: Frame?
}

/// Sends an upgrade request over a plain TCP socket and reads until the first frame is complete (or EOF / 5 s).
func rawUpgrade(port: Int, path: String) async throws -> RawUpgrade {
    try await offPool {
        let socket = try RawSocket(port: port, bufferBytes: 65_536)
        defer { socket.close() }
        let head = try socket.upgrade(path: path)
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return RawUpgrade(status: status, firstFrame: socket.readFrame().map { .init(opcode: $0.opcode, payload: $0.payload) })
    }
}

@Suite("featbit-sim over real sockets")
struct ServerTests {
    @Test("relay proxy: 4003 for an unknown key; rp_full; a control-API change arrives as one push per server secret")
    func relayProxyFlow() async throws {
        try await withSimulator(try SimFixtures.fakeData(extraSecrets: [SimFixtures.secret("server", SimFixtures.serverSecretA2)])) { sim in
            // Checked on the wire: swift-websocket's client sometimes drops a frame that arrives in the same read as
            // the 101 response, which is exactly when this close frame comes.
            let afterUpgrade = try await rawUpgrade(port: sim.port, path: "/streaming?type=relay-proxy&token=rp-nope")
            #expect(afterUpgrade.status == 101)
            #expect(afterUpgrade.firstFrame?.opcode == 0x8)
            #expect(afterUpgrade.firstFrame?.closeCode == 4003)
            #expect(afterUpgrade.firstFrame?.reason == "invalid request, close by server")

            let flag = SimFixtures.flagJSON(id: "7a04ac4e-b468-4bb5-8123-af980022fe54", key: "return-10p-true", updatedAt: 1)
            let transcript = try await wsSession(
                url: sim.relayProxyURL,
                send: [#"{"messageType":"data-sync","data":{"timestamp":0}}"#],
                afterSend: {
                    // Wait until the connection is registered, then change a flag.
                    for _ in 0..<200 where sim.simulator.connections(ofType: "relay-proxy").isEmpty {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    let put = try await sim.http(.PUT, "/control/flags?touch=true", body: JSONWriter.string(flag))
                    #expect(put.status == 200)
                    #expect(put.json?["pushes"]?["relay-proxy"] == .integer(2))
                },
                until: { $0.count >= 3 })
            let messages = transcript.messages.compactMap { try? JSONValue.parse($0) }
            #expect(messages.map { $0["data"]?["eventType"]?.stringValue } == ["rp_full", "patch", "patch"])
            #expect(messages.first?["data"]?["items"]?.arrayValue?.first?["secrets"]?.arrayValue?.count == 3)
            #expect(messages[1] == messages[2])
            let pushed = messages[1]["data"]?["featureFlags"]?.arrayValue?.first
            #expect(pushed?["key"] == .string("return-10p-true"))
            #expect((pushed.flatMap { $0["updatedAt"]?.stringValue }.flatMap(FeatBitTimestamp.milliseconds) ?? 0) > 1_700_000_000_000)
        }
    }

    @Test("registration: 401 for unknown keys, text/plain id, injected 429 with Retry-After")
    func registration() async throws {
        try await withSimulator(try SimFixtures.fakeData()) { sim in
            let unknown = try await sim.http(.POST, "/api/public/agent/register", headers: [("Authorization", "rp-other")], body: #""a1""#)
            #expect(unknown.status == 401)
            let plan = try await sim.http(.POST, "/control/registration-failures", body: #"{"status":429,"count":1,"retryAfter":2}"#)
            #expect(plan.status == 200)
            let limited = try await sim.http(.POST, "/api/public/agent/register", headers: [("Authorization", SimFixtures.apiKey)], body: #""a1""#)
            #expect(limited.status == 429)
            #expect(limited.headers["Retry-After"] == ["2"])
            #expect(limited.json?["error"] == .string("Rate limit exceeded. Please try again later."))
            let ok = try await sim.http(.POST, "/api/public/agent/register", headers: [("Authorization", SimFixtures.apiKey)], body: #""a1""#)
            #expect(ok.status == 200)
            #expect(ok.body == "a1")
            #expect(ok.headers["Content-Type"].first?.hasPrefix("text/plain") == true)
            let state = try await sim.http(.GET, "/control/state").json
            #expect(state?["registrations"] == .integer(1))
            #expect(state?["registrationRequests"] == .integer(3))
        }
    }

    @Test("insights: structural auth, recorded bodies, injected failures, clear")
    func insights() async throws {
        try await withSimulator(try SimFixtures.fakeData()) { sim in
            let body = #"[{"user":{"keyId":"u1","name":"U","customizedProperties":[]}}]"#
            #expect(try await sim.http(.POST, "/api/public/insight/track", headers: [("Authorization", "short")], body: body).status == 401)
            _ = try await sim.http(.POST, "/control/insight-failures", body: #"{"status":500,"count":1}"#)
            #expect(try await sim.http(.POST, "/api/public/insight/track", headers: [("Authorization", SimFixtures.serverSecretB)], body: body).status == 500)
            let ok = try await sim.http(.POST, "/api/public/insight/track", headers: [("Authorization", SimFixtures.serverSecretB)], body: body)
            #expect(ok.status == 200)
            #expect(ok.body.isEmpty)
            let recorded = try await sim.http(.GET, "/control/insights?clear=true").json?.arrayValue ?? []
            #expect(recorded.count == 1)
            #expect(recorded.first?["authorization"] == .string(SimFixtures.serverSecretB))
            #expect(recorded.first?["body"] == (try JSONValue.parse(body)))
            #expect(try await sim.http(.GET, "/control/insights").json == .array([]))
        }
    }

    @Test("down: sockets dropped without a close frame, HTTP 503, control API still answers; up restores")
    func downAndUp() async throws {
        try await withSimulator(try SimFixtures.fakeData()) { sim in
            let transcript = try await wsSession(
                url: sim.relayProxyURL,
                send: [#"{"messageType":"ping","data":{}}"#],
                afterSend: {
                    for _ in 0..<200 where sim.simulator.connections(ofType: "relay-proxy").isEmpty {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    let down = try await sim.http(.POST, "/control/down")
                    #expect(down.json?["dropped"] == .integer(1))
                })
            #expect(transcript.closeCode == nil)
            #expect(try await sim.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", SimFixtures.serverSecretA)]).status == 503)
            #expect(try await sim.http(.GET, "/control/state").json?["up"] == .bool(false))
            _ = try await sim.http(.POST, "/control/up")
            let latest = try await sim.http(.GET, "/api/public/sdk/server/latest-all", headers: [("Authorization", SimFixtures.serverSecretA)])
            #expect(latest.status == 200)
            #expect(latest.json?["data"]?["featureFlags"]?.arrayValue?.count == 5)
        }
    }
}
