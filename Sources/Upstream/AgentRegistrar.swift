import AgentCore
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Registers the agent with the FeatBit server (spec §3.2): up to 5 attempts, 10 s each, 2 s apart; stops at once on
/// 403 (licence quota) and on 4xx other than 400/408/429. Unlike the official agent, a failure does not abort the
/// agent: it keeps serving and syncing (the relay-proxy socket does not need the registration) and registers again
/// every `slowRetry`; only the status reports wait for an agent id.
public final class AgentRegistrar: Service, Sendable {
    public struct Settings: Sendable {
        public var streamingUri: String
        public var apiKey: String
        public var agentId: String
        public var attempts = 5
        public var attemptTimeout: Duration = .seconds(10)
        public var pause: Duration = .seconds(2)
        public var slowRetry: Duration = .seconds(300)

        public init(streamingUri: String, apiKey: String, agentId: String) {
            self.streamingUri = streamingUri
            self.apiKey = apiKey
            self.agentId = agentId
        }

        /// `StreamingUri` as http(s), then the root-relative `/api/public/agent/register` (spec §3.1).
        public var url: String {
            var base = streamingUri
            if base.hasPrefix("wss://") { base = "https://" + base.dropFirst(6) } else if base.hasPrefix("ws://") { base = "http://" + base.dropFirst(5) }
            if let schemeEnd = base.range(of: "://"), let slash = base[schemeEnd.upperBound...].firstIndex(of: "/") {
                base = String(base[..<slash])
            }
            return base + "/api/public/agent/register"
        }
    }

    public enum Outcome: Sendable, Equatable {
        case registered(String)
        /// The server said no in a way that retrying soon will not change (401, 403, other 4xx).
        case refused(status: Int)
        /// Every attempt failed transiently (5xx, 400, 408, 429, timeouts, network).
        case unavailable(String)
    }

    private let settings: Settings
    private let http: HTTPClient
    private let logger: Logger
    private let status: AgentStatusBoard
    private let registered = Mutex<String?>(nil)

    public init(settings: Settings, http: HTTPClient = .shared, status: AgentStatusBoard, logger: Logger) {
        self.settings = settings
        self.http = http
        self.status = status
        self.logger = logger
    }

    /// The id the server confirmed, once registered.
    public var agentId: String? { registered.withLock { $0 } }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let outcome = await registerOnce()
            switch outcome {
            case .registered(let id):
                registered.withLock { $0 = id }
                status.update { $0.problems["registration"] = nil }
                logger.info("registered with the FeatBit server", metadata: ["event": "agent-registered", "agentId": "\(id)"])
                return
            case .refused(let code):
                let reason = code == 403 ? "the workspace's auto-agent quota is full (403)" : "the FeatBit server refused the ApiKey (\(code))"
                status.update { $0.problems["registration"] = reason }
                logger.error("agent registration refused; still serving, retrying slowly", metadata: [
                    "event": "agent-registration-refused", "status": "\(code)", "reason": "\(reason)",
                ])
            case .unavailable(let reason):
                status.update { $0.problems["registration"] = "registration failed: \(reason)" }
                logger.error("agent registration failed; still serving, retrying later", metadata: [
                    "event": "agent-registration-failed", "reason": "\(reason)",
                ])
            }
            // Five minutes between rounds: SIGTERM must not wait for it.
            let pause = settings.slowRetry
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
        }
    }

    /// One round of up to `attempts` tries.
    public func registerOnce() async -> Outcome {
        var lastReason = "no attempt made"
        for attempt in 1...max(1, settings.attempts) {
            if attempt > 1 { try? await Task.sleep(for: settings.pause) }
            if Task.isCancelled { break }
            var request = HTTPClientRequest(url: settings.url)
            request.method = .POST
            request.headers.add(name: "Authorization", value: settings.apiKey)
            request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            request.body = .bytes(ByteBuffer(bytes: JSONWriter.bytes(.string(settings.agentId))))
            do {
                let response = try await http.execute(request, timeout: .seconds(Int64(settings.attemptTimeout.components.seconds)))
                let body = try await response.body.collect(upTo: 64 * 1024)
                let code = Int(response.status.code)
                if (200..<300).contains(code) {
                    var id = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
                    if id.count >= 2, id.hasPrefix("\""), id.hasSuffix("\"") { id = String(id.dropFirst().dropLast()) }
                    return .registered(id.isEmpty ? settings.agentId : id)
                }
                if code == 403 || ((400..<500).contains(code) && ![400, 408, 429].contains(code)) {
                    return .refused(status: code)
                }
                lastReason = "HTTP \(code)"
            } catch {
                lastReason = "\(error)"
            }
            logger.warning("agent registration attempt failed", metadata: [
                "event": "agent-registration-attempt", "attempt": "\(attempt)", "reason": "\(lastReason)",
            ])
        }
        return .unavailable(lastReason)
    }
}
