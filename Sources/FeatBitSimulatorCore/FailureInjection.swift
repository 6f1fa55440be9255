import AgentCore

/// One planned failure: the next `count` requests answer `status` (after `delayMillis`); a plan without a status
/// only delays and then answers normally.
public struct FailurePlan: Sendable, Equatable {
    public var status: Int?
    public var count: Int
    public var delayMillis: Int
    /// `Retry-After` seconds sent with a 429.
    public var retryAfterSeconds: Int

    public init(status: Int?, count: Int, delayMillis: Int = 0, retryAfterSeconds: Int = 1) {
        self.status = status
        self.count = count
        self.delayMillis = delayMillis
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// Reads `{"status": 500, "count": 2, "delayMs": 100, "retryAfter": 1}` (`count` defaults to 1).
    public init(json: JSONValue) throws(FailurePlanError) {
        guard json.objectValue != nil else { throw FailurePlanError("body must be a JSON object") }
        let status = json["status"].flatMap(Self.int)
        if json["status"] != nil, !(json["status"]?.isNull ?? true), status == nil {
            throw FailurePlanError("\"status\" must be an integer")
        }
        if let status, !(100...599).contains(status) { throw FailurePlanError("\"status\" must be 100...599") }
        let count = json["count"].flatMap(Self.int) ?? 1
        guard count >= 0 else { throw FailurePlanError("\"count\" must be >= 0") }
        let delay = json["delayMs"].flatMap(Self.int) ?? 0
        guard delay >= 0 else { throw FailurePlanError("\"delayMs\" must be >= 0") }
        if status == nil && delay == 0 { throw FailurePlanError("give \"status\" and/or \"delayMs\"") }
        self.init(status: status, count: count, delayMillis: delay,
                  retryAfterSeconds: json["retryAfter"].flatMap(Self.int) ?? 1)
    }

    static func int(_ value: JSONValue) -> Int? {
        switch value {
        case .integer(let i): return Int(exactly: i)
        case .number(let d): return d == d.rounded() ? Int(exactly: d) : nil
        default: return nil
        }
    }

    public var json: JSONValue {
        .object([
            "status": status.map { .integer(Int64($0)) } ?? .null, "count": .integer(Int64(count)),
            "delayMs": .integer(Int64(delayMillis)), "retryAfter": .integer(Int64(retryAfterSeconds)),
        ])
    }
}

public struct FailurePlanError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A queue of failure plans consumed one request at a time: plans are used in the order they were added, each for
/// its `count` requests; once the queue is empty requests are answered normally.
public struct FailureQueue: Sendable, Equatable {
    public private(set) var plans: [FailurePlan] = []

    public init() {}

    public mutating func add(_ plan: FailurePlan) {
        if plan.count > 0 { plans.append(plan) }
    }

    public mutating func clear() { plans.removeAll() }

    /// The plan that applies to the next request (consuming one use of it), or `nil` for a normal answer.
    public mutating func next() -> FailurePlan? {
        guard !plans.isEmpty else { return nil }
        let plan = plans[0]
        plans[0].count -= 1
        if plans[0].count <= 0 { plans.removeFirst() }
        return plan
    }

    public var pending: Int { plans.reduce(0) { $0 + $1.count } }

    public var json: JSONValue { .array(plans.map(\.json)) }
}

/// The HTTP answer a plan prescribes for `POST /api/public/agent/register` or `/api/public/insight/track`.
public struct InjectedResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String

    public static func == (a: InjectedResponse, b: InjectedResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map { "\($0.0):\($0.1)" } == b.headers.map { "\($0.0):\($0.1)" }
    }

    /// The body and headers the evaluation server uses for that status (spec §3.2): 429 with the rate-limit JSON
    /// and `Retry-After`, 401/403 with a small JSON error, anything else an empty body.
    public static func forStatus(_ status: Int, retryAfterSeconds: Int) -> InjectedResponse {
        switch status {
        case 429:
            return InjectedResponse(status: 429, headers: [("Content-Type", "application/json"),
                                                           ("Retry-After", String(retryAfterSeconds))],
                                    body: #"{"error":"Rate limit exceeded. Please try again later."}"#)
        case 401:
            return InjectedResponse(status: 401, headers: [("Content-Type", "application/json")],
                                    body: #"{"error":"Unauthorized"}"#)
        case 403:
            return InjectedResponse(status: 403, headers: [("Content-Type", "application/json")],
                                    body: #"{"error":"The number of auto agents exceeds the license quota."}"#)
        default:
            return InjectedResponse(status: status, headers: [], body: "")
        }
    }
}
