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

    @Test func aSnapshotPayloadReplacesAndAPatchPayloadUpserts() throws {
        let leader = DataStore()
        leader.apply(.replace(try Self.environments(minute: 1)))
        let follower = DataStore()
        let snapshot = try MeshData.change(from: MeshData.snapshotPayload(leader.snapshot), isSnapshot: true)
        follower.apply(snapshot)
        #expect(MeshData.summary(follower.snapshot) == MeshData.summary(leader.snapshot))
        #expect(follower.snapshot.secretIndex.keys.sorted() == leader.snapshot.secretIndex.keys.sorted(),
                "secrets travel with a snapshot")

        let change = try #require(leader.apply(.upsert(try Self.environments(minute: 2))))
        let patch = try MeshData.change(from: MeshData.patchPayload(change), isSnapshot: false)
        follower.apply(patch)
        #expect(MeshData.summary(follower.snapshot) == MeshData.summary(leader.snapshot))

        // A catch-up patch holds only what is newer than the follower's versions.
        let behind = DataStore()
        behind.apply(.replace(try Self.environments(minute: 1)))
        let since = MeshData.versions(behind.snapshot)
        let catchup = try MeshData.change(from: MeshData.patchPayload(leader.snapshot, since: since), isSnapshot: false)
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
