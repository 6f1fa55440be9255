import AgentCore
import Foundation
import Persistence
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// `bench-db --tenant [--envs 100] [--flags-per-env 1000] [--segments-per-env 20]`: a large FeatBit tenant.
//  1. memory held per flag against its JSON size (anonymous RSS before and after the data set is loaded, the
//     source text freed), with and without the server `full` payloads written for every environment;
//  2. a single-flag patch applied at that size, against the same patches on a 10-flag environment;
//  3. cold start from a featbit.db holding it, and an exact round trip;
//  4. a full resync of everything (new versions of every item) while a reader thread keeps serving server SDK
//     requests from the store: how many it answered during the resync and its slowest one.

/// glibc's `malloc_trim` (not in the Glibc module).
@_silgen_name("malloc_trim") func mallocTrim(_ pad: Int) -> Int32

/// Anonymous resident memory of this process, in bytes, after returning freed memory to the system.
func anonymousRSS() -> Int {
    _ = mallocTrim(0)
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

func segmentItem(_ i: Int, env: String, updatedAt: Int64) -> DataItem {
    let included = (0..<20).map { "\"member-\(i)-\($0)\"" }.joined(separator: ",")
    let text = #"""
    {"id":"\#(String(format: "a0000000-0000-4000-8000-%012d", i))","envId":"\#(env)","name":"segment \#(i)",
     "description":"benchmark segment","included":[\#(included)],"excluded":["nobody-\#(i)"],
     "rules":[{"id":"sr1","name":"Staff","conditions":[{"property":"email","op":"EndsWith","value":"@example.com"}]}],
     "isArchived":false,"updatedAt":"\#(FeatBitTimestamp.iso8601(milliseconds: updatedAt))"}
    """#
    return try! DataItem(kind: .segment, json: try! JSONValue.parse(text))
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func tenantEnvironments(envs: Int, flagsPerEnv: Int, segmentsPerEnv: Int, updatedAt: Int64) -> [EnvironmentData] {
    (0..<envs).map { e in
        let env = envId(e)
        return EnvironmentData(
            envId: env, secrets: secrets(env),
            flags: (0..<flagsPerEnv).map { flag(e * flagsPerEnv + $0, env: env, updatedAt: updatedAt + Int64($0)) },
            segments: (0..<segmentsPerEnv).map { segmentItem(e * segmentsPerEnv + $0, env: env, updatedAt: updatedAt + Int64($0)) })
    }
}

func runTenant(arguments: [String], workDir: String) {
    let envs = Int(option("--envs", "100", in: arguments))!
    let perEnv = Int(option("--flags-per-env", "1000", in: arguments))!
    let segmentsPerEnv = Int(option("--segments-per-env", "20", in: arguments))!
    let clock = ContinuousClock()
    print("large tenant: \(envs) environments x \(perEnv) flags + \(segmentsPerEnv) segments")

    // 1. Memory.
    let before = anonymousRSS()
    let loadStart = clock.now
    let store = DataStore()
    store.apply(.replace(tenantEnvironments(envs: envs, flagsPerEnv: perEnv, segmentsPerEnv: segmentsPerEnv,
                                            updatedAt: 1_700_000_000_000)))
    let loadMs = ms(clock.now - loadStart)
    let held = anonymousRSS() - before
    let snapshot = store.snapshot
    let flagJSON = snapshot.environments.values.reduce(0) { $0 + $1.sortedFlags.reduce(0) { $0 + $1.encoded.count } }
    let segmentJSON = snapshot.environments.values.reduce(0) { $0 + $1.sortedSegments.reduce(0) { $0 + $1.encoded.count } }
    let itemCount = envs * (perEnv + segmentsPerEnv)
    print(String(format: "memory: %d items, JSON %.1f MB (flag %.0f B on average); held %.1f MB = %.2f x the JSON (%.0f B per item); built in %.0f ms",
                 itemCount, Double(flagJSON + segmentJSON) / 1e6, Double(flagJSON) / Double(envs * perEnv),
                 Double(held) / 1e6, Double(held) / Double(flagJSON + segmentJSON), Double(held) / Double(itemCount), loadMs))
    let payloadBefore = anonymousRSS()
    var payloadBytes = 0
    for env in snapshot.environments.values { payloadBytes += env.serverFullMessage.count }
    let withPayloads = anonymousRSS() - before
    print(String(format: "  with every environment's server full payload written (%.1f MB of payloads, +%.1f MB): %.2f x the JSON",
                 Double(payloadBytes) / 1e6, Double(anonymousRSS() - payloadBefore) / 1e6,
                 Double(withPayloads) / Double(flagJSON + segmentJSON)))

    let modelsBefore = anonymousRSS()
    let modelStart = clock.now
    var models = 0
    for env in snapshot.environments.values { for item in env.sortedFlags where item.flagModel != nil { models += 1 } }
    print(String(format: "  with every flag's evaluation model built too (what client SDKs of every environment cause; %d models in %.0f ms, +%.1f MB): %.2f x the JSON",
                 models, ms(clock.now - modelStart), Double(anonymousRSS() - modelsBefore) / 1e6,
                 Double(anonymousRSS() - before) / Double(flagJSON + segmentJSON)))

    // 2. Single-flag patches: at this size, and on a 10-flag environment.
    func patchLatencies(_ store: DataStore, envs: Int, perEnv: Int, count: Int) -> [Double] {
        var latencies: [Double] = []
        for n in 0..<count {
            let e = (n * 7919) % envs
            let env = envId(e)
            let change = Change.upsert([EnvironmentData(envId: env, secrets: nil,
                                                        flags: [flag(e * perEnv + (n * 31) % perEnv, env: env, updatedAt: 1_800_000_000_000 + Int64(n))],
                                                        segments: [])])
            let t0 = clock.now
            guard store.apply(change) != nil else { fatalError("patch not applied") }
            latencies.append(ms(clock.now - t0))
        }
        return latencies.sorted()
    }
    let large = patchLatencies(store, envs: envs, perEnv: perEnv, count: 2000)
    let small = DataStore()
    small.apply(.replace(tenantEnvironments(envs: 1, flagsPerEnv: 10, segmentsPerEnv: 2, updatedAt: 1_700_000_000_000)))
    let smallLatencies = patchLatencies(small, envs: 1, perEnv: 10, count: 2000)
    print(String(format: "single-flag patch applied (in memory): p50 %.3f ms, p99 %.3f ms, max %.3f ms at %d flags per environment; p50 %.3f ms, p99 %.3f ms at 10",
                 percentile(large, 0.5), percentile(large, 0.99), large.last ?? 0, perEnv,
                 percentile(smallLatencies, 0.5), percentile(smallLatencies, 0.99)))

    // 3. Cold start from featbit.db.
    let path = (workDir as NSString).appendingPathComponent("tenant.db")
    do {
        let (db, loaded) = open(path)
        let durable = DataStore(initial: loaded.snapshot(), journal: db)
        let t0 = clock.now
        durable.apply(.replace(tenantEnvironments(envs: envs, flagsPerEnv: perEnv, segmentsPerEnv: segmentsPerEnv,
                                                  updatedAt: 1_700_000_000_000)))
        print(String(format: "featbit.db: written in %.0f ms, %.1f MB", ms(clock.now - t0),
                     Double((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1e6))
        let t1 = clock.now
        let patches = patchLatencies(durable, envs: envs, perEnv: perEnv, count: 300)
        print(String(format: "  durable single-flag patches at that size: p50 %.2f ms, p99 %.2f ms (one fsync each; %.0f ms for 300)",
                     percentile(patches, 0.5), percentile(patches, 0.99), ms(clock.now - t1)))
        let expected = durable.snapshot
        db.close()
        var colds: [Double] = []
        for run in 1...3 {
            let t0 = clock.now
            let (db, loaded) = open(path)
            let ready = DataStore(initial: loaded.snapshot(), journal: db)
            colds.append(ms(clock.now - t0))
            let got = ready.snapshot
            let same = got.sequence == expected.sequence && got.environments.count == expected.environments.count
                && expected.environments.allSatisfy { id, env in
                    guard let other = got.environments[id] else { return false }
                    return other.digest == env.digest && other.sortedFlags.map(\.encoded) == env.sortedFlags.map(\.encoded)
                        && other.sortedSegments.map(\.encoded) == env.sortedSegments.map(\.encoded) && other.secrets == env.secrets
                }
            guard same else { fatalError("the data set read back from featbit.db differs") }
            print(String(format: "  cold start run %d: %.0f ms to a ready store of %d items (read back exactly)", run, colds.last!, itemCount))
            db.close()
        }
        print(String(format: "cold start median %.0f ms", colds.sorted()[colds.count / 2]))
    }

    // 4. A full resync while a reader serves.
    do {
        let replacement = tenantEnvironments(envs: envs, flagsPerEnv: perEnv, segmentsPerEnv: segmentsPerEnv,
                                             updatedAt: 1_900_000_000_000)
        let done = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let slowest = Atomic<Int>(0)
        let reader = Thread {
            var n = 0
            while !done.load(ordering: .relaxed) {
                let t0 = clock.now
                let env = store.snapshot.environments[envId(n % envs)]
                let answer = SDKPayload.serverLatestAllBody(timestamp: 0, in: env)
                _ = answer.count
                let micros = Int(ms(clock.now - t0) * 1000)
                if micros > slowest.load(ordering: .relaxed) { slowest.store(micros, ordering: .relaxed) }
                reads.add(1, ordering: .relaxed)
                n += 1
            }
        }
        reader.start()
        Thread.sleep(forTimeInterval: 0.2)
        let readsBefore = reads.load(ordering: .relaxed)
        slowest.store(0, ordering: .relaxed)
        let t0 = clock.now
        store.apply(.replace(replacement))
        let resyncMs = ms(clock.now - t0)
        let during = reads.load(ordering: .relaxed) - readsBefore
        let slowestDuring = slowest.load(ordering: .relaxed)
        done.store(true, ordering: .relaxed)
        print(String(format: "full resync of %d items applied in %.0f ms while a reader answered %d server latest-all requests (slowest %.2f ms)",
                     itemCount, resyncMs, during, Double(slowestDuring) / 1000))
    }
}
