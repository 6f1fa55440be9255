import Foundation
import Testing
@testable import AgentCore

/// One field of FeatBit's fake data set broken: where the validator must say the problem is.
struct Breakage: Sendable, CustomTestStringConvertible {
    let kind: ItemKind
    /// Index into the fake data's flags or segments.
    let index: Int
    /// The field to change (`rules[0].variations[1].rollout`) and its new value (`nil`: removed).
    let field: String
    let value: JSONValue?
    /// The problem's path inside the item, when it is not `field` itself.
    let reportedAt: String?
    let reason: String

    init(_ kind: ItemKind, _ index: Int, _ field: String, _ value: JSONValue?, reportedAt: String? = nil, _ reason: String) {
        self.kind = kind
        self.index = index
        self.field = field
        self.value = value
        self.reportedAt = reportedAt
        self.reason = reason
    }

    var path: String { reportedAt ?? field }
    var testDescription: String { "\(kind) \(index) \(field) = \(value.map { JSONWriter.string($0) } ?? "(removed)")" }
    var listField: String { kind == .flag ? "featureFlags" : "segments" }

    /// The fake data's flags 0-4 are returns-true, return-10p-true, individual-targeting, two-custom-rules and
    /// custom-rule-with-segment; its segments 0-1 each have one rule.
    static let all: [Breakage] = [
        Breakage(.flag, 0, "variations", .string("oops"), "expected a list, got a string"),
        Breakage(.flag, 0, "variations", .array([]), "must not be empty"),
        Breakage(.flag, 1, "variations[1].id", .string("8af48424-cdd7-42e6-b138-a6c589347ca1"), "duplicate variation id"),
        Breakage(.flag, 1, "variations[0].value", .bool(true), "expected a string, got a boolean"),
        Breakage(.flag, 0, "variationType", .string("bool"), "is not one of boolean, string, number, json"),
        Breakage(.flag, 0, "key", nil, "missing"),
        Breakage(.flag, 0, "key", .string(""), "must not be empty"),
        Breakage(.flag, 0, "name", .integer(5), "expected a string, got a number"),
        Breakage(.flag, 2, "isEnabled", .string("true"), "expected true or false"),
        Breakage(.flag, 2, "isArchived", nil, "missing"),
        Breakage(.flag, 2, "exptIncludeAllTargets", .null, "expected true or false, got null"),
        Breakage(.flag, 2, "disabledVariationId", .string("nope"), "no variation has the id \"nope\""),
        Breakage(.flag, 2, "targetUsers[0].variationId", .string("nope"), "no variation has the id"),
        Breakage(.flag, 2, "targetUsers[0].keyIds", .string("true-1"), "expected a list"),
        Breakage(.flag, 2, "targetUsers", .object([:]), "expected a list, got an object"),
        Breakage(.flag, 0, "fallthrough", nil, "missing (expected an object)"),
        Breakage(.flag, 0, "fallthrough.variations[0].id", .string("nope"), "no variation has the id"),
        Breakage(.flag, 1, "fallthrough.variations[0].rollout", .array([.integer(0), .number(1.5)]), "is not a range within [0, 1]"),
        Breakage(.flag, 1, "fallthrough.variations[1].rollout", .array([.number(0.9), .number(0.1)]), "is not a range within [0, 1]"),
        Breakage(.flag, 1, "fallthrough.variations[0].rollout", .array([.number(0.5)]), "expected two numbers"),
        Breakage(.flag, 1, "fallthrough.variations[0].exptRollout", .string("1"), "expected a number"),
        Breakage(.flag, 1, "fallthrough.includedInExpt", nil, "missing"),
        Breakage(.flag, 3, "rules[0].variations[0].rollout", .array([.integer(-1), .integer(1)]), "is not a range within [0, 1]"),
        Breakage(.flag, 3, "rules[1].name", .null, "expected a string, got null"),
        Breakage(.flag, 3, "rules[0].conditions", .object([:]), "expected a list"),
        Breakage(.flag, 3, "rules[0].conditions[0].property", nil, "missing"),
        Breakage(.flag, 3, "rules[0].conditions[0].value", .integer(18), "expected a string"),
        Breakage(.flag, 3, "rules[1].dispatchKey", .integer(1), "expected a string"),
        Breakage(.flag, 4, "rules[0].conditions[0].value", .string("0779d76b"), "JSON list of strings"),
        Breakage(.flag, 4, "rules[1].variations[0].id", .string("nope"), "no variation has the id"),
        Breakage(.flag, 4, "updatedAt", .string("soon"), "ISO-8601"),
        Breakage(.flag, 4, "envId", .string("not-a-guid"), "is not a GUID"),
        Breakage(.segment, 0, "included", .string("true-1"), "expected a list"),
        Breakage(.segment, 0, "excluded[0]", .integer(7), "expected a string"),
        Breakage(.segment, 0, "rules[0].conditions[0].op", .integer(3), "expected a string"),
        Breakage(.segment, 1, "isArchived", nil, "missing"),
        Breakage(.segment, 1, "rules", .string("none"), "expected a list"),
    ]

    /// The fake data's flags and segments with this breakage applied.
    func lists() throws -> (flags: [JSONValue], segments: [JSONValue]) {
        var (flags, segments) = try ValidationTests.fakeLists()
        if kind == .flag {
            flags[index] = try flags[index].setting(field, to: value)
        } else {
            segments[index] = try segments[index].setting(field, to: value)
        }
        return (flags, segments)
    }

    var brokenId: String {
        let (flags, segments) = try! ValidationTests.fakeLists()
        return (kind == .flag ? flags : segments)[index]["id"]!.stringValue!
    }

    /// Whether `problems` has this breakage's problem at `prefix` + its path.
    func isReported(in problems: [DataSetError.Problem], under prefix: String) -> Bool {
        problems.contains { $0.path == "\(prefix).\(path)" && $0.reason.contains(reason) }
    }
}

extension JSONValue {
    /// A copy with the member at a path like `rules[0].variations[1].rollout` set (`nil`: removed).
    func setting(_ path: String, to value: JSONValue?) throws -> JSONValue {
        var steps: [Either] = []
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var indexes: [Int] = []
            while let open = name.lastIndex(of: "["), name.hasSuffix("]") {
                indexes.insert(Int(name[name.index(after: open)..<name.index(before: name.endIndex)])!, at: 0)
                name = name[..<open]
            }
            steps.append(.key(String(name)))
            steps.append(contentsOf: indexes.map(Either.index))
        }
        return try Self.set(self, steps[...], value)
    }

    private enum Either { case key(String), index(Int) }

    private static func set(_ node: JSONValue, _ steps: ArraySlice<Either>, _ value: JSONValue?) throws -> JSONValue {
        guard let step = steps.first else { return value ?? .null }
        switch (step, node) {
        case (.key(let key), .object(var members)):
            if steps.count == 1 {
                members[key] = value
            } else {
                members[key] = try set(try #require(members[key]), steps.dropFirst(), value)
            }
            return .object(members)
        case (.index(let index), .array(var elements)):
            try #require(index < elements.count)
            if steps.count == 1, value == nil { elements.remove(at: index) } else {
                elements[index] = try set(elements[index], steps.dropFirst(), value)
            }
            return .array(elements)
        default:
            throw DataSetError("no such path")
        }
    }
}

@Suite("data set validation")
struct ValidationTests {
    static func fakeLists() throws -> (flags: [JSONValue], segments: [JSONValue]) {
        let body = try Fixtures.fakeDataBootstrap()
        let item = try #require(body["items"]?.arrayValue?.first)
        return (try #require(item["featureFlags"]?.arrayValue), try #require(item["segments"]?.arrayValue))
    }

    static func bootstrap(flags: [JSONValue], segments: [JSONValue], secrets: [JSONValue]? = nil) -> JSONValue {
        .object(["eventType": .string("rp_full"), "items": .array([environmentItem(flags: flags, segments: segments, secrets: secrets)])])
    }

    static func environmentItem(flags: [JSONValue], segments: [JSONValue], secrets: [JSONValue]? = nil) -> JSONValue {
        .object([
            "envId": .string(Fixtures.envA), "secrets": .array(secrets ?? Fixtures.secrets().map(\.json)),
            "featureFlags": .array(flags), "segments": .array(segments),
        ])
    }

    static func upstream(_ eventType: String, flags: [JSONValue], segments: [JSONValue]) -> [UInt8] {
        let data: JSONValue = eventType == "patch"
            ? .object(["eventType": .string("patch"), "featureFlags": .array(flags), "segments": .array(segments)])
            : .object(["eventType": .string(eventType), "items": .array([environmentItem(flags: flags, segments: segments)])])
        return JSONWriter.bytes(.object(["messageType": .string("data-sync"), "data": data]))
    }

    static func validStore() throws -> DataStore {
        let store = DataStore()
        store.apply(.replace(try DataSetParser.parseBootstrap(try Fixtures.fakeDataBootstrap())))
        return store
    }

    @Test("FeatBit's own fake data set is valid and kept byte for byte, unknown fields included")
    func featbitsOwnDataIsAccepted() throws {
        let (flags, segments) = try Self.fakeLists()
        for flag in flags { #expect(ItemValidator.problems(.flag, flag).isEmpty, "\(flag["key"]!)") }
        for segment in segments { #expect(ItemValidator.problems(.segment, segment).isEmpty) }
        let environments = try DataSetParser.parseBootstrap(try Fixtures.fakeDataBootstrap())
        #expect(environments[0].flags.map(\.json) == flags)
        #expect(environments[0].segments.map(\.json) == segments)
        #expect(flags.allSatisfy { $0["creatorId"] != nil }, "fields nobody reads are still there")
    }

    @Test("a bootstrap or DataFile with one broken field is refused whole, naming its path", arguments: Breakage.all)
    func bootstrapRefusesWhole(breakage: Breakage) throws {
        let (flags, segments) = try breakage.lists()
        let error = #expect(throws: DataSetError.self) {
            try DataSetParser.parseBootstrap(Self.bootstrap(flags: flags, segments: segments))
        }
        let problems = error?.problems ?? []
        #expect(breakage.isReported(in: problems, under: "items[0].\(breakage.listField)[\(breakage.index)]"),
                "\(problems)")
    }

    @Test("upstream rp_full, rp_patch and patch refuse only the broken item; the held version keeps serving",
          arguments: Breakage.all)
    func upstreamRefusesTheItem(breakage: Breakage) throws {
        let (flags, segments) = try breakage.lists()
        for eventType in ["rp_full", "rp_patch", "patch"] {
            guard case .success(let message) = UpstreamMessage.parse(Self.upstream(eventType, flags: flags, segments: segments)) else {
                Issue.record("\(eventType): the message was refused whole")
                continue
            }
            let parsed: DataSetParser.Parsed
            switch message {
            case .full(let p), .patch(let p): parsed = p
            case .ignored: Issue.record("ignored"); continue
            }
            #expect(parsed.refused.count == 1, "\(eventType): \(parsed.refused)")
            let refused = try #require(parsed.refused.first)
            let prefix = eventType == "patch" ? "\(breakage.listField)[\(breakage.index)]"
                : "items[0].\(breakage.listField)[\(breakage.index)]"
            #expect(breakage.isReported(in: refused.error.problems, under: prefix), "\(eventType): \(refused.error)")
            #expect(refused.kind == breakage.kind)
            #expect(refused.id == breakage.brokenId)
            #expect(!parsed.refusedEveryItem)
            let applied = parsed.environments.flatMap { $0.flags + $0.segments }.map(\.id)
            #expect(applied.count == 6 && !applied.contains(breakage.brokenId), "\(eventType): the other items apply")

            // Applied as the upstream client applies it, to a store holding the valid data set: nothing changes.
            let store = try Self.validStore()
            let before = store.snapshot.environments[Fixtures.envA]
            store.apply(eventType == "rp_full" ? .replace(parsed.environments) : .upsert(parsed.environments))
            let after = try #require(store.snapshot.environments[Fixtures.envA])
            #expect(after.flags.count == 5 && after.segments.count == 2, "\(eventType)")
            let held = breakage.kind == .flag ? after.flags[breakage.brokenId] : after.segments[breakage.brokenId]
            let original = breakage.kind == .flag ? before?.flags[breakage.brokenId] : before?.segments[breakage.brokenId]
            #expect(held?.encoded == original?.encoded, "\(eventType): the valid version still serves")
        }
    }

    @Test("what the spec tolerates is accepted unchanged")
    func toleratedShapesAreAccepted() throws {
        let (flags, segments) = try Self.fakeLists()
        let tolerated: [(Int, String, JSONValue)] = [
            (3, "rules[0].conditions[0].op", .string("SoundsLike")),  // unknown operator: evaluates false (§5.3)
            (4, "rules[0].conditions[0].value", .string(#"["7d36ff43-0000-4000-8000-000000000000"]"#)),  // segment not held yet
            // A regular expression this platform cannot compile: a non-match.
            (3, "rules[0].conditions[0]", .object(["property": .string("name"), "op": .string("MatchRegex"), "value": .string("(unclosed")])),
            (0, "fallthrough.dispatchKey", .null),
            (0, "brandNewField", .object(["nested": .array([.integer(1)])])),  // FeatBit adds fields over time
            (0, "tags", .array([.string("a")])),
            (1, "fallthrough.variations[1].rollout", .array([.number(0.1), .number(1.0000000000000002)])),  // float noise
        ]
        for (index, field, value) in tolerated {
            var changed = flags
            changed[index] = try changed[index].setting(field, to: value)
            let environments = try DataSetParser.parseBootstrap(Self.bootstrap(flags: changed, segments: segments))
            #expect(environments[0].flags[index].json == changed[index], "\(field)")
        }
        // A segment rule without an id or name, and a secret without project and env keys.
        var segment = try segments[0].setting("rules[0].id", to: nil)
        segment = try segment.setting("name", to: nil)
        let secret: JSONValue = .object(["type": .string("server"), "value": .string(Fixtures.serverSecretA)])
        let environments = try DataSetParser.parseBootstrap(Self.bootstrap(flags: flags, segments: [segment], secrets: [secret]))
        #expect(environments[0].segments[0].json == segment)
        #expect(environments[0].secrets?.count == 1)
    }

    @Test("every problem of a data set is listed, each with its path")
    func everyProblemIsListed() throws {
        var (flags, segments) = try Self.fakeLists()
        flags[0] = try flags[0].setting("variations", to: .string("oops"))
        flags[3] = try flags[3].setting("isEnabled", to: .string("yes"))
        segments[1] = try segments[1].setting("included", to: .null)
        let secret: JSONValue = .object(["type": .string("admin"), "value": .string("short")])
        let error = #expect(throws: DataSetError.self) {
            try DataSetParser.parseBootstrap(Self.bootstrap(flags: flags, segments: segments, secrets: [secret]))
        }
        let paths = Set((error?.problems ?? []).compactMap(\.path))
        #expect(paths.isSuperset(of: [
            "items[0].featureFlags[0].variations", "items[0].featureFlags[3].isEnabled", "items[0].segments[1].included",
            "items[0].secrets[0].type", "items[0].secrets[0].value",
        ]), "\(paths)")
        // A flag whose variations are broken cannot have its references checked: only the list itself is named.
        #expect(!paths.contains("items[0].featureFlags[0].disabledVariationId"))
        #expect(error?.description.contains("items[0].featureFlags[0].variations: expected a list, got a string") == true)
    }

    /// A body of thousands of broken flags must not become a 400 body (or a log line) of every problem.
    @Test("a refused data set lists its first 1,000 problems and says how many more there were")
    func theProblemListIsBounded() throws {
        let (flags, segments) = try Self.fakeLists()
        let broken = try (0..<1_500).map { index in
            try flags[0].setting("id", to: .string("broken-\(index)")).setting("variations", to: .string("oops"))
        }
        let error = #expect(throws: DataSetError.self) {
            try DataSetParser.parseBootstrap(Self.bootstrap(flags: broken, segments: segments))
        }
        let problems = error?.problems ?? []
        #expect(problems.count == DataSetError.listedProblems + 1)
        #expect(problems.first?.path == "items[0].featureFlags[0].variations")
        #expect(problems.last == DataSetError.Problem(path: nil, reason: "and 500 more problems not listed"))
    }

    @Test("upstream: an invalid secret is refused on its own; a message whose every item is invalid applies nothing")
    func secretsAndAllInvalid() throws {
        var (flags, segments) = try Self.fakeLists()
        let body = JSONWriter.bytes(.object(["messageType": .string("data-sync"), "data": .object([
            "eventType": .string("rp_full"), "items": .array([Self.environmentItem(flags: flags, segments: segments, secrets: [
                Fixtures.secrets()[0].json, .object(["type": .string("admin"), "value": .string(Fixtures.clientSecretA)]),
            ])]),
        ])]))
        guard case .success(.full(let parsed)) = UpstreamMessage.parse(body) else { Issue.record("refused whole"); return }
        #expect(parsed.environments[0].secrets?.count == 1)
        #expect(parsed.refused.map(\.description) == [
            "env \(Fixtures.envA) secret: items[0].secrets[1].type: \"admin\" is not server or client",
        ])

        flags = try flags.map { try $0.setting("isEnabled", to: .string("no")) }
        segments = try segments.map { try $0.setting("isArchived", to: nil) }
        for eventType in ["rp_full", "rp_patch", "patch"] {
            guard case .success(let message) = UpstreamMessage.parse(Self.upstream(eventType, flags: flags, segments: segments)),
                  case .full(let p) = message.orFull else { Issue.record("\(eventType) refused whole"); continue }
            #expect(p.refusedEveryItem, "\(eventType)")
            #expect(p.refused.count == 7)
        }
    }

    @Test("refused items are shown in the status until a valid version arrives, and each is reported once")
    func refusedItemsInStatus() throws {
        let status = AgentStatusBoard(mode: .auto)
        let record = RefusedItems(status: status)
        let breakage = Breakage.all[0]
        let (flags, segments) = try breakage.lists()
        guard case .success(.full(let parsed)) = UpstreamMessage.parse(Self.upstream("rp_full", flags: flags, segments: segments)) else {
            Issue.record("refused whole")
            return
        }
        #expect(record.record(source: "upstream", parsed, replacesAll: true).count == 1)
        let problem = try #require(status.values.problems[RefusedItems.problemArea])
        #expect(problem.contains("items[0].featureFlags[0].variations: expected a list"), "\(problem)")
        #expect(problem.contains(Fixtures.envA))
        // The same message again (a periodic full resync): still shown, not reported again.
        #expect(record.record(source: "upstream", parsed, replacesAll: true).isEmpty)
        #expect(record.count == 1)
        // A valid version of the flag arrives: the problem is gone.
        let (validFlags, validSegments) = try Self.fakeLists()
        guard case .success(.patch(let fixed)) = UpstreamMessage.parse(Self.upstream("patch", flags: [validFlags[0]], segments: [])) else {
            Issue.record("valid patch refused")
            return
        }
        _ = validSegments
        record.record(source: "upstream", fixed, replacesAll: false)
        #expect(record.count == 0)
        #expect(status.values.problems[RefusedItems.problemArea] == nil)
    }

    /// Random mutations of valid flags and segments, through the bootstrap and upstream paths: nothing crashes, no
    /// invalid item is ever stored (so none reaches an SDK), and what was served before stays served.
    @Test("property: random mutations never crash, never store an invalid item, never lose served data")
    func randomMutations() throws {
        var random = SplitMix64(seed: 0x5EED_F1A6)
        let (flags, segments) = try Self.fakeLists()
        let replacements: [JSONValue] = [
            .null, .bool(true), .integer(-1), .integer(2), .number(0.5), .string(""), .string("x"),
            .string(#"["a"]"#), .array([]), .array([.integer(0), .integer(1)]), .object([:]),
            .string("d3e3b90b-9a63-4493-8e2f-25b145e8199d"),
        ]
        let store = try Self.validStore()
        let served = store.snapshot.environments[Fixtures.envA]!
        for round in 0..<400 {
            let isFlag = random.next() % 3 != 0
            let list = isFlag ? flags : segments
            let index = Int(random.next() % UInt64(list.count))
            var item = list[index]
            let mutations = 1 + Int(random.next() % 3)
            for _ in 0..<mutations {
                let paths = item.leafAndBranchPaths()
                let path = paths[Int(random.next() % UInt64(paths.count))]
                let value = random.next() % 5 == 0 ? nil : replacements[Int(random.next() % UInt64(replacements.count))]
                item = (try? item.setting(path, to: value)) ?? item
            }
            var mutatedFlags = flags
            var mutatedSegments = segments
            if isFlag { mutatedFlags[index] = item } else { mutatedSegments[index] = item }
            let valid = ItemValidator.problems(isFlag ? .flag : .segment, item).isEmpty
                && (try? DataItem(kind: isFlag ? .flag : .segment, json: item)) != nil

            // Bootstrap: all or nothing.
            let before = store.snapshot.sequence
            do {
                let environments = try DataSetParser.parseBootstrap(Self.bootstrap(flags: mutatedFlags, segments: mutatedSegments))
                #expect(valid, "round \(round): an invalid item was accepted: \(JSONWriter.string(item))")
                _ = environments
            } catch {
                #expect(!valid, "round \(round): a valid item was refused: \(error)")
                #expect(store.snapshot.sequence == before)
            }
            // A mutated id or envId names another item: the original is then absent from the message, which in a
            // full sync deletes it (the source's word); otherwise it must still serve, in some version.
            let original = list[index]
            let sameItem = item["id"] == original["id"] && item["envId"] == original["envId"]

            // Upstream: applied without the invalid item, on a copy of the served data.
            for eventType in ["rp_full", "rp_patch", "patch"] {
                guard case .success(let message) = UpstreamMessage.parse(Self.upstream(eventType, flags: mutatedFlags, segments: mutatedSegments)),
                      case .full(let parsed) = message.orFull else { continue }
                let copy = try Self.validStore()
                copy.apply(eventType == "rp_full" ? .replace(parsed.environments) : .upsert(parsed.environments))
                for environment in copy.snapshot.environments.values {
                    for stored in environment.flags.values {
                        #expect(ItemValidator.problems(.flag, stored.json).isEmpty, "round \(round): an invalid flag is served")
                    }
                    for stored in environment.segments.values {
                        #expect(ItemValidator.problems(.segment, stored.json).isEmpty, "round \(round): an invalid segment is served")
                    }
                }
                let env = copy.snapshot.environments[Fixtures.envA]
                let originalId = original["id"]?.stringValue
                for id in served.flags.keys where sameItem || !isFlag || id != originalId {
                    #expect(env?.flags[id] != nil, "round \(round) \(eventType): flag \(id) lost")
                }
                for id in served.segments.keys where sameItem || isFlag || id != originalId {
                    #expect(env?.segments[id] != nil, "round \(round) \(eventType): segment \(id) lost")
                }
            }
        }
    }
}

extension UpstreamMessage {
    /// Either data-carrying case as its parsed items (tests only).
    var orFull: UpstreamMessage {
        switch self {
        case .patch(let parsed): .full(parsed)
        default: self
        }
    }
}

extension JSONValue {
    /// Every path into this document (`a`, `a[0]`, `a[0].b`), for mutation.
    func leafAndBranchPaths(prefix: String = "") -> [String] {
        switch self {
        case .object(let members):
            return members.keys.sorted().flatMap { key -> [String] in
                let path = prefix.isEmpty ? key : "\(prefix).\(key)"
                return [path] + members[key]!.leafAndBranchPaths(prefix: path)
            }
        case .array(let elements):
            guard !prefix.isEmpty else { return [] }
            return elements.indices.flatMap { index -> [String] in
                let path = "\(prefix)[\(index)]"
                return [path] + elements[index].leafAndBranchPaths(prefix: path)
            }
        default:
            return []
        }
    }
}
