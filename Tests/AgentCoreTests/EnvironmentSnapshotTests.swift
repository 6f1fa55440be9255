import Testing
@testable import AgentCore

/// A change patched into an environment (`upserting`) must give exactly what building the environment from all its
/// items gives: the store relies on it for every upstream patch.
@Suite struct EnvironmentSnapshotTests {
    /// A small deterministic generator (SplitMix64), so a failure names its seed.
    struct Seeded {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
    }

    static func expectSame(_ patched: EnvironmentSnapshot, _ built: EnvironmentSnapshot, seed: UInt64, step: Int) {
        let context = Comment(rawValue: "seed \(seed) step \(step)")
        #expect(patched.sortedFlags.map(\.id) == built.sortedFlags.map(\.id), context)
        #expect(patched.sortedSegments.map(\.id) == built.sortedSegments.map(\.id), context)
        #expect(patched.version == built.version, context)
        #expect(patched.digest == built.digest, context)
        #expect(patched.serverFullMessage == built.serverFullMessage, context)
        #expect(Set(patched.segmentModels.keys) == Set(built.segmentModels.keys), context)
        #expect(patched.flags.count == built.flags.count && patched.segments.count == built.segments.count, context)
        let keys = Set(built.flags.values.compactMap(\.key)).union((0..<12).map { "k\($0)" })
        for key in keys {
            #expect(patched.flagModel(key: key)?.id == built.flagModel(key: key)?.id, "key \(key), \(context)")
        }
    }

    @Test(arguments: [1, 2, 3, 42, 1234] as [UInt64])
    func patchingEqualsRebuilding(seed: UInt64) {
        var random = Seeded(state: seed)
        var snapshot = EnvironmentSnapshot(envId: Fixtures.envA, secrets: Fixtures.secrets(), flags: [:], segments: [:])
        var flags: [String: DataItem] = [:]
        var segments: [String: DataItem] = [:]
        for step in 0..<200 {
            // 1-3 items per change, ids from a small pool so most changes replace an item, timestamps that tie.
            var changedFlags: [String: DataItem] = [:]
            var changedSegments: [String: DataItem] = [:]
            for _ in 0..<(1 + random.next(3)) {
                let updatedAt = Int64(1000 + random.next(50))
                if random.next(4) == 0 {
                    let item = Fixtures.segment("s\(random.next(10))", updatedAt: updatedAt)
                    changedSegments[item.id] = item
                } else {
                    // Keys that change, collide (in some seeds) and archived duplicates: the by-key index must agree.
                    var extra: [String: JSONValue] = [:]
                    if seed % 2 == 1 || random.next(3) == 0 { extra["key"] = .string("k\(random.next(seed % 2 == 1 ? 12 : 60))") }
                    if random.next(5) == 0 { extra["isArchived"] = .bool(true) }
                    let item = Fixtures.flag("f\(random.next(40))", updatedAt: updatedAt, extra: extra)
                    changedFlags[item.id] = item
                }
            }
            snapshot = snapshot.upserting(flags: Array(changedFlags.values), segments: Array(changedSegments.values))
            flags.merge(changedFlags) { $1 }
            segments.merge(changedSegments) { $1 }
            let built = EnvironmentSnapshot(envId: Fixtures.envA, secrets: Fixtures.secrets(), flags: flags, segments: segments)
            Self.expectSame(snapshot, built, seed: seed, step: step)
        }
    }

    @Test func theDigestSeesAMissedDeletionAndSecrets() {
        let one = Fixtures.flag("f1", updatedAt: 1000)
        let two = Fixtures.flag("f2", updatedAt: 900)
        let both = EnvironmentSnapshot(envId: Fixtures.envA, secrets: Fixtures.secrets(), flags: ["f1": one, "f2": two], segments: [:])
        let onlyOne = EnvironmentSnapshot(envId: Fixtures.envA, secrets: Fixtures.secrets(), flags: ["f1": one], segments: [:])
        #expect(both.version == onlyOne.version)
        #expect(both.digest != onlyOne.digest)
        let noSecrets = EnvironmentSnapshot(envId: Fixtures.envA, secrets: [], flags: ["f1": one], segments: [:])
        #expect(noSecrets.digest != onlyOne.digest)
        #expect(onlyOne.digest.count == 8)
    }

    @Test func theFullMessageIsWrittenOnceAndSharedByCopies() {
        let env = EnvironmentSnapshot(envId: Fixtures.envA, secrets: [], flags: ["f1": Fixtures.flag("f1", updatedAt: 1)], segments: [:])
        let copy = env
        let first = env.serverFullMessage
        #expect(copy.serverFullMessage == first)
        #expect(String(decoding: first, as: UTF8.self).hasPrefix(#"{"messageType":"data-sync","data":{"eventType":"full","featureFlags":[{"#))
        let patched = env.upserting(flags: [Fixtures.flag("f1", updatedAt: 2)], segments: [])
        #expect(patched.serverFullMessage != first)
    }
}
