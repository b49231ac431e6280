import Foundation
import Synchronization

/// One persistent pool of worker threads for every parallel loop in Squish. `run` hands the same job to all workers
/// (the caller is worker 0) and returns when all have finished; workers spin briefly between jobs so that the
/// hundreds of small parallel steps of one decoded token do not pay a thread wake-up each.
///
/// A pool never has more threads than the cores the process may use (`availableCores`): spinning workers beyond
/// them only take the cores from the ones doing the work, and every step would wait for a descheduled thread (a
/// 2-token run with 200 threads on 2 cores took a minute instead of a third of a second).
public final class WorkerPool: @unchecked Sendable {
    /// Threads that work, the caller included: the request capped to `availableCores`.
    public let threadCount: Int
    /// What was asked for (nil: the default, all available cores).
    public let requestedThreads: Int?
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Workers that have left their loop (the pool's memory must outlive every worker that can still touch it).
    private let exited = Atomic<Int>(0)
    /// The current job; written by `run` before `generation` is bumped, read by workers after they see the bump.
    private var job: UnsafeMutablePointer<(Int) -> Void>
    private var workerThreads: [Thread] = []

    /// A pool with `threads` workers in total (including the calling thread), at most `availableCores`; default: all
    /// available cores.
    public init(threads: Int? = nil) {
        let cores = Self.availableCores
        let n = max(1, min(threads ?? cores, cores))
        threadCount = n
        requestedThreads = threads
        job = .allocate(capacity: 1)
        job.initialize(to: { _ in })
        for index in 1 ..< n {
            // Not retained by the thread (the pool would never be freed) and not `unowned` (a thread that starts or
            // wakes while the pool is deinitializing would trap): `deinit` waits until every worker has exited.
            let pool = Unmanaged.passUnretained(self)
            let t = Thread { pool._withUnsafeGuaranteedRef { $0.workerLoop(index) } }
            t.stackSize = 1 << 20
            t.start()
            workerThreads.append(t)
        }
    }

    /// The cores this process may run on: its CPU affinity mask, further limited by a cgroup CPU quota
    /// (containers), and never more than the online processors; at least 1.
    public static let availableCores: Int = {
        var n = ProcessInfo.processInfo.activeProcessorCount
        #if os(Linux)
        // The affinity mask as the kernel reports it ("Cpus_allowed:\tff,ffffffff": hex groups of 32 CPUs).
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) {
            let mask = line.dropFirst("Cpus_allowed:".count).filter { $0 != "," && !$0.isWhitespace }
            let inMask = mask.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
            if inMask > 0 { n = min(n, inMask) }
        }
        if let quota = cgroupCPUQuota() { n = min(n, quota) }
        #endif
        return max(1, n)
    }()

    /// ceil(quota / period) from cgroup v2 `cpu.max` ("max 100000" when unlimited) or cgroup v1
    /// `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota −1 when unlimited); nil when there is no limit.
    static func cgroupCPUQuota() -> Int? {
        func read(_ path: String) -> String? {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var quota: Double?, period: Double?
        if let v2 = read("/sys/fs/cgroup/cpu.max") {
            let parts = v2.split(separator: " ")
            if parts.count == 2 { quota = Double(parts[0]); period = Double(parts[1]) }
        } else if let q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), let p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") {
            quota = Double(q); period = Double(p)
        }
        guard let quota, let period, quota > 0, period > 0 else { return nil }
        return max(1, Int((quota / period).rounded(.up)))
    }

    deinit {
        stopping.store(true, ordering: .releasing)
        generation.add(1, ordering: .releasing)
        // Every worker sees the stop and leaves its loop before the pool's memory goes away.
        while exited.load(ordering: .acquiring) < threadCount - 1 { sched_yield() }
        job.deinitialize(count: 1)
        job.deallocate()
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        var spins = 0
        while true {
            let g = generation.load(ordering: .acquiring)
            if g == seen {
                spins += 1
                if spins > 50_000 { usleep(spins > 200_000 ? 500 : 20) } else { spinHint() }
                continue
            }
            seen = g
            spins = 0
            if stopping.load(ordering: .acquiring) {
                exited.add(1, ordering: .releasing)
                return
            }
            job.pointee(index)
            pending.subtract(1, ordering: .releasing)
        }
    }

    @inline(__always) private func spinHint() {
        #if arch(x86_64)
        // A short busy pause keeps the sibling hyper-thread and the memory bus calm.
        for _ in 0 ..< 8 { _ = generation.load(ordering: .relaxed) }
        #endif
    }

    /// Runs `body(worker)` on every worker (0 ..< threadCount) and waits for all of them.
    public func run(_ body: (Int) -> Void) {
        if threadCount == 1 { body(0); return }
        withoutActuallyEscaping(body) { escaping in
            job.pointee = escaping
            pending.store(threadCount - 1, ordering: .releasing)
            generation.add(1, ordering: .releasing)
            escaping(0)
            // Spin (the usual wait is microseconds); on a busy machine, give the core to the late worker now and then.
            var spins = 0
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins & 4095 == 0 { sched_yield() } else { spinHint() }
            }
            job.pointee = { _ in }
        }
    }

    /// Splits 0 ..< count into one contiguous range per worker (sizes differ by at most `granularity`) and runs
    /// `body(range)` on each.
    public func parallelFor(_ count: Int, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let g = max(1, granularity)
        let units = (count + g - 1) / g
        let workers = min(threadCount, units)
        if workers == 1 { body(0 ..< count); return }
        run { w in
            guard w < workers else { return }
            let lo = units * w / workers * g, hi = min(count, units * (w + 1) / workers * g)
            if lo < hi { body(lo ..< hi) }
        }
    }
}
