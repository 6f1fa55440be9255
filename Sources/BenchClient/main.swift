// Load client for scripts/bench-e2e and scripts/bench-fanout (not a test).
//
//   bench-client insights URL SECRET SECONDS CONCURRENCY EVENTS_PER_POST
//     posts insight batches to the agent as fast as CONCURRENCY posters can for SECONDS and prints the events
//     accepted per second as one JSON line.
//   bench-client fanout HOST PORT SECRET N AGENT_PID METHOD URL AUTH CHANGE_BODY [FLOOR_CHANGE_BODY]
//     N idle server SDKs on /streaming, the agent's RSS per socket, and the time from one change to each push
//     (see Fanout.swift). FANOUT_CLIENT_THREADS (default 1) and FANOUT_CONNECT_CONCURRENCY (default 200).
//   bench-client mesh-fanout HOST SECRET N ROUNDS METHOD URL AUTH CHANGE_BODY PORT [PORT…]
//     N SDKs on each node of a mesh; the time from a change at the simulator to the last SDK on every node
//     (see MeshFanout.swift).
//   bench-client idle-sockets HOST PORT SECRET N AGENT_PID ws|wss [CA_FILE]
//     N idle server SDKs over ws:// or wss:// and the agent's RSS per socket (see IdleSockets.swift).
//   bench-client bare-http PORT BODY_FILE
//     a bare SwiftNIO HTTP/1.1 server answering every request with BODY_FILE: scripts/bench-http's reference
//     (see BareHTTP.swift).
import AgentCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

let clock = ContinuousClock()
let origin = clock.now

func nanosSinceOrigin() -> Int64 {
    let d = clock.now - origin
    return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }

func runInsights(_ args: [String]) async throws {
    guard args.count == 5, let seconds = Int(args[2]), let concurrency = Int(args[3]), let perPost = Int(args[4]) else {
        throw BenchError("usage: insights URL SECRET SECONDS CONCURRENCY EVENTS_PER_POST")
    }
    let (url, secret) = (args[0], args[1])
    let event = #"{"user":{"keyId":"bench-user","name":"Bench","customizedProperties":[{"name":"plan","value":"pro"}]},"variations":[{"featureFlagKey":"returns-true","sendToExperiment":false,"timestamp":1700000000000,"variation":{"id":"v1","value":"true"}}]}"#
    let body = ByteBuffer(string: "[" + Array(repeating: event, count: perPost).joined(separator: ",") + "]")
    let tally = Tally()
    let end = clock.now + .seconds(seconds)
    let started = clock.now
    await withTaskGroup(of: Void.self) { tasks in
        for _ in 0..<concurrency {
            tasks.addTask {
                while clock.now < end {
                    var request = HTTPClientRequest(url: url + "/api/public/insight/track")
                    request.method = .POST
                    request.headers.add(name: "Authorization", value: secret)
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(body)
                    if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(10)), response.status == .ok {
                        _ = try? await response.body.collect(upTo: 1024)
                        tally.accepted.add(perPost, ordering: .relaxed)
                    } else {
                        tally.rejected.add(1, ordering: .relaxed)
                    }
                }
            }
        }
    }
    let elapsed = Double((clock.now - started).components.seconds) + Double((clock.now - started).components.attoseconds) / 1e18
    print(JSONWriter.string(.object([
        "events_accepted": .integer(Int64(tally.accepted.load(ordering: .relaxed))),
        "failed_posts": .integer(Int64(tally.rejected.load(ordering: .relaxed))),
        "seconds": .number(round1(elapsed)),
        "events_per_second": .integer(Int64(Double(tally.accepted.load(ordering: .relaxed)) / elapsed)),
    ])))
}

final class Tally: Sendable {
    let accepted = Atomic<Int>(0)
    let rejected = Atomic<Int>(0)
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch arguments.first {
    case "insights": try await runInsights(Array(arguments.dropFirst()))
    case "fanout": try await runFanout(Array(arguments.dropFirst()))
    case "mesh-fanout": try await runMeshFanout(Array(arguments.dropFirst()))
    case "bare-http": try await runBareHTTP(Array(arguments.dropFirst()))
    case "idle-sockets": try await runIdleSockets(Array(arguments.dropFirst()))
    default: throw BenchError("usage: bench-client insights|fanout|mesh-fanout|idle-sockets|bare-http ARGS… (see Sources/BenchClient/main.swift)")
    }
} catch {
    FileHandle.standardError.write(Data("bench-client: \(error)\n".utf8))
    exit(1)
}
