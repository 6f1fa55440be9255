/// The core's source of randomness (election timeouts, fast-path delays): SplitMix64, seeded by the shell from the
/// system generator and by the simulation from its seed, so a simulated run replays exactly.
public struct MeshRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `range` (lower bound included, upper excluded); the lower bound when the range is empty.
    public mutating func next(in range: Range<UInt64>) -> UInt64 {
        guard range.upperBound > range.lowerBound else { return range.lowerBound }
        return range.lowerBound + next() % (range.upperBound - range.lowerBound)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double {
        Double(next() >> 11) / Double(1 << 53)
    }
}
