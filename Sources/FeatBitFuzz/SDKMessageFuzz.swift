#if FUZZING
import AgentCore

/// A message an SDK sends on `/streaming` (spec §2.2) and the replies built from it.
enum SDKMessageFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        switch InboundMessage.parse(input) {
        case .success(.echo(let data)):
            // The echo reply is JSON whose `data` is what was sent.
            let reply = try? JSONValue.parse(SDKPayload.echo(data))
            fuzzCheck(reply?["data"] == data, "echo reply does not carry the data sent")
        case .success(.dataSync(_, let user?)):
            if let endUser = EndUser.parse(user) { EndUserFuzz.checkValues(endUser) }
        case .success, .failure:
            break
        }
    }
}

/// The `/streaming` upgrade's query (spec §1.4): the input is a query string, checked against a data set whose
/// secrets the fuzzer finds in the seeds' tokens.
enum SDKHandshakeFuzz {
    /// The demo data set (its secrets are in the seeds' tokens).
    static let environments = try! DataSetParser.parseBootstrap(try! JSONValue.parse(DemoDataSet.json))
    static let snapshot: DataSnapshot = {
        let store = DataStore()
        _ = store.apply(.replace(environments))
        return store.snapshot
    }()

    static func run(_ input: UnsafeRawBufferPointer) {
        let text = String(decoding: input, as: UTF8.self)
        var query: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[parts[0].lowercased()] = parts.count > 1 ? String(parts[1]) : ""
        }
        let now: Int64 = 1_700_000_000_000
        _ = HandshakeValidator.validate(query: query, nowMillis: now, snapshot: snapshot)

        // A token that decodes to a well-formed secret encodes back to the same secret and timestamp. Secrets are
        // base64url: `encode` counts characters where `decode` counts bytes, so non-ASCII ones need not round-trip.
        guard let token = StreamingToken.decode(text), token.timestamp >= 0, token.secret.utf8.allSatisfy({ $0 < 0x80 }),
              SecretCodec.envId(fromSecret: token.secret) != nil else { return }
        for position in [2, 7, 20] {
            let again = StreamingToken.decode(StreamingToken.encode(secret: token.secret, timestamp: token.timestamp,
                                                                    position: position))
            fuzzCheck(again == token, "token \(token) does not survive encode(position: \(position)) and decode")
        }
    }
}

/// The end user of a client SDK's `data-sync`, of `/api/public/featureflag/evaluate` and of insights (spec §5.2).
enum EndUserFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let json = JSONReader.parse(input), let user = EndUser.parse(json) else { return }
        checkValues(user)
    }

    static func checkValues(_ user: EndUser) {
        fuzzCheck(user.value(of: "keyId") == user.keyId, "value(of: keyId) is not the key")
        fuzzCheck(user.value(of: "name") == user.name, "value(of: name) is not the name")
        fuzzCheck(user.value(of: " ") == "", "a blank property has a value")
        for property in user.customizedProperties {
            guard let name = property.name, !name.allSatisfy(\.isWhitespace), name != "keyId", name != "name" else { continue }
            fuzzCheck(user.value(of: name) != nil, "custom property \(name) has no value")
        }
    }
}
#endif
