// `bench-client fanout`: N FeatBit server SDKs on one agent's /streaming, for scripts/bench-fanout and
// scripts/bench-e2e (a benchmark tool, not a test). The sockets are RawFanoutClient's (RawFanout.swift).
import AgentCore
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// With FANOUT_MARKS=1, phase times on stderr in CLOCK_MONOTONIC seconds (to cut a `perf record -k CLOCK_MONOTONIC`).
func mark(_ phase: String) {
    guard ProcessInfo.processInfo.environment["FANOUT_MARKS"] == "1" else { return }
    let t = monotonicNanos()
    FileHandle.standardError.write(Data(String(format: "mark %@ %.6f\n", phase, Double(t) / 1e9).utf8))
}

/// Resident set size of a process in KiB.
func rssKiB(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }
    return 0
}

/// CPU time of all threads of a process in nanoseconds (`/proc/PID/task/*/schedstat`, nanosecond resolution).
func cpuNanos(_ pid: String) -> UInt64 {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    var total: UInt64 = 0
    for task in tasks {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/schedstat", encoding: .utf8),
           let first = text.split(separator: " ").first, let nanos = UInt64(first) {
            total += nanos
        }
    }
    return total
}

extension UInt64 {
    func subtractingSaturated(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((p / 100 * Double(sorted.count - 1)).rounded()))]
}

func trigger(method: String, url: String, auth: String, body: ByteBuffer, client: HTTPClient = .shared) async throws {
    var request = HTTPClientRequest(url: url)
    request.method = HTTPMethod(rawValue: method)
    if auth != "none" { request.headers.add(name: "Authorization", value: auth) }
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(body)
    let response = try await client.execute(request, timeout: .seconds(30))
    _ = try await response.body.collect(upTo: 1 << 20)
    guard (200..<300).contains(response.status.code) else {
        throw BenchError("\(method) \(url) answered \(response.status)")
    }
}

/// bench-client fanout HOST PORT SECRET N AGENT_PID METHOD URL AUTH CHANGE_BODY [FLOOR_CHANGE_BODY]
///
/// Prints one JSON line: the fields of scripts/lib/fanout_client.py, plus
/// - push_first_ms / push_spread_ms: first arrival after the trigger, and last minus first arrival;
/// - client_cpu_ms / agent_cpu_ms: CPU time each process used from the trigger to the last arrival;
/// - floor_ms (with FLOOR_CHANGE_BODY): the client's own time to take N pushes that are already waiting in its
///   sockets — the client's threads are held while a second change is made and the agent writes every push,
///   then released; floor_ms is release to last arrival. agent_alone_ms / agent_alone_cpu_ms: the wall and CPU time
///   from that second trigger until the agent is done with the change and its fan-out, while the client is idle
///   (its threads held) — what the agent needs when it has the machine to itself.
func runFanout(_ args: [String]) async throws {
    guard args.count == 9 || args.count == 10, let port = Int(args[1]), let n = Int(args[3]), let pid = Int32(args[4]) else {
        throw BenchError("usage: fanout HOST PORT SECRET N AGENT_PID METHOD URL AUTH CHANGE_BODY [FLOOR_CHANGE_BODY]")
    }
    let (host, secret, method, url, auth) = (args[0], args[2], args[5], args[6], args[7])
    let changeBody = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: args[8])))
    let floorBody = try args.count == 10 ? ByteBuffer(bytes: Data(contentsOf: URL(fileURLWithPath: args[9]))) : nil
    // One thread by default: the client then never takes more than one core from the agent it measures.
    let threads = Int(ProcessInfo.processInfo.environment["FANOUT_CLIENT_THREADS"] ?? "") ?? 1
    let concurrency = Int(ProcessInfo.processInfo.environment["FANOUT_CONNECT_CONCURRENCY"] ?? "") ?? 200

    let client = RawFanoutClient(target: .init(host: host, port: port, secret: secret), count: n, threads: threads,
                                 concurrency: concurrency)
    let rssBefore = rssKiB(pid)
    let connectStart = ContinuousClock.now
    client.start()
    defer { client.stop() }
    let connectDeadline = ContinuousClock.now + .seconds(120)
    while client.syncedCount < n {
        if let reason = client.failureReason { throw BenchError(reason) }
        guard ContinuousClock.now < connectDeadline else {
            throw BenchError("only \(client.syncedCount) of \(n) sockets connected and synced within 120 s")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    let connectSeconds = ContinuousClock.now - connectStart
    try await Task.sleep(for: .seconds(2))  // let the agent settle (receive buffers shrink, allocations return)
    let rssAfter = rssKiB(pid)

    // Warm the HTTP client up (its event loops, a pooled keep-alive connection to the trigger's server), so that the
    // trigger's own cost is a request on an open connection.
    if let origin = URL(string: url).flatMap({ URLComponents(url: $0, resolvingAgainstBaseURL: false) }) {
        var health = origin
        (health.path, health.query) = ("/health/liveness", nil)
        if let healthURL = health.string {
            for _ in 0..<3 {
                _ = try? await HTTPClient.shared.execute(HTTPClientRequest(url: healthURL), timeout: .seconds(5))
                    .body.collect(upTo: 1 << 16)
            }
        }
    }

    // The measured push.
    let push = RawRound(count: n)
    client.startRound(push)
    try await Task.sleep(for: .milliseconds(200))
    let clientPid = String(getpid())
    let (agentCPU0, clientCPU0) = (cpuNanos(String(pid)), cpuNanos(clientPid))
    let t0 = monotonicNanos()
    mark("push-start")
    try await trigger(method: method, url: url, auth: auth, body: changeBody)
    let triggerNanos = monotonicNanos() - t0
    try await push.waitAll(seconds: 60)
    // Saturating: a thread that exited in between takes its time out of the sum.
    let (agentCPU, clientCPU) = (cpuNanos(String(pid)).subtractingSaturated(agentCPU0),
                                 cpuNanos(clientPid).subtractingSaturated(clientCPU0))
    mark("push-end")
    if let reason = client.failureReason { throw BenchError(reason) }
    let arrivals = push.times.map { Double(Int64($0) - Int64(t0)) / 1e6 }.sorted()

    // The floor: hold every client thread, make a second change, let the agent write all pushes, release.
    var floorMillis: Double?
    var floorAgentCPU: Double?
    var agentAloneMillis: Double?
    if let floorBody {
        try await Task.sleep(for: .milliseconds(500))
        let floor = RawRound(count: n)
        client.startRound(floor)
        try await client.hold()
        // Trigger, and sample the agent's CPU time every millisecond until it has been idle for 100 ms: every push
        // is then in the client's socket buffers, and the last busy sample is when the agent finished on its own.
        let agentTask = String(pid)
        let floorAgentCPU0 = cpuNanos(agentTask)
        let floorStart = monotonicNanos()
        let answered = Atomic<Bool>(false)
        let triggered = Task {
            defer { answered.store(true, ordering: .releasing) }
            try await trigger(method: method, url: url, auth: auth, body: floorBody)
        }
        var previous = floorAgentCPU0
        var previousSample = floorStart
        var lastBusy = floorStart
        while !answered.load(ordering: .acquiring) || monotonicNanos() - lastBusy < 100_000_000 {
            try await Task.sleep(for: .milliseconds(1))
            // The sum over the agent's threads drops when one of them exits: never count backwards.
            let (now, sample) = (max(previous, cpuNanos(agentTask)), monotonicNanos())
            // Busy: more than a quarter of a core since the last sample.
            if now - previous > (sample - previousSample) / 4 { lastBusy = sample }
            (previous, previousSample) = (now, sample)
        }
        try await triggered.value
        floorAgentCPU = Double(previous - floorAgentCPU0) / 1e6
        agentAloneMillis = Double(lastBusy - floorStart) / 1e6
        let release = monotonicNanos()
        mark("floor-release")
        client.release()
        try await floor.waitAll(seconds: 60)
        mark("floor-end")
        floorMillis = Double(Int64(floor.times.max()!) - Int64(release)) / 1e6
    }

    func ms(_ x: Double) -> String { String(format: "%.1f", x) }
    var fields: [(String, String)] = [
        ("connections", "\(n)"),
        ("connect_seconds", String(format: "%.2f", Double(connectSeconds.components.seconds) + Double(connectSeconds.components.attoseconds) / 1e18)),
        ("agent_rss_before_kib", "\(rssBefore)"), ("agent_rss_after_kib", "\(rssAfter)"),
        ("rss_per_connection_kib", String(format: "%.2f", Double(rssAfter - rssBefore) / Double(max(n, 1)))),
        ("push_p50_ms", ms(percentile(arrivals, 50))), ("push_p99_ms", ms(percentile(arrivals, 99))),
        ("push_max_ms", ms(arrivals.last!)),
        ("push_first_ms", ms(arrivals.first!)), ("push_spread_ms", ms(arrivals.last! - arrivals.first!)),
        ("trigger_ms", ms(Double(triggerNanos) / 1e6)),
        ("agent_cpu_ms", ms(Double(agentCPU) / 1e6)), ("client_cpu_ms", ms(Double(clientCPU) / 1e6)),
        ("client_threads", "\(threads)"),
    ]
    if let floorMillis, let floorAgentCPU {
        fields.append(("floor_ms", ms(floorMillis)))
        fields.append(("agent_alone_cpu_ms", ms(floorAgentCPU)))
    }
    if let agentAloneMillis { fields.append(("agent_alone_ms", ms(agentAloneMillis))) }
    print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}
