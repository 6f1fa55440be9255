#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
@_spi(CustomByteBufferAllocator) import NIOCore

/// The `ByteBufferAllocator` of every TLS connection (set as the channel's allocator before `NIOSSLHandler` is added).
///
/// `NIOSSLHandler` allocates two buffers per connection the moment it is added and keeps them for the connection's
/// life: a 32 KiB plaintext read buffer and a 16 KiB ciphertext buffer. An idle SDK socket only ever touches the first
/// page or two of each, but from `malloc` the whole buffer is usually resident anyway: it is carved out of memory
/// other connections' handshakes already touched and freed. This allocator serves buffers of exactly those sizes from
/// slots in reserved address space that has never been touched, so only the pages a connection writes become resident,
/// and gives a slot's pages back to the kernel (`MADV_DONTNEED`) when its buffer is freed. Every other size, and any
/// request once the slots run out or the reservation failed, goes to `malloc` as before.
public enum TLSBufferAllocator {
    public static let allocator = ByteBufferAllocator(
        allocate: { size in
            if let pool = SlotPools.shared.pool(forSize: Int(size)), let slot = pool.take() { return slot }
            return malloc(size)
        },
        reallocate: { pointer, oldSize, newSize in
            guard let pointer else { return malloc(newSize) }
            guard let pool = SlotPools.shared.owner(of: pointer) else { return realloc(pointer, newSize) }
            if Int(newSize) <= pool.slotBytes { return pointer }
            // Grown past its slot: the bytes move to malloc (a slot never grows).
            guard let moved = malloc(newSize) else { return nil }
            moved.copyMemory(from: pointer, byteCount: min(Int(oldSize), pool.slotBytes, Int(newSize)))
            pool.give(pointer)
            return moved
        },
        deallocate: { pointer in
            if let pool = SlotPools.shared.owner(of: pointer) {
                pool.give(pointer)
            } else {
                free(pointer)
            }
        },
        copy: { destination, source, count in
            destination.copyMemory(from: source, byteCount: Int(count))
        }
    )

    /// Slots handed out and not yet given back, for tests and the benchmark.
    public static var slotsInUse: Int { SlotPools.shared.pools.reduce(0) { $0 + $1.inUse } }

    /// The slot of the buffer whose bytes start at `address`, if it is one of the slots.
    static func ticket(for address: UnsafeRawPointer) -> SlotTicket? {
        let address = UInt(bitPattern: address)
        return SlotPools.shared.pools.first { $0.contains(address) }?.ticket(for: address)
    }
}

/// One pool per buffer size `NIOSSLHandler` asks for (`SSL_MAX_RECORD_SIZE` and twice it).
final class SlotPools: Sendable {
    static let shared = SlotPools(sizes: [16 * 1024, 32 * 1024], slotsEach: 65_536)

    let pools: [SlotPool]

    init(sizes: [Int], slotsEach: Int) {
        pools = sizes.compactMap { SlotPool(slotBytes: $0, slotCount: slotsEach) }
    }

    func pool(forSize size: Int) -> SlotPool? {
        pools.first { $0.slotBytes == size }
    }

    func owner(of pointer: UnsafeMutableRawPointer) -> SlotPool? {
        let address = UInt(bitPattern: pointer)
        return pools.first { $0.contains(address) }
    }
}

/// `slotCount` slots of `slotBytes` in one reservation of address space. The reservation starts inaccessible
/// (`PROT_NONE`, so no overcommit mode charges it); slots are opened for reading and writing as they are first handed
/// out, next to each other, so the kernel keeps them one mapping. A slot given back loses its pages and is reused
/// before a new one is opened.
final class SlotPool: Sendable {
    let slotBytes: Int
    let slotCount: Int
    let base: UInt
    /// A pthread mutex (NIOLockedValueBox), not `Synchronization.Mutex`: its contended hand-over is visible to
    /// ThreadSanitizer, which this pool's slot hand-over between threads is checked with.
    private let state = NIOLockedValueBox(State())

    private struct State {
        var opened = 0
        var free: [UInt] = []
        var inUse = 0
        /// Per opened slot: odd while handed out, even while free; it changes with every hand-out and give-back, so
        /// a `SlotTicket` names one buffer's life in its slot and never the next buffer's.
        var generations: [UInt32] = []
    }

    init?(slotBytes: Int, slotCount: Int) {
        let pageBytes = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard slotBytes > 0, slotCount > 0, pageBytes > 0, slotBytes % pageBytes == 0 else { return nil }
        let mapped = mmap(nil, slotBytes * slotCount, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else { return nil }
        // Where transparent huge pages are "always", one written byte could make 2 MiB around it resident.
        _ = madvise(mapped, slotBytes * slotCount, MADV_NOHUGEPAGE)
        self.slotBytes = slotBytes
        self.slotCount = slotCount
        self.base = UInt(bitPattern: mapped)
    }

    var inUse: Int { state.withLockedValue { $0.inUse } }

    func contains(_ address: UInt) -> Bool {
        address >= base && address < base + UInt(slotBytes * slotCount)
    }

    /// A slot whose pages are untouched, or nil when every slot is taken (the caller falls back to malloc).
    func take() -> UnsafeMutableRawPointer? {
        state.withLockedValue { state in
            if let address = state.free.popLast() {
                state.inUse += 1
                state.generations[index(of: address)] &+= 1
                return UnsafeMutableRawPointer(bitPattern: address)
            }
            guard state.opened < slotCount else { return nil }
            let address = base + UInt(state.opened * slotBytes)
            let slot = UnsafeMutableRawPointer(bitPattern: address)
            guard mprotect(slot, slotBytes, PROT_READ | PROT_WRITE) == 0 else { return nil }
            state.opened += 1
            state.inUse += 1
            state.generations.append(1)
            return slot
        }
    }

    /// Gives a slot's pages back to the kernel (they read as zeros and are not resident until written again).
    func give(_ pointer: UnsafeMutableRawPointer) {
        _ = madvise(pointer, slotBytes, MADV_DONTNEED)
        state.withLockedValue { state in
            let address = UInt(bitPattern: pointer)
            state.free.append(address)
            state.inUse -= 1
            state.generations[index(of: address)] &+= 1
        }
    }

    private func index(of address: UInt) -> Int {
        Int((address - base) / UInt(slotBytes))
    }

    /// The slot holding `address` and the life of the buffer in it now, or nil when the address is in no slot
    /// handed out.
    func ticket(for address: UInt) -> SlotTicket? {
        guard contains(address) else { return nil }
        let slot = index(of: address)
        return state.withLockedValue { state in
            guard slot < state.generations.count, state.generations[slot] & 1 == 1 else { return nil }
            return SlotTicket(pool: self, slot: slot, generation: state.generations[slot])
        }
    }

    /// Gives the pages of the ticket's slot back to the kernel while its buffer lives on: they read as zeros when
    /// next touched. Only for a buffer whose bytes nobody will read again before writing them (`TLSIdlePages`
    /// knows when that is). Nothing happens when the buffer of the ticket has been freed since, whoever holds the
    /// slot now; true when the pages were given back.
    @discardableResult
    func release(_ ticket: SlotTicket) -> Bool {
        state.withLockedValue { state in
            guard ticket.slot < state.generations.count, state.generations[ticket.slot] == ticket.generation else {
                return false
            }
            // Under the lock: the slot cannot change hands before the pages are gone.
            let address = UnsafeMutableRawPointer(bitPattern: base + UInt(ticket.slot * slotBytes))
            return madvise(address, slotBytes, MADV_DONTNEED) == 0
        }
    }
}

/// One buffer's life in one slot (`SlotPool.ticket(for:)`).
struct SlotTicket: Sendable {
    let pool: SlotPool
    let slot: Int
    let generation: UInt32

    /// The slot's first byte.
    var address: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: pool.base + UInt(slot * pool.slotBytes))! }
}
