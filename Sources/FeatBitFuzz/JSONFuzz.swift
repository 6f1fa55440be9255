#if FUZZING
import AgentCore

/// `JSONReader` (every SDK frame, upstream message, bootstrap and insight body goes through it) and `JSONWriter`.
enum JSONFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        let parsed = JSONReader.parse(input)
        let thrownOrParsed = try? JSONValue.parse(Array(input))
        fuzzCheck(parsed == thrownOrParsed, "JSONReader.parse and JSONValue.parse disagree")

        // The cold-start skim accepts exactly the documents parse accepts, and finds the same top-level strings.
        let keys: Set<String>
        if case .object(let members)? = parsed { keys = Set(members.keys) } else { keys = ["id", "envId"] }
        let skimmed = JSONReader.topLevelStrings(input, keys: keys)
        switch parsed {
        case .object(let members)?:
            let strings = members.compactMapValues(\.stringValue)
            fuzzCheck(skimmed == strings, "topLevelStrings \(String(describing: skimmed)) != parse's \(strings)")
        default:
            fuzzCheck(skimmed == nil, "topLevelStrings accepted what parse did not accept as an object")
        }

        // A parsed value re-serialises to JSON that parses to the same value, and writing is then a fixed point.
        guard let value = parsed else { return }
        let written = JSONWriter.bytes(value)
        let reparsed = try? JSONValue.parse(written)
        fuzzCheck(reparsed == value, "written JSON does not parse back to the same value: \(JSONWriter.string(value))")
        if let reparsed { fuzzCheck(JSONWriter.bytes(reparsed) == written, "JSONWriter is not a fixed point") }
    }
}
#endif
