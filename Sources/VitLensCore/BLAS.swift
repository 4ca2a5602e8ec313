import CBLAS

/// Row-major C ← α·op(A)·op(B) + β·C through OpenBLAS sgemm.
/// op(A): (m, k), op(B): (k, n), C: (m, n); lda/ldb/ldc are row strides in elements.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false,
                  m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor,
                transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k),
                alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// The plain triple loop sgemm is checked against (habit: keep the reference beside the tuned kernel).
public func sgemmReference(transA: Bool = false, transB: Bool = false,
                           m: Int, n: Int, k: Int,
                           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                           b: UnsafePointer<Float>, ldb: Int,
                           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var s: Double = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            let prev: Float = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(s) + prev
        }
    }
}

/// OpenBLAS's runtime: the kernel family it chose, and its thread count.
public enum BLASRuntime {
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    public static var config: String {
        guard let p = openblas_get_config() else { return "unknown" }
        return String(cString: p)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// Makes OpenBLAS single-threaded (its idle threads would spin and take the cores from
    /// vitlens's own workers) and returns the thread count to restore.
    public static func singleThreaded() -> Int {
        let n = threads
        if n != 1 { setThreads(1) }
        return n
    }
}

/// Row-major C ← α·AᵀA + β·C in float64 (OpenBLAS dsyrk), A: (k, n) with row stride lda, C: (n, n);
/// only C's upper triangle (j ≥ i) is written: half a dgemm's work for a scatter matrix.
@inline(__always)
public func dsyrkUpper(n: Int, k: Int, alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                       beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(n), blasint(k), alpha, a, blasint(lda),
                beta, c, blasint(ldc))
}

/// Row-major C ← α·op(A)·op(B) + β·C in float64 (OpenBLAS dgemm): the probe's solver, the similarity measures.
@inline(__always)
public func dgemm(transA: Bool = false, transB: Bool = false,
                  m: Int, n: Int, k: Int,
                  alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                  b: UnsafePointer<Double>, ldb: Int,
                  beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
    cblas_dgemm(CblasRowMajor,
                transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k),
                alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}
