#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOCore
import NIOConcurrencyHelpers
import Testing

@testable import AgentTLS

/// What a TLS socket's buffers cost: only the pages written are resident, a freed buffer's pages go back to the
/// kernel, and bytes are never lost or shared between buffers.
@Suite struct TLSBufferAllocatorTests {
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Pages of [pointer, pointer + bytes) the kernel has resident.
    static func residentPages(_ pointer: UnsafeMutableRawPointer, _ bytes: Int) -> Int {
        var vector = [UInt8](repeating: 0, count: (bytes + page - 1) / page)
        let result = vector.withUnsafeMutableBufferPointer { mincore(pointer, bytes, $0.baseAddress) }
        #expect(result == 0, "mincore failed: \(errno)")
        return vector.filter { $0 & 1 == 1 }.count
    }

    @Test func onlyWrittenPagesAreResidentAndAGivenBackSlotIsEmptyAgain() throws {
        let pool = try #require(SlotPool(slotBytes: 32 * 1024, slotCount: 4))
        let slot = try #require(pool.take())
        #expect(Self.residentPages(slot, 32 * 1024) == 0, "a fresh slot has no pages")
        slot.storeBytes(of: 0xAB, as: UInt8.self)
        slot.storeBytes(of: 0xCD, toByteOffset: 20_000, as: UInt8.self)
        #expect(Self.residentPages(slot, 32 * 1024) == 2, "exactly the two pages written")
        pool.give(slot)
        #expect(Self.residentPages(slot, 32 * 1024) == 0, "given back, its pages leave")
        let again = try #require(pool.take())
        #expect(again == slot, "a given-back slot is reused before a new one is opened")
        #expect(again.load(as: UInt8.self) == 0 && again.load(fromByteOffset: 20_000, as: UInt8.self) == 0)
        pool.give(again)
    }

    @Test func aFullPoolSaysSoAndEverySlotIsItsOwn() throws {
        let pool = try #require(SlotPool(slotBytes: 16 * 1024, slotCount: 2))
        let first = try #require(pool.take())
        let second = try #require(pool.take())
        #expect(pool.take() == nil, "the caller falls back to malloc")
        #expect(first != second && pool.inUse == 2)
        #expect(pool.contains(UInt(bitPattern: first)) && pool.contains(UInt(bitPattern: second) + 16 * 1024 - 1))
        #expect(!pool.contains(UInt(bitPattern: second) + 16 * 1024))
        pool.give(first)
        pool.give(second)
        #expect(pool.inUse == 0)
    }

    @Test func slotsTakenFromManyThreadsAreNeverShared() throws {
        let pool = try #require(SlotPool(slotBytes: 16 * 1024, slotCount: 6))
        let threads = 4
        let rounds = 2_000
        let clashes = ManagedCounter()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for round in 0..<rounds {
                guard let slot = pool.take() else { continue }  // 6 slots, 4 takers: rarely empty, never wrong
                let mark = UInt64(thread) << 32 | UInt64(round)
                slot.storeBytes(of: mark, toByteOffset: 8_000, as: UInt64.self)
                for _ in 0..<50 { _ = slot.load(as: UInt8.self) }
                if slot.load(fromByteOffset: 8_000, as: UInt64.self) != mark { clashes.add() }
                pool.give(slot)
            }
        }
        #expect(clashes.value == 0)
        #expect(pool.inUse == 0)
    }

    @Test func aByteBufferKeepsItsBytesInItsSlotAndWhenItOutgrowsIt() throws {
        var buffer = TLSBufferAllocator.allocator.buffer(capacity: 16 * 1024)
        let start = buffer.withUnsafeReadableBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        #expect(SlotPools.shared.owner(of: start) != nil, "NIOSSL's buffer sizes come from the slots")
        let bytes = (0..<(40 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        buffer.writeBytes(bytes.prefix(16 * 1024))
        buffer.writeBytes(bytes.dropFirst(16 * 1024))  // grows past the slot: moved to malloc
        let moved = buffer.withUnsafeReadableBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        #expect(SlotPools.shared.owner(of: moved) == nil)
        #expect(Array(buffer.readableBytesView) == bytes)

        let other = TLSBufferAllocator.allocator.buffer(capacity: 1_000)
        let small = other.withVeryUnsafeBytes { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        #expect(SlotPools.shared.owner(of: small) == nil, "other sizes are malloc's")
    }
}

final class ManagedCounter: Sendable {
    private let count = NIOLockedValueBox(0)
    func add() { count.withLockedValue { $0 += 1 } }
    var value: Int { count.withLockedValue { $0 } }
}
