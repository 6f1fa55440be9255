import AgentCore
import Cluster
import Foundation
import Testing

/// The vote record and the replication payloads: what a node writes, what a follower applies.
@Suite struct MeshDataTests {
    static func environments(minute: Int) throws -> [EnvironmentData] {
        let text = DemoDataSet.json.replacingOccurrences(
            of: "2026-11-01T09:00:00.000Z", with: String(format: "2026-11-01T09:%02d:00.000Z", minute))
        return try DataSetParser.parseBootstrap(try JSONValue.parse(Array(text.utf8)))
    }

    @Test func theVoteRecordSurvivesARoundTripAndABadFileReadsAsMissing() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vote-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = MeshVoteRecord.path(forDatabase: "\(directory)/featbit.db")
        #expect(MeshVoteRecord.load(path: path) == .missing)
        try MeshVoteRecord(term: 7, votedFor: "n2").write(to: path)
        #expect(MeshVoteRecord.load(path: path) == .found(MeshVoteRecord(term: 7, votedFor: "n2")))
        try MeshVoteRecord(term: 8, votedFor: nil).write(to: path)
        #expect(MeshVoteRecord.load(path: path) == .found(MeshVoteRecord(term: 8, votedFor: nil)))
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"), "the temporary file is renamed, not left behind")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path))
        guard case .unreadable = MeshVoteRecord.load(path: path) else {
            Issue.record("a corrupt record was read as a vote")
            return
        }
        #expect(throws: MeshVoteRecord.WriteError.self) {
            try MeshVoteRecord(term: 1, votedFor: "n1").write(to: "\(directory)/missing-dir/featbit.db.vote")
        }
    }

    /// A leader of another version (or a corrupted link) could replicate an item this node finds invalid: it is not
    /// applied, the version held keeps serving, the rest of the message applies, and the refusal is shown.
    @Test func aFollowerRefusesAnInvalidReplicatedItemAndAppliesTheRest() throws {
        let follower = DataStore()
        follower.apply(.replace(try Self.environments(minute: 1)))
        let held = try #require(follower.snapshot.environments.values.first)
        let brokenId = try #require(held.sortedFlags.first?.id)
        let otherId = try #require(held.sortedFlags.last?.id)
        #expect(brokenId != otherId)
        // The leader's next snapshot: every item newer, one flag's variations broken.
        var payload = try JSONValue.parse(MeshData.snapshotPayload(try {
            let leader = DataStore()
            leader.apply(.replace(try Self.environments(minute: 2)))
            return leader.snapshot
        }()))
        guard case .object(var root) = payload, case .array(var items) = root["items"], case .object(var item) = items[0],
              case .array(var flags) = item["featureFlags"] else { Issue.record("payload shape"); return }
        let index = try #require(flags.firstIndex { $0["id"]?.stringValue == brokenId })
        guard case .object(var flag) = flags[index] else { return }
        flag["variations"] = .string("oops")
        flags[index] = .object(flag)
        item["featureFlags"] = .array(flags)
        items[0] = .object(item)
        root["items"] = .array(items)
        payload = .object(root)

        for isSnapshot in [true, false] {
            let store = DataStore()
            store.apply(.replace(try Self.environments(minute: 1)))
            let (change, parsed) = try MeshData.change(from: JSONWriter.bytes(payload), isSnapshot: isSnapshot)
            #expect(parsed.refused.map(\.id) == [brokenId])
            #expect(parsed.refused.first?.error.description == "items[0].featureFlags[\(index)].variations: expected a list, got a string")
            store.apply(change)
            let env = try #require(store.snapshot.environments[held.envId])
            #expect(env.flags[brokenId]?.encoded == held.flags[brokenId]?.encoded, "the held version keeps serving")
            #expect(env.flags[otherId]?.updatedAt != held.flags[otherId]?.updatedAt, "the rest applied")

            let status = AgentStatusBoard(mode: .offline)
            RefusedItems(status: status).record(source: "peer n1", parsed, replacesAll: isSnapshot)
            #expect(status.values.problems[RefusedItems.problemArea]?.contains("from peer n1") == true)
        }
    }

    /// One field broken at a time in a replicated snapshot and patch: each is refused with its path and the held
    /// version keeps serving (the cases of the upstream tests, through the peer path).
    @Test(arguments: [
        ("featureFlags", 0, "variations", JSONValue.string("oops"), "expected a list"),
        ("featureFlags", 1, "variationType", .string("bool"), "is not one of boolean, string, number, json"),
        ("featureFlags", 2, "isEnabled", .string("yes"), "expected true or false"),
        ("featureFlags", 3, "disabledVariationId", .string("nope"), "no variation has the id"),
        ("featureFlags", 0, "key", .null, "expected a string, got null"),
        ("segments", 0, "included", .string("u1"), "expected a list"),
    ])
    func everyBrokenFieldIsRefusedThroughThePeerPath(list: String, index: Int, field: String, value: JSONValue,
                                                     reason: String) throws {
        let leader = DataStore()
        leader.apply(.replace(try Self.environments(minute: 2)))
        guard case .object(var root) = try JSONValue.parse(MeshData.snapshotPayload(leader.snapshot)),
              case .array(var items) = root["items"], case .object(var item) = items[0],
              case .array(var entries) = item[list], case .object(var entry) = entries[index] else {
            Issue.record("payload shape")
            return
        }
        let id = try #require(entry["id"]?.stringValue)
        entry[field] = value
        entries[index] = .object(entry)
        item[list] = .array(entries)
        items[0] = .object(item)
        root["items"] = .array(items)
        for isSnapshot in [true, false] {
            let follower = DataStore()
            follower.apply(.replace(try Self.environments(minute: 1)))
            let held = try #require(follower.snapshot.environments.values.first)
            let (change, parsed) = try MeshData.change(from: JSONWriter.bytes(.object(root)), isSnapshot: isSnapshot)
            #expect(parsed.refused.map(\.id) == [id])
            let problem = try #require(parsed.refused.first?.error.problems.first)
            #expect(problem.path == "items[0].\(list)[\(index)].\(field)" && problem.reason.contains(reason), "\(problem)")
            follower.apply(change)
            let env = try #require(follower.snapshot.environments[held.envId])
            let kept = list == "featureFlags" ? env.flags[id] : env.segments[id]
            let before = list == "featureFlags" ? held.flags[id] : held.segments[id]
            #expect(kept?.encoded == before?.encoded, "the held version keeps serving")
            #expect(env.flags.count == held.flags.count && env.segments.count == held.segments.count)
        }
    }

    @Test func aSnapshotPayloadReplacesAndAPatchPayloadUpserts() throws {
        let leader = DataStore()
        leader.apply(.replace(try Self.environments(minute: 1)))
        let follower = DataStore()
        let (snapshot, _) = try MeshData.change(from: MeshData.snapshotPayload(leader.snapshot), isSnapshot: true)
        follower.apply(snapshot)
        #expect(MeshData.summary(follower.snapshot) == MeshData.summary(leader.snapshot))
        #expect(follower.snapshot.environments.values.flatMap(\.secrets).map(\.value).sorted()
                == leader.snapshot.environments.values.flatMap(\.secrets).map(\.value).sorted(),
                "secrets travel with a snapshot")

        let change = try #require(leader.apply(.upsert(try Self.environments(minute: 2))))
        let (patch, _) = try MeshData.change(from: MeshData.patchPayload(change), isSnapshot: false)
        follower.apply(patch)
        #expect(MeshData.summary(follower.snapshot) == MeshData.summary(leader.snapshot))

        // A catch-up patch holds only what is newer than the follower's versions.
        let behind = DataStore()
        behind.apply(.replace(try Self.environments(minute: 1)))
        let since = MeshData.versions(behind.snapshot)
        let (catchup, _) = try MeshData.change(from: MeshData.patchPayload(leader.snapshot, since: since), isSnapshot: false)
        behind.apply(catchup)
        #expect(MeshData.summary(behind.snapshot) == MeshData.summary(leader.snapshot))
        #expect(MeshData.patchPayload(leader.snapshot, since: MeshData.versions(leader.snapshot))
                == Array(#"{"eventType":"rp_patch","items":[]}"#.utf8), "nothing newer: an empty patch")
    }

    @Test func theDigestSeesWhatVersionsDoNot() throws {
        let a = DataStore()
        a.apply(.replace(try Self.environments(minute: 1)))
        var fewer = try Self.environments(minute: 1)
        fewer[0].flags.removeFirst()
        let b = DataStore()
        b.apply(.replace(fewer))
        #expect(MeshData.summary(a.snapshot).dataVersion == MeshData.summary(b.snapshot).dataVersion)
        #expect(MeshData.summary(a.snapshot).digest != MeshData.summary(b.snapshot).digest, "a missing item changes the digest")
        #expect(MeshData.summary(DataStore().snapshot).hasData == false)
    }

    @Test(arguments: ["", "not json", #"{"eventType":"rp_patch"}"#, #"{"items":[{"envId":"x"}]}"#, #"{"items":7}"#])
    func aBadPayloadIsRefusedNotApplied(payload: String) {
        #expect(throws: MeshData.PayloadError.self) { try MeshData.change(from: Array(payload.utf8), isSnapshot: true) }
    }

    @Test func positionsReadBackFromTheirText() {
        #expect(MeshData.position("12.345") == MeshPosition(term: 12, seq: 345))
        #expect(MeshData.position(MeshPosition(term: 3, seq: 0).description) == MeshPosition(term: 3, seq: 0))
        for bad in [nil, "", "12", "a.b", "1.2.3", "-1.2"] { #expect(MeshData.position(bad) == nil) }
        #expect(MeshData.metadata(applied: MeshPosition(term: 2, seq: 5), fullEpoch: nil) == [MeshData.appliedKey: "2.5"])
    }
}
