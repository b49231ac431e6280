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
            let counts = (0 ..< n).map { _ in Atomic<Int>(0) }
            pool.parallelFor(n) { range in for i in range { counts[i].add(1, ordering: .relaxed) } }
            #expect(counts.allSatisfy { $0.load(ordering: .relaxed) == 1 })
        }
    }
}
