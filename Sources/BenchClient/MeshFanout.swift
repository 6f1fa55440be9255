// `bench-client mesh-fanout`: N FeatBit server SDKs on each node of a mesh, and the time from one change at the
// FeatBit server (simulator) to the last SDK on every node, for scripts/bench-cluster (a benchmark tool, not a test).
import Foundation
import NIOCore

/// bench-client mesh-fanout HOST SECRET N ROUNDS METHOD URL AUTH CHANGE_BODY PORT [PORT…]
///
/// Connects N raw server SDKs to each node (one epoll thread per node), then ROUNDS times makes the change (an HTTP
/// request to the simulator, e.g. `PUT /control/flags?touch=true`) and waits for its push on every socket. Prints one
/// JSON line: `last_ms` (p50/p99/max over rounds of the last arrival on any node), and per node `last`/`first` p50/p99.
func runMeshFanout(_ args: [String]) async throws {
    guard args.count >= 9, let n = Int(args[2]), let rounds = Int(args[3]) else {
        throw BenchError("usage: mesh-fanout HOST SECRET N ROUNDS METHOD URL AUTH CHANGE_BODY PORT [PORT…]")
    }
    let (host, secret, method, url, auth) = (args[0], args[1], args[4], args[5], args[6])
    let body = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: args[7])))
    let ports = try args[8...].map { text -> Int in
        guard let port = Int(text) else { throw BenchError("not a port: \(text)") }
        return port
    }
    let clients = ports.map {
        RawFanoutClient(target: .init(host: host, port: $0, secret: secret), count: n, threads: 1, concurrency: 200)
    }
    for client in clients { client.start() }
    defer { for client in clients { client.stop() } }
    let deadline = ContinuousClock.now + .seconds(120)
    while clients.contains(where: { $0.syncedCount < n }) {
        if let reason = clients.compactMap(\.failureReason).first { throw BenchError(reason) }
        guard ContinuousClock.now < deadline else { throw BenchError("the SDKs did not all connect within 120 s") }
        try await Task.sleep(for: .milliseconds(5))
    }
    try await Task.sleep(for: .seconds(2))
    var lastAll: [Double] = []
    var last = Array(repeating: [Double](), count: ports.count)
    var first = Array(repeating: [Double](), count: ports.count)
    for _ in 0..<rounds {
        let pushes = clients.map { _ in RawRound(count: n) }
        for (client, push) in zip(clients, pushes) { client.startRound(push) }
        try await Task.sleep(for: .milliseconds(100))
        let t0 = monotonicNanos()
        try await trigger(method: method, url: url, auth: auth, body: body)
        for push in pushes { try await push.waitAll(seconds: 30) }
        var worst = 0.0
        for (index, push) in pushes.enumerated() {
            let times = push.times.map { Double(Int64($0) - Int64(t0)) / 1e6 }
            last[index].append(times.max() ?? 0)
            first[index].append(times.min() ?? 0)
            worst = max(worst, times.max() ?? 0)
        }
        lastAll.append(worst)
        try await Task.sleep(for: .milliseconds(150))
    }
    func stats(_ values: [Double]) -> [String: Double] {
        let sorted = values.sorted()
        return ["p50": round1(percentile(sorted, 50)), "p99": round1(percentile(sorted, 99)), "max": round1(sorted.last ?? 0)]
    }
    var nodes: [[String: Any]] = []
    for (index, port) in ports.enumerated() {
        nodes.append(["port": port, "last": stats(last[index]), "first": stats(first[index])])
    }
    let result: [String: Any] = ["sdks_per_node": n, "rounds": rounds, "last_ms": stats(lastAll), "nodes": nodes]
    let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
}
