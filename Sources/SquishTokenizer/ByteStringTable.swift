/// Byte strings → `Int32` values, stored in one flat buffer with an open-addressing (linear probing) index, so
/// that a lookup by pointer and length allocates nothing and hashes with FNV-1a instead of SipHash. Each slot holds
/// a hash tag, the value and where its key lies, so a miss usually reads one slot and a hit one slot plus the key.
/// Used for the vocabulary (token bytes → id) and for the BPE piece cache.
struct ByteStringTable {
    struct Slot {
        var tag: UInt32      // high bits of the key's hash
        var value: Int32
        var start: UInt32    // key = storage[start ..< start + length]; UInt32.max marks an empty slot
        var length: UInt32
        static let empty = Slot(tag: 0, value: 0, start: .max, length: 0)
    }

    /// All keys concatenated, in insertion order.
    private var storage: [UInt8] = []
    /// [capacity] a power of two, at most half full.
    private var slots: [Slot]
    private var mask: Int
    private(set) var count = 0

    var storageBytes: Int { storage.count }

    init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < 2 * minimumCapacity { capacity *= 2 }
        slots = [Slot](repeating: .empty, count: capacity)
        mask = capacity - 1
    }

    /// FNV-1a, 64-bit (Fowler–Noll–Vo), with the high half folded in.
    @inline(__always) static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }

    /// The value stored for `key`, or nil.
    @inline(__always) func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let h = Self.hash(key)
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        return slots.withUnsafeBufferPointer { slots -> Int32? in
            storage.withUnsafeBufferPointer { store -> Int32? in
                while true {
                    let slot = slots[i]
                    if slot.start == .max { return nil }
                    if slot.tag == tag && Int(slot.length) == key.count {
                        let start = Int(slot.start)
                        var k = 0
                        while k < key.count && store[start + k] == key[k] { k += 1 }
                        if k == key.count { return slot.value }
                    }
                    i = (i + 1) & mask
                }
            }
        }
    }

    func find(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { find($0) } }

    /// Stores `value` for `key` unless the key is present already (the first value wins). Returns whether it stored.
    @discardableResult
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, value: Int32) -> Bool {
        if find(key) != nil { return false }
        if 2 * (count + 1) > slots.count { grow() }
        let slot = Slot(tag: 0, value: value, start: UInt32(storage.count), length: UInt32(key.count))
        storage.append(contentsOf: key)
        place(slot, hash: Self.hash(key))
        count += 1
        return true
    }

    @discardableResult
    mutating func insert(_ key: [UInt8], value: Int32) -> Bool { key.withUnsafeBufferPointer { insert($0, value: value) } }

    /// Empties the table, keeping its allocations.
    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        for i in slots.indices { slots[i] = .empty }
        count = 0
    }

    private mutating func place(_ slot: Slot, hash: UInt64) {
        var slot = slot
        slot.tag = UInt32(truncatingIfNeeded: hash >> 32)
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i].start != .max { i = (i + 1) & mask }
        slots[i] = slot
    }

    private mutating func grow() {
        let old = slots
        slots = [Slot](repeating: .empty, count: old.count * 2)
        mask = slots.count - 1
        for slot in old where slot.start != .max {
            let h = storage.withUnsafeBufferPointer {
                Self.hash(UnsafeBufferPointer(rebasing: $0[Int(slot.start) ..< Int(slot.start) + Int(slot.length)]))
            }
            place(slot, hash: h)
        }
    }
}

/// Pairs of token ids → (rank, merged id): BPE merges in an open-addressing table keyed by `left << 32 | right`.
struct MergeTable {
    /// [capacity] keys (`UInt64.max` = empty) and their packed values `rank << 32 | merged id`.
    private var keys: [UInt64]
    private var values: [UInt64]
    private var mask: Int
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var capacity = 16
        while capacity < 2 * minimumCapacity { capacity *= 2 }
        keys = [UInt64](repeating: .max, count: capacity)
        values = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
    }

    @inline(__always) private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        // Fibonacci hashing (Knuth, TAOCP vol. 3, 6.4): the top bits of key × 2^64/φ.
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// (rank, merged id) of the pair, or nil.
    @inline(__always) func find(_ left: Int32, _ right: Int32) -> (rank: Int32, merged: Int32)? {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var s = Self.slot(key, mask)
        return keys.withUnsafeBufferPointer { k in
            while true {
                let found = k[s]
                if found == key {
                    let v = values[s]
                    return (Int32(truncatingIfNeeded: v >> 32), Int32(truncatingIfNeeded: v & 0xFFFF_FFFF))
                }
                if found == .max { return nil }
                s = (s + 1) & mask
            }
        }
    }

    /// Stores the merge unless the pair has one already (the lower rank, inserted first, wins).
    mutating func insert(_ left: Int32, _ right: Int32, rank: Int32, merged: Int32) {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var s = Self.slot(key, mask)
        while keys[s] != .max {
            if keys[s] == key { return }
            s = (s + 1) & mask
        }
        keys[s] = key
        values[s] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
        count += 1
    }
}
