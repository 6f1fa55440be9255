import Logging
import Testing
@testable import Upstream

/// The insight buffer is fed by the network: it must stay bounded in posts and in bytes.
@Suite struct InsightsPipelineTests {
    static let secret = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"

    static func body(padding: Int) -> [UInt8] {
        let name = String(repeating: "x", count: padding)
        return Array(#"[{"user":{"keyId":"u1","name":"\#(name)","customizedProperties":[]}}]"#.utf8)
    }

    func pipeline(capacity: Int, maxBytes: Int) -> InsightsPipeline {
        var settings = InsightsPipeline.Settings()
        settings.capacity = capacity
        settings.maxBufferedBytes = maxBytes
        // Nothing is flushed in these tests, so the address is never used.
        return InsightsPipeline(mode: .forward(eventUri: "http://127.0.0.1:9"), settings: settings,
                                logger: Logger(label: "test"))
    }

    @Test func bufferIsBoundedByBytes() {
        let insights = pipeline(capacity: 1000, maxBytes: 1500)
        for _ in 0..<5 { insights.accept(body: Self.body(padding: 600), authorization: Self.secret) }
        #expect(insights.pendingCount == 2)
    }

    @Test func bufferIsBoundedByPosts() {
        let insights = pipeline(capacity: 3, maxBytes: 1 << 20)
        for _ in 0..<10 { insights.accept(body: Self.body(padding: 10), authorization: Self.secret) }
        #expect(insights.pendingCount == 3)
    }

    @Test func bodiesThatAreNotInsightArraysAreIgnored() {
        let insights = pipeline(capacity: 10, maxBytes: 1 << 20)
        insights.accept(body: Array("{not json".utf8), authorization: Self.secret)
        insights.accept(body: Array(#"{"user":{}}"#.utf8), authorization: Self.secret)
        #expect(insights.pendingCount == 0)
    }

    @Test func theAgentsOwnInsightsAreBoundedTooAndDroppedInDropMode() {
        let insights = pipeline(capacity: 2, maxBytes: 1 << 20)
        #expect(insights.isRecording)
        for _ in 0..<5 { insights.accept(ownInsights: Self.body(padding: 10), events: 1, authorization: Self.secret) }
        #expect(insights.pendingCount == 2)
        let dropping = InsightsPipeline(mode: .drop, logger: Logger(label: "test"))
        #expect(!dropping.isRecording)
        dropping.accept(ownInsights: Self.body(padding: 10), events: 1, authorization: Self.secret)
        #expect(dropping.pendingCount == 0)
    }
}
