/// Why an OFREP request cannot be evaluated: an OpenFeature error code (`errorCode`) and words for `errorDetails`
/// (OFREP `service/openapi.yaml`, `evaluationFailure`, `flagNotFound`, `bulkEvaluationFailure`).
public struct OFREPFailure: Error, Sendable, Equatable {
    public enum Code: String, Sendable {
        case parseError = "PARSE_ERROR"
        case targetingKeyMissing = "TARGETING_KEY_MISSING"
        case invalidContext = "INVALID_CONTEXT"
        case flagNotFound = "FLAG_NOT_FOUND"
        case general = "GENERAL"
    }

    public let code: Code
    public let details: String

    public init(_ code: Code, _ details: String) {
        self.code = code
        self.details = details
    }

    /// The HTTP status OFREP gives the failure: 404 for an unknown flag, 400 for everything else.
    public var httpStatus: Int { code == .flagNotFound ? 404 : 400 }
}

/// The OFREP evaluation context as a FeatBit end user (spec §4.3), so that rules, segments and rollouts see an OFREP
/// caller exactly as they see the same user sent by a FeatBit SDK:
///
/// * `targetingKey` → `keyId`. Absent, `null` or blank (FeatBit refuses a blank key) → `TARGETING_KEY_MISSING`;
///   not a string → `INVALID_CONTEXT`.
/// * `name` → `name`, in the string form below (`null` → no name).
/// * Every other attribute → a custom property of that name, sorted by name (names are unique in a JSON object, so
///   order never changes which property a condition reads). Values in string form: a string as it is; `true` /
///   `false`; an integer in decimal digits (`42`, `-7`); any other number in the shortest form that reads back as
///   the same double (`3.5`, `0.1`, `1e+20`); an object or array as compact JSON with members sorted by name and
///   text unescaped (`{"a":1,"b":[true,"x"]}`); `null` leaves the property out (FeatBit reads an absent property
///   and a `null` value alike, as `""`).
///
/// An attribute named `keyId` becomes a custom property that conditions never reach (FeatBit reads `keyId` from the
/// user's key first); the FeatBit SDKs drop such attributes in the same way.
public enum OFREPContext {
    /// The user of a request body `{"context": {…}}`. An empty body counts as `{}` (no context).
    public static func user<Bytes: Collection>(fromBody body: Bytes) -> Result<EndUser, OFREPFailure>
    where Bytes.Element == UInt8 {
        switch parseBody(body) {
        case .success(let context): return user(fromContext: context)
        case .failure(let failure): return .failure(failure)
        }
    }

    /// The `context` member of a request body: `nil` when absent or `null`. A body that is not a JSON object is a
    /// `PARSE_ERROR`; a `context` that is not an object is an `INVALID_CONTEXT`.
    public static func parseBody<Bytes: Collection>(_ body: Bytes) -> Result<[String: JSONValue]?, OFREPFailure>
    where Bytes.Element == UInt8 {
        if body.allSatisfy(isJSONWhitespace) { return .success(nil) }
        let parsed = body.withContiguousStorageIfAvailable { JSONReader.parse(UnsafeRawBufferPointer($0)) }
            ?? Array(body).withUnsafeBytes { JSONReader.parse($0) }
        guard let parsed else { return .failure(OFREPFailure(.parseError, "request body is not JSON")) }
        guard case .object(let members) = parsed else {
            return .failure(OFREPFailure(.parseError, "request body is not a JSON object"))
        }
        switch members["context"] {
        case nil, .null?: return .success(nil)
        case .object(let context)?: return .success(context)
        default: return .failure(OFREPFailure(.invalidContext, "context is not a JSON object"))
        }
    }

    /// The FeatBit user for an evaluation context (`nil`: no context).
    public static func user(fromContext context: [String: JSONValue]?) -> Result<EndUser, OFREPFailure> {
        guard let context else {
            return .failure(OFREPFailure(.targetingKeyMissing, "the evaluation context has no targetingKey"))
        }
        let keyId: String
        switch context["targetingKey"] {
        case nil, .null?:
            return .failure(OFREPFailure(.targetingKeyMissing, "the evaluation context has no targetingKey"))
        case .string(let text)?:
            keyId = text
        default:
            return .failure(OFREPFailure(.invalidContext, "targetingKey is not a string"))
        }
        var properties: [EndUser.Property] = []
        properties.reserveCapacity(context.count)
        for (name, value) in context where name != "targetingKey" && name != "name" {
            guard let text = propertyText(value) else { continue }
            properties.append(EndUser.Property(name: name, value: text))
        }
        properties.sort { ($0.name ?? "").utf8.lexicographicallyPrecedes(($1.name ?? "").utf8) }
        let name = context["name"].flatMap(propertyText)
        guard let user = EndUser(keyId: keyId, name: name, customizedProperties: properties) else {
            return .failure(OFREPFailure(.targetingKeyMissing, "targetingKey is blank; FeatBit needs a non-blank user key"))
        }
        return .success(user)
    }

    /// An attribute value in the string form FeatBit compares (see the type's documentation); `nil` for `null`.
    public static func propertyText(_ value: JSONValue) -> String? {
        switch value {
        case .null: return nil
        case .string(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .integer(let number): return String(number)
        case .number, .array, .object: return JSONWriter.string(value)
        }
    }

    private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}
