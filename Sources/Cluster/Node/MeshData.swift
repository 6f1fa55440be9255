import AgentCore
import Crypto

/// How the mesh reads and writes the store's data: summaries for `STATE`, payloads for `PATCH`/`SNAPSHOT`, and the
/// changes a follower applies from them.
public enum MeshData {
    /// featbit.db metadata keys of the replication position (written in the same transaction as the data).
    public static let appliedKey = "mesh.applied"
    public static let fullEpochKey = "mesh.fullEpoch"

    public static func metadata(applied: MeshPosition, fullEpoch: MeshPosition?) -> [String: String?] {
        var entries: [String: String?] = [appliedKey: applied.description]
        if let fullEpoch { entries[fullEpochKey] = fullEpoch.description }
        return entries
    }

    /// Parses "term.seq".
    public static func position(_ text: String?) -> MeshPosition? {
        guard let text else { return nil }
        let parts = text.split(separator: ".")
        guard parts.count == 2, let term = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        return MeshPosition(term: term, seq: seq)
    }

    /// Version and digest of what a snapshot holds: SHA-256 (first 8 bytes, hex) over every environment's id and
    /// its own digest (`EnvironmentSnapshot.digest`, computed when that environment last changed).
    public static func summary(_ snapshot: DataSnapshot) -> DataSummary {
        var hasher = SHA256()
        for envId in snapshot.sortedEnvIds {
            guard let env = snapshot.environments[envId] else { continue }
            hasher.update(data: Array("env \(envId)\n".utf8))
            hasher.update(data: env.digest)
        }
        let digest = hasher.finalize().prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
        return DataSummary(dataVersion: snapshot.version, digest: digest, hasData: snapshot.isInitialised)
    }

    /// Each environment's version, as a catch-up request carries them.
    public static func versions(_ snapshot: DataSnapshot) -> [EnvironmentVersion] {
        snapshot.sortedEnvIds.map { EnvironmentVersion(envId: $0, timestamp: snapshot.environments[$0]?.version ?? 0) }
    }

    /// A snapshot's payload: every environment, its secrets, flags and segments (`rp_full` shape).
    public static func snapshotPayload(_ snapshot: DataSnapshot) -> [UInt8] {
        DataSnapshot.itemsBody(eventType: "rp_full", snapshot.sortedEnvIds.compactMap { envId in
            snapshot.environments[envId].map {
                DataSnapshot.ItemsEntry(envId: $0.envId, secrets: $0.secrets, flags: $0.sortedFlags, segments: $0.sortedSegments)
            }
        })
    }

    /// The items one applied change changed (`rp_patch` shape; items in ascending `updatedAt` per environment).
    public static func patchPayload(_ change: AppliedChange) -> [UInt8] {
        DataSnapshot.itemsBody(eventType: "rp_patch", change.deltas.map {
            DataSnapshot.ItemsEntry(envId: $0.envId, secrets: [], flags: $0.flags, segments: $0.segments)
        })
    }

    /// The items newer than a follower's per-environment versions (an environment it lacks: all of them).
    public static func patchPayload(_ snapshot: DataSnapshot, since versions: [EnvironmentVersion]) -> [UInt8] {
        let known = Dictionary(versions.map { ($0.envId, $0.timestamp) }, uniquingKeysWith: max)
        return DataSnapshot.itemsBody(eventType: "rp_patch", snapshot.sortedEnvIds.compactMap { envId in
            guard let env = snapshot.environments[envId] else { return nil }
            let newer = env.items(after: known[envId] ?? 0)
            guard !newer.flags.isEmpty || !newer.segments.isEmpty else { return nil }
            return DataSnapshot.ItemsEntry(envId: envId, secrets: [], flags: newer.flags, segments: newer.segments)
        })
    }

    public enum PayloadError: Error, CustomStringConvertible {
        case invalid(String)
        public var description: String { if case .invalid(let s) = self { return s }; return "" }
    }

    /// The change a follower applies for a replicated message, and what it refused of it (invalid items are not
    /// applied, the rest is: the follower still takes the message's position, or replication would stall on it).
    public static func change(from payload: [UInt8], isSnapshot: Bool) throws(PayloadError) -> (Change, DataSetParser.Parsed) {
        do {
            let json = try JSONValue.parse(payload)
            guard let items = json["items"] else { throw PayloadError.invalid("replication payload without \"items\"") }
            let parsed = try DataSetParser.parseItems(items, from: isSnapshot ? .fullSync : .patch)
            return (isSnapshot ? .replicatedReplace(parsed.environments) : .upsert(parsed.environments), parsed)
        } catch let error as PayloadError {
            throw error
        } catch {
            throw .invalid("\(error)")
        }
    }
}
