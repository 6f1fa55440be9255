import AgentCore
import Foundation
import Logging
import ServiceLifecycle

/// Offline mode's `DataFile`: loaded at start, then watched; every valid new content replaces the data set.
/// An invalid edit is logged and ignored, so the data already served is never lost to a bad file.
struct DataFileSource: Service {
    enum ApplyResult: Sendable {
        case applied(AppliedChange?)
        /// In a mesh, only the leader applies its file (and replicates it); a follower tries again when it leads.
        case notLeader
    }

    typealias Apply = @Sendable (Change) async -> ApplyResult

    let path: String
    let apply: Apply
    let logger: Logger
    /// The file's fingerprint taken before the load at start, so an edit made while it loaded is not missed.
    let loadedFingerprint: String?
    /// In a mesh: the content read at start, still to be applied through the leader.
    var initial: [EnvironmentData]?
    var pollInterval: Duration = .milliseconds(250)
    /// How often a follower retries applying a pending file content (in case it has become the leader).
    var retryInterval: Duration = .seconds(2)

    /// Reads and parses the file. Throws a message fit for an operator.
    static func load(path: String) throws -> [EnvironmentData] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DataSetError("cannot read \(path): \(error.localizedDescription)")
        }
        do {
            return try DataSetParser.parseBootstrap(try JSONValue.parse(data))
        } catch let error as JSONValue.ParseError {
            throw DataSetError("\(path): \(error.description)")
        } catch let error as DataSetError {
            throw DataSetError("\(path): \(error.description)")
        }
    }

    func run() async throws {
        var last = loadedFingerprint
        var pending = initial
        var lastAttempt = ContinuousClock.now - retryInterval
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            // Ends at once on a graceful shutdown (see TLSFileWatcher.run).
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: pollInterval) })) != nil else { return }
            let current = FileFingerprint.of(path)
            if let environments = pending, ContinuousClock.now - lastAttempt >= retryInterval, current == last {
                lastAttempt = .now
                if case .applied(let applied) = await apply(.replace(environments)) {
                    pending = nil
                    logger.info("data file applied as the mesh leader", metadata: [
                        "event": "datafile-applied", "path": "\(path)", "changed": "\(applied != nil)",
                    ])
                }
            }
            guard current != last, current != nil else { continue }
            last = current
            do {
                let environments = try Self.load(path: path)
                switch await apply(.replace(environments)) {
                case .applied(let applied):
                    pending = nil
                    logger.info("data file reloaded", metadata: [
                        "event": "datafile-reloaded", "path": "\(path)", "changed": "\(applied != nil)",
                        "dataVersion": "\(applied?.snapshot.version ?? 0)",
                    ])
                case .notLeader:
                    pending = environments
                    lastAttempt = .now
                    logger.info("data file changed on a follower: it applies once this node leads; the leader's file is what the mesh serves", metadata: [
                        "event": "datafile-follower", "path": "\(path)",
                    ])
                }
            } catch {
                logger.error("data file change ignored; still serving the previous data", metadata: [
                    "event": "datafile-rejected", "path": "\(path)", "reason": "\(error)",
                ])
            }
        }
    }
}
