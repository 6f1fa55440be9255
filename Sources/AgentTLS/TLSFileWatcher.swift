import Logging
import ServiceLifecycle

/// Polls the files of TLS contexts and swaps in a rebuilt context when they change.
public struct TLSFileWatcher: Service {
    public let contexts: [ReloadingTLSContext]
    public let logger: Logger
    public var interval: Duration

    public init(contexts: [ReloadingTLSContext], interval: Duration = .seconds(2), logger: Logger) {
        self.contexts = contexts
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // A graceful shutdown ends the wait at once: services stop one after another, so a watcher still
            // sleeping would hold up those after it (a mesh leader's handover among them) by up to `interval`.
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil else { return }
            for context in contexts { check(context) }
        }
    }

    /// Checks every context now (on SIGHUP), logging an unchanged one too.
    public func checkAll() {
        for context in contexts { check(context, reportUnchanged: true) }
    }

    /// Reloads one context if its files changed, and logs what happened.
    public func check(_ context: ReloadingTLSContext, reportUnchanged: Bool = false) {
        switch context.reloadIfChanged() {
        case .unchanged:
            if reportUnchanged {
                logger.info("TLS files unchanged; the certificate in use stays", metadata: [
                    "event": "tls-unchanged", "tls": "\(context.name)", "files": "\(context.files.joined(separator: ", "))",
                ])
            }
        case .reloaded:
            logger.notice("TLS certificate reloaded; new connections use it, open ones keep theirs", metadata: [
                "event": "tls-reloaded", "tls": "\(context.name)", "files": "\(context.files.joined(separator: ", "))",
            ])
        case .rejected(let problem):
            logger.error("TLS files changed but cannot be used; new connections keep the previous certificate", metadata: [
                "event": "tls-reload-rejected", "tls": "\(context.name)", "reason": "\(problem)",
            ])
        }
    }
}
