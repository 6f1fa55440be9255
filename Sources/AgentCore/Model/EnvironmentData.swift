/// The data of one environment inside a change: what an `rp_full`/`rp_patch` item or a bootstrap item carries.
public struct EnvironmentData: Sendable {
    /// Lowercase GUID text.
    public var envId: String
    /// `nil` when the source carries no secrets for this environment (patches never touch secrets).
    public var secrets: [SecretRecord]?
    public var flags: [DataItem]
    public var segments: [DataItem]
    /// Items the source sent in a version the agent refused (invalid): a replacing change keeps the version it holds
    /// of each instead of deleting it.
    public var refused: [ItemRef]

    public init(envId: String, secrets: [SecretRecord]?, flags: [DataItem], segments: [DataItem],
                refused: [ItemRef] = []) {
        self.envId = envId
        self.secrets = secrets
        self.flags = flags
        self.segments = segments
        self.refused = refused
    }
}

/// Which flag or segment: the store's key.
public struct ItemRef: Sendable, Hashable {
    public let kind: ItemKind
    /// Lowercase GUID text.
    public let envId: String
    public let id: String

    public init(kind: ItemKind, envId: String, id: String) {
        self.kind = kind
        self.envId = envId
        self.id = id
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

/// Parsing of the data-set JSON shapes FeatBit uses (spec §3.5, §6.6), every item checked by `ItemValidator`.
///
/// What happens to an invalid item depends on where it comes from: a bootstrap body or DataFile is an operator's
/// whole data set, refused whole with every problem's path (nothing of it is applied); an upstream or replicated
/// message is applied without its invalid items, which are returned as refused. The structure around the items (an
/// `items` list, each entry's `envId`, the lists themselves) is never skipped: a message whose structure is wrong is
/// refused whole, since applying part of a replacing message could delete what it meant to keep.
public enum DataSetParser {
    /// What a message's items parse to: the valid items grouped by environment, and what was refused.
    public struct Parsed: Sendable {
        public var environments: [EnvironmentData]
        public var refused: [RefusedItem]

        /// True when items were refused and none was left to apply: such a message changes nothing.
        public var refusedEveryItem: Bool {
            !refused.isEmpty && environments.allSatisfy { $0.flags.isEmpty && $0.segments.isEmpty }
        }
    }

    /// Parses a bootstrap/backup/DataFile body `{"eventType": …, "items": [...]}` into a replacing change. Any
    /// problem refuses the whole data set; the error lists every problem found.
    public static func parseBootstrap(_ json: JSONValue) throws(DataSetError) -> [EnvironmentData] {
        guard case .object = json else { throw DataSetError("body is not a JSON object") }
        guard let eventType = json["eventType"] else { throw DataSetError("missing \"eventType\"") }
        guard eventType.stringValue != nil else { throw DataSetError("\"eventType\" is not a string") }
        guard let items = json["items"] else { throw DataSetError("missing \"items\"") }
        return try parseItems(items, from: .bootstrap).environments
    }

    /// Where items come from, which decides what each must carry and what an invalid one does.
    public enum ItemsSource: Sendable {
        /// `rp_full` (or a mesh snapshot): replaces everything, so `secrets`, `featureFlags` and `segments` must all
        /// be there — an item missing one (or spelling it differently) would otherwise wipe it.
        case fullSync
        /// A bootstrap body or DataFile (spec §6.6): replaces everything; `secrets` is optional there; any invalid
        /// item refuses the whole data set.
        case bootstrap
        /// `rp_patch`: `secrets` are never used (patches do not touch them), so not even parsed; an absent array
        /// just adds nothing.
        case patch
    }

    /// Parses the `items` array of `rp_full`/`rp_patch` or a bootstrap body; paths in errors and refusals start at
    /// `items`.
    public static func parseItems(_ items: JSONValue, from source: ItemsSource) throws(DataSetError) -> Parsed {
        var parser = Parser(source: source)
        let environments = parser.items(items)
        if let error = parser.error { throw error }
        return Parsed(environments: environments, refused: parser.refused)
    }

    /// Parses a pushed `patch`'s loose `featureFlags` and `segments` (paths start at those names), grouped by each
    /// item's own `envId`; invalid items are refused, the rest applied.
    public static func parseLoosePatch(_ data: JSONValue) throws(DataSetError) -> Parsed {
        var parser = Parser(source: .patch)
        let flags = parser.entities(data["featureFlags"], kind: .flag, field: "featureFlags", envId: nil)
        let segments = parser.entities(data["segments"], kind: .segment, field: "segments", envId: nil)
        if let error = parser.error { throw error }
        return Parsed(environments: groupByEnvironment(flags: flags.items, segments: segments.items),
                      refused: parser.refused)
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

/// One pass over a data set's items: what is fatal to the whole message (its structure; in a bootstrap, anything)
/// and what is refused item by item.
private struct Parser {
    let source: DataSetParser.ItemsSource
    /// At most `DataSetError.listedProblems` of them; `unlisted` counts the rest (a body of a million broken flags
    /// must not become a 400 body, or a log line, of a million problems).
    private var fatal: [DataSetError.Problem] = []
    private var unlisted = 0
    var refused: [RefusedItem] = []

    init(source: DataSetParser.ItemsSource) {
        self.source = source
    }

    /// Everything fatal found, or nil.
    var error: DataSetError? {
        guard !fatal.isEmpty else { return nil }
        guard unlisted > 0 else { return DataSetError(problems: fatal) }
        return DataSetError(problems: fatal + [.init(path: nil, reason: "and \(unlisted) more problems not listed")])
    }

    private mutating func fail(_ problem: DataSetError.Problem) {
        if fatal.count < DataSetError.listedProblems { fatal.append(problem) } else { unlisted += 1 }
    }

    private mutating func fail(_ problems: [DataSetError.Problem]) {
        for problem in problems { fail(problem) }
    }

    /// A bootstrap refuses its whole data set for any invalid item; the other sources skip the item.
    private var refusesWhole: Bool { source == .bootstrap }

    mutating func items(_ items: JSONValue) -> [EnvironmentData] {
        guard let array = items.arrayValue else {
            fail(.init(path: "items", reason: "expected a list"))
            return []
        }
        var result: [EnvironmentData] = []
        result.reserveCapacity(array.count)
        for (index, item) in array.enumerated() {
            if let environment = self.environment(item, at: "items[\(index)]") { result.append(environment) }
        }
        return result
    }

    private mutating func environment(_ item: JSONValue, at path: String) -> EnvironmentData? {
        guard case .object = item else {
            fail(.init(path: path, reason: "expected an object"))
            return nil
        }
        guard let envText = item["envId"]?.stringValue else {
            fail(.init(path: "\(path).envId", reason: "missing or not a string"))
            return nil
        }
        guard let envId = GUIDText.normalise(envText) else {
            fail(.init(path: "\(path).envId", reason: "is not a GUID: \(envText)"))
            return nil
        }
        var secrets: [SecretRecord]? = nil
        if source == .patch {
            // Left nil: not touched.
        } else if let secretsJSON = item["secrets"], !secretsJSON.isNull {
            if let array = secretsJSON.arrayValue {
                secrets = array.enumerated().compactMap { index, secret in
                    self.secret(secret, at: "\(path).secrets[\(index)]", envId: envId)
                }
            } else {
                fail(.init(path: "\(path).secrets", reason: "expected a list"))
            }
        } else if source == .fullSync {
            fail(.init(path: "\(path).secrets", reason: "missing (a full sync carries every secret)"))
        }
        if source != .patch {
            for field in ["featureFlags", "segments"] where item[field] == nil {
                fail(.init(path: "\(path).\(field)",
                                   reason: "missing (a data set replaces everything: an empty list must be [])"))
            }
        }
        let flags = entities(item["featureFlags"], kind: .flag, field: "\(path).featureFlags", envId: envId)
        let segments = entities(item["segments"], kind: .segment, field: "\(path).segments", envId: envId)
        return EnvironmentData(envId: envId, secrets: secrets, flags: flags.items, segments: segments.items,
                               refused: flags.refused + segments.refused)
    }

    private mutating func secret(_ json: JSONValue, at path: String, envId: String) -> SecretRecord? {
        let problems = ItemValidator.secretProblems(json)
        if problems.isEmpty, let secret = DataSetParser.secretRecord(validated: json) { return secret }
        let error = DataSetError(problems: problems.isEmpty ? [.init(path: nil, reason: "invalid secret")] : problems)
            .at(path)
        if refusesWhole { fail(error.problems) } else {
            refused.append(RefusedItem(envId: envId, kind: nil, id: nil, error: error))
        }
        return nil
    }

    /// A flag or segment list; a missing or `null` list is empty. `envId` is the environment entry's, if any.
    mutating func entities(_ value: JSONValue?, kind: ItemKind, field: String,
                           envId: String?) -> (items: [DataItem], refused: [ItemRef]) {
        guard let value, !value.isNull else { return ([], []) }
        guard let array = value.arrayValue else {
            fail(.init(path: field, reason: "expected a list"))
            return ([], [])
        }
        var items: [DataItem] = []
        var held: [ItemRef] = []
        items.reserveCapacity(array.count)
        for (index, element) in array.enumerated() {
            let path = "\(field)[\(index)]"
            var problems = ItemValidator.problems(kind, element)
            var item: DataItem? = nil
            do {
                item = try DataItem(kind: kind, json: element)
            } catch {
                // The indexed fields' problems first; "not an object" is already said.
                let said = Set(problems.map(\.path))
                problems.insert(contentsOf: error.problems.filter { !said.contains($0.path) }, at: 0)
            }
            if let item, problems.isEmpty {
                items.append(item)
                continue
            }
            let error = DataSetError(problems: problems).at(path)
            if refusesWhole {
                fail(error.problems)
                continue
            }
            let ownEnv = element["envId"]?.stringValue.flatMap(GUIDText.normalise) ?? envId ?? ""
            let id = element["id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            refused.append(RefusedItem(envId: ownEnv, kind: kind, id: id, error: error))
            if let id, !ownEnv.isEmpty { held.append(ItemRef(kind: kind, envId: ownEnv, id: id)) }
        }
        return (items, held)
    }
}

extension DataSetParser {
    /// A secret record from JSON `ItemValidator.secretProblems` found nothing wrong with (so only the shapes it
    /// checked are assumed: `nil` otherwise).
    static func secretRecord(validated json: JSONValue) -> SecretRecord? {
        guard let type = json["type"]?.stringValue.flatMap(SecretRecord.SecretType.init(rawValue:)),
              let value = json["value"]?.stringValue, let embeddedEnv = SecretCodec.envId(fromSecret: value) else {
            return nil
        }
        return SecretRecord(
            type: type,
            projectKey: json["projectKey"]?.stringValue ?? "",
            envId: json["envId"]?.stringValue.flatMap(GUIDText.normalise) ?? embeddedEnv.featbitString,
            envKey: json["envKey"]?.stringValue ?? "",
            value: value
        )
    }
}
