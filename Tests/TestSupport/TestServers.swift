// What the in-process server tests share: starting a Hummingbird application on 127.0.0.1 and a free port, always
// stopping it, and plain HTTP requests against it.
import AgentCore
import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

public struct TestServerFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Starts the service `make` builds (it reports the port it bound through the closure it is given), runs `body` with
/// that port, and shuts the service down afterwards whatever happens. Fails if no port is reported within 5 s.
public func withRunningServer<T: Sendable>(
    logger: Logger,
    _ make: (@escaping @Sendable (Int) -> Void) -> any Service,
    _ body: (Int) async throws -> T
) async throws -> T {
    let portBox = Mutex<Int?>(nil)
    let service = make { port in portBox.withLock { $0 = port } }
    let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var port: Int?
        for _ in 0..<500 {
            port = portBox.withLock { $0 }
            if port != nil { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard let port else {
            await group.triggerGracefulShutdown()
            throw TestServerFailure("server did not start within 5 s")
        }
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// An HTTP answer as the tests read it.
public struct HTTPResult: Sendable {
    public let status: Int
    public let body: String
    public let headers: HTTPHeaders
    public var json: JSONValue? { try? JSONValue.parse(body) }
}

/// One request to `url` (10 s timeout, body up to 64 MiB).
public func httpRequest(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [],
                        body: String? = nil) async throws -> HTTPResult {
    var request = HTTPClientRequest(url: url)
    request.method = method
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
    return HTTPResult(status: Int(response.status.code), body: String(buffer: bytes), headers: response.headers)
}

/// A value behind a lock that tasks can share.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T { try mutex.withLock { try body(&$0) } }
}
