import Foundation

/// `(term, votedFor)` on disk, in a small file of its own beside featbit.db (`<DbPath>.vote`): a vote must be durable
/// before it is sent, and this write must never wait behind a large data or insight transaction on featbit.db. Written
/// to a temporary file, fsynced, renamed over the old one and the directory fsynced, so a crash leaves either the old
/// or the new record, never half of one. It travels with the node, not with a copied featbit.db.
public struct MeshVoteRecord: Sendable, Equatable {
    public var term: UInt64
    public var votedFor: NodeID?

    public init(term: UInt64, votedFor: NodeID?) {
        self.term = term
        self.votedFor = votedFor
    }

    public enum LoadResult: Sendable, Equatable {
        case found(MeshVoteRecord)
        /// No record: a new node, or one whose disk was lost.
        case missing
        /// A record that cannot be read: treated as missing (the node then votes only after hearing every peer).
        case unreadable(String)
    }

    /// The record's path for a featbit.db path.
    public static func path(forDatabase dbPath: String) -> String { dbPath + ".vote" }

    public static func load(path: String) -> LoadResult {
        guard FileManager.default.fileExists(atPath: path) else { return .missing }
        guard let data = FileManager.default.contents(atPath: path) else { return .unreadable("cannot read \(path)") }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        // Format: "<term> <votedFor or ->", one line.
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2, let term = UInt64(parts[0]) else { return .unreadable("\(path) is not a vote record") }
        return .found(MeshVoteRecord(term: term, votedFor: parts[1] == "-" ? nil : String(parts[1])))
    }

    public enum WriteError: Error, CustomStringConvertible {
        case failed(String)
        public var description: String { if case .failed(let s) = self { return s }; return "" }
    }

    /// Writes the record durably (write, fsync, rename, fsync the directory).
    public func write(to path: String) throws(WriteError) {
        let temporary = path + ".tmp"
        let text = "\(term) \(votedFor ?? "-")\n"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .failed("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            unlink(temporary)
            throw .failed("cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw .failed("cannot rename \(temporary): \(String(cString: strerror(errno)))")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dirFd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dirFd >= 0 {
            _ = fsync(dirFd)
            close(dirFd)
        }
    }
}
