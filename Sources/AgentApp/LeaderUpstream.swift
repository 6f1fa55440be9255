import AgentCore
import Cluster
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Upstream

/// The upstream duty of a mesh leader: one relay-proxy session per leadership term, started by the mesh and stopped
/// (with a Close frame, and waited for) when the node steps down; registration the first time the node leads; and, on
/// followers, a TCP probe of the FeatBit server that tells the mesh whether this node could take the duty over.
final class LeaderUpstream: Sendable {
    let client: UpstreamClient
    let registrar: AgentRegistrar
    let streamingUri: String
    let logger: Logger
    private let session = Mutex<Task<Void, Never>?>(nil)
    private let registration = Mutex<Task<Void, Never>?>(nil)

    init(client: UpstreamClient, registrar: AgentRegistrar, streamingUri: String, logger: Logger) {
        self.client = client
        self.registrar = registrar
        self.streamingUri = streamingUri
        self.logger = logger
    }

    var duty: MeshNode.UpstreamDuty {
        MeshNode.UpstreamDuty(
            start: { forceFull in self.start(forceFull: forceFull) },
            stop: { await self.stop() },
            requestFullSync: { self.client.requestFullSync() },
            probe: { await self.probe() })
    }

    private func start(forceFull: Bool) {
        let previous = session.withLock { current -> Task<Void, Never>? in
            let old = current
            current = nil
            return old
        }
        previous?.cancel()
        let client = self.client
        let task = Task {
            await previous?.value
            await client.runSession(forceFull: forceFull)
        }
        session.withLock { $0 = task }
        registration.withLock { current in
            guard current == nil, registrar.agentId == nil else { return }
            let registrar = self.registrar
            current = Task { try? await registrar.run() }
        }
    }

    private func stop() async {
        let task = session.withLock { current -> Task<Void, Never>? in
            let old = current
            current = nil
            return old
        }
        registration.withLock { current in
            // Registration is the leader's job too; a follower stops trying (it resumes when it leads again).
            if registrar.agentId == nil { current?.cancel(); current = nil }
        }
        guard let task else { return }
        task.cancel()
        await task.value
    }

    /// A TCP connect to the FeatBit server's host and port (no TLS, no WebSocket, no registration): enough to tell
    /// whether the network path is open.
    private func probe() async -> Bool {
        guard let url = URL(string: streamingUri), let host = url.host else { return false }
        let port = url.port ?? (url.scheme == "wss" ? 443 : 80)
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port).get()
            try? await channel.close()
            return true
        } catch {
            logger.debug("upstream probe failed", metadata: ["event": "mesh-upstream-probe-failed", "error": "\(error)"])
            return false
        }
    }
}
