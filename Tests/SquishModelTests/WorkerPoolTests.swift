import Foundation
import Testing
import Synchronization
import SquishKernels

/// The worker pool outlives none of its workers: pools created and dropped at once (workers possibly not even
/// started), or after work, are freed cleanly; every share of a job runs exactly once, also when several threads
/// run jobs on one pool at the same time and when a job's body runs jobs itself.
struct WorkerPoolTests {
    @Test func poolsDroppedRightAwayOrAfterWorkAreFreedCleanly() {
        for i in 0 ..< 200 {
            let pool = WorkerPool(threads: 2 + i % 3)
            if i % 2 == 1 {
                let hits = Atomic<Int>(0)
                pool.run { _ in hits.add(1, ordering: .relaxed) }
                #expect(hits.load(ordering: .relaxed) == pool.threadCount)
            }
        }
    }

    @Test func parallelForCoversEveryIndexOnce() {
        let pool = WorkerPool(threads: 3)
        for n in [0, 1, 2, 7, 100, 1001] {
            // Each index is written by the worker whose range holds it; an index in two ranges would count 2.
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(n, 1))
            defer { counts.deallocate() }
            counts.initialize(repeating: 0)
            pool.parallelFor(n) { range in for i in range { counts[i] += 1 } }
            #expect(counts.prefix(n).allSatisfy { $0 == 1 })
        }
    }

    @Test func concurrentCallersAndNestedJobsRunEveryShareOnce() {
        let pool = WorkerPool(threads: 3, spinMicroseconds: 50)
        let callers = 6, jobs = 300
        // Each caller thread runs `jobs` jobs of 1 ... 40 shares; every 10th share runs a nested job of 5 shares.
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: callers * jobs * 40 * 6)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0)
        let counter = Atomic<Int>(0)
        let done = Atomic<Int>(0)
        let shared = UnsafeSendable(counts)
        for c in 0 ..< callers {
            let t = Thread {
                for j in 0 ..< jobs {
                    let shares = 1 + (c * 7 + j) % 40
                    let base = (c * jobs + j) * 40 * 6
                    pool.run(shares: shares) { s in
                        shared.value[base + s * 6] += 1
                        counter.add(1, ordering: .relaxed)
                        if s % 10 == 0 {
                            pool.run(shares: 5) { k in
                                shared.value[base + s * 6 + 1 + k] += 1
                                counter.add(1, ordering: .relaxed)
                            }
                        }
                    }
                }
                done.add(1, ordering: .releasing)
            }
            t.start()
        }
        while done.load(ordering: .acquiring) < callers { usleep(1000) }
        var expected = 0
        for c in 0 ..< callers {
            for j in 0 ..< jobs {
                let shares = 1 + (c * 7 + j) % 40
                let base = (c * jobs + j) * 40 * 6
                for s in 0 ..< shares {
                    #expect(counts[base + s * 6] == 1)
                    expected += 1
                    if s % 10 == 0 {
                        for k in 0 ..< 5 { #expect(counts[base + s * 6 + 1 + k] == 1) }
                        expected += 5
                    }
                }
            }
        }
        #expect(counter.load(ordering: .relaxed) == expected)
    }

    @Test func anIdlePoolSleepsInsteadOfSpinning() {
        // After the spin period every worker blocks (a busy machine gets its cores back), and wakes for the next job.
        let pool = WorkerPool(threads: 3, spinMicroseconds: 100)
        for round in 0 ..< 3 {
            let hits = Atomic<Int>(0)
            pool.run(shares: 64) { _ in hits.add(1, ordering: .relaxed) }
            #expect(hits.load(ordering: .relaxed) == 64)
            var waited = 0
            while pool.sleepingWorkers < pool.threadCount - 1 && waited < 5000 { usleep(1000); waited += 1 }
            #expect(pool.sleepingWorkers == pool.threadCount - 1, "round \(round)")
        }
    }
}

/// A pointer handed to test threads (each element is written by exactly one share).
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
