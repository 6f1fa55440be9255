import AgentCore
import Foundation
import Logging
import Persistence

// featbit.db benchmark:
//  1. patches applied per second with durability on (WAL, synchronous=FULL): single-item upserts through
//     DataStore + FeatBitDatabase, each committed (fsync) before it is published;
//  2. cold start: from a featbit.db holding 10,000 flags across 50 environments to a ready DataStore snapshot
//     (open + integrity/quick_check + load + parse + build snapshots).
//
// Usage: bench-db [--dir DIR] [--patches N] [--flags N] [--envs N] [--runs N] [--keep]
//        bench-db --tenant [--dir DIR] [--envs 100] [--flags-per-env 1000] [--segments-per-env 20]   (Tenant.swift)
// DIR defaults to a fresh directory under the system temp dir (so it measures that filesystem's fsync).

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, _ fallback: String, in arguments: [String] = arguments) -> String {
    guard let index = arguments.firstIndex(of: name), arguments.index(after: index) < arguments.endIndex else {
        return fallback
    }
    return arguments[arguments.index(after: index)]
}

let baseDir = option("--dir", FileManager.default.temporaryDirectory.path)
let patchCount = Int(option("--patches", "2000"))!
let flagTotal = Int(option("--flags", "10000"))!
let envCount = Int(option("--envs", "50"))!
let runs = Int(option("--runs", "5"))!

let logger: Logger = {
    var logger = Logger(label: "bench-db")
    logger.logLevel = .warning
    return logger
}()

let workDir = (baseDir as NSString).appendingPathComponent("featbit-bench-db-\(UUID().uuidString.prefix(8))")
try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
let keep = arguments.contains("--keep")
defer { if !keep { try? FileManager.default.removeItem(atPath: workDir) } else { print("kept \(workDir)") } }

func envId(_ n: Int) -> String { String(format: "e0000000-0000-4000-8000-%012d", n) }

func secrets(_ env: String) -> [SecretRecord] {
    let tail = SecretCodec.encode(UUID(uuidString: env)!)
    return [
        SecretRecord(type: .server, projectKey: "bench", envId: env, envKey: "env", value: String(repeating: "s", count: 22) + tail),
        SecretRecord(type: .client, projectKey: "bench", envId: env, envKey: "env", value: String(repeating: "c", count: 22) + tail),
    ]
}

/// A realistic flag (~1.3 KB of JSON): targets, two rules, a percentage fallthrough.
func flag(_ i: Int, env: String, updatedAt: Int64) -> DataItem {
    let targets = (0..<10).map { "\"target-\(i)-\($0)\"" }.joined(separator: ",")
    let text = #"""
    {"id":"\#(String(format: "f0000000-0000-4000-8000-%012d", i))","envId":"\#(env)","name":"flag \#(i)",
     "description":"benchmark flag","key":"flag-\#(i)","variationType":"boolean",
     "variations":[{"id":"v-true","name":"True","value":"true"},{"id":"v-false","name":"False","value":"false"}],
     "targetUsers":[{"keyIds":[\#(targets)],"variationId":"v-true"}],
     "rules":[
       {"id":"r1","name":"Countries","dispatchKey":null,"includedInExpt":true,
        "conditions":[{"property":"country","op":"IsOneOf","value":"[\"cn\",\"us\",\"jp\"]"},{"property":"age","op":"BiggerThan","value":"30"}],
        "variations":[{"id":"v-true","rollout":[0,0.5],"exptRollout":0.5},{"id":"v-false","rollout":[0.5,1],"exptRollout":0.5}]},
       {"id":"r2","name":"Emails","dispatchKey":"email","includedInExpt":false,
        "conditions":[{"property":"email","op":"MatchRegex","value":"^qa-[0-9]+@example\\.com$"}],
        "variations":[{"id":"v-true","rollout":[0,1],"exptRollout":1}]}],
     "isEnabled":true,"disabledVariationId":"v-false",
     "fallthrough":{"dispatchKey":"keyId","includedInExpt":true,
       "variations":[{"id":"v-true","rollout":[0,0.1],"exptRollout":0.3},{"id":"v-false","rollout":[0.1,1],"exptRollout":0.3}]},
     "exptIncludeAllTargets":false,"tags":["bench"],"updatedAt":"\#(FeatBitTimestamp.iso8601(milliseconds: updatedAt))","isArchived":false}
    """#
    return try! DataItem(kind: .flag, json: try! JSONValue.parse(text))
}

func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

func open(_ path: String) -> (FeatBitDatabase, LoadedState) {
    guard case .ready(let db, let loaded) = FeatBitDatabase.open(path: path, logger: logger) else {
        fatalError("cannot open \(path)")
    }
    return (db, loaded)
}

let clock = ContinuousClock()
print("featbit.db benchmark (dir: \(baseDir))")


if arguments.contains("--tenant") {
    runTenant(arguments: arguments, workDir: workDir)
} else {
    runDurabilityBenchmarks()
}

func runDurabilityBenchmarks() {
// 1. Durable patches.
do {
    let path = (workDir as NSString).appendingPathComponent("patches.db")
    let (db, loaded) = open(path)
    let store = DataStore(initial: loaded.snapshot(), journal: db)
    let env = envId(0)
    store.apply(.replace([EnvironmentData(envId: env, secrets: secrets(env),
                                          flags: (0..<200).map { flag($0, env: env, updatedAt: 1_700_000_000_000) },
                                          segments: [])]))
    // Prebuilt patches so that only apply + commit is timed.
    let patches = (0..<patchCount).map { n in
        Change.upsert([EnvironmentData(envId: env, secrets: nil,
                                       flags: [flag(n % 200, env: env, updatedAt: 1_700_000_001_000 + Int64(n))],
                                       segments: [])])
    }
    var latencies: [Double] = []
    latencies.reserveCapacity(patchCount)
    let started = clock.now
    for patch in patches {
        let t0 = clock.now
        guard store.apply(patch) != nil else { fatalError("patch not applied") }
        latencies.append(ms(clock.now - t0))
    }
    let elapsed = clock.now - started
    guard db.health.isHealthy, db.storedSequence == store.snapshot.sequence else { fatalError("db not in sync") }
    latencies.sort()
    let rate = Double(patchCount) / (ms(elapsed) / 1000)
    print(String(format: "durable patches: %d single-flag upserts in %.0f ms = %.0f patches/s (apply+commit p50 %.2f ms, p99 %.2f ms)",
                 patchCount, ms(elapsed), rate, latencies[patchCount / 2], latencies[patchCount * 99 / 100]))

    // The same without a journal, for scale.
    let memory = DataStore()
    memory.apply(.replace([EnvironmentData(envId: env, secrets: secrets(env), flags: (0..<200).map { flag($0, env: env, updatedAt: 1_700_000_000_000) }, segments: [])]))
    let memStart = clock.now
    for patch in patches { memory.apply(patch) }
    let memRate = Double(patchCount) / (ms(clock.now - memStart) / 1000)
    print(String(format: "  (same patches in memory only, no db: %.0f patches/s)", memRate))
    db.close()
}

// 2. Cold start.
do {
    let path = (workDir as NSString).appendingPathComponent("cold.db")
    let perEnv = flagTotal / envCount
    let (db, loaded) = open(path)
    let store = DataStore(initial: loaded.snapshot(), journal: db)
    let environments = (0..<envCount).map { e in
        let env = envId(e)
        return EnvironmentData(envId: env, secrets: secrets(env),
                               flags: (0..<perEnv).map { flag(e * perEnv + $0, env: env, updatedAt: 1_700_000_000_000 + Int64($0)) },
                               segments: [])
    }
    let writeStart = clock.now
    store.apply(.replace(environments))
    let writeMs = ms(clock.now - writeStart)
    let expected = store.snapshot
    db.close()
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    print(String(format: "cold start: %d flags in %d environments, db %.1f MB (initial replace written in %.0f ms)",
                 perEnv * envCount, envCount, Double(size) / 1_048_576, writeMs))

    // For comparison: parsing the same JSON with the agent's general parser (JSONDecoder), one thread. The loader
    // uses a byte reader instead, spread over all cores.
    let encoded = expected.environments.values.flatMap { $0.sortedFlags.map(\.encoded) }
    let p0 = clock.now
    let decoder = JSONDecoder()
    for bytes in encoded {
        _ = try! DataItem(kind: .flag, json: try! decoder.decode(JSONValue.self, from: Data(bytes)))
    }
    print(String(format: "  (for comparison: JSONValue.parse of the %d flags alone, one thread: %.0f ms)", encoded.count, ms(clock.now - p0)))

    var totals: [Double] = []
    for run in 1...runs {
        let t0 = clock.now
        let (db, loaded) = open(path)
        let t1 = clock.now
        let ready = DataStore(initial: loaded.snapshot(), journal: db)
        let t2 = clock.now
        let snapshot = ready.snapshot
        guard snapshot.sequence == expected.sequence, snapshot.environments.count == envCount,
              snapshot.environments.values.reduce(0, { $0 + $1.flags.count }) == perEnv * envCount,
              snapshot.environments[envId(7)]?.serverFullMessage == expected.environments[envId(7)]?.serverFullMessage
        else { fatalError("loaded snapshot differs") }
        totals.append(ms(t2 - t0))
        print(String(format: "  run %d: %.0f ms to a ready DataStore (open+check+load+parse %.0f ms, snapshots %.0f ms)",
                     run, ms(t2 - t0), ms(t1 - t0), ms(t2 - t1)))
        db.close()
    }
    totals.sort()
    print(String(format: "cold start median %.0f ms, best %.0f ms", totals[totals.count / 2], totals[0]))
}
}
