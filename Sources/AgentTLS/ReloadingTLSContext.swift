import AgentCore
import NIOSSL
import Synchronization

/// The TLS context new connections take, rebuilt from its files when they change (certificate rotation without a
/// restart). Connections already open keep the context they started with. A new set of files that does not build
/// (a half-written rotation, a key that does not match) is rejected and the current context stays.
public final class ReloadingTLSContext: Sendable {
    public typealias Build = @Sendable () throws(TLSFileProblem) -> NIOSSLContext

    /// Names the context in logs (e.g. `TlsCertFile`).
    public let name: String
    /// The files whose change triggers a rebuild.
    public let files: [String]
    private let build: Build
    private struct State {
        var context: NIOSSLContext
        /// The fingerprints of the files when they were last tried, built or not.
        var tried: [String?]
    }
    private let state: Mutex<State>

    public enum ReloadOutcome: Sendable {
        case unchanged
        case reloaded
        case rejected(TLSFileProblem)
    }

    /// Builds the first context; its problem is a configuration error.
    public init(name: String, files: [String], build: @escaping Build) throws(TLSFileProblem) {
        self.name = name
        self.files = files
        self.build = build
        let fingerprints = files.map(FileFingerprint.of)
        state = Mutex(State(context: try build(), tried: fingerprints))
    }

    /// The context for a new connection.
    public var current: NIOSSLContext { state.withLock { $0.context } }

    /// Rebuilds the context if any file changed since it was last tried.
    public func reloadIfChanged() -> ReloadOutcome {
        let fingerprints = files.map(FileFingerprint.of)
        let changed = state.withLock { state -> Bool in
            guard state.tried != fingerprints else { return false }
            state.tried = fingerprints
            return true
        }
        guard changed else { return .unchanged }
        do throws(TLSFileProblem) {
            let context = try build()
            state.withLock { $0.context = context }
            return .reloaded
        } catch {
            return .rejected(error)
        }
    }
}
