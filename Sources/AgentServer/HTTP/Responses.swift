import AgentCore
import Hummingbird
import NIOCore

/// The response shapes the agent's HTTP API (and the FeatBit simulator) answer with.
extension Response {
    public static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    public static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        json(JSONWriter.bytes(value), status: status)
    }

    public static func text(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    public static func empty(_ status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentLength: "0"])
    }

    /// `{"error": message}` with `status`.
    public static func error(_ message: String, status: HTTPResponse.Status) -> Response {
        json(.object(["error": .string(message)]), status: status)
    }
}
