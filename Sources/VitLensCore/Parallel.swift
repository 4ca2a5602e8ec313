import Dispatch
import Foundation

/// Worker count for vitlens's own (non-GEMM) loops; OpenBLAS has its own threads and the two
/// never run at the same time, so they do not fight over cores.
public enum Workers {
    nonisolated(unsafe) public static var count: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

/// Runs `body` over `0..<n` split into contiguous chunks, one per worker.
public func parallelChunks(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let workers = min(Workers.count, max(1, n / max(minChunk, 1)))
    if workers <= 1 || n <= 1 {
        body(0..<n)
        return
    }
    let chunk = (n + workers - 1) / workers
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = w * chunk, hi = min(n, lo + chunk)
        if lo < hi { body(lo..<hi) }
    }
}
