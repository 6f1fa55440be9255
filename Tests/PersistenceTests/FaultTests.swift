import AgentCore
import Foundation
import GRDB
import Logging
import Testing

@testable import Persistence

/// Point 4 of the issue: each fault gives one clear log line and a status/metric, the agent keeps serving from
/// memory, and a good file is never replaced by a worse one. Real filesystem faults wherever this machine allows.
@Suite("featbit.db faults")
struct FaultTests {
    /// Writes a featbit.db holding the round-trip history; returns what it holds.
    static func makeGoodDatabase(at path: String) throws -> DataSnapshot {
        let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
        let store = DataStore(journal: db)
        let final = RoundTripTests.applyHistory(to: store)
        try db.setMetadata(MetadataKey.agentId, "agent-x")
        db.close()
        return final
    }

    // MARK: - Unwritable directory / read-only filesystem

    @Test("read-only directory: no db, one log line, status; an existing db is read (not changed) and served")
    func readOnlyDirectory() async throws {
        try await withTempDir { source in
            let good = try Self.makeGoodDatabase(at: source.file("featbit.db"))
            let before = fileBytes(source.file("featbit.db"))
            guard let view = ReadOnlyView.of(source) else {
                Issue.record("no way to make a directory read-only here")
                return
            }
            defer { view.remove() }

            // An existing good db on a read-only filesystem.
            let logs = LogCapture()
            let status = AgentStatusBoard(mode: .auto)
            let outcome = FeatBitDatabase.open(path: view.file("featbit.db"), logger: logs.logger, status: status)
            let unavailable = try #require(outcome.unavailable, "opened for writing through \(view.method)")
            #expect(unavailable.reason == .unwritable)
            #expect(logs.events("db-unwritable", atLeast: .error).count == 1)
            #expect(logs.all.filter { $0.level >= .error }.count == 1)
            #expect(status.values.problems["db"] == unavailable.message)
            #expect(unavailable.message.contains(view.file("featbit.db")))
            // The agent serves what the file holds, from memory.
            let salvaged = try #require(unavailable.salvaged)
            expectSameData(salvaged.snapshot(), good)
            #expect(salvaged.metadata[MetadataKey.agentId] == "agent-x")
            let store = DataStore(initial: outcome.loaded.snapshot(), journal: nil)
            #expect(store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(9), updatedAt: 1_900_000_000_000)])) != nil)
            #expect(fileBytes(source.file("featbit.db")) == before)
            #expect(source.files(startingWith: "featbit.db.corrupt").isEmpty)

            // No db yet in a read-only directory.
            let fresh = LogCapture()
            let none = FeatBitDatabase.open(path: view.file("new.db"), logger: fresh.logger)
            #expect(none.unavailable?.reason == .unwritable)
            #expect(none.unavailable?.salvaged == nil)
            #expect(fresh.events("db-unwritable", atLeast: .error).count == 1)
            #expect(!FileManager.default.fileExists(atPath: source.file("new.db")))
        }
    }

    // MARK: - Foreign and corrupt files

    @Test("a file of random bytes is moved aside (bytes intact) and a fresh db takes its place")
    func randomBytes() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            var generator = SystemRandomNumberGenerator()
            let garbage = (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(garbage).write(to: URL(fileURLWithPath: path))
            try Data("stale wal".utf8).write(to: URL(fileURLWithPath: path + "-wal"))

            let logs = LogCapture()
            let status = AgentStatusBoard(mode: .auto)
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger, status: status).requireReady()
            defer { db.close() }
            let aside = try #require(loaded.movedAsideTo)
            #expect(aside.hasPrefix(path + ".corrupt-"))
            #expect(fileBytes(aside) == garbage)
            #expect(fileBytes(aside + "-wal") == Array("stale wal".utf8))
            #expect(loaded.isEmpty)
            #expect(logs.events("db-moved-aside", atLeast: .error).count == 1)
            #expect(logs.all.filter { $0.level >= .error }.count == 1)
            #expect(status.values.problems["db"]?.contains(aside) == true)
            // The fresh db works.
            let store = DataStore(journal: db)
            store.apply(TestData.initial)
            #expect(db.storedSequence == 1)
            #expect(try db.integrityCheck() == "ok")
        }
    }

    @Test("a WAL left without its database is moved aside, never replayed into a fresh db")
    func orphanedWAL() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            DataStore(journal: db).apply(TestData.initial)
            // Simulate the db file being lost while its WAL stays (copy the WAL before the clean close removes it).
            let wal = try #require(fileBytes(path + "-wal"))
            db.close()
            try FileManager.default.removeItem(atPath: path)
            try Data(wal).write(to: URL(fileURLWithPath: path + "-wal"))
            let logs = LogCapture()
            let (fresh, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger).requireReady()
            defer { fresh.close() }
            let aside = try #require(loaded.movedAsideTo)
            #expect(fileBytes(aside + "-wal") == wal)
            #expect(loaded.isEmpty)
            #expect(logs.events("db-moved-aside", atLeast: .error).count == 1)
            #expect(try fresh.integrityCheck() == "ok")
        }
    }

    @Test("a featbit.db with damaged pages fails quick_check and is moved aside, not loaded")
    func damagedPages() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            // Enough rows to span many pages.
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            let store = DataStore(journal: db)
            store.apply(.replace([EnvironmentData(envId: TestData.envA, secrets: TestData.secrets(TestData.envA),
                                                  flags: (0..<300).map { TestData.flag(TestData.flagId($0), updatedAt: 1_700_000_000_000 + Int64($0), padding: 200) },
                                                  segments: [])]))
            db.close()
            var bytes = try #require(fileBytes(path))
            #expect(bytes.count > 40 * 4096)
            // Scribble over pages 3...20 (b-tree pages of the tables), keep the header.
            for index in (2 * 4096)..<(20 * 4096) { bytes[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 7) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))

            let logs = LogCapture()
            let (fresh, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger).requireReady()
            defer { fresh.close() }
            let aside = try #require(loaded.movedAsideTo)
            #expect(fileBytes(aside) == bytes)
            #expect(loaded.isEmpty)
            #expect(logs.events("db-moved-aside", atLeast: .error).count == 1)
        }
    }

    @Test("another application's SQLite file is moved aside intact")
    func foreignSQLite() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            do {
                let other = try DatabaseQueue(path: path)
                try other.write { db in
                    try db.execute(sql: "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
                    try db.execute(sql: "INSERT INTO customers (name) VALUES ('ada'), ('grace')")
                }
                try other.close()
            }
            let logs = LogCapture()
            let (db, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger).requireReady()
            defer { db.close() }
            let aside = try #require(loaded.movedAsideTo)
            #expect(logs.events("db-moved-aside", atLeast: .error).count == 1)
            #expect(logs.events("db-moved-aside").first?.message.contains("customers") == true)
            let names = try DatabaseQueue(path: aside).read { db in
                try String.fetchAll(db, sql: "SELECT name FROM customers ORDER BY id")
            }
            #expect(names == ["ada", "grace"])
            #expect(try db.integrityCheck() == "ok")
        }
    }

    // MARK: - Newer schema

    @Test("a db from a newer schema is left untouched and the agent runs without persistence",
          arguments: ["user_version", "unknown migration"])
    func newerSchema(marker: String) async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            try Self.makeGoodDatabase(at: path)
            do {
                let raw = try DatabaseQueue(path: path)
                try raw.write { db in
                    if marker == "user_version" {
                        try db.execute(sql: "PRAGMA user_version = 99")
                    } else {
                        try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v2-from-the-future')")
                    }
                }
                try raw.close()
            }
            let before = fileBytes(path)
            let logs = LogCapture()
            let status = AgentStatusBoard(mode: .auto)
            let outcome = FeatBitDatabase.open(path: path, logger: logs.logger, status: status)
            let unavailable = try #require(outcome.unavailable)
            if marker == "user_version" {
                #expect(unavailable.reason == .newerSchema(found: 99, supported: DatabaseSchema.version))
            } else {
                guard case .newerSchema = unavailable.reason else {
                    Issue.record("expected newerSchema, got \(unavailable.reason)")
                    return
                }
            }
            #expect(unavailable.salvaged == nil)
            #expect(logs.events("db-newer-schema", atLeast: .error).count == 1)
            #expect(status.values.problems["db"]?.contains("newer agent") == true)
            #expect(fileBytes(path) == before)
            #expect(dir.files(startingWith: "featbit.db.corrupt").isEmpty)
        }
    }

    // MARK: - Disk full

    @Test("disk full: writes fail with one log line, the store keeps serving, and the db catches up once there is room")
    func diskFull() async throws {
        let real = TmpfsMount(sizeKiB: 256)
        let scratch = try TempDir()
        defer {
            real?.unmount()
            scratch.remove()
        }
        let path = real?.file("featbit.db") ?? scratch.file("featbit.db")
        let logs = LogCapture()
        let status = AgentStatusBoard(mode: .auto)
        let healthChanges = Locked<[DatabaseHealth]>([])
        let (db, loaded) = try FeatBitDatabase.open(path: path, logger: logs.logger, status: status,
                                                    onHealthChange: { h in healthChanges.withLock { $0.append(h) } })
            .requireReady()
        let store = DataStore(initial: loaded.snapshot(), journal: db)
        store.apply(TestData.initial)
        #expect(db.health == .healthy)

        // Fill the disk (or, where mounting is not permitted, inject SQLITE_FULL).
        if real == nil {
            db.injectedWriteError.withLock { $0 = DatabaseError(resultCode: .SQLITE_FULL, message: "database or disk is full") }
        }
        var n = 0
        while db.health == .healthy, n < 2000 {
            n += 1
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(1000 + n), updatedAt: 1_800_000_000_000 + Int64(n), padding: 4000)]))
        }
        guard case .failing(let reason) = db.health else {
            Issue.record("the disk never filled up after \(n) writes")
            return
        }
        #expect(reason.contains("13"), "SQLITE_FULL expected: \(reason)")
        // More changes while full: still applied and served, still one error line.
        for extra in 1...5 {
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(5000 + extra), updatedAt: 1_900_000_000_000 + Int64(extra), padding: 4000)]))
        }
        #expect(store.snapshot.environments[TestData.envA]?.flags[TestData.flagId(5005)] != nil)
        #expect(logs.events("db-write-failed", atLeast: .error).count == 1)
        #expect(status.values.problems["db"]?.contains("cannot write featbit.db") == true)
        #expect(db.retryNow() == false)
        #expect(logs.events("db-write-failed", atLeast: .error).count == 1)
        #expect(try db.integrityCheck() == "ok")

        // Room again: the next change rewrites the whole current state.
        if let real {
            #expect(real.resize(kiB: 64 * 1024))
        } else {
            db.injectedWriteError.withLock { $0 = nil }
        }
        store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(6000), updatedAt: 2_000_000_000_000)]))
        #expect(db.health == .healthy)
        #expect(status.values.problems["db"] == nil)
        #expect(logs.events("db-write-recovered").count == 1)
        #expect(healthChanges.value.count == 2)
        #expect(db.storedSequence == store.snapshot.sequence)
        #expect(try db.integrityCheck() == "ok")
        db.close()
        let (reopened, reloaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
        defer { reopened.close() }
        expectSameData(reloaded.snapshot(), store.snapshot)
        if real == nil { Issue.record("tmpfs could not be mounted: disk full was injected, not real") }
    }

    @Test("a full disk at start: no db, one log line")
    func diskFullAtOpen() async throws {
        guard let real = TmpfsMount(sizeKiB: 64) else {
            Issue.record("tmpfs could not be mounted here")
            return
        }
        defer { real.unmount() }
        // Fill it up.
        sh("dd", "if=/dev/zero", "of=\(real.file("filler"))", "bs=4096")
        let logs = LogCapture()
        let outcome = FeatBitDatabase.open(path: real.file("featbit.db"), logger: logs.logger)
        #expect(outcome.unavailable?.reason == .unwritable)
        #expect(logs.events("db-unwritable", atLeast: .error).count == 1)
    }

    // MARK: - Recovery after a failed write (injected I/O error)

    @Test("after failed writes, the next successful write resyncs everything (replace, removal and upserts missed)")
    func recoveryAfterFailedWrites() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let logs = LogCapture()
            let (db, _) = try FeatBitDatabase.open(path: path, logger: logs.logger).requireReady()
            let store = DataStore(journal: db)
            store.apply(TestData.initial)
            db.injectedWriteError.withLock { $0 = DatabaseError(resultCode: .SQLITE_IOERR, message: "disk I/O error") }
            // Missed: an upsert, a replace that drops envB, another upsert.
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(1), updatedAt: 1_750_000_000_000, note: "new")]))
            store.apply(.replace([EnvironmentData(envId: TestData.envA, secrets: TestData.secrets(TestData.envA),
                                                  flags: [TestData.flag(TestData.flagId(1), updatedAt: 1_750_000_000_000, note: "new")],
                                                  segments: [])]))
            store.apply(TestData.upsert(segments: [TestData.segment(TestData.segmentId(9), updatedAt: 1_750_000_000_001)]))
            #expect(db.health != .healthy)
            #expect(db.storedSequence == 1)
            #expect(try sequenceOnDisk(path) == 1)
            #expect(logs.events("db-write-failed", atLeast: .error).count == 1)
            // A metadata write fails too, and says so.
            #expect(throws: DatabaseError.self) { try db.setMetadata("mesh.votedFor", "n3") }
            #expect(db.metadata("mesh.votedFor") == nil)

            db.injectedWriteError.withLock { $0 = nil }
            store.apply(TestData.upsert(flags: [TestData.flag(TestData.flagId(2), updatedAt: 1_760_000_000_000)]))
            #expect(db.health == .healthy)
            #expect(logs.events("db-write-recovered").count == 1)
            db.close()
            let (db2, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            expectSameData(loaded.snapshot(), store.snapshot)
            #expect(loaded.snapshot().environments[TestData.envB] == nil)
            #expect(try db2.integrityCheck() == "ok")
        }
    }

    @Test("the periodic retry brings the db back in sync without a new change")
    func periodicRetry() async throws {
        try await withTempDir { dir in
            let path = dir.file("featbit.db")
            let status = AgentStatusBoard(mode: .auto)
            let (db, _) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger, status: status).requireReady()
            let store = DataStore(journal: db)
            db.injectedWriteError.withLock { $0 = DatabaseError(resultCode: .SQLITE_READONLY, message: "attempt to write a readonly database") }
            store.apply(TestData.initial)
            #expect(status.values.problems["db"] != nil)
            let retries = Task { await db.runRetryLoop(interval: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(60))
            #expect(db.health != .healthy)
            db.injectedWriteError.withLock { $0 = nil }
            for _ in 0..<250 where db.health != .healthy { try await Task.sleep(for: .milliseconds(20)) }
            retries.cancel()
            await retries.value
            #expect(db.health == .healthy)
            #expect(status.values.problems["db"] == nil)
            #expect(try sequenceOnDisk(path) == 1)
            db.close()
            let (db2, loaded) = try FeatBitDatabase.open(path: path, logger: LogCapture().logger).requireReady()
            defer { db2.close() }
            expectSameData(loaded.snapshot(), store.snapshot)
        }
    }
}
