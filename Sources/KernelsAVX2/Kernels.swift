import VitLensCore

// The element-wise kernels compiled for AVX2 + FMA (-target-cpu haswell, see Package.swift):
// the same inlinable loop bodies as the baseline build, eight lanes wide. Called only when
// CPUKernels.avx2 says the CPU has them; never inlined into baseline code.

/// GELU over p[0..<n] in place (AVX2 + FMA build).
@inline(never)
public func geluAVX2(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    geluInPlace(p, n)
}

/// Row softmax of x (R, N) in place (AVX2 + FMA build).
@inline(never)
public func softmaxAVX2(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    softmaxInPlace(x, rows: rows, cols: cols)
}

/// exp(x − row max) in place with the row sums (AVX2 + FMA build).
@inline(never)
public func expRowsAVX2(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, sums: UnsafeMutablePointer<Float>) {
    expRowsInPlace(x, rows: rows, cols: cols, sums: sums)
}
