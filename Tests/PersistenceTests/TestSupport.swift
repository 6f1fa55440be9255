import AgentCore
import Foundation
import GRDB
import Logging
import Synchronization
import Testing

@testable import Persistence

// MARK: - Temporary directories and shell

/// A private directory under the system temp dir, removed (after undoing any mount in it) by `remove()`.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "featbit-db-test") throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Files whose name starts with `prefix`.
    func files(startingWith prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
    }
}

/// Runs `body` with a fresh temp dir that is always removed.
func withTempDir<T>(_ body: (TempDir) async throws -> T) async throws -> T {
    let dir = try TempDir()
    defer { dir.remove() }
    return try await body(dir)
}

@discardableResult
func sh(_ arguments: String...) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do {
        try process.run()
    } catch {
        return (-1, "\(error)")
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A size-limited tmpfs mounted at a fresh directory, or `nil` when mounting is not permitted here.
final class TmpfsMount: @unchecked Sendable {
    let dir: TempDir
    var path: String { dir.path }

    init?(sizeKiB: Int) {
        guard let dir = try? TempDir("featbit-db-tmpfs") else { return nil }
        self.dir = dir
        guard sh("mount", "-t", "tmpfs", "-o", "size=\(sizeKiB)k,mode=0755", "tmpfs", dir.path).status == 0 else {
            dir.remove()
            return nil
        }
    }

    func resize(kiB: Int) -> Bool {
        sh("mount", "-o", "remount,size=\(kiB)k", dir.path).status == 0
    }

    func file(_ name: String) -> String { dir.file(name) }

    func unmount() {
        sh("umount", "-l", dir.path)
        dir.remove()
    }
}

/// A directory made read-only for real: a read-only bind mount (works as root, where chmod is ignored), else
/// `chattr +i` on the directory, else chmod (effective for non-root users). `nil` when none works.
final class ReadOnlyView: @unchecked Sendable {
    let path: String
    let method: String
    private let undo: () -> Void

    private init(path: String, method: String, undo: @escaping () -> Void) {
        self.path = path
        self.method = method
        self.undo = undo
    }

    /// A read-only view of `source` (the view's path may be `source` itself).
    static func of(_ source: TempDir) -> ReadOnlyView? {
        if let target = try? TempDir("featbit-db-ro") {
            if sh("mount", "--bind", source.path, target.path).status == 0 {
                if sh("mount", "-o", "remount,bind,ro", target.path).status == 0 {
                    return ReadOnlyView(path: target.path, method: "read-only bind mount") {
                        sh("umount", "-l", target.path)
                        target.remove()
                    }
                }
                sh("umount", "-l", target.path)
            }
            target.remove()
        }
        if sh("chattr", "+i", source.path).status == 0 {
            return ReadOnlyView(path: source.path, method: "chattr +i") { sh("chattr", "-i", source.path) }
        }
        if getuid() != 0, chmod(source.path, 0o555) == 0 {
            return ReadOnlyView(path: source.path, method: "chmod 0555") { chmod(source.path, 0o755) }
        }
        return nil
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func remove() { undo() }
}

// MARK: - Logs

/// Records log events so tests can check the one clear line each fault must give.
final class LogCapture: Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let event: String?
    }

    private let entries = Mutex<[Entry]>([])

    var all: [Entry] { entries.withLock { $0 } }

    func events(_ event: String, atLeast level: Logger.Level = .trace) -> [Entry] {
        all.filter { $0.event == event && $0.level >= level }
    }

    func append(_ entry: Entry) {
        // FEATBIT_TEST_PRINT_LOGS=1 shows the lines an operator would see.
        if ProcessInfo.processInfo.environment["FEATBIT_TEST_PRINT_LOGS"] != nil, entry.level >= .notice {
            print("[\(entry.level)] \(entry.event ?? "-"): \(entry.message)")
        }
        entries.withLock { $0.append(entry) }
    }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(capture: self) }
    }

    private struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let eventName = event.metadata?["event"].map { "\($0)" }
            capture.append(Entry(level: event.level, message: "\(event.message)", event: eventName))
        }
    }
}

// MARK: - Data

enum TestData {
    static let envA = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
    static let envB = "8dc61769-5af3-4d9f-8cb3-d7342e24c3eb"
    static let envC = "0b9d6b7e-1f3a-4a59-9d1e-6c2f9a7b3c11"

    static func iso(_ ms: Int64) -> String { FeatBitTimestamp.iso8601(milliseconds: ms) }

    static func secrets(_ env: String, project: String = "webapp", envKey: String = "dev") -> [SecretRecord] {
        let encoded = SecretCodec.encode(UUID(uuidString: env)!)
        return [
            SecretRecord(type: .server, projectKey: project, envId: env, envKey: envKey, value: "SRV_" + String(repeating: "s", count: 18) + encoded),
            SecretRecord(type: .client, projectKey: project, envId: env, envKey: envKey, value: "CLI_" + String(repeating: "c", count: 18) + encoded),
        ]
    }

    static func flag(_ id: String, env: String = envA, updatedAt: Int64, padding: Int = 0, note: String = "") -> DataItem {
        let json: JSONValue = .object([
            "id": .string(id), "envId": .string(env), "key": .string("flag-\(id)"), "name": .string("Flag \(id) ✓"),
            "description": .string(note + String(repeating: "x", count: padding)),
            "variationType": .string("boolean"),
            "variations": .array([
                .object(["id": .string("v-true"), "name": .string("True"), "value": .string("true")]),
                .object(["id": .string("v-false"), "name": .string("False"), "value": .string("false")]),
            ]),
            "targetUsers": .array([]),
            "rules": .array([.object([
                "id": .string("r1"), "name": .string("Rule"), "dispatchKey": .null, "includedInExpt": .bool(false),
                "conditions": .array([.object(["property": .string("age"), "op": .string("BiggerThan"),
                                               "value": .string("30")])]),
                "variations": .array([.object(["id": .string("v-true"), "rollout": .array([.integer(0), .number(0.25)]),
                                               "exptRollout": .number(1.5e-3)])]),
                "unknownField": .object(["kept": .array([.bool(true), .null, .integer(-7)])]),
            ])]),
            "isEnabled": .bool(true), "disabledVariationId": .string("v-false"),
            "fallthrough": .object(["dispatchKey": .null, "includedInExpt": .bool(true), "variations": .array([
                .object(["id": .string("v-true"), "rollout": .array([.integer(0), .integer(1)]), "exptRollout": .integer(1)]),
            ])]),
            "exptIncludeAllTargets": .bool(true), "tags": .array([.string("t")]), "isArchived": .bool(false),
            "updatedAt": .string(iso(updatedAt)),
        ])
        return try! DataItem(kind: .flag, json: json)
    }

    static func segment(_ id: String, env: String = envA, updatedAt: Int64) -> DataItem {
        try! DataItem(kind: .segment, json: .object([
            "id": .string(id), "envId": .string(env), "name": .string("Segment \(id)"),
            "included": .array([.string("u1"), .string("u2")]), "excluded": .array([]), "rules": .array([]),
            "isArchived": .bool(false), "updatedAt": .string(iso(updatedAt)),
        ]))
    }

    static func flagId(_ n: Int) -> String { String(format: "f0000000-0000-4000-8000-%012d", n) }
    static func segmentId(_ n: Int) -> String { String(format: "50000000-0000-4000-8000-%012d", n) }

    /// Two environments with secrets, flags and segments.
    static var initial: Change {
        .replace([
            EnvironmentData(envId: envA, secrets: secrets(envA),
                            flags: (1...3).map { flag(flagId($0), updatedAt: 1_700_000_000_000 + Int64($0)) },
                            segments: (1...2).map { segment(segmentId($0), updatedAt: 1_700_000_000_100 + Int64($0)) }),
            EnvironmentData(envId: envB, secrets: secrets(envB, project: "shop", envKey: "prod"),
                            flags: [flag(flagId(10), env: envB, updatedAt: 1_700_000_000_010)], segments: []),
        ])
    }

    static func upsert(flags: [DataItem] = [], segments: [DataItem] = []) -> Change {
        .upsert(DataSetParser.groupByEnvironment(flags: flags, segments: segments))
    }
}

// MARK: - Checks

/// The two snapshots hold the same data, byte for byte.
func expectSameData(_ a: DataSnapshot, _ b: DataSnapshot, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.sequence == b.sequence, sourceLocation: sourceLocation)
    #expect(a.isInitialised == b.isInitialised, sourceLocation: sourceLocation)
    #expect(a.sortedEnvIds == b.sortedEnvIds, sourceLocation: sourceLocation)
    #expect(a.version == b.version, sourceLocation: sourceLocation)
    for envId in a.sortedEnvIds {
        guard let x = a.environments[envId], let y = b.environments[envId] else { continue }
        #expect(x.secrets == y.secrets, "secrets of \(envId)", sourceLocation: sourceLocation)
        #expect(x.version == y.version, "version of \(envId)", sourceLocation: sourceLocation)
        #expect(x.sortedFlags.map(\.id) == y.sortedFlags.map(\.id), sourceLocation: sourceLocation)
        #expect(x.sortedFlags.map(\.encoded) == y.sortedFlags.map(\.encoded), sourceLocation: sourceLocation)
        #expect(x.sortedSegments.map(\.encoded) == y.sortedSegments.map(\.encoded), sourceLocation: sourceLocation)
        #expect(x.serverFullMessage == y.serverFullMessage, sourceLocation: sourceLocation)
    }
}

extension OpenOutcome {
    /// The database, or a recorded failure.
    func requireReady(sourceLocation: SourceLocation = #_sourceLocation) throws -> (FeatBitDatabase, LoadedState) {
        switch self {
        case .ready(let db, let loaded):
            return (db, loaded)
        case .unavailable(let u):
            Issue.record("db unavailable: \(u.message)", sourceLocation: sourceLocation)
            throw CancellationError()
        }
    }
}

func fileBytes(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

/// The store sequence recorded in the file, read through an independent read-only connection.
func sequenceOnDisk(_ path: String) throws -> Int64 {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    defer { try? queue.close() }
    return try queue.read { db in try Int64.fetchOne(db, sql: "SELECT sequence FROM store_state WHERE id = 1") ?? -1 }
}

/// A value shared with escaping closures and other threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
