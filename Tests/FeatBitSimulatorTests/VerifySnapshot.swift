import AgentCore
import Foundation

/// FeatBit's golden snapshots are rendered by the .NET Verify library: unquoted names and strings, members separated
/// by trailing commas, every distinct GUID replaced by `Guid_N` and every date by `DateTimeOffset_N` (numbered in
/// order of first appearance), null members and empty collections sometimes omitted, multi-line strings continued
/// at column 0. This parses that rendering into a tree and compares a JSON payload with it field by field: the
/// payload's GUIDs and dates are numbered while walking it in the snapshot's member order, so `Guid_N` must land on
/// the same fields; payload members the snapshot omits must be null or empty.
indirect enum VerifyNode: Equatable {
    case object([(String, VerifyNode)])
    case array([VerifyNode])
    case scalar(String)

    static func == (a: VerifyNode, b: VerifyNode) -> Bool {
        switch (a, b) {
        case (.scalar(let x), .scalar(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: return false
        }
    }

    subscript(key: String) -> VerifyNode? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    var elements: [VerifyNode] {
        if case .array(let e) = self { return e }
        return []
    }

    var text: String? {
        if case .scalar(let s) = self { return s }
        return nil
    }
}

enum VerifyParser {
    struct ParseError: Error, CustomStringConvertible { let description: String }

    static func parse(file url: URL) throws -> VerifyNode {
        var text = try String(contentsOf: url, encoding: .utf8)
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        return try parse(text)
    }

    static func parse(_ text: String) throws -> VerifyNode {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
            .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        var index = 0
        let node = try parseValue(opening: lines[0].trimmingCharacters(in: .whitespaces), lines: lines, index: &index)
        return node
    }

    private static func indentation(_ line: String) -> Int { line.prefix { $0 == " " }.count }

    private static func stripComma(_ s: String) -> String { s.hasSuffix(",") ? String(s.dropLast()) : s }

    /// `lines[index]` holds `opening` (`{`, `[` or a scalar); on return `index` is past the value.
    private static func parseValue(opening: String, lines: [String], index: inout Int) throws -> VerifyNode {
        let value = stripComma(opening)
        if value == "{" {
            index += 1
            var members: [(String, VerifyNode)] = []
            while index < lines.count {
                let line = lines[index]
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed == "}" || trimmed == "}," { index += 1; return .object(members) }
                guard let colon = trimmed.range(of: ":") else { throw ParseError(description: "line \(index + 1): \(line)") }
                let key = String(trimmed[..<colon.lowerBound])
                let rest = String(trimmed[colon.upperBound...]).trimmingCharacters(in: .whitespaces)
                if rest.isEmpty {
                    // A multi-line string: continuation lines are less indented than the member.
                    let keyIndent = indentation(line)
                    var parts: [String] = []
                    index += 1
                    while index < lines.count, indentation(lines[index]) < keyIndent,
                          !["}", "},", "]", "],"].contains(lines[index].trimmingCharacters(in: .whitespaces)) {
                        parts.append(lines[index])
                        index += 1
                    }
                    members.append((key, .scalar(stripComma(parts.joined(separator: "\n")))))
                } else {
                    members.append((key, try parseValue(opening: rest, lines: lines, index: &index)))
                }
            }
            throw ParseError(description: "unterminated object")
        }
        if value == "[" {
            index += 1
            var elements: [VerifyNode] = []
            while index < lines.count {
                let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
                if trimmed == "]" || trimmed == "]," { index += 1; return .array(elements) }
                elements.append(try parseValue(opening: trimmed, lines: lines, index: &index))
            }
            throw ParseError(description: "unterminated array")
        }
        index += 1
        return .scalar(value)
    }
}

/// Compares a payload with a snapshot; returns the differences (empty when they match).
struct VerifyComparison {
    private var guids: [String: Int] = [:]
    private var dates: [Int64: Int] = [:]
    private(set) var differences: [String] = []

    static func differences(_ payload: JSONValue, _ snapshot: VerifyNode) -> [String] {
        var comparison = VerifyComparison()
        comparison.compare(payload, snapshot, path: "$")
        return comparison.differences
    }

    private mutating func compare(_ value: JSONValue, _ node: VerifyNode, path: String) {
        switch node {
        case .object(let members):
            guard case .object(let object) = value else { return fail(path, "expected an object, got \(value)") }
            for (key, child) in members {
                guard let member = object[key] else { fail("\(path).\(key)", "missing"); continue }
                compare(member, child, path: "\(path).\(key)")
            }
            let known = Set(members.map(\.0))
            for (key, member) in object where !known.contains(key) {
                switch member {
                case .null: continue
                case .array(let a) where a.isEmpty: continue
                default: fail("\(path).\(key)", "not in the snapshot: \(JSONWriter.string(member))")
                }
            }
        case .array(let elements):
            guard case .array(let array) = value else { return fail(path, "expected an array, got \(value)") }
            guard array.count == elements.count else {
                return fail(path, "\(array.count) elements, snapshot has \(elements.count)")
            }
            for (index, (element, child)) in zip(array, elements).enumerated() {
                compare(element, child, path: "\(path)[\(index)]")
            }
        case .scalar(let expected):
            let rendered = render(value)
            if rendered != expected { fail(path, "\(rendered) != snapshot \(expected)") }
        }
    }

    private mutating func render(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .integer(let i): return String(i)
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .string(let s):
            if s.utf8.count == 36, let uuid = UUID(uuidString: s) {
                let key = uuid.uuidString
                let n = guids[key] ?? guids.count + 1
                guids[key] = n
                return "Guid_\(n)"
            }
            if s.contains("T"), let ms = FeatBitTimestamp.milliseconds(fromISO8601: s) {
                let n = dates[ms] ?? dates.count + 1
                dates[ms] = n
                return "DateTimeOffset_\(n)"
            }
            return s
        case .array, .object:
            return JSONWriter.string(value)
        }
    }

    private mutating func fail(_ path: String, _ message: String) {
        differences.append("\(path): \(message)")
    }
}
