import VitLensCore

// The kernels compiled for AVX2 + FMA + F16C (-target-cpu haswell, see Package.swift): the
// baseline build's inlinable loop bodies again, eight lanes wide, and FMA forms of GELU, exp and
// log with the same polynomials (tested against the baseline and float64). Called only when
// CPUKernels.avx2 says the CPU has them; never inlined into baseline code. The attention
// products are in Attention.swift.

/// GELU over p[0..<n] in place (AVX2 + FMA build).
@inline(never)
public func geluAVX2(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { p[i] = geluFMA(p[i]) }
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

/// LayerNorm of each row (AVX2 + FMA build); see `layerNormRowsInPlace`.
@inline(never)
public func layerNormRowsAVX2(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                              _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              rows: Int, cols: Int, eps: Float,
                              mean: UnsafeMutablePointer<Float>?, rstd: UnsafeMutablePointer<Float>?) {
    layerNormRowsInPlace(out, x, w, b, rows: rows, cols: cols, eps: eps, mean: mean, rstd: rstd)
}

/// x = gelu(x + bias) row by row (AVX2 + FMA build).
@inline(never)
public func biasGeluRowsAVX2(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let row = x + r * cols
        for i in 0..<cols { row[i] = geluFMA(row[i] + bias[i]) }
    }
}

// GELU's erf and exp again, with fused multiply-adds (`addingProduct` is llvm.fma, one
// instruction here; in the baseline build, without FMA hardware, it would be a libm call per
// element, so the shared bodies above keep separate multiplies and adds). Same polynomials,
// same constants as `fastExp`/`fastErf`; tested against them and against float64.

/// e^x for −87.3 ≤ x ≤ 0 (GELU's exp(−a²) after its clamp), FMA form of `fastExp`.
@inline(__always)
func expNonPositiveFMA(_ xIn: Float) -> Float {
    let x: Float = xIn < -87.3 ? -87.3 : xIn
    let shifted = (12582912.0 as Float).addingProduct(x, 1.44269504088896341)
    let n = shifted - 12582912.0
    let r = x.addingProduct(n, -0.693359375).addingProduct(n, 2.12194440e-4)
    var p: Float = 1.9875691500e-4
    p = (1.3981999507e-3 as Float).addingProduct(p, r)
    p = (8.3334519073e-3 as Float).addingProduct(p, r)
    p = (4.1665795894e-2 as Float).addingProduct(p, r)
    p = (1.6666665459e-1 as Float).addingProduct(p, r)
    p = (5.0000001201e-1 as Float).addingProduct(p, r)
    let e = (r + 1).addingProduct(p, r * r)
    let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)
    return e * scale
}

/// e^x for x ≤ 0 (a softmax's x − max), 0 below −87.3 (so −∞ gives 0); FMA form of `fastExp`.
@inline(__always)
func expSoftmaxFMA(_ x: Float) -> Float {
    let e = expNonPositiveFMA(x)
    return x < -87.3 ? 0 : e
}

/// x = quickGELU(x + bias) = v·σ(1.702·v) row by row (AVX2 + FMA build): with t = e^(−|z|),
/// σ(z) = 1/(1 + t) for z ≥ 0 and t/(1 + t) below — one exp of a non-positive argument.
@inline(never)
public func biasQuickGeluRowsAVX2(
    _ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let row = x + r * cols
        for i in 0..<cols {
            let v = row[i] + bias[i], z = 1.702 * v
            let t = expNonPositiveFMA(-abs(z))
            let sigma = (z >= 0 ? 1 : t) / (1 + t)
            row[i] = v * sigma
        }
    }
}

/// x = tanh-GELU(x + bias) row by row (AVX2 + FMA build): ½v(1 + tanh(u)) = v·σ(2u) with
/// u = √(2/π)(v + 0.044715v³), the sigmoid as in `biasQuickGeluRowsAVX2`.
@inline(never)
public func biasTanhGeluRowsAVX2(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let row = x + r * cols
        for i in 0..<cols {
            let v = row[i] + bias[i]
            let z = 1.5957691216057308 * v.addingProduct(0.044715 * v * v, v)
            let t = expNonPositiveFMA(-abs(z))
            let sigma = (z >= 0 ? 1 : t) / (1 + t)
            row[i] = v * sigma
        }
    }
}

/// erf(v/√2) and e^(−v²/2) (which the erf uses, and GELU's derivative again), FMA form of
/// `fastErf`.
@inline(__always)
func erfHalfFMA(_ v: Float) -> (erf: Float, exp: Float) {
    let x = v * 0.70710678118654752
    let a = abs(x)
    let e = expNonPositiveFMA(-a * a)
    let t = 1 / (1 as Float).addingProduct(0.3275911, a)
    var y: Float = 1.061405429
    y = (-1.453152027 as Float).addingProduct(y, t)
    y = (1.421413741 as Float).addingProduct(y, t)
    y = (-0.284496736 as Float).addingProduct(y, t)
    y = (0.254829592 as Float).addingProduct(y, t)
    let r = (1 as Float).addingProduct(-y * t, e)
    return (x < 0 ? -r : r, e)
}

/// GELU(v) = ½v(1 + erf(v/√2)), FMA form of `fastErf`.
@inline(__always)
func geluFMA(_ v: Float) -> Float {
    let half = 0.5 * v
    return half.addingProduct(half, erfHalfFMA(v).erf)
}

/// GELU's derivative times dy: dx = dy·(Φ(v) + v·φ(v)) (AVX2 + FMA build). Φ's erf and φ
/// share one exp: erf(v/√2) uses e^(−v²/2), and φ(v) = e^(−v²/2)/√(2π).
@inline(never)
public func geluBackwardAVX2(
    _ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ xs: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n {
        let v = xs[i], (erf, e) = erfHalfFMA(v)
        let cdf = (0.5 as Float).addingProduct(0.5, erf)
        dx[i] = dy[i] * cdf.addingProduct(v, 0.3989422804014327 * e)
    }
}

/// float16 → float32 for n little-endian elements: F16C's vcvtph2ps, eight at a time, in this
/// build (the baseline build converts in software, one element per libgcc call).
@inline(never)
public func halfToFloatAVX2(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { dst[i] = Float(Float16(bitPattern: (src + 2 * i).loadUnaligned(as: UInt16.self).littleEndian)) }
}

/// One query row of the attention statistics (AVX2 + FMA build): with v = row·inv over n keys,
/// (Σ v·ln(v + 1e−6), Σ v·d), as `entropyDistanceTerms` but in one pass without scratch.
@inline(never)
public func entropyDistanceAVX2(_ row: UnsafePointer<Float>, scale inv: Float, _ d: UnsafePointer<Float>, _ n: Int) -> (
    entropy: Float, distance: Float) {
    // Eight lanes at a time with the products accumulated in registers; lane j sums the terms
    // k ≡ j (mod 8), as `sum` does, then the tail.
    var accE = SIMD8<Float>(), accD = SIMD8<Float>()
    var k = 0
    while k + 8 <= n {
        let v = load8(row + k) * inv
        accE = accE.addingProduct(v, log8FMA(v + 1e-6))
        accD = accD.addingProduct(v, load8(d + k))
        k += 8
    }
    var e = accE.sum(), dist = accD.sum()
    while k < n {
        let v = row[k] * inv
        e += v * logFMA(v + 1e-6)
        dist += v * d[k]
        k += 1
    }
    return (e, dist)
}

/// `logFMA` on eight lanes (positive, finite, normal x): the same reduction and polynomial,
/// written with vector operations so that the caller's sums can stay in registers.
@inline(__always)
func log8FMA(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
    // The exponent field as a float, exactly: (2²³ + f) − 2²³, without an int → float convert.
    let eField = unsafeBitCast(((bits &>> 23) & 0xFF) | 0x4B00_0000, to: SIMD8<Float>.self) - 8_388_608
    let mant = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: SIMD8<Float>.self)
    let small = mant .< 0.707106781186547524
    let e = (eField - 126).replacing(with: eField - 127, where: small)
    let m = mant.replacing(with: mant + mant, where: small) - 1
    let z = m * m
    var y = SIMD8<Float>(repeating: 7.0376836292e-2)
    y = SIMD8(repeating: -1.1514610310e-1).addingProduct(y, m)
    y = SIMD8(repeating: 1.1676998740e-1).addingProduct(y, m)
    y = SIMD8(repeating: -1.2420140846e-1).addingProduct(y, m)
    y = SIMD8(repeating: 1.4249322787e-1).addingProduct(y, m)
    y = SIMD8(repeating: -1.6668057665e-1).addingProduct(y, m)
    y = SIMD8(repeating: 2.0000714765e-1).addingProduct(y, m)
    y = SIMD8(repeating: -2.4999993993e-1).addingProduct(y, m)
    y = SIMD8(repeating: 3.3333331174e-1).addingProduct(y, m)
    y = y * m * z
    y = y.addingProduct(e, SIMD8(repeating: -2.12194440e-4))
    y = y.addingProduct(z, SIMD8(repeating: -0.5))
    return (m + y).addingProduct(e, SIMD8(repeating: 0.693359375))
}

/// ln x for positive, finite, normal x: FMA form of `fastLog` (same polynomial and constants).
@inline(__always)
func logFMA(_ x: Float) -> Float {
    let (e, m) = logReduce(x)
    let z = m * m
    var y: Float = 7.0376836292e-2
    y = (-1.1514610310e-1 as Float).addingProduct(y, m)
    y = (1.1676998740e-1 as Float).addingProduct(y, m)
    y = (-1.2420140846e-1 as Float).addingProduct(y, m)
    y = (1.4249322787e-1 as Float).addingProduct(y, m)
    y = (-1.6668057665e-1 as Float).addingProduct(y, m)
    y = (2.0000714765e-1 as Float).addingProduct(y, m)
    y = (-2.4999993993e-1 as Float).addingProduct(y, m)
    y = (3.3333331174e-1 as Float).addingProduct(y, m)
    y = y * m * z
    y = y.addingProduct(e, -2.12194440e-4)
    y = y.addingProduct(z, -0.5)
    return (m + y).addingProduct(e, 0.693359375)
}

/// SwiGLU's hidden layer in place, rows of (gate F | up F) → silu(gate + b)·(up + b') packed to
/// (R, F) (AVX2 + FMA build): σ(g) from one exp of −|g| (as `biasQuickGeluRowsAVX2`), eight lanes
/// at a time. Each chunk is read before it is written, so row 0 (written over its own gate) and
/// later rows (written before their gate) are safe.
@inline(never)
public func biasSwiGLURowsAVX2(_ x: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols f: Int) {
    typealias V = SIMD8<Float>
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    for r in 0..<rows {
        let gate = x + r * 2 * f, up = gate + f, out = x + r * f
        var i = 0
        while i + 8 <= f {
            let g: V = load(gate + i) + load(bias + i)
            let u: V = load(up + i) + load(bias + f + i)
            let a: V = V.zero - g.replacing(with: V.zero - g, where: g .< V.zero)
            let t: V = exp8NonPositiveFMA(a)
            let one = V(repeating: 1)
            let sigma: V = one.replacing(with: t, where: g .< V.zero) / (one + t)
            UnsafeMutableRawPointer(out + i).storeBytes(of: g * sigma * u, as: V.self)
            i += 8
        }
        while i < f {
            let g = gate[i] + bias[i], u = up[i] + bias[f + i]
            let t = expNonPositiveFMA(-abs(g))
            out[i] = g * ((g >= 0 ? 1 : t) / (1 + t)) * u
            i += 1
        }
    }
}

/// e^x for −87.3 ≤ x ≤ 0, eight lanes: `expNonPositiveFMA` lane by lane (same polynomial).
@inline(__always)
func exp8NonPositiveFMA(_ xIn: SIMD8<Float>) -> SIMD8<Float> {
    typealias V = SIMD8<Float>
    let x = xIn.replacing(with: V(repeating: -87.3), where: xIn .< -87.3)
    let shifted = V(repeating: 12582912.0).addingProduct(x, V(repeating: 1.44269504088896341))
    let n = shifted - V(repeating: 12582912.0)
    let r = x.addingProduct(n, V(repeating: -0.693359375)).addingProduct(n, V(repeating: 2.12194440e-4))
    var p = V(repeating: 1.9875691500e-4)
    p = V(repeating: 1.3981999507e-3).addingProduct(p, r)
    p = V(repeating: 8.3334519073e-3).addingProduct(p, r)
    p = V(repeating: 4.1665795894e-2).addingProduct(p, r)
    p = V(repeating: 1.6666665459e-1).addingProduct(p, r)
    p = V(repeating: 5.0000001201e-1).addingProduct(p, r)
    let e = (r + V(repeating: 1)).addingProduct(p, r * r)
    let bits = (unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return e * unsafeBitCast(bits, to: V.self)
}
