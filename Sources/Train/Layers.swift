import Engine
import Foundation
import VitLensCore

// The training module's kernels: for each layer its forward (keeping what the backward needs)
// and its backward, side by side (llm.c's layout). Gradients accumulate (+=) into parameter
// gradients and are written (=) into activation gradients unless a comment says otherwise.
// Everything runs in a fixed order, so a run is reproducible bit for bit at one thread count.

/// Linear: y = x·Wᵀ + b.  x: (R, K), W: (N, K), b: (N) → y: (R, N).
/// Every product is split over vitlens's workers with OpenBLAS single-threaded (the training step
/// runs so, as the engine does): rows for y and dx, output features for dW, so no two workers
/// add into the same value and a step gives the same bits at a given worker count.
enum Linear {
    static func forward(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Tensor, _ b: Tensor?, rows: Int) {
        let n = w.shape[0], k = w.shape[1]
        parallelChunks(rows, minChunk: 64) { r in
            linearForward(y + r.lowerBound * n, x + r.lowerBound * k, w, b, rows: r.count)
        }
    }

    /// y += x·Wᵀ + b (the residual branches).
    static func accumulate(
        _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Tensor, _ b: Tensor, rows: Int) {
        let n = w.shape[0], k = w.shape[1]
        parallelChunks(rows, minChunk: 64) { r in
            let yr = y + r.lowerBound * n
            addBias(yr, b, rows: r.count)
            sgemm(transB: true, m: r.count, n: n, k: k, a: x + r.lowerBound * k, lda: k, b: w.data, ldb: k, beta: 1,
                c: yr, ldc: n)
        }
    }

    /// dx = dy·W (skipped when dx is nil); dW += dyᵀ·x; db += Σ_rows dy.
    static func backward(dx: UnsafeMutablePointer<Float>?, dw: Tensor, db: Tensor?, dy: UnsafePointer<Float>,
                         x: UnsafePointer<Float>, w: Tensor, rows: Int, accumulateDx: Bool = false) {
        let n = w.shape[0], k = w.shape[1]
        if let dx {
            parallelChunks(rows, minChunk: 64) { r in
                sgemm(m: r.count, n: k, k: n, a: dy + r.lowerBound * n, lda: n, b: w.data, ldb: k, beta: accumulateDx
                    ? 1 : 0,
                      c: dx + r.lowerBound * k, ldc: k)
            }
        }
        parallelChunks(n, minChunk: 8) { r in
            sgemm(transA: true, m: r.count, n: k, k: rows, a: dy + r.lowerBound, lda: n, b: x, ldb: k, beta: 1,
                  c: dw.data + r.lowerBound * k, ldc: k)
        }
        if let db { columnSums(dy, rows: rows, cols: n, into: db.data) }
    }
}

/// out[j] += Σ_r x[r, j], in row order (float64 sums), columns split over the workers.
func columnSums(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    parallelChunks(cols, minChunk: 32) { c in
        var acc = [Double](repeating: 0, count: c.count)
        acc.withUnsafeMutableBufferPointer { a in
            for r in 0..<rows {
                let row = x + r * cols + c.lowerBound
                for j in 0..<c.count { a[j] += Double(row[j]) }
            }
            for j in 0..<c.count { out[c.lowerBound + j] += Float(a[j]) }
        }
    }
}

/// LayerNorm over the last axis (torch.nn.LayerNorm: biased variance, eps inside the root).
/// x: (R, C) → y: (R, C); keeps mean and 1/σ per row.
enum LayerNorm {
    static func forward(
        _ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        _ x: UnsafePointer<Float>, _ w: Tensor, _ b: Tensor, rows: Int, eps: Float) {
        layerNormForward(y, x, w, b, rows: rows, eps: eps, mean: mean, rstd: rstd)
    }

    /// dx (+)= (dn − mean(dn) − n̂·mean(dn·n̂))·(1/σ) with dn = dy·w and n̂ the normalised input;
    /// dw += Σ dy·n̂, db += Σ dy (llm.c layernorm_backward). `accumulate`: dx += instead of =.
    /// Not `centred` (RMSNorm, mean 0): without the mean(dn) term.
    static func backward(
        dx: UnsafeMutablePointer<Float>, dw: Tensor, db: Tensor, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, w: Tensor, rows: Int,
                             accumulate: Bool, centred: Bool = true) {
        let c = w.count
        parallelChunks(rows, minChunk: 64) { range in
            for r in range {
                let xr = x + r * c, dyr = dy + r * c, dxr = dx + r * c
                var dm: Float = 0, dmn: Float = 0
                for i in 0..<c {
                    let nh = (xr[i] - mean[r]) * rstd[r], dn = dyr[i] * w.data[i]
                    dm += dn
                    dmn += dn * nh
                }
                dm = centred ? dm / Float(c) : 0
                dmn /= Float(c)
                for i in 0..<c {
                    let nh = (xr[i] - mean[r]) * rstd[r]
                    let g = (dyr[i] * w.data[i] - dm - nh * dmn) * rstd[r]
                    dxr[i] = accumulate ? dxr[i] + g : g
                }
            }
        }
        // dw, db: channels split over the workers, each summed in row order.
        parallelChunks(c, minChunk: 32) { ch in
            var gw = [Double](repeating: 0, count: ch.count), gb = gw
            for r in 0..<rows {
                let xr = x + r * c + ch.lowerBound, dyr = dy + r * c + ch.lowerBound, m = mean[r], s = rstd[r]
                for i in 0..<ch.count {
                    gw[i] += Double(dyr[i] * ((xr[i] - m) * s))
                    gb[i] += Double(dyr[i])
                }
            }
            for i in 0..<ch.count {
                dw.data[ch.lowerBound + i] += Float(gw[i]); db.data[ch.lowerBound + i] += Float(gb[i]) }
        }
    }
}

/// The model's norm: LayerNorm, or RMSNorm y = x/√(mean(x²) + eps)·w kept as a LayerNorm with mean
/// 0 (its bias a frozen zero).
enum Norm {
    static func forward(
        _ kind: ViTConfig.Norm, _ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Tensor, _ b: Tensor, rows: Int, eps: Float) {
        guard kind == .rmsNorm else {
            return LayerNorm.forward(y, mean: mean, rstd: rstd, x, w, b, rows: rows, eps: eps)
        }
        let c = w.count
        parallelChunks(rows, minChunk: 64) { range in
            for r in range {
                let xr = x + r * c
                var ss = 0.0
                for i in 0..<c { ss += Double(xr[i]) * Double(xr[i]) }
                let s = Float(1 / (ss / Double(c) + Double(eps)).squareRoot())
                mean[r] = 0
                rstd[r] = s
                for i in 0..<c { y[r * c + i] = xr[i] * s * w.data[i] }
            }
        }
    }

    static func backward(
        _ kind: ViTConfig.Norm, dx: UnsafeMutablePointer<Float>, dw: Tensor, db: Tensor, dy: UnsafePointer<Float>,
        x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, w: Tensor, rows: Int,
        accumulate: Bool) {
        LayerNorm.backward(dx: dx, dw: dw, db: db, dy: dy, x: x, mean: mean, rstd: rstd, w: w, rows: rows,
                           accumulate: accumulate, centred: kind == .layerNorm)
    }
}

/// SwiGLU's hidden layer: rows of x (R, 2F) hold a (gate) then u (up); y = silu(a)·u (R, F).
enum SwiGLU {
    static func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, hidden f: Int) {
        parallelChunks(rows, minChunk: 16) { range in
            for r in range {
                let a = x + r * 2 * f, u = a + f, yr = y + r * f
                for i in 0..<f { yr[i] = a[i] * Activation.sigmoid(a[i]) * u[i] }
            }
        }
    }

    /// da = dy·u·σ(a)(1 + a(1 − σ(a))), du = dy·silu(a).  dx: (R, 2F).
    static func backward(dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         rows: Int, hidden f: Int) {
        parallelChunks(rows, minChunk: 16) { range in
            for r in range {
                let a = x + r * 2 * f, u = a + f, d = dy + r * f, da = dx + r * 2 * f, du = da + f
                for i in 0..<f {
                    let s = Activation.sigmoid(a[i])
                    da[i] = d[i] * u[i] * s * (1 + a[i] * (1 - s))
                    du[i] = d[i] * a[i] * s
                }
            }
        }
    }
}

/// The MLP's activation: exact GELU y = x·Φ(x) (AVX2 kernels), or the sigmoid-gated forms
/// y = x·σ(z(x)) — CLIP's QuickGELU z = 1.702x, SigLIP's tanh GELU z = 2√(2/π)(x + 0.044715x³).
enum Activation {
    static func forward(
        _ kind: ViTConfig.Activation, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
        y.update(from: x, count: n)
        if kind == .gelu { return geluForward(y, count: n) }
        parallelChunks(n, minChunk: 1 << 14) { r in
            for i in r { let v = y[i]; y[i] = v * sigmoid(gate(kind, v).z) }
        }
    }

    /// dx = dy·y′(x): Φ(x) + x·φ(x) for GELU; σ + x·σ(1 − σ)·z′(x) for the sigmoid-gated forms.
    static func backward(_ kind: ViTConfig.Activation, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                         x: UnsafePointer<Float>, count n: Int) {
        if kind == .gelu { return geluBackward(dx, dy, x, count: n) }
        parallelChunks(n, minChunk: 1 << 14) { r in
            for i in r {
                let v = x[i], (z, dz) = gate(kind, v), s = sigmoid(z)
                dx[i] = dy[i] * (s + v * s * (1 - s) * dz)
            }
        }
    }

    /// z(x) and z′(x) of a sigmoid-gated activation.
    @inline(__always) static func gate(_ kind: ViTConfig.Activation, _ v: Float) -> (z: Float, dz: Float) {
        switch kind {
        case .quickGelu: return (1.702 * v, 1.702)
        case .silu: return (v, 1)
        default:
            let k: Float = 1.5957691216057308
            return (k * (v + 0.044715 * v * v * v), k * (1 + 3 * 0.044715 * v * v))
        }
    }

    @inline(__always) static func sigmoid(_ z: Float) -> Float {
        let t = fastExp(-abs(z))
        return (z >= 0 ? 1 : t) / (1 + t)
    }
}

/// Multi-head self-attention core on a fused qkv.  qkv: (B, T, 3C) with q, k, v at column
/// offsets 0, C, 2C and head h at h·D → out: (B, T, C); keeps the probabilities P: (B, H, T, T).
enum SelfAttention {
    /// `bias` (H, T, T), when given, is added to the logits (BEiT's relative position bias).
    static func forward(
        _ out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
                        batch B: Int, tokens T: Int, heads H: Int, dim C: Int, bias: UnsafePointer<Float>? = nil) {
        let D = C / H, scale = 1 / Float(D).squareRoot()
        perImage(B) { b in
            let base = qkv + b * T * 3 * C
            for h in 0..<H {
                let p = probs + (b * H + h) * T * T
                sgemm(transB: true, m: T, n: T, k: D, alpha: scale, a: base + h * D, lda: 3 * C, b: base + C + h * D,
                    ldb: 3 * C, c: p, ldc: T)
                if let bias { let bh = bias + h * T * T; for i in 0..<(T * T) { p[i] += bh[i] } }
                softmaxRows(p, rows: T, cols: T)
                sgemm(m: T, n: D, k: T, a: p, lda: T, b: base + 2 * C + h * D, ldb: 3 * C, c: out + b * T * C + h * D,
                    ldc: C)
            }
        }
    }

    /// dqkv (=) from dout: dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = s·dS·K; dK = s·dSᵀ·Q.
    /// scratch: (B, T, T) floats, one T×T matrix per image. `dlogits` (B, H, T, T), when given,
    /// receives dS (for the relative position bias's gradient).
    static func backward(dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                         probs: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>, batch B: Int, tokens T: Int,
                             heads H: Int, dim C: Int,
                         dlogits: UnsafeMutablePointer<Float>? = nil) {
        let D = C / H, scale = 1 / Float(D).squareRoot()
        perImage(B) { b in
            let base = qkv + b * T * 3 * C, dbase = dqkv + b * T * 3 * C, dO = dout + b * T * C
            let dS = scratch + b * T * T
            for h in 0..<H {
                let p = probs + (b * H + h) * T * T
                sgemm(transA: true, m: T, n: D, k: T, a: p, lda: T, b: dO + h * D, ldb: C, c: dbase + 2 * C + h * D,
                    ldc: 3 * C)
                sgemm(transB: true, m: T, n: T, k: D, a: dO + h * D, lda: C, b: base + 2 * C + h * D, ldb: 3 * C, c: dS,
                    ldc: T)
                for r in 0..<T {
                    let pr = p + r * T, dr = dS + r * T
                    var dot: Float = 0
                    for j in 0..<T { dot += pr[j] * dr[j] }
                    for j in 0..<T { dr[j] = pr[j] * (dr[j] - dot) }
                }
                dlogits?.advanced(by: (b * H + h) * T * T).update(from: dS, count: T * T)
                sgemm(m: T, n: D, k: T, alpha: scale, a: dS, lda: T, b: base + C + h * D, ldb: 3 * C, c: dbase + h * D,
                    ldc: 3 * C)
                sgemm(transA: true, m: T, n: D, k: T, alpha: scale, a: dS, lda: T, b: base + h * D, ldb: 3 * C, c: dbase
                    + C + h * D, ldc: 3 * C)
            }
        }
    }

    /// Images spread over vitlens's workers, OpenBLAS single-threaded meanwhile (as the engine).
    private static func perImage(_ B: Int, _ body: (Int) -> Void) { parallelItems(B, body) }
}

/// Softmax cross-entropy averaged over the batch.  logits: (B, K) → loss; dlogits = (p − onehot)/B.
enum CrossEntropy {
    static func forwardBackward(
        _ logits: UnsafePointer<Float>, labels: [Int], classes K: Int, dlogits: UnsafeMutablePointer<Float>) -> (
        loss: Double, correct: Int) {
        let B = labels.count
        var loss = 0.0, correct = 0
        for b in 0..<B {
            let z = logits + b * K, d = dlogits + b * K
            var m = -Double.infinity, arg = 0
            for c in 0..<K where Double(z[c]) > m { m = Double(z[c]); arg = c }
            var s = 0.0
            for c in 0..<K { s += exp(Double(z[c]) - m) }
            let lse = m + log(s)
            loss += lse - Double(z[labels[b]])
            for c in 0..<K { d[c] = Float(exp(Double(z[c]) - lse) / Double(B)) }
            d[labels[b]] -= 1 / Float(B)
            if arg == labels[b] { correct += 1 }
        }
        return (loss / Double(B), correct)
    }
}
