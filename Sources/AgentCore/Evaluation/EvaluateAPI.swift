/// `POST /api/public/featureflag/evaluate` (spec §6.8, ELS [HEAD]; `featbit: .../Api/Public/FeatureFlagController.cs`,
/// `.../Api/Contracts/FeatureFlag.cs`, `.../Api/Services/IFeatureFlagService.cs`) as a pure function.
public enum EvaluateAPI {
    /// Why a request gets a 400. `text` is the `text/plain` body the ELS sends for the first two; the third stands
    /// for ASP.NET's model-binding failure (a problem-details body there).
    public enum Failure: Error, Sendable, Equatable {
        case invalidUser
        case invalidTagFilterMode(String)
        case malformedBody(String)

        public var text: String {
            switch self {
            case .invalidUser: return "A valid user is required."
            case .invalidTagFilterMode(let mode): return "Invalid tag filter mode: \(mode). Valid values are 'and' or 'or'."
            case .malformedBody(let reason): return reason
            }
        }
    }

    /// The parsed `filter` member.
    public struct Filter: Sendable, Equatable {
        public enum TagMode: Sendable, Equatable {
            /// The flag has every listed tag.
            case and
            /// The flag has at least one listed tag.
            case or
            /// A `null` or blank mode: tags are not filtered.
            case none
        }

        public var tagMode: TagMode = .and
        /// Request bodies reach 1 MiB, so the lists are kept as sets (and distinct tags) for `accepts`, which runs per
        /// flag: scanning 100,000 requested keys for each of 1,000 flags took most of a second.
        public var tags: [String] = [] {
            didSet {
                var seen = Set<OrdinalKey>()
                distinctTags = tags.filter { seen.insert(OrdinalKey($0)).inserted }
                tagSet = OrdinalSet(distinctTags)
            }
        }
        public var keys: [String] = [] { didSet { keySet = OrdinalSet(keys) } }
        public var timestamp: Int64? = nil
        private var distinctTags: [String] = []
        private var tagSet = OrdinalSet([String]())
        private var keySet = OrdinalSet([String]())

        public static func == (a: Filter, b: Filter) -> Bool {
            a.tagMode == b.tagMode && a.tags == b.tags && a.keys == b.keys && a.timestamp == b.timestamp
        }

        public init(tagMode: TagMode = .and, tags: [String] = [], keys: [String] = [], timestamp: Int64? = nil) {
            self.tagMode = tagMode
            self.timestamp = timestamp
            defer {
                // Through the setters, so the sets are built (didSet does not run for assignments in init).
                self.tags = tags
                self.keys = keys
            }
        }

        /// Empty `tags`/`keys` mean no filter; `timestamp > 0` keeps flags with `updatedAt` strictly greater.
        public func accepts(_ flag: FlagModel) -> Bool {
            if !tags.isEmpty {
                switch tagMode {
                case .and:
                    // Every requested tag on the flag: impossible if more distinct tags are asked than it has.
                    guard distinctTags.count <= flag.tags.count else { return false }
                    let flagTags = OrdinalSet(flag.tags)
                    if !distinctTags.allSatisfy(flagTags.contains) { return false }
                case .or: if !flag.tags.contains(where: tagSet.contains) { return false }
                case .none: break
                }
            }
            if !keys.isEmpty && !keySet.contains(flag.key) { return false }
            if let timestamp, timestamp > 0, flag.updatedAt <= timestamp { return false }
            return true
        }
    }

    /// Parses a request body `{"user": …, "filter": {"tagFilterMode", "tags", "keys", "timestamp"}}` (member names
    /// case-insensitive, as ASP.NET binds them). Checks in the ELS order: body shape, then user, then mode.
    public static func parseRequest(_ body: JSONValue) -> Result<(user: EndUser, filter: Filter), Failure> {
        guard case .object(let members) = body else { return .failure(.malformedBody("request body is not a JSON object")) }
        var filter = Filter()
        var badMode: String? = nil
        switch EndUser.member(members, "filter") {
        case nil, .null?:
            break
        case .object(let f)?:
            switch EndUser.member(f, "tagFilterMode") {
            case nil: filter.tagMode = .and
            case .null?: filter.tagMode = .none
            case .string(let mode)?:
                if Ordinal.isBlank(mode) {
                    filter.tagMode = .none
                } else if mode == "and" {
                    filter.tagMode = .and
                } else if mode == "or" {
                    filter.tagMode = .or
                } else {
                    badMode = mode
                }
            default: return .failure(.malformedBody("filter.tagFilterMode is not a string"))
            }
            guard let tags = stringArray(EndUser.member(f, "tags")) else {
                return .failure(.malformedBody("filter.tags is not an array of strings"))
            }
            guard let keys = stringArray(EndUser.member(f, "keys")) else {
                return .failure(.malformedBody("filter.keys is not an array of strings"))
            }
            filter.tags = tags
            filter.keys = keys
            switch EndUser.member(f, "timestamp") {
            case nil, .null?: filter.timestamp = nil
            case .integer(let i)?: filter.timestamp = i
            case .number(let d)? where d == d.rounded() && abs(d) < 9.2e18: filter.timestamp = Int64(d)
            default: return .failure(.malformedBody("filter.timestamp is not an integer"))
            }
        default:
            return .failure(.malformedBody("filter is not an object"))
        }
        guard let userJSON = EndUser.member(members, "user"), let user = EndUser.parse(userJSON) else {
            return .failure(.invalidUser)
        }
        if let badMode { return .failure(.invalidTagFilterMode(badMode)) }
        return .success((user, filter))
    }

    /// Absent/`null` → `[]`; an array of strings (nulls skipped) → them; anything else → `nil`.
    private static func stringArray(_ value: JSONValue?) -> [String]? {
        switch value {
        case nil, .null?: return []
        case .array(let elements)?:
            var out: [String] = []
            for element in elements {
                switch element {
                case .string(let s): out.append(s)
                case .null: continue
                default: return nil
                }
            }
            return out
        default: return nil
        }
    }

    /// The 200 body: `[{"key":…,"variation":{"id":…,"type":…,"value":…,"matchReason":…,"sendToExperiment":…}}]`
    /// for the flags of `env` the filter accepts, in ascending `updatedAt` order. Archived flags are included with
    /// `id`/`value` `null` and reason `flag archived` (the ELS HEAD would fail on them).
    public static func answer(body: JSONValue, in env: EnvironmentSnapshot?) -> Result<[UInt8], Failure> {
        let user: EndUser, filter: Filter
        switch parseRequest(body) {
        case .success(let request): (user, filter) = (request.user, request.filter)
        case .failure(let failure): return .failure(failure)
        }
        let flags = (env?.sortedFlags ?? []).compactMap(\.flagModel).filter(filter.accepts)
        return .success(results(user: user, flags: flags, segments: { env?.segmentModels[$0] }))
    }

    /// `answer` for raw body bytes (non-JSON → `.malformedBody`).
    public static func answer<Bytes: Collection>(
        bodyBytes: Bytes, in env: EnvironmentSnapshot?
    ) -> Result<[UInt8], Failure> where Bytes.Element == UInt8 {
        guard let body = try? JSONValue.parse(bodyBytes) else { return .failure(.malformedBody("request body is not JSON")) }
        return answer(body: body, in: env)
    }

    /// The result array for already-selected flags.
    public static func results(user: EndUser, flags: [FlagModel], segments: (String) -> SegmentModel?) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(2 + flags.count * 200)
        for (index, flag) in flags.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let result = Evaluator.evaluate(flag: flag, user: user, segments: segments)
            out.append(contentsOf: #"{"key":"#.utf8)
            JSONWriter.writeString(flag.key, into: &out)
            out.append(contentsOf: #","variation":{"id":"#.utf8)
            ClientPayload.writeOptionalString(result.variationId, into: &out)
            out.append(contentsOf: #","type":"#.utf8)
            JSONWriter.writeString(flag.variationType ?? "string", into: &out)
            out.append(contentsOf: #","value":"#.utf8)
            ClientPayload.writeOptionalString(result.value, into: &out)
            out.append(contentsOf: #","matchReason":"#.utf8)
            JSONWriter.writeString(result.matchReason, into: &out)
            out.append(contentsOf: #","sendToExperiment":"#.utf8)
            out.append(contentsOf: (result.sendToExperiment ? "true" : "false").utf8)
            out.append(contentsOf: "}}".utf8)
        }
        out.append(UInt8(ascii: "]"))
        return out
    }
}
