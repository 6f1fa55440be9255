import AgentCore
import Foundation
import GRDB
import Logging
import Metrics

extension FeatBitDatabase {
    static let openProblems = "featbit_agent_db_open_problems_total"

    /// Opens (or creates) featbit.db at `path` and loads what it holds.
    ///
    /// - A fresh or missing file becomes an empty featbit.db.
    /// - A file that is not SQLite, not a featbit.db (another application's tables) or fails `quick_check` is moved
    ///   aside to `<path>.corrupt-<timestamp>` (with its `-wal`/`-shm`) and a fresh db is created: loud log line.
    /// - A featbit.db from a newer agent is not touched; the agent runs without persistence.
    /// - A file or directory that cannot be written (read-only filesystem, permissions, disk full) gives no db; what
    ///   the file holds is still read (from a private copy) and returned as `salvaged`, so the agent serves it.
    ///
    /// Every problem logs one line with an `event` field, increments `featbit_agent_db_open_problems_total{reason}`
    /// and, when `status` is given, sets `problems["db"]`. Nothing here ever deletes or overwrites a file.
    public static func open(path: String, logger: Logger, status: AgentStatusBoard? = nil,
                            onHealthChange: (@Sendable (DatabaseHealth) -> Void)? = nil) -> OpenOutcome {
        let started = ContinuousClock.now
        if path.isEmpty || path.lowercased() == "none" {
            logger.info("persistence disabled (DbPath none): nothing is saved across restarts",
                        metadata: ["event": "db-disabled"])
            return .unavailable(DatabaseUnavailable(reason: .disabled, message: "persistence disabled (DbPath none)",
                                                    salvaged: nil))
        }
        let problem = Problem(path: path, logger: logger, status: status)
        var movedAside: String?

        func moveAside(_ why: String) -> OpenOutcome? {
            do {
                let target = try DatabaseFiles.moveAside(path)
                movedAside = target
                problem.report(event: "db-moved-aside", level: .error, message: """
                    featbit.db at \(path) is not a usable FeatBit database (\(why)); moved it aside to \(target) \
                    and started a fresh db
                    """)
                return nil
            } catch {
                return problem.unavailable(.unwritable, """
                    featbit.db at \(path) is not a usable FeatBit database (\(why)) and could not be moved aside \
                    (\(error)); left untouched, running from memory without persistence
                    """)
            }
        }

        switch DatabaseFiles.kind(of: path) {
        case .directory:
            return problem.unavailable(.failed, "DbPath \(path) is a directory; running from memory without persistence")
        case .unreadable(let why):
            return problem.unavailable(.unwritable, "featbit.db at \(path) cannot be read (\(why)); running from memory without persistence")
        case .notSQLite(let why):
            if let outcome = moveAside(why) { return outcome }
        case .absent, .empty:
            // A -wal without its db (the db was deleted or lost) would be replayed into the fresh file: move it.
            if DatabaseFiles.companions.contains(where: { DatabaseFiles.exists(path + $0) }),
               let outcome = moveAside("a -wal/-shm left without its database file") {
                return outcome
            }
        case .sqlite:
            switch inspect(path) {
            case .compatible, .blank:
                break
            case .newer(let found):
                return problem.unavailable(.newerSchema(found: found, supported: DatabaseSchema.version), """
                    featbit.db at \(path) was written by a newer agent (schema version \(found), this agent knows \
                    \(DatabaseSchema.version)); left untouched, running from memory without persistence
                    """)
            case .foreign(let why), .corrupt(let why):
                if let outcome = moveAside(why) { return outcome }
            case .failed(let error):
                return problem.unavailable(classify(error), """
                    featbit.db at \(path) cannot be opened (\(describe(error))); running from memory without persistence
                    """, salvaged: salvage(path, logger: logger))
            }
        }

        let queue: DatabaseQueue
        var loaded: LoadedState
        do {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty, !DatabaseFiles.exists(directory) {
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            queue = try openWritable(path)
            loaded = try queue.read { db in try Loader.load(db) }
        } catch {
            return problem.unavailable(classify(error), """
                featbit.db at \(path) cannot be written (\(describe(error))); running from memory without persistence
                """, salvaged: salvage(path, logger: logger))
        }
        loaded.movedAsideTo = movedAside
        let database = FeatBitDatabase(path: path, queue: queue, storedSequence: loaded.sequence,
                                       metadata: loaded.metadata, logger: logger, status: status,
                                       onHealthChange: onHealthChange)
        let items = loaded.environments.reduce(0) { $0 + $1.flags.count + $1.segments.count }
        logger.info("featbit.db opened", metadata: [
            "event": "db-opened", "path": "\(path)", "sequence": "\(loaded.sequence)",
            "environments": "\(loaded.environments.count)", "items": "\(items)",
            "ms": "\((ContinuousClock.now - started).milliseconds)",
        ])
        if loaded.skippedItems > 0 {
            logger.warning("featbit.db held \(loaded.skippedItems) unreadable rows; they were dropped", metadata: [
                "event": "db-rows-skipped", "path": "\(path)", "count": "\(loaded.skippedItems)",
            ])
        }
        return .ready(database, loaded)
    }

    /// Reports one open problem: log line, metric, status.
    private struct Problem {
        let path: String
        let logger: Logger
        let status: AgentStatusBoard?

        func report(event: String, level: Logger.Level, message: String) {
            logger.log(level: level, "\(message)", metadata: ["event": "\(event)", "path": "\(path)"])
            Counter(label: FeatBitDatabase.openProblems, dimensions: [("reason", event)]).increment()
            status?.update { $0.problems["db"] = message }
        }

        func unavailable(_ reason: DatabaseUnavailableReason, _ message: String,
                         salvaged: LoadedState? = nil) -> OpenOutcome {
            var text = message
            if let salvaged, !salvaged.isEmpty {
                text += "; serving the \(salvaged.environments.count) environments read from it"
            }
            report(event: reason.event, level: .error, message: text)
            FeatBitDatabase.healthyGauge.record(0)
            return .unavailable(DatabaseUnavailable(reason: reason, message: text, salvaged: salvaged))
        }
    }

    private enum Inspection {
        case compatible
        /// A valid SQLite file without any table (e.g. created empty): ours to initialise.
        case blank
        case newer(Int)
        case foreign(String)
        case corrupt(String)
        case failed(any Error)
    }

    /// Looks at an existing SQLite file through a read-only connection, without changing it.
    private static func inspect(_ path: String) -> Inspection {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db -> Inspection in
                let applicationId = Int32(truncatingIfNeeded: try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0)
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                let tables = try String.fetchAll(db, sql: """
                    SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name
                    """)
                if applicationId == 0, version == 0, tables.isEmpty { return .blank }
                guard applicationId == DatabaseSchema.applicationId else {
                    let shown = tables.prefix(5).joined(separator: ", ") + (tables.count > 5 ? ", ..." : "")
                    return .foreign("another application's SQLite file: application_id \(applicationId), tables [\(shown)]")
                }
                if version > DatabaseSchema.version { return .newer(version) }
                if tables.contains("grdb_migrations"), try DatabaseSchema.migrator.hasBeenSuperseded(db) {
                    return .newer(max(version, DatabaseSchema.version + 1))
                }
                let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
                guard check == ["ok"] else {
                    let shown = check.prefix(3).joined(separator: "; ").replacingOccurrences(of: "\n", with: " ")
                    return .corrupt("quick_check: \(shown)")
                }
                return .compatible
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT {
            return .corrupt(describe(error))
        } catch {
            return .failed(error)
        }
    }

    private static func openWritable(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.label = "featbit.db"
        configuration.prepareDatabase { db in
            // Durable before acknowledged: every commit is fsynced.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        do {
            try queue.writeWithoutTransaction { db in
                let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                guard mode?.lowercased() == "wal" else {
                    throw DatabaseError(resultCode: .SQLITE_CANTOPEN,
                                        message: "cannot use WAL journal mode here (got \(mode ?? "nothing"))")
                }
            }
            try DatabaseSchema.migrator.migrate(queue)
            // Proves the file takes writes now rather than at the first change.
            try queue.write { db in
                try DataWrites.writeMetadata(db, [MetadataKey.openedAt: FeatBitTimestamp.iso8601(milliseconds: DataWrites.nowMillis())])
            }
        } catch {
            try? queue.close()
            throw error
        }
        return queue
    }

    /// Reads what a file that cannot be opened for writing holds, from a private copy. `nil` when it is not a
    /// compatible featbit.db or cannot be read at all.
    private static func salvage(_ path: String, logger: Logger) -> LoadedState? {
        guard case .sqlite = DatabaseFiles.kind(of: path) else { return nil }
        do {
            let (directory, copy) = try DatabaseFiles.copyToTemporary(path)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let queue = try DatabaseQueue(path: copy)
            defer { try? queue.close() }
            return try queue.read { db -> LoadedState? in
                let applicationId = Int32(truncatingIfNeeded: try Int.fetchOne(db, sql: "PRAGMA application_id") ?? 0)
                let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
                guard applicationId == DatabaseSchema.applicationId, version == DatabaseSchema.version,
                      try !DatabaseSchema.migrator.hasBeenSuperseded(db) else { return nil }
                return try Loader.load(db)
            }
        } catch {
            logger.debug("could not read featbit.db from a copy", metadata: [
                "event": "db-salvage-failed", "path": "\(path)", "error": "\(error)",
            ])
            return nil
        }
    }

    static func classify(_ error: any Error) -> DatabaseUnavailableReason {
        guard let error = error as? DatabaseError else { return .unwritable }
        switch error.resultCode {
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_IOERR, .SQLITE_FULL, .SQLITE_AUTH:
            return .unwritable
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return .busy
        default:
            return .failed
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// Reads the data set and metadata back.
enum Loader {
    static func load(_ db: Database) throws -> LoadedState {
        // Every value is decoded with `try?`: a row whose value has the wrong type (SQLite's type affinity lets
        // 'abc' into an INTEGER column, a blob into TEXT) is skipped and counted. GRDB's plain subscripts trap on
        // such a value, and a trap here would crash-loop the agent on every start.
        let stateRow = try Row.fetchOne(db, sql: "SELECT sequence, initialised FROM store_state WHERE id = 1")
        let sequence = UInt64(bitPattern: stateRow.flatMap { try? $0.decode(Int64.self, atIndex: 0) } ?? 0)
        let initialised = stateRow.flatMap { try? $0.decode(Bool.self, atIndex: 1) } ?? false
        var skipped = 0

        var versions: [String: Int64] = [:]
        let environmentRows = try Row.fetchCursor(db, sql: "SELECT env_id, version FROM environments")
        while let row = try environmentRows.next() {
            guard let envId = try? row.decode(String.self, atIndex: 0) else {
                skipped += 1
                continue
            }
            versions[envId] = (try? row.decode(Int64.self, atIndex: 1)) ?? 0
        }
        var secrets: [String: [SecretRecord]] = [:]
        let secretRows = try Row.fetchCursor(db, sql: """
            SELECT env_id, type, project_key, env_key, value FROM secrets ORDER BY env_id, position
            """)
        while let row = try secretRows.next() {
            guard let envId = try? row.decode(String.self, atIndex: 0),
                  let type = (try? row.decode(String.self, atIndex: 1)).flatMap(SecretRecord.SecretType.init(rawValue:)),
                  let projectKey = try? row.decode(String.self, atIndex: 2),
                  let envKey = try? row.decode(String.self, atIndex: 3),
                  let value = try? row.decode(String.self, atIndex: 4)
            else {
                skipped += 1
                continue
            }
            secrets[envId, default: []].append(
                SecretRecord(type: type, projectKey: projectKey, envId: envId, envKey: envKey, value: value))
        }
        var raw: [(kind: ItemKind, json: Data)] = []
        let itemRows = try Row.fetchCursor(db, sql: "SELECT kind, json FROM items")
        while let row = try itemRows.next() {
            guard let kind = (try? row.decode(String.self, atIndex: 0)).flatMap(ItemKind.init(rawValue:)),
                  let json = try? row.decode(Data.self, atIndex: 1)
            else {
                skipped += 1
                continue
            }
            raw.append((kind, json))
        }
        var metadata: [String: String] = [:]
        let metadataRows = try Row.fetchCursor(db, sql: "SELECT key, value FROM metadata")
        while let row = try metadataRows.next() {
            guard let key = try? row.decode(String.self, atIndex: 0), let value = try? row.decode(String.self, atIndex: 1) else {
                skipped += 1
                continue
            }
            metadata[key] = value
        }

        var flags: [String: [DataItem]] = [:]
        var segments: [String: [DataItem]] = [:]
        for item in parse(raw) {
            guard let item else {
                skipped += 1
                continue
            }
            if item.kind == .flag { flags[item.envId, default: []].append(item) } else {
                segments[item.envId, default: []].append(item)
            }
        }
        let envIds = Set(versions.keys).union(flags.keys).union(segments.keys).sorted()
        let environments = envIds.map { envId in
            EnvironmentData(envId: envId, secrets: secrets[envId] ?? [], flags: flags[envId] ?? [],
                            segments: segments[envId] ?? [])
        }
        return LoadedState(environments: environments, sequence: sequence, isInitialised: initialised,
                           environmentVersions: versions, metadata: metadata, movedAsideTo: nil, skippedItems: skipped)
    }

    /// Parses item JSON on all cores (the bulk of a cold start).
    static func parse(_ raw: [(kind: ItemKind, json: Data)]) -> [DataItem?] {
        let results = Results(count: raw.count)
        let chunks = raw.count < 256 ? 1 : min(max(ProcessInfo.processInfo.activeProcessorCount, 1) * 4, 32)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let lower = raw.count * chunk / chunks
            let upper = raw.count * (chunk + 1) / chunks
            for index in lower..<upper {
                let (kind, data) = raw[index]
                // The same parser the item first came through (JSONValue.parse).
                // A flag row holds the bytes JSONWriter wrote for it: checked and skimmed, not parsed into a tree
                // (the bulk of a large tenant's cold start); segments are few and build their models now.
                if kind == .flag, let item = try? DataItem(storedFlag: [UInt8](data)) {
                    results.set(index, item)
                } else if kind == .segment, let json = try? JSONValue.parse(data), let item = try? DataItem(kind: kind, json: json) {
                    results.set(index, item)
                }
            }
        }
        return results.values
    }

    /// Slots written by disjoint index ranges from concurrent chunks (a raw buffer: no exclusivity checks).
    private final class Results: @unchecked Sendable {
        private let buffer: UnsafeMutableBufferPointer<DataItem?>
        init(count: Int) {
            buffer = .allocate(capacity: count)
            buffer.initialize(repeating: nil)
        }
        deinit {
            buffer.deinitialize()
            buffer.deallocate()
        }
        func set(_ index: Int, _ item: DataItem) { buffer[index] = item }
        var values: [DataItem?] { Array(buffer) }
    }
}
