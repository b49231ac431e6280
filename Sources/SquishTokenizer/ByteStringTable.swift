/// Byte strings → `Int32` values, stored in one flat buffer with an open-addressing (linear probing) index, so
/// that a lookup by pointer and length allocates nothing and hashes with FNV-1a instead of SipHash. Used for the
/// vocabulary (token bytes → id) and for the BPE piece cache.
struct ByteStringTable {
    /// All keys concatenated, in insertion order.
    private var storage: [UInt8] = []
    /// [count + 1] offsets into `storage`: key i is storage[keyStart[i] ..< keyStart[i + 1]].
    private var keyStart: [Int] = [0]
    /// [count] the value of each key.
    private var values: [Int32] = []
    /// [capacity] entry index or -1; capacity is a power of two, at most half full.
    private var slots: [Int32]
    private var mask: Int

    var count: Int { values.count }
    var storageBytes: Int { storage.count }

    init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < 2 * minimumCapacity { capacity *= 2 }
        slots = [Int32](repeating: -1, count: capacity)
        mask = capacity - 1
    }

    /// FNV-1a, 64-bit (Fowler–Noll–Vo).
    @inline(__always) static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The value stored for `key`, or nil.
    @inline(__always) func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        var slot = Self.hash(key) & mask
        return storage.withUnsafeBufferPointer { store -> Int32? in
            slots.withUnsafeBufferPointer { slots -> Int32? in
                keyStart.withUnsafeBufferPointer { starts -> Int32? in
                    while true {
                        let e = Int(slots[slot])
                        if e < 0 { return nil }
                        let start = starts[e], length = starts[e + 1] - start
                        if length == key.count {
                            var equal = true
                            var k = 0
                            while k < length {
                                if store[start + k] != key[k] { equal = false; break }
                                k += 1
                            }
                            if equal { return values[e] }
                        }
                        slot = (slot + 1) & mask
                    }
                }
            }
        }
    }

    func find(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { find($0) } }

    /// Stores `value` for `key` unless the key is present already (the first value wins). Returns whether it stored.
    @discardableResult
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, value: Int32) -> Bool {
        if find(key) != nil { return false }
        if 2 * (values.count + 1) > slots.count { grow() }
        let e = Int32(values.count)
        storage.append(contentsOf: key)
        keyStart.append(storage.count)
        values.append(value)
        place(entry: e, hash: Self.hash(key))
        return true
    }

    @discardableResult
    mutating func insert(_ key: [UInt8], value: Int32) -> Bool { key.withUnsafeBufferPointer { insert($0, value: value) } }

    /// Empties the table, keeping its allocations.
    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        keyStart.removeAll(keepingCapacity: true)
        keyStart.append(0)
        values.removeAll(keepingCapacity: true)
        for i in slots.indices { slots[i] = -1 }
    }

    private mutating func place(entry e: Int32, hash: Int) {
        var slot = hash & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = e
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        mask = slots.count - 1
        for e in 0 ..< values.count {
            let h = storage.withUnsafeBufferPointer { Self.hash(UnsafeBufferPointer(rebasing: $0[keyStart[e] ..< keyStart[e + 1]])) }
            place(entry: Int32(e), hash: h)
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
