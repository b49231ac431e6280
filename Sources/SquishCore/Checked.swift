/// Overflow-safe arithmetic for sizes read from untrusted files: nil instead of a trap.
public enum Checked {
    @inline(__always) public static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.addingReportingOverflow(b); return o ? nil : r
    }
    @inline(__always) public static func mul(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.multipliedReportingOverflow(by: b); return o ? nil : r
    }
    /// Product of all values, nil on overflow or a negative factor.
    public static func product(_ values: [Int]) -> Int? {
        var r = 1
        for v in values {
            guard v >= 0, let p = mul(r, v) else { return nil }
            r = p
        }
        return r
    }
    /// `value` rounded up to a multiple of `alignment` (> 0), nil on overflow.
    @inline(__always) public static func alignUp(_ value: Int, _ alignment: Int) -> Int? {
        let rem = value % alignment
        return rem == 0 ? value : add(value, alignment - rem)
    }
    /// UInt64 from a file as Int, nil if it does not fit.
    @inline(__always) public static func int(_ v: UInt64) -> Int? {
        v <= UInt64(Int.max) ? Int(v) : nil
    }
}
