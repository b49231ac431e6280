import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One persistent pool of worker threads for every parallel loop in Squish, safe to use from several threads at once
/// (e.g. the engines of several served models sharing the cores).
///
/// A job is a number of *shares*, `body(share)` for share 0 ..< count, each run exactly once. The calling thread
/// publishes the job in a free slot and claims shares itself; idle workers claim the others. Shares are handed out
/// one at a time from an atomic counter, so a worker that the operating system has not scheduled (a busy machine)
/// delays nothing: the caller and the other workers take its shares, and the caller waits only for shares already
/// under way. Several callers' jobs are open at once (one slot each; a caller finding every slot taken runs its
/// shares alone), and a job's body may itself run jobs on the pool.
///
/// Idle workers spin for a short while (the hundreds of small parallel steps of one decoded token are microseconds
/// apart and should not pay a thread wake-up each), then sleep on a condition variable until a job is published, so
/// an idle or oversubscribed pool leaves the cores to whoever needs them.
///
/// A pool never has more threads than the cores the process may use (`availableCores`): workers beyond them only
/// take the cores from the ones doing the work.
public final class WorkerPool: @unchecked Sendable {  // shared state is atomics, a mutex/condition pair and per-slot fields owned by the slot's holder
    /// Threads that work, the caller included: the request capped to `availableCores`.
    public let threadCount: Int
    /// What was asked for (nil: the default, all available cores).
    public let requestedThreads: Int?
    /// How long an idle worker spins before it sleeps.
    public let spinNanoseconds: UInt64

    /// Jobs that may be open at once.
    static let slotCount = 8
    private let slots: [JobSlot]
    /// Bumped when a job is published (workers wait for it to change) and when the pool stops.
    private let generation = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Workers asleep (or about to sleep) on `wakeCondition`.
    private let sleepers = Atomic<Int>(0)
    private let wakeMutex: UnsafeMutablePointer<pthread_mutex_t>
    private let wakeCondition: UnsafeMutablePointer<pthread_cond_t>
    /// Workers that have left their loop (the pool's memory must outlive every worker that can still touch it).
    private let exited = Atomic<Int>(0)

    /// A pool with `threads` workers in total (including the calling thread), at most `availableCores`; default: all
    /// available cores. `spinMicroseconds`: how long idle workers spin before sleeping.
    public init(threads: Int? = nil, spinMicroseconds: Int = 200) {
        let cores = Self.availableCores
        let n = max(1, min(threads ?? cores, cores))
        threadCount = n
        requestedThreads = threads
        spinNanoseconds = UInt64(max(0, spinMicroseconds)) * 1000
        slots = (0 ..< Self.slotCount).map { _ in JobSlot() }
        wakeMutex = .allocate(capacity: 1)
        pthread_mutex_init(wakeMutex, nil)
        wakeCondition = .allocate(capacity: 1)
        pthread_cond_init(wakeCondition, nil)
        for index in 1 ..< n {
            // Not retained by the thread (the pool would never be freed) and not `unowned` (a thread that starts or
            // wakes while the pool is deinitializing would trap): `deinit` waits until every worker has exited.
            let pool = Unmanaged.passUnretained(self)
            let t = Thread { pool._withUnsafeGuaranteedRef { $0.workerLoop(index) } }
            t.stackSize = 1 << 20
            t.start()
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
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        // Every worker sees the stop and leaves its loop before the pool's memory goes away.
        while exited.load(ordering: .acquiring) < threadCount - 1 {
            pthread_mutex_lock(wakeMutex)
            pthread_cond_broadcast(wakeCondition)
            pthread_mutex_unlock(wakeMutex)
            sched_yield()
        }
        pthread_cond_destroy(wakeCondition)
        wakeCondition.deallocate()
        pthread_mutex_destroy(wakeMutex)
        wakeMutex.deallocate()
    }

    private func workerLoop(_ index: Int) {
        while true {
            // Read before looking at the slots: a job published after this read changes it, so it is never missed.
            let g = generation.load(ordering: .sequentiallyConsistent)
            if stopping.load(ordering: .acquiring) {
                exited.add(1, ordering: .releasing)
                return
            }
            var worked = false
            for slot in slots {
                while let share = slot.claim() {
                    slot.runShare(share)
                    worked = true
                }
            }
            if worked { continue }
            // Idle: spin until a job is published or the spin time is over, then sleep.
            let start = DispatchTime.now().uptimeNanoseconds
            var spins = 0
            while generation.load(ordering: .relaxed) == g {
                spins += 1
                spinHint()
                if spins & 63 == 0 && DispatchTime.now().uptimeNanoseconds - start > spinNanoseconds {
                    sleep(whileGenerationIs: g)
                    break
                }
            }
        }
    }

    /// Workers asleep now, waiting for a job (diagnostics).
    public var sleepingWorkers: Int { sleepers.load(ordering: .relaxed) }

    /// Blocks until `generation` differs from `g`.
    private func sleep(whileGenerationIs g: Int) {
        pthread_mutex_lock(wakeMutex)
        // Announce the sleep before the last look at `generation`; a publisher bumps `generation` before looking at
        // `sleepers` (both sequentially consistent), so one of the two sees the other.
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) == g {
            pthread_cond_wait(wakeCondition, wakeMutex)
        }
        sleepers.subtract(1, ordering: .relaxed)
        pthread_mutex_unlock(wakeMutex)
    }

    @inline(__always) private func spinHint() {
        #if arch(x86_64)
        // A short busy pause keeps the sibling hyper-thread and the memory bus calm.
        for _ in 0 ..< 8 { _ = generation.load(ordering: .relaxed) }
        #endif
    }

    /// Runs `body(share)` for share 0 ..< `shares`, each exactly once, on the caller and any idle workers, and waits
    /// for all of them. Two shares may run at the same time, so each must touch only its own part of the output.
    public func run(shares: Int, _ body: (Int) -> Void) {
        guard shares > 0 else { return }
        if threadCount == 1 || shares == 1 {
            for s in 0 ..< shares { body(s) }
            return
        }
        guard let slot = slots.first(where: { $0.acquire() }) else {
            // Every slot holds a job of another caller: the workers are busy anyway.
            for s in 0 ..< shares { body(s) }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            slot.open(escaping, shares: shares)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(wakeMutex)
                pthread_cond_broadcast(wakeCondition)
                pthread_mutex_unlock(wakeMutex)
            }
            while let share = slot.claim() { slot.runShare(share) }
            // Only shares that workers have begun remain; spin (the usual wait is microseconds), and give the core
            // to a late worker now and then.
            var spins = 0
            while !slot.finished {
                spins += 1
                if spins & 1023 == 0 { sched_yield() } else { spinHint() }
            }
            slot.close()
        }
    }

    /// Runs `body(worker)` for worker 0 ..< threadCount (one share each; see `run(shares:_:)`).
    public func run(_ body: (Int) -> Void) {
        run(shares: threadCount, body)
    }

    /// Splits 0 ..< count into contiguous ranges (sizes differ by at most `granularity`) and runs `body(range)` on
    /// each, in parallel.
    public func parallelFor(_ count: Int, granularity: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let g = max(1, granularity)
        let units = (count + g - 1) / g
        let shares = min(units, threadCount * Self.sharesPerThread)
        if shares == 1 || threadCount == 1 { body(0 ..< count); return }
        run(shares: shares) { s in
            let lo = units * s / shares * g, hi = min(count, units * (s + 1) / shares * g)
            if lo < hi { body(lo ..< hi) }
        }
    }

    /// Shares per thread in `parallelFor`: more than one, so that a thread the scheduler delays leaves its
    /// remaining shares to the others.
    static let sharesPerThread = 4
}

/// One open job: its body, how many shares there are and which is next, and how many are not finished.
private final class JobSlot: @unchecked Sendable {  // fields other than atomics are written only by the slot's holder before `open` publishes them
    /// Sequence number (bits 32-63), share count (16-31) and next share (0-15) in one word, so that a claim is one
    /// compare-and-swap and can never take a share of a later job that reuses the slot.
    private let word = Atomic<UInt64>(0)
    private let remaining = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private var sequence: UInt64 = 0
    private var body: (Int) -> Void = { _ in }
    // Keeps hot slots on separate cache lines.
    private var padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    /// Takes the slot if it is free.
    func acquire() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    }

    func open(_ body: @escaping (Int) -> Void, shares: Int) {
        precondition(shares < 1 << 16, "a job of \(shares) shares")
        self.body = body
        sequence = (sequence + 1) & 0xFFFF_FFFF
        remaining.store(shares, ordering: .relaxed)
        word.store(sequence << 32 | UInt64(shares) << 16, ordering: .releasing)
    }

    /// The next unclaimed share of the open job, if any.
    @inline(__always) func claim() -> Int? {
        var v = word.load(ordering: .acquiring)
        while true {
            let next = v & 0xFFFF, count = (v >> 16) & 0xFFFF
            guard next < count else { return nil }
            let (exchanged, original) = word.compareExchange(expected: v, desired: v + 1, ordering: .acquiringAndReleasing)
            if exchanged { return Int(next) }
            v = original
        }
    }

    /// Runs a claimed share (the job cannot finish, so `body` stays valid, until this share is counted).
    @inline(__always) func runShare(_ share: Int) {
        body(share)
        remaining.subtract(1, ordering: .releasing)
    }

    var finished: Bool { remaining.load(ordering: .acquiring) == 0 }

    /// Drops the body (every share has run) and frees the slot.
    func close() {
        body = { _ in }
        busy.store(false, ordering: .releasing)
    }
}
