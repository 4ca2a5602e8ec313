import Foundation
/// Fast exp and log for the softmax and the attention entropy: Cephes' `expf`/`logf`
/// polynomials (≤ 1.2e-7 relative error over the ranges used, see FastMathTests), written as
/// branch-free scalar code so that the loops calling them are auto-vectorised (AVX2/AVX-512).
/// Reductions go through `sum`/`maximum`, which keep SIMD partial sums: a plain `s += x[i]`
/// loop would not vectorise (float addition is not reassociated).

/// e^x for x ≤ 88.3; 0 below −87.3 (so −∞ gives 0).
@inlinable @inline(__always)
public func fastExp(_ xIn: Float) -> Float {
    // Clamped with plain selects (one vector min/max each once vectorised; Swift's min/max
    // would add NaN-ordering compares and blends).
    let lo: Float = xIn < -87.3 ? -87.3 : xIn
    let x: Float = lo > 88.3 ? 88.3 : lo
    // n = round(x / ln 2) by the 1.5·2²³ trick; its low mantissa bits then hold n.
    let shifted = x * 1.44269504088896341 + 12582912.0
    let n = shifted - 12582912.0
    var r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    let z = r * r
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let e = p * z + r + 1
    let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)  // 2^n
    return xIn < -87.3 ? 0 : e * scale
}

/// Cephes logf's range reduction, shared by every build of the log: x = (1 + m)·2^e with
/// 1 + m in [√½, √2) (from frexpf's [0.5, 1) mantissa, moved around 1).
@inlinable @inline(__always)
public func logReduce(_ x: Float) -> (e: Float, m: Float) {
    let bits = x.bitPattern
    let e = Float(Int32(bitPattern: (bits >> 23) & 0xFF) &- 126)
    let m = Float(bitPattern: (bits & 0x007F_FFFF) | 0x3F00_0000)
    let small = m < 0.707106781186547524
    return (small ? e - 1 : e, small ? m + m - 1 : m - 1)
}

/// ln x for positive, finite, normal x.
@inlinable @inline(__always)
public func fastLog(_ x: Float) -> Float {
    let (e, m) = logReduce(x)
    let z = m * m
    var y: Float = 7.0376836292e-2
    y = y * m - 1.1514610310e-1
    y = y * m + 1.1676998740e-1
    y = y * m - 1.2420140846e-1
    y = y * m + 1.4249322787e-1
    y = y * m - 1.6668057665e-1
    y = y * m + 2.0000714765e-1
    y = y * m - 2.4999993993e-1
    y = y * m + 3.3333331174e-1
    y = y * m * z
    y += e * -2.12194440e-4
    y += z * -0.5
    return m + y + e * 0.693359375
}

/// erf(x), Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), branch-free so GELU loops vectorise.
@inlinable @inline(__always)
public func fastErf(_ x: Float) -> Float {
    let a = abs(x)
    let t = 1 / (1 + 0.3275911 * a)
    var y: Float = 1.061405429
    y = y * t - 1.453152027
    y = y * t + 1.421413741
    y = y * t - 0.284496736
    y = y * t + 0.254829592
    let r = 1 - y * t * fastExp(-a * a)
    return x < 0 ? -r : r
}

/// Σ p[0..<n], with eight SIMD partial sums.
@inlinable @inline(__always)
public func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// max p[0..<n] (n ≥ 1).
@inlinable @inline(__always)
public func maximum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    // Eight running maxima written as plain selects, which LLVM turns into one vector max per
    // step (the generic `pointwiseMax` stayed an out-of-line call, lane by lane).
    var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
    var i = 0
    while i + 8 <= n {
        let q = p + i
        m0 = q[0] > m0 ? q[0] : m0; m1 = q[1] > m1 ? q[1] : m1; m2 = q[2] > m2 ? q[2] : m2; m3 = q[3] > m3 ? q[3] : m3
        m4 = q[4] > m4 ? q[4] : m4; m5 = q[5] > m5 ? q[5] : m5; m6 = q[6] > m6 ? q[6] : m6; m7 = q[7] > m7 ? q[7] : m7
        i += 8
    }
    var m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    while i < n { m = p[i] > m ? p[i] : m; i += 1 }
    return m
}

/// GELU (exact erf form) over p[0..<n] in place — the loop body every ISA build shares.
@inlinable @inline(__always)
public func geluInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n {
        let v = p[i]
        p[i] = 0.5 * v * (1 + fastErf(v * 0.70710678118654752))
    }
}

/// exp(x − max) of each row of x (R, N) in place, without the division: `sums[r]` receives the
/// row's sum, so a caller can scale the (much smaller) product P·V instead of P itself.
@inlinable @inline(__always)
public func expRowsInPlace(
    _ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int, sums: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * n
        let m = maximum(row, n)
        for i in 0..<n { row[i] = fastExp(row[i] - m) }
        sums[r] = sum(row, n)
    }
}

/// Softmax of each row of x (R, N) in place, max-subtracted — shared by every ISA build.
@inlinable @inline(__always)
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int) {
    for r in 0..<rows {
        let row = x + r * n
        let m = maximum(row, n)
        for i in 0..<n { row[i] = fastExp(row[i] - m) }
        let inv = 1 / sum(row, n)
        for i in 0..<n { row[i] *= inv }
    }
}

/// Whether this CPU runs the AVX2 + FMA (+ F16C) builds of the kernels (KernelsAVX2), read
/// once from /proc/cpuinfo (false where it cannot be read). `VITLENS_KERNELS=generic` forces the
/// baseline build, for comparison.
public enum CPUKernels {
    public static let avx2: Bool = {
        if ProcessInfo.processInfo.environment["VITLENS_KERNELS"] == "generic" { return false }
        #if arch(x86_64)
        let (flags, _) = BLASKernelChoice.cpuFeatures()
        return flags.contains("avx2") && flags.contains("fma") && flags.contains("f16c")
        #else
        return false
        #endif
    }()
}

/// LayerNorm of each row of x (R, C) into out — shared by every ISA build: mean, then the
/// biased variance around it (two passes over a row that is in L1), each with SIMD partial
/// sums; eps inside the square root, as torch.nn.LayerNorm. `mean`/`rstd` (R), when given,
/// receive each row's mean and 1/σ (what the backward pass needs).
@inlinable @inline(__always)
public func layerNormRowsInPlace(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                 _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                 rows: Int, cols c: Int, eps: Float,
                                 mean meanOut: UnsafeMutablePointer<Float>?,
                                     rstd rstdOut: UnsafeMutablePointer<Float>?) {
    for r in 0..<rows {
        let xr = x + r * c, orow = out + r * c
        let mean = sum(xr, c) / Float(c)
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= c {
            let d = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self) - mean
            acc += d * d
            i += 8
        }
        var v = acc.sum()
        while i < c { let d = xr[i] - mean; v += d * d; i += 1 }
        let inv = 1 / (v / Float(c) + eps).squareRoot()
        for i in 0..<c { orow[i] = (xr[i] - mean) * inv * w[i] + b[i] }
        meanOut?[r] = mean
        rstdOut?[r] = inv
    }
}

/// x[r, :] = gelu(x[r, :] + bias) for each row of x (R, N) — bias and GELU in one pass.
@inlinable @inline(__always)
public func biasGeluRowsInPlace(
    _ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols n: Int) {
    for r in 0..<rows {
        let row = x + r * n
        for i in 0..<n {
            let v = row[i] + bias[i]
            row[i] = 0.5 * v * (1 + fastErf(v * 0.70710678118654752))
        }
    }
}

/// One query row of the attention statistics, shared by every ISA build: with v = row·inv over
/// n keys, returns (Σ v·ln(v + 1e−6), Σ v·d). `scratch` holds 2n floats (the terms are summed
/// with SIMD partial sums, after a loop that vectorises).
@inlinable @inline(__always)
public func entropyDistanceTerms(_ row: UnsafePointer<Float>, scale inv: Float, _ d: UnsafePointer<Float>, _ n: Int,
                                 scratch: UnsafeMutablePointer<Float>) -> (entropy: Float, distance: Float) {
    let ent = scratch, dst = scratch + n
    for k in 0..<n {
        let v = row[k] * inv
        ent[k] = v * fastLog(v + 1e-6)
        dst[k] = v * d[k]
    }
    return (sum(ent, n), sum(dst, n))
}
