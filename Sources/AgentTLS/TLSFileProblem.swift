/// Why a configured certificate, key or CA file cannot be used, naming the configuration key (printed as
/// `configuration error: <key>: <message>` before exiting with code 2, or logged when a reload is rejected).
public struct TLSFileProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    public let message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "\(key): \(message)" }
}
