import AgentCore
import Foundation

// Evaluation micro-benchmark (single thread = one core):
//  1. evaluations per second over a synthetic 200-flag environment (targets, rules with IsOneOf / numeric / regex /
//     segment conditions, percentage splits with experiment dispatch) and per kind of flag;
//  2. the time to build a full client data-sync payload of those 200 flags for one user, from cached models and
//     from raw items (models parsed on the fly).

let envId = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
let flagCount = 200
let segmentCount = 5

func segmentId(_ i: Int) -> String { String(format: "00000000-0000-4000-8000-%012d", i) }

func segmentJSON(_ i: Int) -> String {
    let included = (0..<100).map { "\"member-\(i)-\($0)\"" }.joined(separator: ",")
    return #"""
    {"id":"\#(segmentId(i))","envId":"\#(envId)","name":"segment-\#(i)","description":"","included":[\#(included)],
     "excluded":["user-1"],"rules":[{"id":"r","name":"Rule 1","conditions":[
       {"property":"age","op":"LessEqualThan","value":"\#(20 + i * 5)"},
       {"property":"plan","op":"IsOneOf","value":"[\"gold\",\"platinum\"]"}]}],
     "isArchived":false,"updatedAt":"2023-01-28T05:54:43.583Z"}
    """#
}

func flagJSON(_ i: Int) -> String {
    let targets = (0..<10).map { "\"target-\(i)-\($0)\"" }.joined(separator: ",")
    let countries = ["cn", "us", "jp", "gb", "es", "fr", "de", "it", "br", "in"].shuffled().prefix(4)
        .map { "\\\"\($0)\\\"" }.joined(separator: ",")
    let third: String
    switch i % 4 {
    case 0: third = #"{"property":"email","op":"MatchRegex","value":"^qa-[0-9]+@example\\.com$"}"#
    case 1: third = #"{"property":"User is in segment","op":null,"value":"[\"\#(segmentId(i % segmentCount))\"]"}"#
    case 2: third = #"{"property":"version","op":"BiggerEqualThan","value":"3.5"}"#
    default: third = #"{"property":"name","op":"StartsWith","value":"internal"}"#
    }
    let seconds = 10 + i % 50
    return #"""
    {"id":"\#(UUID().uuidString.lowercased())","envId":"\#(envId)","name":"flag \#(i)","description":"",
     "key":"flag-\#(i)","variationType":"boolean",
     "variations":[{"id":"v-true-\#(i)","name":"True","value":"true"},{"id":"v-false-\#(i)","name":"False","value":"false"}],
     "targetUsers":[{"keyIds":[\#(targets)],"variationId":"v-true-\#(i)"}],
     "rules":[
       {"id":"r1","name":"Countries","dispatchKey":null,"includedInExpt":true,
        "conditions":[{"property":"country","op":"IsOneOf","value":"[\#(countries)]"},{"property":"age","op":"BiggerThan","value":"30"}],
        "variations":[{"id":"v-true-\#(i)","rollout":[0,0.5],"exptRollout":0.5},{"id":"v-false-\#(i)","rollout":[0.5,1],"exptRollout":0.5}]},
       {"id":"r2","name":"Third","dispatchKey":"email","includedInExpt":false,
        "conditions":[\#(third)],
        "variations":[{"id":"v-true-\#(i)","rollout":[0,1],"exptRollout":1}]}],
     "isEnabled":\#(i % 20 != 19),"disabledVariationId":"v-false-\#(i)",
     "fallthrough":{"dispatchKey":"keyId","includedInExpt":true,
       "variations":[{"id":"v-true-\#(i)","rollout":[0,0.1],"exptRollout":0.3},{"id":"v-false-\#(i)","rollout":[0.1,1],"exptRollout":0.3}]},
     "exptIncludeAllTargets":false,"tags":["bench"],"updatedAt":"2023-01-28T05:\#(seconds):05.421Z","isArchived":false}
    """#
}

func parse(_ text: String) -> JSONValue {
    do { return try JSONValue.parse(text) } catch { fatalError("\(error)") }
}

func runBenchmark() {
    let flagItems = (0..<flagCount).map { try! DataItem(kind: .flag, json: parse(flagJSON($0))) }
    let segmentItems = (0..<segmentCount).map { try! DataItem(kind: .segment, json: parse(segmentJSON($0))) }
    let env = EnvironmentSnapshot(
        envId: envId, secrets: [],
        flags: Dictionary(uniqueKeysWithValues: flagItems.map { ($0.id, $0) }),
        segments: Dictionary(uniqueKeysWithValues: segmentItems.map { ($0.id, $0) }))

    let clock = ContinuousClock()
    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    let buildStart = clock.now
    let flagModels = env.sortedFlags.map { FlagModel(item: $0) }
    let segmentModels = Dictionary(uniqueKeysWithValues: env.segments.values.map { ($0.id, SegmentModel(item: $0)) })
    let buildTime = seconds(clock.now - buildStart)

    let countries = ["cn", "us", "jp", "gb", "es", "fr", "de", "it", "br", "in"]
    let plans = ["free", "gold", "platinum", "team"]
    let users: [EndUser] = (0..<1000).map { i in
        EndUser(keyId: i % 50 == 0 ? "member-\(i % segmentCount)-\(i % 100)" : "user-\(i)-\(UUID().uuidString.lowercased())",
                name: i % 7 == 0 ? "internal-\(i)" : "User \(i)",
                properties: [
                    ("email", i % 3 == 0 ? "qa-\(i)@example.com" : "user\(i)@mail.test"),
                    ("country", countries[i % countries.count]),
                    ("age", String(18 + i % 50)),
                    ("plan", plans[i % plans.count]),
                    ("version", "\(i % 5).\(i % 10)"),
                ])!
    }

    var checksum = 0
    func consume(_ r: EvaluationResult) {
        checksum &+= (r.variationId?.utf8.count ?? 0) &+ r.matchReason.utf8.count &+ (r.sendToExperiment ? 1 : 0)
    }

    /// Evaluations per second for `flags` over all users, repeated until ~`budget` seconds have passed.
    func rate(_ flags: [FlagModel], budget: Double = 1.5) -> (perSecond: Double, nanos: Double) {
        var evaluations = 0
        let start = clock.now
        var elapsed = 0.0
        repeat {
            for user in users {
                for flag in flags {
                    consume(Evaluator.evaluate(flag: flag, user: user, segments: segmentModels))
                }
            }
            evaluations += users.count * flags.count
            elapsed = seconds(clock.now - start)
        } while elapsed < budget
        return (Double(evaluations) / elapsed, elapsed / Double(evaluations) * 1e9)
    }

    func fmt(_ v: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", v) }

    // warm-up
    _ = rate(Array(flagModels.prefix(20)), budget: 0.2)

    print("FeatBit evaluator benchmark (single thread, release build)")
    print("  models: \(flagCount) flags + \(segmentCount) segments parsed in \(fmt(buildTime * 1000, 2)) ms")
    let mixed = rate(flagModels)
    print("  mixed 200-flag set:  \(fmt(mixed.perSecond)) evaluations/s  (\(fmt(mixed.nanos)) ns each)")

    let simpleFallthrough = FlagModel(json: parse(#"""
    {"id":"x","key":"returns-true","variationType":"boolean","isEnabled":true,"exptIncludeAllTargets":true,
     "variations":[{"id":"t","value":"true"},{"id":"f","value":"false"}],"targetUsers":[],"rules":[],
     "fallthrough":{"dispatchKey":null,"includedInExpt":true,"variations":[{"id":"t","rollout":[0,1],"exptRollout":1}]},
     "updatedAt":"2023-01-28T02:04:55.616Z","isArchived":false}
    """#))
    let split = FlagModel(json: parse(#"""
    {"id":"x","key":"return-10p-true","variationType":"boolean","isEnabled":true,"exptIncludeAllTargets":false,
     "variations":[{"id":"t","value":"true"},{"id":"f","value":"false"}],"targetUsers":[],"rules":[],
     "fallthrough":{"dispatchKey":"keyId","includedInExpt":true,"variations":[{"id":"t","rollout":[0,0.1],"exptRollout":0.5},{"id":"f","rollout":[0.1,1],"exptRollout":0.5}]},
     "updatedAt":"2023-01-28T02:04:55.616Z","isArchived":false}
    """#))
    let everyone = rate([simpleFallthrough], budget: 1)
    print("  100% fallthrough:    \(fmt(everyone.perSecond)) evaluations/s  (\(fmt(everyone.nanos)) ns each)")
    let splitRate = rate([split], budget: 1)
    print("  10/90 split + expt:  \(fmt(splitRate.perSecond)) evaluations/s  (\(fmt(splitRate.nanos)) ns each, 2 MD5)")

    // Full client payload of 200 flags for one user.
    let user = users[3]
    func payloadTime(iterations: Int, _ body: () -> [UInt8]) -> (millis: Double, bytes: Int) {
        var size = 0
        let start = clock.now
        for _ in 0..<iterations { size = body().count }
        return (seconds(clock.now - start) / Double(iterations) * 1000, size)
    }
    let cached = payloadTime(iterations: 2000) {
        ClientPayload.dataSync(eventType: .full, user: user, flags: flagModels, segments: { segmentModels[$0] })
    }
    print("  full client payload, 200 flags, cached models:  \(fmt(cached.millis, 3)) ms  (\(cached.bytes) bytes)")
    let uncached = payloadTime(iterations: 50) {
        ClientPayload.dataSync(eventType: .full, user: user, flags: env.sortedFlags.map { FlagModel(item: $0) },
                               segments: { id in env.segments[id].map { SegmentModel(item: $0) } })
    }
    print("  full client payload, 200 flags, parsing models: \(fmt(uncached.millis, 3)) ms")
    print("  (checksum \(checksum))")
}

runBenchmark()
