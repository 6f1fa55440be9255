/// Why a data set (bootstrap body, DataFile, upstream message) was rejected; the text names the offending field,
/// e.g. `items[0].featureFlags[2]: missing or non-string "updatedAt"`.
public struct DataSetError: Error, Sendable, CustomStringConvertible, Equatable {
    public let reason: String
    /// Where in the document, e.g. `items[0].featureFlags[2]`; `nil` for the document itself.
    public let path: String?

    public init(_ reason: String, path: String? = nil) {
        self.reason = reason
        self.path = path
    }

    public var description: String {
        path.map { "\($0): \(reason)" } ?? reason
    }

    /// The same error one level further out.
    func at(_ location: String) -> DataSetError {
        DataSetError(reason, path: path.map { "\(location).\($0)" } ?? location)
    }
}
