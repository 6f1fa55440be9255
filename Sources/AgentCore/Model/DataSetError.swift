/// Why a data set (bootstrap body, DataFile, upstream message) was rejected; the text names the offending field.
public struct DataSetError: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// The same error with a location prefix, e.g. `items[0].featureFlags[2]: …`.
    func at(_ location: String) -> DataSetError {
        DataSetError("\(location): \(description)")
    }
}
