import Foundation
import Testing
import Synchronization
import SquishKernels

/// The worker pool outlives none of its workers: pools created and dropped at once (workers possibly not even
/// started), or after work, are freed cleanly; every job reaches every worker exactly once.
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
}
