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

/// Runs `body(i)` for every i in 0..<n spread over vitlens's workers (i, i + workers, …), with
/// OpenBLAS single-threaded meanwhile: for many small BLAS/LAPACK calls, which do not split well.
public func parallelItems(_ n: Int, _ body: (Int) -> Void) {
    let workers = max(1, min(Workers.count, n))
    let blas = BLASRuntime.threads
    if workers > 1 { BLASRuntime.setThreads(1) }
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        var i = w
        while i < n { body(i); i += workers }
    }
    if workers > 1 { BLASRuntime.setThreads(blas) }
}

/// The first error of work spread over threads (later ones are dropped).
public final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    public init() {}
    public func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
    public var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
}

/// Runs `body` on a new thread with a stack of `bytes` (virtual memory: only the pages used are
/// committed) and waits for it. For work whose recursion depth is bounded but large, such as
/// releasing a deeply nested value built from an untrusted file.
public func runWithLargeStack<T>(_ bytes: Int, _ body: () throws -> T) throws -> T {
    var result: Result<T, Error>?
    withoutActuallyEscaping(body) { body in
        let box = LargeStackJob()
        box.run = { result = Result { try body() } }
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, bytes)
        let context = Unmanaged.passRetained(box).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { ctx in
            let b = Unmanaged<LargeStackJob>.fromOpaque(ctx!).takeRetainedValue()
            b.run?()
            b.run = nil
            return nil
        }, context)
        if rc != 0 {
            // No thread (resource limits): run here, with the ordinary stack.
            Unmanaged<LargeStackJob>.fromOpaque(context).release()
            result = Result { try body() }
            return
        }
        pthread_join(thread, nil)
    }
    return try result!.get()
}

private final class LargeStackJob: @unchecked Sendable {
    var run: (() -> Void)?
}
