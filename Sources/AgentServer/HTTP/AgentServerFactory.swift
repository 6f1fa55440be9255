import AgentTLS
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Builds the agent's one listening server: the HTTP API and `/streaming` on the same port.
public enum AgentServerFactory {
    /// The `Server` header of every HTTP answer.
    public static let serverName = "featbit-agent"

    public static func makeApplication(
        routes: AgentRoutes,
        hub: StreamingHub,
        bindAddress: String,
        port: Int,
        tls: ReloadingTLSContext? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> any Service {
        Application(
            router: routes.buildRouter(),
            server: HTTPServerBuilder { responder in AgentChildChannel(responder: responder, hub: hub, tls: tls) },
            configuration: .init(
                address: .hostname(bindAddress, port: port),
                serverName: serverName,
                backlog: 4096,
                reuseAddress: true
            ),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            eventLoopGroupProvider: .shared(eventLoopGroup),
            logger: logger
        )
    }
}
