#if FUZZING
import AgentCore

/// A message of the FeatBit evaluation server on the relay-proxy WebSocket (spec §3.3, §3.5), applied as the
/// upstream client applies it.
enum UpstreamMessageFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard case .success(let message) = UpstreamMessage.parse(input) else { return }
        switch message {
        case .full(let parsed):
            // As the upstream client: a message whose every item was refused is not applied.
            guard !parsed.refusedEveryItem else { return }
            DataSetFuzz.checkApplied(.replace(parsed.environments))
        case .patch(let parsed):
            guard !parsed.refusedEveryItem else { return }
            let store = DataStore()
            _ = store.apply(.replace(SDKHandshakeFuzz.environments))
            _ = store.apply(.upsert(parsed.environments))
            DataSetFuzz.checkValid(store.snapshot)
            _ = store.snapshot.backupJSON()
        case .ignored:
            break
        }
    }
}
#endif
