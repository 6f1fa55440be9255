import AgentCore
import Hummingbird
import Logging
import Metrics
import NIOCore
import Synchronization

/// The request context of the agent's HTTP API: Hummingbird's basic one plus the peer address of the connection, which
/// the admin API's failed-authentication limit is kept by.
public struct AgentRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// Authentication of the admin API (`ApiKey`): the key compared in constant time (as a digest), and failed attempts
/// limited per source address. Each source may fail `burst` times, then once per `refillSeconds`; past that its admin
/// requests are answered 429 with `Retry-After` without looking at the key, so guessing it from one address takes
/// years. Behind a reverse proxy every request has the proxy's address: the limit is then shared by all its clients.
///
/// Counted: `featbit_agent_admin_auth_failures_total` (wrong or missing key) and
/// `featbit_agent_admin_auth_limited_total` (requests refused by the limit); logged: each failure while a source is
/// under the limit (`admin-auth-failed`), and once when it reaches it (`admin-auth-limited`) — never the key offered.
public final class AdminAuth: Sendable {
    public struct Settings: Sendable {
        /// Failures a source may make before it is limited; 0: no limit.
        public var burst: Double = 10
        public var refillSeconds: Double = 6
        /// Sources remembered at most; past it, the fully refilled ones are forgotten first, then the oldest.
        public var maxSources = 10_000
        public init() {}
    }

    public enum Verdict: Equatable, Sendable {
        case admitted
        case refused
        case limited(retryAfterSeconds: Int)
    }

    private struct Bucket {
        var tokens: Double
        var updated: Double
    }

    private let key: CredentialDigest?
    private let settings: Settings
    private let buckets = Mutex<[String: Bucket]>([:])
    private let now: @Sendable () -> Double
    private let logger: Logger
    /// Failures come from any address that can reach the port: their lines are bounded across all sources.
    private let logBudget = LogBudget()
    private let failures = Counter(label: "featbit_agent_admin_auth_failures_total")
    private let limited = Counter(label: "featbit_agent_admin_auth_limited_total")

    /// - Parameter apiKey: `nil` or empty: no admin access at all (every attempt fails).
    public init(apiKey: String?, settings: Settings = .init(), logger: Logger,
                now: @escaping @Sendable () -> Double = { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }) {
        self.key = apiKey.flatMap { $0.isEmpty ? nil : CredentialDigest($0) }
        self.settings = settings
        self.logger = logger
        self.now = now
    }

    /// How many sources' failures are remembered.
    public var trackedSources: Int { buckets.withLock { $0.count } }

    /// Decides an admin request from `source` offering `authorization`.
    public func check(authorization: String?, source: String, path: String) -> Verdict {
        guard settings.burst > 0 else {
            if let key, key.matches(authorization) { return .admitted }
            failures.increment()
            return .refused
        }
        let time = now()
        let available = buckets.withLock { buckets in
            buckets[source].map { refilled($0, at: time).tokens } ?? settings.burst
        }
        if available < 1 {
            limited.increment()
            return .limited(retryAfterSeconds: max(1, Int((1 - available) * settings.refillSeconds + 0.999)))
        }
        if let key, key.matches(authorization) { return .admitted }
        failures.increment()
        let left = buckets.withLock { buckets in
            var bucket = buckets[source].map { refilled($0, at: time) } ?? Bucket(tokens: settings.burst, updated: time)
            bucket.tokens -= 1
            buckets[source] = bucket
            if buckets.count > settings.maxSources { forgetSome(&buckets, at: time) }
            return bucket.tokens
        }
        guard let notLogged = logBudget.take() else { return .refused }
        var metadata: Logger.Metadata = ["source": "\(source)", "path": "\(path)"]
        if notLogged > 0 { metadata["notLogged"] = "\(notLogged)" }
        if left < 1 {
            metadata["event"] = "admin-auth-limited"
            logger.warning("admin API: too many failed authentications from one source; refusing it for a while",
                           metadata: metadata)
        } else {
            metadata["event"] = "admin-auth-failed"
            metadata["keyOffered"] = "\(authorization != nil)"
            logger.notice("admin API: authentication failed", metadata: metadata)
        }
        return .refused
    }

    private func refilled(_ bucket: Bucket, at time: Double) -> Bucket {
        let tokens = min(settings.burst, bucket.tokens + max(0, time - bucket.updated) / settings.refillSeconds)
        return Bucket(tokens: tokens, updated: time)
    }

    /// Forgets the sources whose attempts have all come back, and if that is not enough the oldest quarter, so a flood
    /// of new addresses pays for a sweep once per `maxSources / 4` of them, not on every request.
    private func forgetSome(_ buckets: inout [String: Bucket], at time: Double) {
        buckets = buckets.filter { refilled($0.value, at: time).tokens < settings.burst }
        let keep = settings.maxSources * 3 / 4
        guard buckets.count > keep else { return }
        let newest = buckets.sorted { $0.value.updated > $1.value.updated }.prefix(keep)
        buckets = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
    }

    /// The source of a request: its peer's IP address.
    public static func source(of context: AgentRequestContext) -> String {
        context.remoteAddress?.ipAddress ?? "unknown"
    }
}
