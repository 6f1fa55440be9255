/// The user a flag is evaluated for (spec §4.3), with the .NET `EndUser` rules
/// (`featbit: modules/evaluation-server/src/Domain/EndUsers/EndUser.cs`).
public struct EndUser: Sendable, Equatable {
    /// One custom attribute. .NET allows a `null` name or value; a `null` name never matches a property.
    public struct Property: Sendable, Equatable {
        public var name: String?
        public var value: String?

        public init(name: String?, value: String?) {
            self.name = name
            self.value = value
        }
    }

    /// Never blank.
    public let keyId: String
    public let name: String?
    /// In document order; lookups take the first entry with a matching name.
    public let customizedProperties: [Property]

    /// `nil` when `keyId` is blank (`string.IsNullOrWhiteSpace`), as .NET `IsValid()` rejects it.
    public init?(keyId: String, name: String? = nil, customizedProperties: [Property] = []) {
        guard !Ordinal.isBlank(keyId) else { return nil }
        self.keyId = keyId
        self.name = name
        self.customizedProperties = customizedProperties
    }

    public init?(keyId: String, name: String? = nil, properties: [(String, String?)]) {
        self.init(keyId: keyId, name: name, customizedProperties: properties.map { Property(name: $0.0, value: $0.1) })
    }

    /// Parses a user object the way ASP.NET's case-insensitive `System.Text.Json` deserialisation does, then applies
    /// `IsValid()`. Returns `nil` when .NET would fail or reject:
    ///
    /// * not an object; `keyId` missing, `null`, blank or not a string;
    /// * `name` present but neither a string nor `null`;
    /// * `customizedProperties` present but neither an array nor `null`; an element that is neither an object nor
    ///   `null`; an element's `name`/`value` neither a string nor `null` (numbers and booleans fail in .NET).
    ///
    /// Member names match case-insensitively (`keyId`, `keyid`, `KEYID`…; ASCII case folding). When one object holds
    /// several spellings of the same member, the exact camelCase spelling wins, else the first in sorted order
    /// (.NET would take the last in document order, which `JSONValue` does not keep). `null` elements of
    /// `customizedProperties` are dropped (.NET would keep them and fail later in `ValueOf`). Unknown members are
    /// ignored.
    public static func parse(_ json: JSONValue) -> EndUser? {
        guard case .object(let members) = json else { return nil }
        guard case .string(let keyId)? = member(members, "keyId") else { return nil }
        var name: String? = nil
        switch member(members, "name") {
        case nil, .null?: name = nil
        case .string(let s)?: name = s
        default: return nil
        }
        var properties: [Property] = []
        switch member(members, "customizedProperties") {
        case nil, .null?:
            break
        case .array(let elements)?:
            properties.reserveCapacity(elements.count)
            for element in elements {
                switch element {
                case .null:
                    continue
                case .object(let fields):
                    guard let propertyName = optionalString(member(fields, "name")),
                          let propertyValue = optionalString(member(fields, "value")) else { return nil }
                    properties.append(Property(name: propertyName, value: propertyValue))
                default:
                    return nil
                }
            }
        default:
            return nil
        }
        return EndUser(keyId: keyId, name: name, customizedProperties: properties)
    }

    /// `.some(nil)` for an absent or `null` member, `.some(string)` for a string, `nil` for any other type.
    private static func optionalString(_ value: JSONValue?) -> String?? {
        switch value {
        case nil, .null?: return .some(nil)
        case .string(let s)?: return .some(s)
        default: return nil
        }
    }

    /// Case-insensitive member lookup: the exact spelling first, then any ASCII-case variant (sorted, for
    /// determinism).
    static func member(_ members: [String: JSONValue], _ name: String) -> JSONValue? {
        if let exact = members[name] { return exact }
        var best: (key: String, value: JSONValue)? = nil
        for (key, value) in members where asciiCaseInsensitiveEquals(key, name) {
            if best == nil || key < best!.key { best = (key, value) }
        }
        return best?.value
    }

    static func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
        let ua = a.utf8, ub = b.utf8
        guard ua.count == ub.count else { return false }
        for (x, y) in zip(ua, ub) where x != y {
            let lx = x >= 0x41 && x <= 0x5A ? x + 0x20 : x
            let ly = y >= 0x41 && y <= 0x5A ? y + 0x20 : y
            if lx != ly { return false }
        }
        return true
    }

    /// .NET `ValueOf(property)` (spec §5.2): blank property → `""`; exactly `keyId` → the key; exactly `name` → the
    /// name (may be `nil`); else the first custom property whose name equals `property` (ordinal) → its value, with
    /// `nil` as `""`; no such property → `""`.
    public func value(of property: String) -> String? {
        if Ordinal.isBlank(property) { return "" }
        return value(ofNonBlank: property)
    }

    /// `value(of:)` for a property already known not to be blank (condition properties are checked once, at parse).
    @inline(__always)
    func value(ofNonBlank property: String) -> String? {
        if Ordinal.equals(property, "keyId") { return keyId }
        if Ordinal.equals(property, "name") { return name }
        for entry in customizedProperties {
            if let entryName = entry.name, Ordinal.equals(entryName, property) { return entry.value ?? "" }
        }
        return ""
    }

    /// `{"keyId":…,"name":…,"customizedProperties":[{"name":…,"value":…}]}` (`null`s emitted, as .NET does).
    public var json: JSONValue {
        .object([
            "keyId": .string(keyId),
            "name": name.map(JSONValue.string) ?? .null,
            "customizedProperties": .array(customizedProperties.map { property in
                .object([
                    "name": property.name.map(JSONValue.string) ?? .null,
                    "value": property.value.map(JSONValue.string) ?? .null,
                ])
            }),
        ])
    }
}
