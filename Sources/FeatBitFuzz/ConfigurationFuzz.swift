#if FUZZING
import AgentCore

/// The `--config FILE` JSON (read by FeatBitAgentCommand, resolved by `AgentConfiguration.resolve`).
enum ConfigurationFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let json = JSONReader.parse(input), case .object(let file) = json else { return }
        let first = AgentConfiguration.resolve(options: [:], environment: [:], file: file, hostname: "fuzz-host")
        if case .failure(let problems) = first {
            fuzzCheck(!problems.list.isEmpty, "a refused configuration names no problem")
        }
        // Resolution depends only on its inputs (no clock, no process state): the same file gives the same answer.
        let second = AgentConfiguration.resolve(options: [:], environment: [:], file: file, hostname: "fuzz-host")
        fuzzCheck(String(describing: first) == String(describing: second), "resolving the same input twice differs")
    }
}
#endif
