#if FUZZING
import AgentCore

/// A message of the FeatBit evaluation server on the relay-proxy WebSocket (spec §3.3, §3.5), applied as the
/// upstream client applies it.
enum UpstreamMessageFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard case .success(let message) = UpstreamMessage.parse(input) else { return }
        switch message {
        case .full(let environments):
            DataSetFuzz.checkApplied(.replace(environments))
        case .patch(let environments):
            let store = DataStore()
            _ = store.apply(.replace(SDKHandshakeFuzz.environments))
            _ = store.apply(.upsert(environments))
            _ = store.snapshot.backupJSON()
        case .ignored:
            break
        }
    }
}
#endif
