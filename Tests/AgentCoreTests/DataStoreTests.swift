import Foundation
import Synchronization
import Testing
@testable import AgentCore

@Suite struct DataStoreTests {
    @Test func replaceInitialisesAndNumbersChanges() {
        let journal = RecordingJournal()
        let store = DataStore(journal: journal)
        #expect(!store.snapshot.isInitialised)
        let applied = store.apply(.replace([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000)])]))
        #expect(applied?.sequence == 1)
        #expect(store.snapshot.isInitialised)
        #expect(store.snapshot.version == 1000)
        #expect(store.snapshot.secret(matching: Fixtures.serverSecretA)?.type == .server)
        #expect(journal.sequences == [1])
    }

    @Test func emptyDataSetStillInitialises() {
        let store = DataStore()
        #expect(store.apply(.replace([])) != nil)
        #expect(store.snapshot.isInitialised)
        #expect(store.apply(.replace([])) == nil)
    }

    @Test func upsertFollowsTheTimestampRule() throws {
        let store = DataStore()
        store.apply(.replace([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 2000)])]))
        // Older: kept out.
        #expect(store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000, extra: ["name": .string("old")])])])) == nil)
        #expect(store.snapshot.environments[Fixtures.envA]?.flags["f1"]?.updatedAt == 2000)
        // Same timestamp, different content: replaces (stored <= incoming).
        let same = store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 2000, extra: ["name": .string("renamed")])])]))
        #expect(same?.deltas.first?.flags.map(\.id) == ["f1"])
        #expect(store.snapshot.environments[Fixtures.envA]?.flags["f1"]?.json["name"] == .string("renamed"))
        // Newer: replaces and bumps the version.
        store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 3000)])]))
        #expect(store.snapshot.version == 3000)
        // Absent: inserted.
        store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f2", updatedAt: 2500)])]))
        #expect(store.snapshot.environments[Fixtures.envA]?.flags.count == 2)
    }

    @Test func duplicatePushesAreAppliedOnce() {
        let store = DataStore()
        store.apply(.replace([Fixtures.environment(flags: [])]))
        let flag = Fixtures.flag("f1", updatedAt: 5000)
        let first = store.apply(.upsert([Fixtures.environment(flags: [flag], secrets: nil)]))
        #expect(first?.sequence == 2)
        // The k identical pushes of an environment with k server secrets (spec §3.3).
        for _ in 0..<3 {
            #expect(store.apply(.upsert([Fixtures.environment(flags: [flag], secrets: nil)])) == nil)
        }
        #expect(store.snapshot.sequence == 2)
    }

    @Test func patchesNeverTouchSecrets() {
        let store = DataStore()
        store.apply(.replace([Fixtures.environment(flags: [])]))
        store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f", updatedAt: 1)], secrets: [])]))
        #expect(store.snapshot.environments[Fixtures.envA]?.secrets.count == 2)
    }

    @Test func fullReplaceRemovesWhatIsGoneAndAsksForAFullPush() throws {
        let store = DataStore()
        store.apply(.replace([
            Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000), Fixtures.flag("f2", updatedAt: 1100)]),
            Fixtures.environment(Fixtures.envB, flags: [Fixtures.flag("g1", env: Fixtures.envB, updatedAt: 900)]),
        ]))
        let applied = try #require(store.apply(.replace([
            Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000)]),
        ])))
        #expect(applied.removedEnvIds == [Fixtures.envB])
        let delta = try #require(applied.deltas.first)
        #expect(delta.needsFull)
        #expect(delta.flags.isEmpty)
        #expect(store.snapshot.environments[Fixtures.envA]?.flags.keys.sorted() == ["f1"])
        #expect(store.snapshot.secret(matching: Fixtures.serverSecretB) == nil)
    }

    @Test func identicalReplaceChangesNothing() {
        let store = DataStore()
        let data = [Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000)])]
        store.apply(.replace(data))
        #expect(store.apply(.replace(data)) == nil)
    }

    @Test func changeFeedIsOrderedAndSeesTheNewSnapshot() {
        let store = DataStore()
        let seen = Mutex<[(UInt64, Int64)]>([])
        store.subscribe { change in
            let visible = store.snapshot.sequence
            seen.withLock { $0.append((change.sequence, Int64(visible))) }
        }
        store.apply(.replace([Fixtures.environment(flags: [])]))
        for t in 1...20 {
            store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f", updatedAt: Int64(t))], secrets: nil)]))
        }
        let result = seen.withLock { $0 }
        #expect(result.map(\.0) == Array(1...21))
        // A subscriber already sees the snapshot of the change it is told about.
        #expect(result.allSatisfy { UInt64($0.1) == $0.0 })
    }

    @Test func slowCommitsOfAsyncWritersDoNotStallTheConcurrencyPool() async throws {
        // A commit that takes its time (a slow disk's fsync): held until the gate opens, or 10 s at most.
        let journal = GatedJournal()
        let store = DataStore(journal: journal)
        store.apply(.replace([Fixtures.environment(flags: [])]))
        journal.closeGate()
        // More writers than the pool has threads: run on the pool, they would all be stuck in the journal or behind
        // the writer lock, and another task could only run once a commit gave up waiting at the gate.
        let writers = ProcessInfo.processInfo.activeProcessorCount + 2
        let tasks = (1...writers).map { t in
            Task { await store.applyOnWriterThread(.upsert([Fixtures.environment(
                flags: [Fixtures.flag("f\(t)", updatedAt: Int64(t))], secrets: nil)])) }
        }
        try await Task.sleep(for: .milliseconds(100))
        // A plain task on the pool: what it sees is how many commits had given up by the time it could run (with the
        // pool's threads stuck in commits, it runs only once one gives up after 10 s).
        let gaveUpBeforeItRan = await Task { journal.commitsThatGaveUp }.value
        journal.openGate()
        #expect(gaveUpBeforeItRan == 0, "a plain task only ran after a commit gave up waiting for the disk")
        for task in tasks { #expect(await task.value != nil) }
        #expect(store.snapshot.sequence == UInt64(writers + 1))
        #expect(journal.sequences == Array(1...UInt64(writers + 1)))
    }

    @Test func deltasAreInAscendingUpdatedAtOrder() throws {
        let store = DataStore()
        store.apply(.replace([Fixtures.environment(flags: [])]))
        let applied = try #require(store.apply(.upsert([Fixtures.environment(flags: [
            Fixtures.flag("c", updatedAt: 30), Fixtures.flag("a", updatedAt: 10), Fixtures.flag("b", updatedAt: 20),
        ], secrets: nil)])))
        #expect(applied.deltas.first?.flags.map(\.id) == ["a", "b", "c"])
    }

    // MARK: - Mesh replication

    @Test func aReplicatedSnapshotKeepsNewerItemsButRemovesAbsentOnes() throws {
        let store = DataStore()
        store.apply(.replace([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 3000), Fixtures.flag("gone", updatedAt: 1000)])]))
        let applied = try #require(store.apply(.replicatedReplace([Fixtures.environment(flags: [
            Fixtures.flag("f1", updatedAt: 2000), Fixtures.flag("f2", updatedAt: 2500),
        ])])))
        let env = try #require(store.snapshot.environments[Fixtures.envA])
        #expect(env.flags["f1"]?.updatedAt == 3000, "an item never moves back to an older version")
        #expect(env.flags["f2"]?.updatedAt == 2500)
        #expect(env.flags["gone"] == nil, "a snapshot carries deletions")
        #expect(applied.deltas.first?.needsFull == true)
        // An upstream rp_full still replaces as it is.
        store.apply(.replace([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 2000)])]))
        #expect(store.snapshot.environments[Fixtures.envA]?.flags["f1"]?.updatedAt == 2000)
    }

    @Test func metadataIsMadeDurableEvenWhenNothingChanged() {
        let journal = RecordingJournal()
        let store = DataStore(journal: journal)
        let change = Change.replace([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 1000)])])
        let first = store.apply(change, metadata: ["mesh.applied": "1.1"])
        #expect(first.change != nil && first.durable)
        let duplicate = store.apply(change, metadata: ["mesh.applied": "1.2"])
        #expect(duplicate.change == nil && duplicate.durable)
        #expect(journal.metadataWrites.map { $0["mesh.applied"] ?? nil } == ["1.1", "1.2"])
        let skipped = store.apply(change, metadata: ["mesh.applied": "1.9"], evenIfUnchanged: false)
        #expect(skipped.change == nil && journal.metadataWrites.count == 2, "a duplicate of a local source writes nothing")
        journal.writable = false
        let failed = store.apply(.upsert([Fixtures.environment(flags: [Fixtures.flag("f1", updatedAt: 2000)], secrets: nil)]),
                                 metadata: ["mesh.applied": "1.3"])
        #expect(failed.change != nil && !failed.durable, "a change that could not be written is not reported durable")
        #expect(store.snapshot.version == 2000, "it is still served from memory")
        #expect(!DataStore().apply(change, metadata: [:]).durable, "without a journal nothing is durable")
    }
}
