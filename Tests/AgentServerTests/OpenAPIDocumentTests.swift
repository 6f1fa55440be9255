import Foundation
import Testing

/// `GET /openapi.yaml` serves `docs/openapi.yaml`, which CI checks the agent against (scripts/api-contract).
@Suite struct OpenAPIDocumentTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func theServedDocumentIsDocsOpenapiYamlByteForByte() async throws {
        let file = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        try await withTestAgent { agent in
            let answer = try await agent.http(.GET, "/openapi.yaml")
            #expect(answer.status == 200)
            #expect(answer.headers.first(name: "Content-Type") == "application/yaml")
            // Not `==` on the whole text: a difference would print two 20 KB strings.
            let served = answer.body.split(separator: "\n", omittingEmptySubsequences: false)
            let expected = file.split(separator: "\n", omittingEmptySubsequences: false)
            let firstDifference = zip(served, expected).enumerated().first { $0.element.0 != $0.element.1 }
            #expect(firstDifference == nil, "line \((firstDifference?.offset ?? 0) + 1) differs: edit OpenAPIDocument.swift and docs/openapi.yaml together")
            #expect(served.count == expected.count && answer.body == file)
        }
    }

    /// Every route the router knows is in the document (a new route without documentation fails here).
    @Test func everyRouteIsDocumented() throws {
        let file = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        let sources = ["AgentRoutes.swift", "OFREPRoutes.swift"].map {
            Self.repositoryRoot.appendingPathComponent("Sources/AgentServer/HTTP/\($0)")
        }
        var routes: [String] = []
        for source in sources {
            let text = try String(contentsOf: source, encoding: .utf8)
            for line in text.split(separator: "\n") {
                guard let call = line.range(of: #"router\.(get|post)\("[^"]+""#, options: .regularExpression) else { continue }
                var path = String(line[call].drop(while: { $0 != "\"" }).dropFirst().dropLast())
                path = path.replacingOccurrences(of: ":key", with: "{key}")
                if path.contains("\\(prefix)") {
                    routes += ["/api/public/proxy", "/api/proxy"].map { path.replacingOccurrences(of: "\\(prefix)", with: $0) }
                } else {
                    routes.append(path)
                }
            }
        }
        #expect(routes.count >= 14)
        for route in routes {
            #expect(file.contains("\n  \(route):\n"), "\(route) is not in docs/openapi.yaml")
        }
    }
}
