#if FUZZING
/// One fuzz target: a parser of outside input, fed arbitrary bytes, with the invariants it must keep. A broken
/// invariant is a crash (`fuzzCheck`), which libFuzzer reports with the input that caused it.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void

    /// Every target, by the name scripts/fuzz and `FUZZ_TARGET` use (also the folder of its seeds in Fuzz/seeds/).
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "json", run: JSONFuzz.run),
        FuzzTarget(name: "sdk-message", run: SDKMessageFuzz.run),
        FuzzTarget(name: "sdk-handshake", run: SDKHandshakeFuzz.run),
        FuzzTarget(name: "end-user", run: EndUserFuzz.run),
        FuzzTarget(name: "upstream-message", run: UpstreamMessageFuzz.run),
        FuzzTarget(name: "data-set", run: DataSetFuzz.run),
        FuzzTarget(name: "db-row", run: DatabaseRowFuzz.run),
        FuzzTarget(name: "mesh-frame", run: MeshFrameFuzz.run),
        FuzzTarget(name: "mesh-handshake", run: MeshHandshakeFuzz.run),
        FuzzTarget(name: "configuration", run: ConfigurationFuzz.run),
        FuzzTarget(name: "api-body", run: APIBodyFuzz.run),
        FuzzTarget(name: "tls-record", run: TLSRecordFuzz.run),
    ]
}

/// An invariant of a target: a violation stops the run with `message` and the input is kept as a crash.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}
#endif
