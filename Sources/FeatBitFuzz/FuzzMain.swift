import Foundation

// The libFuzzer driver of every fuzz target (scripts/fuzz). Built only by scripts/fuzz, with `-DFUZZING`, AddressSanitizer
// and libFuzzer's coverage instrumentation; in any other build this executable only says how to build it, so the normal
// debug and release builds stay free of fuzzing code and of `@testable` imports.
//
// SwiftPM links an executable's `main` to the module's `@main` entry, so libFuzzer's own `main` cannot be used: this
// `main` hands control to libFuzzer through `LLVMFuzzerRunDriver` (libclang_rt.fuzzer_no_main) with the chosen target.

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The target libFuzzer drives; set once in `main` before the driver starts.
nonisolated(unsafe) private var selected: FuzzTarget?

@main
enum FeatBitFuzz {
    static func main() {
        let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget.all.first(where: { $0.name == name }) else {
            FileHandle.standardError.write(Data("""
                FUZZ_TARGET must name one of: \(FuzzTarget.all.map { $0.name }.joined(separator: " "))

                """.utf8))
            exit(2)
        }
        selected = target
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            selected!.run(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}
#else
@main
enum FeatBitFuzz {
    static func main() {
        FileHandle.standardError.write(Data("featbit-fuzz is built by scripts/fuzz (libFuzzer); this build has no fuzzer\n".utf8))
        exit(2)
    }
}
#endif
