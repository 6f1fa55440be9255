import Foundation

/// A JSON document kept as a value, so that flags and segments can be stored and forwarded verbatim
/// (unknown fields preserved) while the few fields the agent reads are looked up by exact, case-sensitive name.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// An integral number that fits `Int64` (timestamps, counts).
    case integer(Int64)
    /// Any other number.
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Member lookup on an object; `nil` for a missing member or a non-object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// Numeric value of an integer or floating-point member.
    public var doubleValue: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .number(let d): return d
        default: return nil
        }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .integer(i)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? container.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .integer(let i): try container.encode(i)
        case .number(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSONValue {
    /// Parses one JSON document. Throws `JSONValue.ParseError` for anything that is not valid JSON.
    public static func parse<Bytes: Collection>(_ bytes: Bytes) throws(ParseError) -> JSONValue where Bytes.Element == UInt8 {
        let parsed = bytes.withContiguousStorageIfAvailable { JSONReader.parse(UnsafeRawBufferPointer($0)) }
            ?? Array(bytes).withUnsafeBytes { JSONReader.parse($0) }
        if let parsed { return parsed }
        // Not JSON (or nothing JSONReader takes): Foundation's decoder says why, in words fit for a 400 or a log line.
        // What it decodes is never returned: it takes some documents JSONReader refuses (found by fuzzing: invalid
        // UTF-8 and control characters in the value of a repeated key), and one parser must decide what is JSON, or
        // the same bytes would be accepted on one path and refused on another.
        do {
            _ = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw ParseError(description: Self.describe(error))
        }
        throw ParseError(description: "not valid JSON (a string with invalid UTF-8 or a control character, or nesting deeper than 512)")
    }

    public static func parse(_ text: String) throws(ParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Why a document is not JSON, in a form fit for a 400 body or a log line.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    private static func describe(_ error: any Error) -> String {
        if let decodingError = error as? DecodingError {
            switch decodingError {
            case .dataCorrupted(let context):
                return "invalid JSON: \(context.debugDescription)"
            default:
                return "invalid JSON"
            }
        }
        return "invalid JSON"
    }
}
