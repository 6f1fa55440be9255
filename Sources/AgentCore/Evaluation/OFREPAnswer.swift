import Crypto

/// The answers to OFREP's two evaluation requests (OFREP `service/openapi.yaml`: `POST /ofrep/v1/evaluate/flags/{key}`
/// and `POST /ofrep/v1/evaluate/flags`) for an already authenticated environment, as pure functions of the request
/// and the environment snapshot.
public struct OFREPAnswer: Sendable {
    /// 200, 304 (bulk), 400 or 404.
    public let status: Int
    /// The JSON body; empty for 304.
    public let body: [UInt8]
    /// Bulk only: the entity tag of this context's results (also on 304).
    public let etag: String?
    /// The user evaluated for, and the results served to them (for the flag-usage insight).
    public let user: EndUser?
    public let served: [OFREPResult]

    init(status: Int, body: [UInt8], etag: String? = nil, user: EndUser? = nil, served: [OFREPResult] = []) {
        self.status = status
        self.body = body
        self.etag = etag
        self.user = user
        self.served = served
    }

    /// `POST /ofrep/v1/evaluate/flags/{key}`. Checked in order: the body reads as JSON (`PARSE_ERROR`), the flag
    /// exists and is not archived (404 `FLAG_NOT_FOUND`; FeatBit SDKs treat archived flags as gone), the context
    /// makes a FeatBit user (`TARGETING_KEY_MISSING`, `INVALID_CONTEXT`), FeatBit serves a variation (`GENERAL`).
    public static func single<Bytes: Collection>(flagKey: String, body: Bytes, in env: EnvironmentSnapshot) -> OFREPAnswer
    where Bytes.Element == UInt8 {
        let context: [String: JSONValue]?
        switch OFREPContext.parseBody(body) {
        case .success(let parsed): context = parsed
        case .failure(let failure): return failed(failure, key: flagKey)
        }
        guard let flag = env.flagModel(key: flagKey), !flag.isArchived else {
            return failed(OFREPFailure(.flagNotFound, "no flag with key \"\(flagKey)\" in this environment"), key: flagKey)
        }
        let user: EndUser
        switch OFREPContext.user(fromContext: context) {
        case .success(let parsed): user = parsed
        case .failure(let failure): return failed(failure, key: flagKey)
        }
        let result = OFREPResult(flag: flag, user: user, segments: { env.segmentModels[$0] })
        var out: [UInt8] = []
        out.reserveCapacity(320)
        result.write(envId: env.envId, into: &out)
        if let failure = result.failure { return OFREPAnswer(status: failure.httpStatus, body: out, user: user) }
        return OFREPAnswer(status: 200, body: out, user: user, served: [result])
    }

    /// `POST /ofrep/v1/evaluate/flags`: `{"flags":[…]}` with every flag of the environment that is not archived, in
    /// ascending `updatedAt` order, each a success or (when FeatBit serves no variation) a failure object; a bad
    /// body or context is a 400 `bulkEvaluationFailure`. `ifNoneMatch` (the request header's value) matching this
    /// context's entity tag gives 304 without evaluating anything.
    public static func bulk<Bytes: Collection>(body: Bytes, ifNoneMatch: String?, in env: EnvironmentSnapshot) -> OFREPAnswer
    where Bytes.Element == UInt8 {
        let user: EndUser
        switch OFREPContext.user(fromBody: body) {
        case .success(let parsed): user = parsed
        case .failure(let failure):
            var out: [UInt8] = []
            OFREPResult.writeBulkFailure(failure, into: &out)
            return OFREPAnswer(status: 400, body: out)
        }
        let tag = etag(for: user, in: env)
        if let ifNoneMatch, matches(ifNoneMatch: ifNoneMatch, etag: tag) {
            return OFREPAnswer(status: 304, body: [], etag: tag, user: user)
        }
        var out: [UInt8] = Array(#"{"flags":["#.utf8)
        out.reserveCapacity(64 + env.sortedFlags.count * 300)
        var served: [OFREPResult] = []
        var first = true
        for item in env.sortedFlags {
            guard let flag = item.flagModel, !flag.isArchived, !flag.key.isEmpty,
                  env.flagModel(key: flag.key) === flag else { continue }
            let result = OFREPResult(flag: flag, user: user, segments: { env.segmentModels[$0] })
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            result.write(envId: env.envId, into: &out)
            if result.isServed { served.append(result) }
        }
        out.append(contentsOf: "]}".utf8)
        return OFREPAnswer(status: 200, body: out, etag: tag, user: user, served: served)
    }

    private static func failed(_ failure: OFREPFailure, key: String) -> OFREPAnswer {
        var out: [UInt8] = []
        OFREPResult.writeFailure(failure, key: key, into: &out)
        return OFREPAnswer(status: failure.httpStatus, body: out)
    }

    // MARK: - Entity tags

    /// The bulk results' entity tag: `"<data version>-<hash>"`, the hash (SHA-256, first 8 bytes, hex) over the
    /// environment's digest and the user. The digest covers every flag's and segment's `(id, updatedAt)` and the
    /// secrets, so the tag changes with every change this context could see — an update, an addition, a removal,
    /// even one that leaves the environment's data version where it was — and with the context itself (a client
    /// that switches users must not be told "not modified"). It depends on nothing else, so every node of a mesh
    /// that holds the same data gives the same tag, and a client polling through a load balancer still gets 304s.
    public static func etag(for user: EndUser, in env: EnvironmentSnapshot) -> String {
        var hasher = SHA256()
        hasher.update(data: env.digest)
        var userBytes: [UInt8] = []
        FlagUsageInsight.writeUser(user, into: &userBytes)  // properties are sorted by name (OFREPContext)
        hasher.update(data: userBytes)
        let hex = hasher.finalize().prefix(8).map { byte -> String in
            let text = String(byte, radix: 16)
            return byte < 16 ? "0" + text : text
        }.joined()
        return "\"\(env.version)-\(hex)\""
    }

    /// `If-None-Match` (RFC 9110 §13.1.2): a comma list of entity tags, or `*`; compared weakly (a `W/` prefix is
    /// ignored on both sides).
    public static func matches(ifNoneMatch header: String, etag: String) -> Bool {
        let tag = etag.hasPrefix("W/") ? String(etag.dropFirst(2)) : etag
        for part in header.split(separator: ",") {
            var candidate = part.trimmingCharacters(in: " \t")
            if candidate == "*" { return true }
            if candidate.hasPrefix("W/") { candidate = String(candidate.dropFirst(2)) }
            if candidate == tag { return true }
        }
        return false
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in characters: String) -> String {
        var slice = self[...]
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
