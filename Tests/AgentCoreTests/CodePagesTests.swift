#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import AgentCore

/// Releasing code pages lowers what is resident and never loses a written byte.
@Suite struct CodePagesTests {
    @Test func onlyReadOnlyPrivateFileMappingsWithoutWrittenPagesAreReleasable() {
        let smaps = """
            55d0-55e0 r-xp 00000000 fd:01 11 /opt/agent/featbit-agent
            Size:                 64 kB
            Rss:                  64 kB
            Anonymous:             0 kB
            VmFlags: rd ex mr mw me
            55e0-55f0 r--p 00010000 fd:01 11 /opt/agent/featbit-agent
            Rss:                   8 kB
            Anonymous:             8 kB
            55f0-5600 rw-p 00020000 fd:01 11 /opt/agent/featbit-agent
            Anonymous:             0 kB
            7f00-7f10 r--p 00000000 fd:01 12 /usr/lib/with space/libx.so (deleted)
            Anonymous:             0 kB
            7f10-7f20 r-xp 00000000 00:00 0
            Anonymous:             0 kB
            7f20-7f30 r-xp 00000000 00:00 0 [vdso]
            Anonymous:             0 kB
            7f30-7f40 r--s 00000000 fd:01 13 /dev/shm/shared
            Anonymous:             0 kB
            7f40-7f50 ---p 00000000 fd:01 14 /usr/lib/libguard.so
            Anonymous:             0 kB
            garbage line without fields
            zz-yy r-xp 0 0 0 /not/hex
            Anonymous:             0 kB
            """
        let found = CodePages.releasable(smaps: smaps)
        #expect(found == [
            .init(start: 0x55d0, end: 0x55e0, path: "/opt/agent/featbit-agent"),
            .init(start: 0x7f00, end: 0x7f10, path: "/usr/lib/with space/libx.so (deleted)"),
        ])
    }

    /// Rss of this process's mapping starting at `address`, in KiB.
    static func rss(at address: UnsafeRawPointer) -> Int? {
        let start = String(UInt(bitPattern: address), radix: 16)
        guard let smaps = CodePages.readFile("/proc/self/smaps") else { return nil }
        var inMapping = false
        for line in smaps.split(separator: "\n") {
            if line.hasPrefix(start + "-") { inMapping = true; continue }
            if inMapping, line.hasPrefix("Rss:") {
                return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
            }
        }
        return nil
    }

    @Test func releasedPagesLeaveTheResidentSetAndReadTheSameAfterwards() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let length = 16 * page
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("code-pages-\(UUID().uuidString)").path
        defer { unlink(path) }
        let content = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        defer { close(fd) }

        // A read-only private mapping, every page read: resident.
        let readOnly = try #require(mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0))
        #expect(readOnly != MAP_FAILED)
        defer { munmap(readOnly, length) }
        var sum = 0
        for offset in stride(from: 0, to: length, by: page) { sum &+= Int(readOnly.load(fromByteOffset: offset, as: UInt8.self)) }
        #expect(sum != 0)
        #expect((Self.rss(at: readOnly) ?? 0) >= length / 1024)

        // A private mapping written once and then made read-only (like relocated data): its written page is private.
        let written = try #require(mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0))
        #expect(written != MAP_FAILED)
        defer { munmap(written, length) }
        written.storeBytes(of: 0x5A, toByteOffset: 3 * page + 1, as: UInt8.self)
        #expect(mprotect(written, length, PROT_READ) == 0)

        let release = CodePages.release()
        #expect(release.mappings > 0 && release.bytes >= length)
        #expect(release.rssAfterKiB < release.rssBeforeKiB)
        #expect(Self.rss(at: readOnly) == 0, "the read-only mapping's pages are no longer mapped")
        #expect(Array(UnsafeRawBufferPointer(start: readOnly, count: length)) == content, "and read the same")
        #expect(written.load(fromByteOffset: 3 * page + 1, as: UInt8.self) == 0x5A, "a written page is never released")
        #expect((Self.rss(at: written) ?? 0) > 0)
    }
}
