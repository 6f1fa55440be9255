/// The data of one environment inside a change: what an `rp_full`/`rp_patch` item or a bootstrap item carries.
public struct EnvironmentData: Sendable {
    /// Lowercase GUID text.
    public var envId: String
    /// `nil` when the source carries no secrets for this environment (patches never touch secrets).
    public var secrets: [SecretRecord]?
    public var flags: [DataItem]
    public var segments: [DataItem]

    public init(envId: String, secrets: [SecretRecord]?, flags: [DataItem], segments: [DataItem]) {
        self.envId = envId
        self.secrets = secrets
        self.flags = flags
        self.segments = segments
    }
}

/// A change to the data set, whatever its source (upstream, bootstrap API, DataFile, replication).
/// The store never knows where a change came from.
public enum Change: Sendable {
    /// A whole data set that replaces everything held (`rp_full`, bootstrap, DataFile).
    case replace([EnvironmentData])
    /// A mesh snapshot from the leader: replaces everything held (deletions and secret changes propagate), except
    /// that an item this node holds in a newer version is kept (last writer wins per item).
    case replicatedReplace([EnvironmentData])
    /// Items upserted by `(id, envId)` with the timestamp rule (`rp_patch`, pushed `patch`, replication patch).
    case upsert([EnvironmentData])
}

/// Parsing of the data-set JSON shapes FeatBit uses (spec §3.5, §6.6).
public enum DataSetParser {
    /// Parses a bootstrap/backup/DataFile body `{"eventType": …, "items": [...]}` into a replacing change.
    public static func parseBootstrap(_ json: JSONValue) throws(DataSetError) -> [EnvironmentData] {
        guard case .object = json else { throw DataSetError("body is not a JSON object") }
        guard let eventType = json["eventType"] else { throw DataSetError("missing \"eventType\"") }
        guard eventType.stringValue != nil else { throw DataSetError("\"eventType\" is not a string") }
        guard let items = json["items"] else { throw DataSetError("missing \"items\"") }
        return try parseItems(items, from: .bootstrap)
    }

    /// Where items come from, which decides what each must carry.
    public enum ItemsSource: Sendable {
        /// `rp_full`: replaces everything, so `secrets`, `featureFlags` and `segments` must all be there — an item
        /// missing one (or spelling it differently) would otherwise wipe it.
        case fullSync
        /// A bootstrap body or DataFile (spec §6.6): replaces everything; `secrets` is optional there.
        case bootstrap
        /// `rp_patch`: `secrets` are never used (patches do not touch them), so not even parsed; an absent array
        /// just adds nothing.
        case patch
    }

    /// Parses the `items` array of `rp_full`/`rp_patch` or a bootstrap body.
    public static func parseItems(_ items: JSONValue, from source: ItemsSource) throws(DataSetError) -> [EnvironmentData] {
        guard let array = items.arrayValue else { throw DataSetError("\"items\" is not an array") }
        var result: [EnvironmentData] = []
        result.reserveCapacity(array.count)
        for (index, item) in array.enumerated() {
            do {
                result.append(try parseEnvironment(item, from: source))
            } catch {
                throw error.at("items[\(index)]")
            }
        }
        return result
    }

    static func parseEnvironment(_ item: JSONValue, from source: ItemsSource) throws(DataSetError) -> EnvironmentData {
        guard case .object = item else { throw DataSetError("is not a JSON object") }
        guard let envText = item["envId"]?.stringValue else { throw DataSetError("missing or non-string \"envId\"") }
        guard let envId = GUIDText.normalise(envText) else { throw DataSetError("\"envId\" is not a GUID: \(envText)") }
        var secrets: [SecretRecord]? = nil
        if source == .patch {
            // Left nil: not touched.
        } else if let secretsJSON = item["secrets"], !secretsJSON.isNull {
            guard let array = secretsJSON.arrayValue else { throw DataSetError("\"secrets\" is not an array") }
            var parsed: [SecretRecord] = []
            for (index, secret) in array.enumerated() {
                do {
                    parsed.append(try parseSecret(secret))
                } catch {
                    throw error.at("secrets[\(index)]")
                }
            }
            secrets = parsed
        } else if source == .fullSync {
            throw DataSetError("missing \"secrets\"")
        }
        if source != .patch {
            for field in ["featureFlags", "segments"] where item[field] == nil {
                throw DataSetError("missing \"\(field)\" (a data set replaces everything: an empty list must be [])")
            }
        }
        let flags = try parseEntities(item["featureFlags"], kind: .flag, field: "featureFlags")
        let segments = try parseEntities(item["segments"], kind: .segment, field: "segments")
        return EnvironmentData(envId: envId, secrets: secrets, flags: flags, segments: segments)
    }

    /// Parses a flag or segment array; a missing or `null` array is empty.
    public static func parseEntities(_ value: JSONValue?, kind: ItemKind, field: String) throws(DataSetError) -> [DataItem] {
        guard let value, !value.isNull else { return [] }
        guard let array = value.arrayValue else { throw DataSetError("\"\(field)\" is not an array") }
        var items: [DataItem] = []
        items.reserveCapacity(array.count)
        for (index, element) in array.enumerated() {
            do {
                items.append(try DataItem(kind: kind, json: element))
            } catch {
                throw error.at("\(field)[\(index)]")
            }
        }
        return items
    }

    static func parseSecret(_ json: JSONValue) throws(DataSetError) -> SecretRecord {
        guard case .object = json else { throw DataSetError("is not a JSON object") }
        guard let typeText = json["type"]?.stringValue, let type = SecretRecord.SecretType(rawValue: typeText) else {
            throw DataSetError("\"type\" must be \"server\" or \"client\"")
        }
        guard let value = json["value"]?.stringValue, let embeddedEnv = SecretCodec.envId(fromSecret: value) else {
            throw DataSetError("\"value\" is not a 44-character FeatBit secret")
        }
        let envText = json["envId"]?.stringValue
        let envId = envText.flatMap(GUIDText.normalise) ?? embeddedEnv.featbitString
        return SecretRecord(
            type: type,
            projectKey: json["projectKey"]?.stringValue ?? "",
            envId: envId,
            envKey: json["envKey"]?.stringValue ?? "",
            value: value
        )
    }

    /// Groups loose flags and segments (a pushed `patch`) by their own `envId` into an upsert.
    public static func groupByEnvironment(flags: [DataItem], segments: [DataItem]) -> [EnvironmentData] {
        var order: [String] = []
        var byEnv: [String: EnvironmentData] = [:]
        for item in flags + segments {
            if byEnv[item.envId] == nil {
                order.append(item.envId)
                byEnv[item.envId] = EnvironmentData(envId: item.envId, secrets: nil, flags: [], segments: [])
            }
            if item.kind == .flag { byEnv[item.envId]!.flags.append(item) } else { byEnv[item.envId]!.segments.append(item) }
        }
        return order.map { byEnv[$0]! }
    }
}
