import GRDB

/// The layout of featbit.db and its migrations.
///
/// A featbit.db is recognised by `PRAGMA application_id` (`FBDB`); its schema version is `PRAGMA user_version` and the
/// migrations GRDB recorded in `grdb_migrations`. A file whose version is higher than `DatabaseSchema.version`, or
/// that lists migrations this build does not know, was written by a newer agent and is left untouched.
enum DatabaseSchema {
    /// `PRAGMA application_id` of every featbit.db: "FBDB".
    static let applicationId: Int32 = 0x4642_4442
    /// The schema version this build writes and reads. Bump it with every new migration.
    static let version = 1

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Identity and version change in the same transaction as the tables: a half-created file cannot exist.
            try db.execute(sql: "PRAGMA application_id = \(applicationId)")
            try db.execute(sql: "PRAGMA user_version = 1")
            // Store-wide state: the sequence number of the last applied change and whether a data set arrived.
            try db.execute(sql: """
                CREATE TABLE store_state (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    sequence INTEGER NOT NULL,
                    initialised INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                INSERT INTO store_state (id, sequence, initialised, updated_at) VALUES (1, 0, 0, 0);
                -- One row per environment held; version = max updatedAt of its flags and segments (ms).
                CREATE TABLE environments (
                    env_id TEXT PRIMARY KEY NOT NULL,
                    version INTEGER NOT NULL,
                    sequence INTEGER NOT NULL
                );
                CREATE TABLE secrets (
                    env_id TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    project_key TEXT NOT NULL,
                    env_key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    PRIMARY KEY (env_id, position)
                );
                -- Flags and segments: json is the item's JSON exactly as the agent serves it (DataItem.encoded).
                CREATE TABLE items (
                    env_id TEXT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('flag', 'segment')),
                    id TEXT NOT NULL,
                    updated_at INTEGER NOT NULL,
                    json TEXT NOT NULL,
                    UNIQUE (env_id, kind, id)
                );
                -- Agent identity, sync metadata, the mesh's term/vote/position, insight secrets...
                CREATE TABLE metadata (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                );
                -- Insights kept locally (e.g. while the upstream is unreachable), oldest first by id.
                CREATE TABLE local_insights (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    timestamp INTEGER NOT NULL,
                    env_id TEXT,
                    body BLOB NOT NULL
                );
                """)
        }
        return migrator
    }
}
