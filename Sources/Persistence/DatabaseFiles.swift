import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File-level operations on featbit.db and its companions (`-wal`, `-shm`, `-journal`).
enum DatabaseFiles {
    static let companions = ["-wal", "-shm", "-journal"]

    struct POSIXFailure: Error, CustomStringConvertible {
        let operation: String
        let path: String
        let code: Int32
        var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
    }

    enum Kind {
        case absent
        case directory
        case empty
        case sqlite
        /// Not an SQLite file at all; the bytes that were found instead.
        case notSQLite(String)
        case unreadable(String)
    }

    /// What the path holds, judged from the file's first bytes.
    static func kind(of path: String) -> Kind {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return errno == ENOENT ? .absent : .unreadable(POSIXFailure(operation: "stat", path: path, code: errno).description)
        }
        if (info.st_mode & S_IFMT) == S_IFDIR { return .directory }
        if info.st_size == 0 { return .empty }
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return .unreadable(POSIXFailure(operation: "open", path: path, code: errno).description) }
        defer { Glibc.close(fd) }
        var header = [UInt8](repeating: 0, count: 16)
        let count = header.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 16) }
        guard count >= 0 else { return .unreadable(POSIXFailure(operation: "read", path: path, code: errno).description) }
        let magic = Array("SQLite format 3".utf8) + [0]
        if count == 16, header == magic { return .sqlite }
        let shown = header.prefix(max(0, count)).map { String(format: "%02x", $0) }.joined()
        return .notSQLite("first bytes \(shown) are not an SQLite header")
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw POSIXFailure(operation: "rename", path: from, code: errno) }
    }

    static func fsync(path: String) throws {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { throw POSIXFailure(operation: "open", path: path, code: errno) }
        defer { Glibc.close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync", path: path, code: errno) }
    }

    static func fsyncDirectory(of path: String) throws {
        try fsync(path: (path as NSString).deletingLastPathComponent.isEmpty
                  ? "." : (path as NSString).deletingLastPathComponent)
    }

    /// Moves a bad db (and its companions, so a stale WAL is never replayed into the fresh file) to
    /// `<path>.corrupt-<timestamp>` (or only the companions, when the db itself is absent). Nothing is deleted.
    /// Returns the new path.
    static func moveAside(_ path: String, now: Date = Date()) throws -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let base = "\(path).corrupt-\(formatter.string(from: now))"
        var target = base
        var attempt = 1
        while exists(target) || companions.contains(where: { exists(target + $0) }) {
            target = "\(base)-\(attempt)"
            attempt += 1
        }
        if exists(path) { try rename(path, to: target) }
        for suffix in companions where exists(path + suffix) {
            try rename(path + suffix, to: target + suffix)
        }
        try? fsyncDirectory(of: path)
        return target
    }

    /// Copies the db and its WAL into a fresh private temporary directory (to read a file that cannot be opened
    /// in place, e.g. on a read-only filesystem). The caller removes the directory.
    static func copyToTemporary(_ path: String) throws -> (directory: String, path: String) {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("featbit-db-read-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let copy = (directory as NSString).appendingPathComponent("featbit.db")
        do {
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            if exists(path + "-wal") { try FileManager.default.copyItem(atPath: path + "-wal", toPath: copy + "-wal") }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        return (directory, copy)
    }
}
