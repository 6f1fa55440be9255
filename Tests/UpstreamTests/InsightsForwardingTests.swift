import AgentCore
import FeatBitSimulatorCore
import Logging
import TestSupport
import Testing
@testable import Upstream

/// Forwarding insights to a FeatBit server (the simulator) that fails now and then.
@Suite struct InsightsForwardingTests {
    static let secret = InsightsPipelineTests.secret
    static let insight = #"{"user":{"keyId":"u1","name":"Ann","customizedProperties":[]},"variations":[]}"#

    static var logger: Logger {
        var logger = Logger(label: "insights-test")
        logger.logLevel = .critical
        return logger
    }

    func withSimulator(_ body: (Simulator, String) async throws -> Void) async throws {
        let simulator = Simulator(data: SimulatorData(), settings: .init(apiKeys: ["rp-test"]))
        try await withRunningServer(logger: Self.logger, { onPort in
            SimulatorServer.makeApplication(simulator: simulator, port: 0, logger: Self.logger,
                                            onServerRunning: { onPort($0) })
        }) { port in
            try await body(simulator, "http://127.0.0.1:\(port)")
        }
    }

    @Test func anInsightRetriedAfterAFailureIsAnonymisedOnce() async throws {
        try await withSimulator { simulator, url in
            let anonymizer = InsightAnonymizer(key: Array(repeating: 7, count: 32), allowedProperties: [])
            let pipeline = InsightsPipeline(mode: .anonymize(eventUri: url, anonymizer), logger: Self.logger)
            simulator.addInsightFailure(FailurePlan(status: 503, count: 1))
            pipeline.accept(body: Array("[\(Self.insight)]".utf8), authorization: Self.secret)
            #expect(await pipeline.flush() == false)
            #expect(await pipeline.flush() == true)
            let received = simulator.insights(clear: false)
            #expect(received.count == 1)
            // The same pseudonym a first-time send gives, not a pseudonym of the pseudonym.
            let original = try JSONValue.parse(Self.insight)
            #expect(received.first?.body == .array([anonymizer.anonymizeInsight(original)]))
        }
    }

    @Test func insightsTheServerRefusesAreDroppedAndDoNotHoldBackTheRest() async throws {
        try await withSimulator { simulator, url in
            let pipeline = InsightsPipeline(mode: .forward(eventUri: url), logger: Self.logger)
            simulator.addInsightFailure(FailurePlan(status: 401, count: 1))
            pipeline.accept(body: Array("[\(Self.insight)]".utf8), authorization: Self.secret)
            // Refused for good: not put back, and no backoff for what comes next.
            #expect(await pipeline.flush() == true)
            #expect(pipeline.pendingCount == 0)
            #expect(simulator.insights(clear: false).isEmpty)
            pipeline.accept(body: Array("[\(Self.insight)]".utf8), authorization: Self.secret)
            #expect(await pipeline.flush() == true)
            #expect(simulator.insights(clear: false).count == 1)
        }
    }
}
