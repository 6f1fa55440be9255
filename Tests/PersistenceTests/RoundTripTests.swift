import AgentCore
import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import Persistence

@Suite("featbit.db round trips")
struct RoundTripTests {
    /// Applies a replace, upserts, a replace that drops an environment and changes secrets, and an upsert into a new
    /// environment; returns the final snapshot.
    @discardableResult
    static func applyHistory(to store: DataStore) -> DataSnapshot {
        store.apply(TestData.initial)
        store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(1), updatedAt: 1_700_000_001_000, note: "v2"),
                                            TestData.flag(TestData.flagId(11), env: TestData.envB, updatedAt: 1_700_000_001_001)],
                                    segments: [TestData.segment(TestData.segmentId(3), updatedAt: 1_700_000_001_002)]))
        store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(2), updatedAt: 1_700_000_002_000, note: "v2")]))
        store.apply(.replace([
            EnvironmentData(envId: TestData.envA, secrets: TestData.secrets(TestData.envA, envKey: "staging"),
                            flags: store.snapshot.environments[TestData.envA]!.sortedFlags.filter { $0.id != TestData.flagId(3) },
                            segments: store.snapshot.environments[TestData.envA]!.sortedSegments),
        ]))
        store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(20), env: TestData.envC, updatedAt: 1_700_000_003_000)]))
        return store.snapshot
    }

    @Test("changes applied through the store come back identical after a reopen, and the sequence continues")
    func roundTrip() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            #expect(loaded.isEmpty)
            let store = DataStore(initial: loaded.snapshot(), journal: db)
            let final = Self.applyHistory(to: store)
            #expect(final.sequence == 5)
            #expect(final.environments[TestData.envB] == nil)
            #expect(final.environments[TestData.envC]?.secrets == [])
            #expect(db.storedSequence == 5)
            try db.setMetadata(MetadataKey.agentId, "agent-1")
            try db.setMetadata(["mesh.currentTerm": "7", "mesh.votedFor": "node-2", MetadataKey.lastSyncedAt: "123"])
            try db.setMetadata(MetadataKey.lastSyncedAt, nil)
            #expect(try db.integrityCheck() == "ok")
            db.close()

            let (db2, reloaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            #expect(reloaded.movedAsideTo == nil)
            expectSameData(reloaded.snapshot(), final)
            #expect(reloaded.environmentVersions == final.environments.mapValues(\.version))
            #expect(reloaded.metadata[MetadataKey.agentId] == "agent-1")
            #expect(reloaded.metadata["mesh.currentTerm"] == "7")
            #expect(reloaded.metadata["mesh.votedFor"] == "node-2")
            #expect(reloaded.metadata[MetadataKey.lastSyncedAt] == nil)
            #expect(db2.metadata(MetadataKey.agentId) == "agent-1")
            #expect(reloaded.skippedItems == 0)

            // The stored JSON is the item's own bytes.
            let stored = try DatabaseQueue(path: path).read { db in
                try String.fetchOne(db, sql: "SELECT json FROM items WHERE id = ?", arguments: [TestData.flagId(2)])
            }
            let expected = final.environments[TestData.envA]!.flags[TestData.flagId(2)]!.encoded
            #expect(stored.map { Array($0.utf8) } == expected)

            // A store started from the db continues its numbering and keeps writing incrementally.
            let store2 = DataStore(initial: reloaded.snapshot(), journal: db2)
            store2.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(4), updatedAt: 1_700_000_004_000)]))
            #expect(store2.snapshot.sequence == 6)
            #expect(db2.storedSequence == 6)
            db2.close()
            let (db3, third) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db3.close() }
            expectSameData(third.snapshot(), store2.snapshot)
            #expect(try db3.integrityCheck() == "ok")
        }
    }

    /// A large tenant (flags read back by skimming, not parsing) comes back byte for byte, with the same digests,
    /// models and segment references, and patches applied after the reopen land as on the original.
    @Test("a large data set round-trips through featbit.db exactly")
    func largeDataSetRoundTrips() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            let store = DataStore(initial: loaded.snapshot(), journal: db)
            let envIds = (0..<20).map { String(format: "e0000000-0000-4000-8000-%012d", $0) }
            store.apply(.replace(envIds.enumerated().map { e, env in
                EnvironmentData(
                    envId: env, secrets: TestData.secrets(env),
                    flags: (0..<250).map { TestData.flag(TestData.flagId(e * 1000 + $0), env: env, updatedAt: 1_700_000_000_000 + Int64($0),
                                                         padding: $0 % 7 * 40, note: $0 % 5 == 0 ? "é \u{1F600} \"quoted\"" : "") },
                    segments: (0..<10).map { TestData.segment(TestData.segmentId(e * 1000 + $0), env: env, updatedAt: 1_700_000_000_000 + Int64($0)) })
            }))
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(3), env: envIds[0], updatedAt: 1_800_000_000_000, note: "patched")]))
            let expected = store.snapshot
            db.close()

            let (db2, reloaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            #expect(reloaded.skippedItems == 0)
            let restored = DataStore(initial: reloaded.snapshot(), journal: db2)
            expectSameData(expected, restored.snapshot)
            for env in envIds {
                let (x, y) = (expected.environments[env]!, restored.snapshot.environments[env]!)
                #expect(x.digest == y.digest)
                #expect(x.flags.count == 250 && y.flags.count == 250)
                for (a, b) in zip(x.sortedFlags, y.sortedFlags).prefix(20) {
                    #expect(a.key == b.key && a.versionHash == b.versionHash)
                    #expect(a.flagModel?.variations == b.flagModel?.variations)
                }
            }
            // The same patch on both gives the same environment.
            let patch = TestData.upsert(flags: [TestData.flag(TestData.flagId(7), env: envIds[5], updatedAt: 1_900_000_000_000)])
            store.apply(patch)
            restored.apply(patch)
            #expect(store.snapshot.environments[envIds[5]]?.digest == restored.snapshot.environments[envIds[5]]?.digest)
            #expect(store.snapshot.environments[envIds[5]]?.serverFullMessage == restored.snapshot.environments[envIds[5]]?.serverFullMessage)
        }
    }

    @Test("a journal that missed changes rewrites everything instead of patching a stale file")
    func outOfStepStore() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            // A store that applied changes before the journal was attached.
            let detached = DataStore()
            Self.applyHistory(to: detached)
            let store = DataStore(initial: detached.snapshot, journal: db)
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(5), updatedAt: 1_700_000_005_000)]))
            db.close()
            let (db2, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            expectSameData(loaded.snapshot(), store.snapshot)
        }
    }

    @Test("a featbit.db copied to another place serves the same data with no upstream")
    func copiedFile() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            let store = DataStore(journal: db)
            let final = Self.applyHistory(to: store)
            try db.setMetadata(MetadataKey.agentId, "node-a")

            let other = try TempDir("featbit-db-other-machine")
            defer { other.remove() }
            // 1. While the agent runs: `cp featbit.db featbit.db-wal` (the WAL carries the newest commits).
            let live = other.file("live.db")
            try FileManager.default.copyItem(atPath: path, toPath: live)
            if FileManager.default.fileExists(atPath: path + "-wal") {
                try FileManager.default.copyItem(atPath: path + "-wal", toPath: live + "-wal")
            }
            // 2. An exported copy (VACUUM INTO a temporary file, then rename), also over an existing file.
            let exported = other.file("exported.db")
            try Data("an older file".utf8).write(to: URL(fileURLWithPath: exported))
            try db.exportCopy(to: exported)
            #expect(other.files(startingWith: "exported.db.tmp").isEmpty)
            // 3. After a clean stop: the single file.
            db.close()
            #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
            let stopped = other.file("featbit.db")
            try FileManager.default.copyItem(atPath: path, toPath: stopped)

            for copy in [live, exported, stopped] {
                let logs = LogCapture()
                let (copied, loaded) = try FeatBitDatabase.open(path: copy, logger: logs.logger).requireReady()
                expectSameData(loaded.snapshot(), final)
                #expect(loaded.metadata[MetadataKey.agentId] == "node-a")
                #expect(logs.events("db-opened").count == 1)
                // Serving straight from it: an SDK secret resolves to its environment.
                let served = DataStore(initial: loaded.snapshot(), journal: copied)
                let secret = TestData.secrets(TestData.envA, envKey: "staging")[0].value
                #expect(served.snapshot.secret(matching: secret)?.envId == TestData.envA)
                #expect(served.snapshot.isInitialised)
                copied.close()
            }
        }
    }

    @Test("a change is on disk before the store publishes it")
    func durableBeforeVisible() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db.close() }
            let store = DataStore(initial: loaded.snapshot(), journal: db)
            store.apply(TestData.initial)

            // Every subscriber (SDK fan-out, replication) sees a change only once another connection can read it.
            let violations = Locked<[String]>([])
            store.subscribe { change in
                let onDisk = (try? sequenceOnDisk(path)) ?? -1
                if onDisk != Int64(change.sequence) {
                    violations.withLock { $0.append("feed saw \(change.sequence), disk had \(onDisk)") }
                }
            }
            // Readers polling the published snapshot never get ahead of the file.
            let stop = Locked(false)
            let checks = Locked(0)
            let finished = Locked(false)
            let reader = Thread {
                while !stop.value {
                    let visible = store.snapshot.sequence
                    let onDisk = (try? sequenceOnDisk(path)) ?? -1
                    if onDisk < Int64(visible) {
                        violations.withLock { $0.append("snapshot showed \(visible), disk had \(onDisk)") }
                    }
                    checks.withLock { $0 += 1 }
                }
                finished.withLock { $0 = true }
            }
            reader.start()
            for n in 1...150 {
                store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(100 + n % 7), updatedAt: 1_800_000_000_000 + Int64(n))]))
            }
            while checks.value < 20 { try await Task.sleep(for: .milliseconds(5)) }
            stop.withLock { $0 = true }
            while !finished.value { try await Task.sleep(for: .milliseconds(5)) }
            #expect(violations.value.isEmpty, "\(violations.value.prefix(3))")
            #expect(try sequenceOnDisk(path) == Int64(store.snapshot.sequence))
        }
    }

    @Test("metadata is durable and write-through")
    func metadata() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            #expect(loaded.metadata[MetadataKey.openedAt] != nil)
            try db.setMetadata("mesh.currentTerm", "3")
            try db.setMetadata("mesh.votedFor", "n2")
            #expect(db.metadata("mesh.currentTerm") == "3")
            // Read back through another connection while still open: already committed.
            let onDisk = try DatabaseQueue(path: path).read { db in
                try String.fetchOne(db, sql: "SELECT value FROM metadata WHERE key = ?", arguments: ["mesh.votedFor"])
            }
            #expect(onDisk == "n2")
            // Data and metadata in one transaction (the mesh's applied position with the change).
            let store = DataStore(journal: db)
            let applied = store.apply(TestData.initial)!
            #expect(db.persist(applied, metadata: ["mesh.applied": "\(applied.sequence)"]))
            #expect(db.metadata("mesh.applied") == "1")
            db.close()
            let (db2, reloaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            #expect(reloaded.metadata["mesh.currentTerm"] == "3")
            #expect(reloaded.metadata["mesh.applied"] == "1")
        }
    }

    @Test("local insights: append, count, read oldest, delete forwarded, retention")
    func insights() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            try db.appendInsights((0..<100).map { i in
                (timestamp: 1_700_000_000_000 + Int64(i), envId: i % 2 == 0 ? TestData.envA : nil, body: Array("{\"n\":\(i)}".utf8))
            })
            #expect(try db.insightCount() == 100)
            let oldest = try db.oldestInsights(limit: 3)
            #expect(oldest.map(\.body) == [Array("{\"n\":0}".utf8), Array("{\"n\":1}".utf8), Array("{\"n\":2}".utf8)])
            #expect(oldest[0].envId == TestData.envA && oldest[1].envId == nil)
            try db.deleteInsights(throughId: oldest[1].id)
            #expect(try db.insightCount() == 98)
            #expect(try db.pruneInsights(keepNewest: 10) == 88)
            #expect(try db.pruneInsights(keepNewest: 10) == 0)
            db.close()
            let (db2, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            #expect(try db2.insightCount() == 10)
            #expect(try db2.oldestInsights(limit: 1).first?.timestamp == 1_700_000_000_090)
            #expect(try db2.pruneInsights(keepNewest: 0) == 10)
            #expect(try db2.insightCount() == 0)
        }
    }

    @Test("the file is WAL with synchronous=FULL and identifies itself")
    func pragmas() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db.close() }
            #expect(FileManager.default.fileExists(atPath: path + "-wal"))
            let (mode, appId, version) = try DatabaseQueue(path: path).read { db in
                (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA application_id"),
                 try Int.fetchOne(db, sql: "PRAGMA user_version"))
            }
            #expect(mode == "wal")
            #expect(appId == Int(DatabaseSchema.applicationId))
            #expect(version == DatabaseSchema.version)
            #expect(try db.queueForTests.read { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)
        }
    }

    @Test("DbPath none disables persistence")
    func disabled() {
        let outcome = FeatBitDatabase.open(path: "none", logger: LogCapture().logger)
        #expect(outcome.unavailable?.reason == .disabled)
        #expect(outcome.loaded.isEmpty)
    }
}
