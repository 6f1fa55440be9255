/// Why a data set (bootstrap body, DataFile, upstream message) or one of its items was refused: every problem found,
/// each with its JSON path, e.g. `items[0].featureFlags[3].variations: expected a list, got a string`.
public struct DataSetError: Error, Sendable, CustomStringConvertible, Equatable {
    /// One thing wrong, and where.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// Where in the document, e.g. `items[0].featureFlags[2].variations`; `nil` for the document itself.
        public let path: String?
        public let reason: String

        public init(path: String?, reason: String) {
            self.path = path
            self.reason = reason
        }

        public var description: String { path.map { "\($0): \(reason)" } ?? reason }

        /// The same problem seen from one level further out.
        func at(_ location: String) -> Problem {
            Problem(path: path.map { $0.hasPrefix("[") ? "\(location)\($0)" : "\(location).\($0)" } ?? location,
                    reason: reason)
        }
    }

    /// Never empty.
    public let problems: [Problem]

    public init(_ reason: String, path: String? = nil) {
        self.problems = [Problem(path: path, reason: reason)]
    }

    public init(problems: [Problem]) {
        precondition(!problems.isEmpty, "a DataSetError names at least one problem")
        self.problems = problems
    }

    /// The first problem's reason.
    public var reason: String { problems[0].reason }
    /// The first problem's path.
    public var path: String? { problems[0].path }

    /// How many problems a description lists before it says how many more there are.
    static let describedProblems = 20
    /// How many problems a refused data set lists at most (its 400 body); a last one says how many more there were.
    public static let listedProblems = 1_000

    public var description: String {
        if problems.count == 1 { return problems[0].description }
        let listed = problems.prefix(Self.describedProblems).map(\.description).joined(separator: "; ")
        let more = problems.count > Self.describedProblems ? "; and \(problems.count - Self.describedProblems) more" : ""
        return "\(problems.count) problems: \(listed)\(more)"
    }

    /// The same error one level further out.
    func at(_ location: String) -> DataSetError {
        DataSetError(problems: problems.map { $0.at(location) })
    }
}

/// A flag, segment or secret that a source sent and the agent did not apply (upstream and peers apply the rest of
/// their message; the held version of the item, if any, keeps serving).
public struct RefusedItem: Sendable, Equatable, CustomStringConvertible {
    /// The item's own `envId` when it has a readable one, else the environment entry it came in.
    public let envId: String
    /// `nil` for a secret.
    public let kind: ItemKind?
    /// `nil` when the item has no readable `id` (or is a secret).
    public let id: String?
    /// Paths from the root of the message, e.g. `items[0].featureFlags[3].variations`.
    public let error: DataSetError

    public init(envId: String, kind: ItemKind?, id: String?, error: DataSetError) {
        self.envId = envId
        self.kind = kind
        self.id = id
        self.error = error
    }

    public var description: String {
        let what = kind.map { "\($0 == .flag ? "flag" : "segment") \(id ?? "(no id)")" } ?? "secret"
        return "env \(envId) \(what): \(error)"
    }
}
