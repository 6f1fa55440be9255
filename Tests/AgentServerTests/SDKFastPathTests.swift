import AgentCore
@testable import AgentServer
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Server `latest-all` answered on the event loop (SDKFastPath): the same answers as Hummingbird's route, a body that
/// follows every change, and responses in request order on a connection that mixes both paths.
@Suite struct SDKFastPathTests {
    static let auth = [("Authorization", TestData.serverSecret)]

    @Test func takesOnlyThePlainShapeOfTheRequest() {
        let cases: [(String, Int64?)] = [
            ("/api/public/sdk/server/latest-all", 0),
            ("/API/Public/SDK/Server/Latest-All?timestamp=0", 0),
            ("/api/public/sdk/server/latest-all?timestamp=1674885300000", 1_674_885_300_000),
            ("/api/public/sdk/server/latest-all?x=1&timestamp=7&timestamp=bad", 7),
            ("/api/public/sdk/server/latest-all?", 0),
            ("/api/public/sdk/server/latest-all?timestamp=-1", nil),
            ("/api/public/sdk/server/latest-all?timestamp=1e3", nil),
            ("/api/public/sdk/server/latest-all?timestamp=", nil),
            ("/api/public/sdk/server/latest-all?timestamp=%31", nil),
            ("/api/public/sdk/server/latest-all?time%73tamp=5", nil),
            ("/api/public/sdk/server/latest-all?timestamp=1234567890123456789", nil),
            ("/api/public/sdk/server/latest-all/", nil),
            ("/api/public/sdk/server/latest-allx", nil),
            ("/api/public/sdk/client/latest-all", nil),
            ("/", nil),
        ]
        for (target, expected) in cases {
            #expect(SDKFastPath.serverLatestAllTimestamp(target) == expected, "\(target)")
        }
    }

    /// `Connection: keep-alive` sends the same request through Hummingbird: both answers must be the same.
    @Test func answersAsHummingbirdsRouteDoes() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let requests: [(String, [(String, String)])] = [
                ("/api/public/sdk/server/latest-all", Self.auth),
                ("/api/public/sdk/server/latest-all?timestamp=1674885300000", Self.auth),
                ("/api/public/sdk/server/latest-all?timestamp=1800000000000", Self.auth),
                ("/api/public/sdk/server/latest-all", Self.auth + [("Origin", "https://app.example.com")]),
            ]
            for (path, headers) in requests {
                let answered = agent.hub.serverPayloads.answered.load(ordering: .relaxed)
                let fast = try await agent.http(.GET, path, headers: headers)
                #expect(agent.hub.serverPayloads.answered.load(ordering: .relaxed) == answered + 1, "fast path took \(path)")
                let routed = try await agent.http(.GET, path, headers: headers + [("Connection", "keep-alive")])
                #expect(agent.hub.serverPayloads.answered.load(ordering: .relaxed) == answered + 1, "routed \(path)")
                #expect(fast.status == 200 && fast.status == routed.status, "\(path)")
                #expect(fast.body == routed.body, "\(path)")
                let names = { (result: HTTPResult) in result.headers.map { $0.name.lowercased() }.filter { $0 != "connection" } }
                #expect(names(fast) == names(routed), "\(path) \(headers)")
                for name in ["Content-Type", "Content-Length", "Access-Control-Allow-Origin", "Server"] {
                    #expect(fast.headers.first(name: name) == routed.headers.first(name: name), "\(name) of \(path)")
                }
                #expect(fast.headers.first(name: "Date")?.hasSuffix(" GMT") == true)
            }
            let before = agent.hub.serverPayloads.answered.load(ordering: .relaxed)
            #expect(try await agent.http(.GET, "/api/public/sdk/server/latest-all").status == 401)
            // Well-formed secrets the agent does not hold — of an environment it serves (forged from its public id)
            // and of one it does not — are refused by both paths, not answered with data.
            for forged in [TestData.forgedSecret, "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"] {
                for extra in [[], [("Connection", "keep-alive")]] {
                    let answer = try await agent.http(.GET, "/api/public/sdk/server/latest-all",
                                                      headers: [("Authorization", forged)] + extra)
                    #expect(answer.status == 401 && answer.body.isEmpty, "\(forged) \(extra)")
                }
            }
            #expect(try await agent.http(.GET, "/api/public/sdk/server/latest-all?timestamp=x", headers: Self.auth).status == 400)
            #expect(agent.hub.serverPayloads.answered.load(ordering: .relaxed) == before)
        }
    }

    @Test func theCachedBodyFollowsEveryChange() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let first = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: Self.auth)
            let flags = try #require(first.json?["data"]?["featureFlags"]?.arrayValue)
            let flag = try #require(flags.first)
            // Same updatedAt, new content: the version stays, the body must not.
            let renamed = try DataItem(kind: .flag, json: flag.with("name", .string("renamed in place")))
            agent.store.apply(.upsert([EnvironmentData(envId: TestData.envId, secrets: nil, flags: [renamed], segments: [])]))
            let second = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: Self.auth)
            #expect(second.body.contains("renamed in place"))
            #expect(second.json?["data"]?["featureFlags"]?.arrayValue?.count == flags.count)
            // A new flag: listed at once, and in a patch since the old version.
            let added = try DataItem(kind: .flag, json: flag.with("id", .string("fast-path-new-flag"))
                .with("key", .string("fast-path-new")).with("updatedAt", .string("2030-01-01T00:00:00Z")))
            agent.store.apply(.upsert([EnvironmentData(envId: TestData.envId, secrets: nil, flags: [added], segments: [])]))
            let third = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: Self.auth)
            #expect(third.json?["data"]?["featureFlags"]?.arrayValue?.count == flags.count + 1)
            let patch = try await agent.http(.GET, "/api/public/sdk/server/latest-all?timestamp=1800000000000", headers: Self.auth)
            #expect(patch.json?["data"]?["featureFlags"]?.arrayValue?.map { $0["key"] } == [.string("fast-path-new")])
            // The environment removed by a full replace, and its secrets with it: refused, not the cached body.
            agent.store.apply(.replace([]))
            let gone = try await agent.http(.GET, "/api/public/sdk/server/latest-all", headers: Self.auth)
            #expect(gone.status == 401 && gone.body.isEmpty)
        }
    }

    /// Requests written back to back on one connection, alternating between Hummingbird (a status request) and the
    /// fast path, are answered in the order they were sent.
    @Test func answersInRequestOrderOnAConnectionThatMixesBothPaths() async throws {
        try await withTestAgent(initial: try TestData.fakeEnvironments()) { agent in
            let fast = "GET /api/public/sdk/server/latest-all HTTP/1.1\r\nHost: x\r\nAuthorization: \(TestData.serverSecret)\r\n\r\n"
            let slow = "GET /api/public/proxy/status HTTP/1.1\r\nHost: x\r\nAuthorization: \(TestAgent.apiKey)\r\n\r\n"
            let port = agent.port
            let bodies = try await offPool { () -> [String] in
                let socket = try RawSocket(port: port, bufferBytes: 1 << 20)
                defer { socket.close() }
                var answers: [String] = []
                for round in 0..<20 {
                    let pair = round % 2 == 0 ? slow + fast : fast + slow
                    guard socket.sendAll(Array(pair.utf8)) else { throw TestServerFailure("send failed") }
                    answers += try Self.readResponses(socket, count: 2)
                }
                return answers
            }
            #expect(bodies.count == 40)
            // A fast request written behind a routed one waits its turn in Hummingbird: only the 10 sent first on an
            // idle connection were answered on the event loop.
            #expect(agent.hub.serverPayloads.answered.load(ordering: .relaxed) == 10)
            for (index, body) in bodies.enumerated() {
                let round = index / 2
                let expectFast = (round % 2 == 0) == (index % 2 == 1)
                #expect(body.contains("\"messageType\":\"data-sync\"") == expectFast, "answer \(index)")
                #expect(body.contains("\"dataVersion\"") == !expectFast, "answer \(index)")
            }
        }
    }

    /// Reads `count` complete HTTP responses (Content-Length bodies) within 5 s; returns their bodies.
    static func readResponses(_ socket: RawSocket, count: Int) throws -> [String] {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socket.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        var bodies: [String] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bodies.count < count {
            if let headEnd = buffer.firstRange(of: [13, 10, 13, 10]) {
                let head = String(decoding: buffer[..<headEnd.lowerBound], as: UTF8.self).lowercased()
                let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                if buffer.count >= headEnd.upperBound + length {
                    bodies.append(String(decoding: buffer[headEnd.upperBound..<headEnd.upperBound + length], as: UTF8.self))
                    buffer.removeFirst(headEnd.upperBound + length)
                    continue
                }
            }
            let read = recv(socket.fd, &chunk, chunk.count, 0)
            guard read > 0 else { throw TestServerFailure("connection ended after \(bodies.count) answers") }
            buffer += chunk[0..<read]
        }
        return bodies
    }
}
