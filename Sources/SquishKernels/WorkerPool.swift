import Foundation
import Synchronization

/// One persistent pool of worker threads for every parallel loop in Squish. `run` hands the same job to all workers
/// (the caller is worker 0) and returns when all have finished; workers spin briefly between jobs so that the
/// hundreds of small parallel steps of one decoded token do not pay a thread wake-up each.
public final class WorkerPool: @unchecked Sendable {
    public let threadCount: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Workers that have left their loop (the pool's memory must outlive every worker that can still touch it).
    private let exited = Atomic<Int>(0)
    /// The current job; written by `run` before `generation` is bumped, read by workers after they see the bump.
    private var job: UnsafeMutablePointer<(Int) -> Void>
    private var workerThreads: [Thread] = []

    /// A pool with `threads` workers in total (including the calling thread); default: the number of active cores.
    public init(threads: Int? = nil) {
        let n = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        threadCount = n
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
