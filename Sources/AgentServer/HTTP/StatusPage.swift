import Crypto
import Foundation
import Hummingbird
import NIOCore

/// `GET /ui`: the mesh status page (the HTML, CSS and script are in `StatusPageHTML.swift`). It is static: the
/// browser reads `/api/public/proxy/status` with the ApiKey the operator typed in or put in the URL fragment, so the
/// page itself carries no secret and answers without one.
enum StatusPage {
    /// The page's bytes, made once.
    static let body: ByteBuffer = ByteBuffer(string: StatusPageHTML.text)

    /// Only the page's own inline `<script>` and `<style>` run (by their SHA-256, computed from the page itself, so an
    /// edit of the page never needs a second edit here); it may fetch from its own origin and nothing else.
    static let contentSecurityPolicy: String = {
        let script = inlineHashes(of: "script", in: StatusPageHTML.text).map { "'\($0)'" }.joined(separator: " ")
        let style = inlineHashes(of: "style", in: StatusPageHTML.text).map { "'\($0)'" }.joined(separator: " ")
        return "default-src 'none'; script-src \(script); style-src \(style); connect-src 'self'; img-src 'self' data:; "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }()

    static func response() -> Response {
        Response(status: .ok, headers: [
            .contentType: "text/html; charset=utf-8",
            .contentSecurityPolicy: contentSecurityPolicy,
            .cacheControl: "no-store",
            .xContentTypeOptions: "nosniff",
            .init("Referrer-Policy")!: "no-referrer",
            .init("X-Frame-Options")!: "DENY",
        ], body: .init(byteBuffer: body))
    }

    /// `sha256-…` of the text of every `<tag>…</tag>` element in `html` (the form CSP hash sources take).
    static func inlineHashes(of tag: String, in html: String) -> [String] {
        var hashes: [String] = []
        var rest = html[...]
        while let open = rest.range(of: "<\(tag)>") {
            guard let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) else { break }
            let digest = SHA256.hash(data: Array(rest[open.upperBound..<close.lowerBound].utf8))
            hashes.append("sha256-" + Data(digest).base64EncodedString())
            rest = rest[close.upperBound...]
        }
        return hashes
    }
}
