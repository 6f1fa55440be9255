// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "featbit-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "featbit-agent", targets: ["FeatBitAgent"]),
        .executable(name: "bench-client", targets: ["BenchClient"]),
        .executable(name: "bench-eval", targets: ["BenchEval"]),
        .executable(name: "featbit-sim", targets: ["FeatBitSimulator"]),
        .executable(name: "bench-db", targets: ["BenchDB"]),
        .executable(name: "featbit-fuzz", targets: ["FeatBitFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        // TLS for the agent's port, mutual TLS between peers, and trust of a private upstream CA. Already in the graph
        // through async-http-client; declared so the targets below can import NIOSSL.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.36.0"),
    ],
    targets: [
        // Pure model, codecs, store and change feed: no networking, no disk.
        .target(
            name: "AgentCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                // Only for the log lines shared by the sources that refuse invalid items (RefusedItemsLog).
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // featbit.db via GRDB.
        .target(
            name: "Persistence",
            dependencies: [
                "AgentCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The agent's TLS contexts from PEM files (SDK port, mesh peers, upstream trust) and their reload on change.
        .target(
            name: "AgentTLS",
            dependencies: [
                "AgentCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // SDK-facing server: /streaming (NIO handlers) and the HTTP API (Hummingbird).
        .target(
            name: "AgentServer",
            dependencies: [
                "AgentCore", "AgentTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The FeatBit evaluation server side: relay-proxy sync, registration, insight forwarding.
        .target(
            name: "Upstream",
            dependencies: [
                "AgentCore", "AgentTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The clustered mesh: the election and replication core (pure, Sources/Cluster/Core), the peer transport on
        // SwiftNIO (Sources/Cluster/Transport) and the node that drives both (Sources/Cluster/Node).
        .target(
            name: "Cluster",
            dependencies: [
                "AgentCore", "AgentTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The wiring of one agent process (single node or mesh node) from a configuration: a library, so tests can
        // run several nodes in one process; the executable only parses options.
        .target(
            name: "AgentApp",
            dependencies: [
                "AgentCore", "AgentTLS",
                "AgentServer",
                "Persistence",
                "Upstream",
                "Cluster",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "FeatBitAgent",
            dependencies: [
                "AgentCore", "AgentTLS",
                "AgentApp",
                "AgentServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Evaluator micro-benchmark (scripts/bench-eval).
        .executableTarget(name: "BenchEval", dependencies: ["AgentCore"]),
        // FeatBit evaluation-server simulator ("the upstream" of e2e tests, demo and benchmarks): its state and
        // payload building (pure) plus its Hummingbird server; the executable only parses options.
        .target(
            name: "FeatBitSimulatorCore",
            dependencies: [
                "AgentCore", "AgentTLS",
                "AgentServer",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "FeatBitSimulator",
            dependencies: [
                "FeatBitSimulatorCore",
                "AgentCore",
                "AgentTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // <sys/epoll.h> for bench-client's raw sockets (Glibc's Swift module does not export it).
        .target(name: "CEpoll"),
        // Load client for scripts/bench-fanout and scripts/bench-e2e (a benchmark tool, not part of the agent).
        .executableTarget(
            name: "BenchClient",
            dependencies: [
                "AgentCore",
                "CEpoll",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // libFuzzer targets for every parser of outside input (scripts/fuzz builds them with -DFUZZING and the fuzzer's
        // instrumentation; in other builds the executable is a stub).
        .executableTarget(
            name: "FeatBitFuzz",
            dependencies: [
                "AgentCore", "Cluster", "AgentTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        // What the in-process server test suites share (starting a server on a free port, HTTP requests).
        .target(
            name: "TestSupport",
            dependencies: [
                "AgentCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(name: "AgentCoreTests", dependencies: ["AgentCore"]),
        .testTarget(
            name: "AgentTLSTests",
            dependencies: [
                "AgentCore", "AgentTLS", "AgentApp",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "FeatBitSimulatorTests",
            dependencies: [
                "AgentCore", "FeatBitSimulatorCore", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // featbit.db micro-benchmark (scripts/bench-db).
        .executableTarget(
            name: "BenchDB",
            dependencies: ["AgentCore", "Persistence", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "AgentCore", "Cluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "UpstreamTests",
            dependencies: ["AgentCore", "Upstream", "FeatBitSimulatorCore", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "PersistenceTests",
            dependencies: [
                "AgentCore", "Persistence",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "AgentServerTests",
            dependencies: [
                "AgentCore", "AgentServer", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
