import AgentCore
import Crypto
import Foundation
import Testing

/// `GET /ui` (the mesh status page) and the status fields it shows.
@Suite struct StatusPageTests {
    /// An insight sink that only reports fixed counts.
    struct CountingSink: InsightSink {
        let counts: InsightCounts
        func accept(body: [UInt8], authorization: String) {}
    }

    static func inner(_ tag: String, of html: String) -> String? {
        guard let open = html.range(of: "<\(tag)>"), let close = html.range(of: "</\(tag)>", range: open.upperBound..<html.endIndex)
        else { return nil }
        return String(html[open.upperBound..<close.lowerBound])
    }

    static func sha256(_ text: String) -> String {
        "sha256-" + Data(SHA256.hash(data: Array(text.utf8))).base64EncodedString()
    }

    @Test func thePageIsServedWithoutAKeyAndWithStrictHeaders() async throws {
        try await withTestAgent { agent in
            let page = try await agent.http(.GET, "/ui")
            #expect(page.status == 200)
            #expect(page.headers.first(name: "Content-Type") == "text/html; charset=utf-8")
            #expect(page.headers.first(name: "Cache-Control") == "no-store")
            #expect(page.headers.first(name: "X-Content-Type-Options") == "nosniff")
            #expect(page.headers.first(name: "X-Frame-Options") == "DENY")
            #expect(page.headers.first(name: "Referrer-Policy") == "no-referrer")
            let csp = try #require(page.headers.first(name: "Content-Security-Policy"))
            #expect(csp.hasPrefix("default-src 'none';"))
            #expect(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"))
            #expect(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"))
            // The hashes allow exactly the page's own script and style, so an edit of the page cannot break them.
            let script = try #require(Self.inner("script", of: page.body))
            let style = try #require(Self.inner("style", of: page.body))
            #expect(csp.contains("script-src '\(Self.sha256(script))';"), "\(csp)")
            #expect(csp.contains("style-src '\(Self.sha256(style))';"), "\(csp)")
            // Self-contained: nothing loaded from elsewhere, and the key is only read from the fragment or the form.
            #expect(!page.body.contains("http://") && !page.body.contains("https://") && !page.body.contains(" src="))
            #expect(page.body.contains("api/public/proxy/status") && page.body.contains("sessionStorage"))
        }
    }

    @Test func statusCarriesTheUpstreamLinkAndInsightCounts() async throws {
        let sink = CountingSink(counts: InsightCounts(accepted: 7, forwarded: 5, stored: 0, dropped: 2, pending: 1))
        try await withTestAgent(initial: try TestData.fakeEnvironments(), insights: sink) { agent in
            agent.status.update {
                $0.syncState = .interrupted
                $0.upstreamReconnects = 3
                $0.problems["upstream"] = "refused"
            }
            let status = try await agent.http(.GET, "/api/public/proxy/status", headers: [("Authorization", TestAgent.apiKey)])
            let json = try #require(status.json)
            #expect(json["upstream"]?["state"] == .string("Interrupted"))
            #expect(json["upstream"]?["reconnects"] == .integer(3))
            #expect(json["upstream"]?["lastSyncedAt"] == .null)
            #expect(json["insights"]?["mode"] == .string("forward"))
            #expect(json["insights"]?["forwarded"] == .integer(5))
            #expect(json["insights"]?["dropped"] == .integer(2))
            #expect(json["insights"]?["pending"] == .integer(1))
            #expect(json["problems"]?["upstream"] == .string("refused"))
        }
    }
}
