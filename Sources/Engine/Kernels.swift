import Foundation
import KernelsAVX2
import VitLensCore

// Small free kernels of the forward pass. Each works on rows of a row-major matrix.

/// out = x·Wᵀ + b.  x: (R, K), W: (N, K), b: (N) → out: (R, N).
public func linearForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                          _ w: Tensor, _ b: Tensor?, rows: Int) {
    let n = w.shape[0], k = w.shape[1]
    if let b {
        for r in 0..<rows { (out + r * n).update(from: b.data, count: n) }
    }
    sgemm(transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w.data, ldb: k,
          beta: b == nil ? 0 : 1, c: out, ldc: n)
}

/// LayerNorm over the last axis.  x: (R, C) → out: (R, C); two-pass mean and variance
/// (biased, as torch.nn.LayerNorm), eps inside the square root. `mean`/`rstd` (R), when given,
/// receive each row's mean and 1/σ (what the backward pass needs). Rows are spread over the
/// workers; `layerNormRows` is the same on the calling thread.
public func layerNormForward(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                             _ w: Tensor, _ b: Tensor, rows: Int, eps: Float,
                             mean meanOut: UnsafeMutablePointer<Float>? = nil,
                                 rstd rstdOut: UnsafeMutablePointer<Float>? = nil) {
    let c = w.count
    parallelChunks(rows, minChunk: 64) { range in
        let lo = range.lowerBound
        layerNormRows(out + lo * c, x + lo * c, w, b, rows: range.count, eps: eps,
                      mean: meanOut.map { $0 + lo }, rstd: rstdOut.map { $0 + lo })
    }
}

/// LayerNorm of `rows` rows on the calling thread (the vectorised build for this CPU).
@inline(__always)
public func layerNormRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                          _ w: Tensor, _ b: Tensor, rows: Int, eps: Float,
                          mean: UnsafeMutablePointer<Float>? = nil, rstd: UnsafeMutablePointer<Float>? = nil) {
    if CPUKernels.avx2 {
        layerNormRowsAVX2(out, x, w.data, b.data, rows: rows, cols: w.count, eps: eps, mean: mean, rstd: rstd)
    } else {
        layerNormRowsInPlace(out, x, w.data, b.data, rows: rows, cols: w.count, eps: eps, mean: mean, rstd: rstd)
    }
}

/// x = gelu(x + bias) for each row of x (R, N), on the calling thread.
@inline(__always)
/// x = quickGELU(x + bias) = v·σ(1.702·v) row by row (CLIP's activation): the AVX2 + FMA kernel
/// where the CPU has it.
public func biasQuickGeluRows(_ x: UnsafeMutablePointer<Float>, _ bias: Tensor, rows: Int) {
    if CPUKernels.avx2 { return biasQuickGeluRowsAVX2(x, bias.data, rows: rows, cols: bias.count) }
    biasGatedRows(x, bias, rows: rows) { 1.702 * $0 }
}

/// x = tanh-GELU(x + bias) = ½v(1 + tanh(√(2/π)(v + 0.044715v³))) = v·σ(2u) row by row (SigLIP's
/// activation): the AVX2 + FMA kernel where the CPU has it.
public func biasTanhGeluRows(_ x: UnsafeMutablePointer<Float>, _ bias: Tensor, rows: Int) {
    if CPUKernels.avx2 { return biasTanhGeluRowsAVX2(x, bias.data, rows: rows, cols: bias.count) }
    biasGatedRows(x, bias, rows: rows) { 1.5957691216057308 * ($0 + 0.044715 * $0 * $0 * $0) }
}

/// x = v·σ(gate(v)), v = x + bias, row by row: the sigmoid-gated activations without AVX2.
@inline(__always)
private func biasGatedRows(_ x: UnsafeMutablePointer<Float>, _ bias: Tensor, rows: Int, gate: (Float) -> Float) {
    let n = bias.count, b = bias.data
    for r in 0..<rows {
        let row = x + r * n
        for i in 0..<n {
            let v = row[i] + b[i]
            row[i] = v / (1 + fastExp(-gate(v)))
        }
    }
}

public func biasGeluRows(_ x: UnsafeMutablePointer<Float>, _ bias: Tensor, rows: Int) {
    if CPUKernels.avx2 {
        biasGeluRowsAVX2(x, bias.data, rows: rows, cols: bias.count)
    } else {
        biasGeluRowsInPlace(x, bias.data, rows: rows, cols: bias.count)
    }
}

/// GELU with the exact erf form, x·Φ(x) = ½x(1 + erf(x/√2)), in place over n elements (timm's
/// nn.GELU default, not the tanh approximation); erf to 1.5e-7 by a vectorisable rational form.
/// dx = dy·GELU′(x) = dy·(Φ(x) + x·φ(x)), spread over the workers: the AVX2 + FMA kernel where
/// the CPU has it, else the engine's vectorisable erf/exp.
public func geluBackward(
    _ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
    parallelChunks(n, minChunk: 1 << 14) { range in
        let lo = range.lowerBound
        if CPUKernels.avx2 { return geluBackwardAVX2(dx + lo, dy + lo, x + lo, range.count) }
        for i in range {
            let v = x[i]
            let cdf = 0.5 * (1 + fastErf(v * 0.70710678118654752))
            let pdf = 0.3989422804014327 * fastExp(-0.5 * v * v)
            dx[i] = dy[i] * (cdf + v * pdf)
        }
    }
}

public func geluForward(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    parallelChunks(n, minChunk: 1 << 14) { range in
        if CPUKernels.avx2 { geluAVX2(x + range.lowerBound, range.count) } else {
            geluInPlace(x + range.lowerBound, range.count) }
    }
}

/// The libm GELU the vectorised one is tested against.
public func geluReference(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    for i in 0..<n { x[i] = 0.5 * x[i] * (1 + erff(x[i] * 0.70710678118654752)) }
}

/// Softmax over each row, in place.  x: (R, N). Max-subtracted; the exp loop vectorises.
public func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int) {
    if CPUKernels.avx2 { softmaxAVX2(x, rows: rows, cols: n) } else { softmaxInPlace(x, rows: rows, cols: n) }
}

/// Unnormalised softmax: each row of x (R, N) becomes exp(x − max), `sums` (R) its sums.
public func expRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int, sums: UnsafeMutablePointer<Float>) {
    if CPUKernels.avx2 { expRowsAVX2(x, rows: rows, cols: n, sums: sums) } else {
        expRowsInPlace(x, rows: rows, cols: n, sums: sums) }
}

/// The plain scalar softmax the vectorised one is tested against.
public func softmaxRowsReference(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int) {
    for r in 0..<rows {
        let row = x + r * n
        var m = -Float.infinity
        for i in 0..<n { m = max(m, row[i]) }
        var s: Float = 0
        for i in 0..<n { let e = expf(row[i] - m); row[i] = e; s += e }
        for i in 0..<n { row[i] /= s }
    }
}

/// im2col for a stride-p, kernel-p patch convolution.
/// images: (B, 3, S, S) → cols: (B·P, 3·p·p), columns ordered (channel, ky, kx) like the conv weight.
public func patchify(_ cols: UnsafeMutablePointer<Float>, _ images: UnsafePointer<Float>,
                     batch: Int, size s: Int, patch p: Int) {
    let g = s / p, kk = 3 * p * p
    for b in 0..<batch {
        for gy in 0..<g {
            for gx in 0..<g {
                let row = cols + ((b * g + gy) * g + gx) * kk
                for ch in 0..<3 {
                    for ky in 0..<p {
                        let src = images + ((b * 3 + ch) * s + gy * p + ky) * s + gx * p
                        (row + (ch * p + ky) * p).update(from: src, count: p)
                    }
                }
            }
        }
    }
}

/// RMSNorm over the last axis, x / √(mean(x²) + eps) · w (timm's RmsNorm), row by row on the
/// calling thread; `out` may be `x`.  x: (R, C) → out: (R, C).
public func rmsNormRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Tensor, rows: Int,
                        eps: Float) {
    let c = w.count
    for r in 0..<rows {
        let xr = x + r * c, orow = out + r * c
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= c {
            let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD8<Float>.self)
            acc += v * v
            i += 8
        }
        var ss = acc.sum()
        while i < c { ss += xr[i] * xr[i]; i += 1 }
        let inv = 1 / (ss / Float(c) + eps).squareRoot()
        for i in 0..<c { orow[i] = xr[i] * inv * w.data[i] }
    }
}

/// SwiGLU's hidden layer in place: each row of x (R, 2F) holds the gate's F values, then the up
/// projection's; with the bias (2F) added, row r becomes silu(gate)·up in x[r·F ..< (r + 1)·F]
/// (the rows packed to (R, F)). The AVX2 + FMA kernel where the CPU has it.
public func biasSwiGLURows(_ x: UnsafeMutablePointer<Float>, _ bias: Tensor, rows: Int) {
    let f = bias.count / 2
    if CPUKernels.avx2 { return biasSwiGLURowsAVX2(x, bias.data, rows: rows, cols: f) }
    let b = bias.data
    for r in 0..<rows {
        let gate = x + r * 2 * f, up = gate + f, out = x + r * f
        for i in 0..<f {
            let g = gate[i] + b[i], u = up[i] + b[f + i]
            out[i] = g / (1 + fastExp(-g)) * u
        }
    }
}
