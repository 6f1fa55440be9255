import NIOCore
import NIOPosix

/// The TCP options of every mesh connection (cluster-design §3.2): no Nagle delay; keepalive that notices a dead peer
/// in idle + interval · count (8 s by default) even when nothing is sent; and `TCP_USER_TIMEOUT`, so a connection with
/// unacknowledged data to a blackholed peer fails in about E instead of after ~15 min of retransmissions.
enum MeshSocketOptions {
    /// `(option, value)` pairs for `setsockopt`, for this platform.
    static func options(_ settings: PeerTransport.Settings) -> [(ChannelOptions.Types.SocketOption, SocketOptionValue)] {
        var options: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] = [
            (ChannelOptions.tcpOption(.tcp_nodelay), 1),
            (ChannelOptions.socketOption(.so_keepalive), 1),
        ]
        let idle = SocketOptionValue(clamping: max(1, settings.keepAliveIdle.nanoseconds / 1_000_000_000))
        let interval = SocketOptionValue(clamping: max(1, settings.keepAliveInterval.nanoseconds / 1_000_000_000))
        let count = SocketOptionValue(clamping: max(1, settings.keepAliveCount))
        #if os(Linux) || os(Android)
        // <netinet/tcp.h>: TCP_KEEPIDLE 4, TCP_KEEPINTVL 5, TCP_KEEPCNT 6, TCP_USER_TIMEOUT 18 (milliseconds).
        options.append((tcp(4), idle))
        options.append((tcp(5), interval))
        options.append((tcp(6), count))
        if settings.userTimeout > .zero {
            options.append((tcp(18), SocketOptionValue(clamping: settings.userTimeout.nanoseconds / 1_000_000)))
        }
        #elseif canImport(Darwin)
        // <netinet/tcp.h>: TCP_KEEPALIVE 0x10 (idle), TCP_KEEPINTVL 0x101, TCP_KEEPCNT 0x102. Darwin has no
        // TCP_USER_TIMEOUT (TCP_RXT_CONNDROPTIME is not the same thing); keepalive is what remains there.
        options.append((tcp(0x10), idle))
        options.append((tcp(0x101), interval))
        options.append((tcp(0x102), count))
        #endif
        return options
    }

    static func apply(_ settings: PeerTransport.Settings, to bootstrap: ClientBootstrap) -> ClientBootstrap {
        options(settings).reduce(bootstrap) { $0.channelOption($1.0, value: $1.1) }
    }

    static func apply(_ settings: PeerTransport.Settings, to bootstrap: ServerBootstrap) -> ServerBootstrap {
        options(settings).reduce(bootstrap) { $0.childChannelOption($1.0, value: $1.1) }
    }

    static func tcp(_ name: CInt) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }
}
