import VitLensCore

/// Which tokens of a representation CKA compares (docs/reference.md, "`vitlens cka`"; mae-lite `rep_cmp_analyzer`).
public enum TokenSelection: String, Sendable, CaseIterable {
    /// Patch tokens only (prefix tokens dropped), flattened: X ∈ ℝ^{b × (P·C)}. mae-lite's choice.
    case patches
    /// The class token: X ∈ ℝ^{b × C}.
    case cls
    /// The mean of the patch tokens: X ∈ ℝ^{b × C}.
    case mean
}

/// A Gram matrix K = XXᵀ of one minibatch with its diagonal set to 0, in float64, with the
/// row sums and total the unbiased HSIC needs.
public struct Gram {
    public let n: Int
    public let k: [Double]       // (n, n), zero diagonal
    public let rowSums: [Double] // K·1
    public let total: Double     // 1ᵀ·K·1

    public init(n: Int, k: [Double]) {
        precondition(k.count == n * n)
        var k = k
        for i in 0..<n { k[i * n + i] = 0 }
        var rows = [Double](repeating: 0, count: n)
        for i in 0..<n { var s = 0.0; for j in 0..<n { s += k[i * n + j] }; rows[i] = s }
        self.n = n
        self.k = k
        rowSums = rows
        total = rows.reduce(0, +)
    }

    /// The Gram matrix of the selected tokens of a representation x: (B, T, C).
    /// XXᵀ is one sgemm over the rows of x, reading patch tokens in place (row stride T·C).
    public static func of(_ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, channels c: Int,
                          prefix: Int, selection: TokenSelection, scratch: inout [Float]) -> Gram {
        var g = [Float](repeating: 0, count: b * b)
        switch selection {
        case .patches:
            g.withUnsafeMutableBufferPointer {
                outerProducts(x + prefix * c, rows: b, k: (t - prefix) * c, lda: t * c, into: $0.baseAddress!) }
        case .cls:
            g.withUnsafeMutableBufferPointer { outerProducts(x, rows: b, k: c, lda: t * c, into: $0.baseAddress!) }
        case .mean:
            if scratch.count < b * c { scratch = [Float](repeating: 0, count: b * c) }
            scratch.withUnsafeMutableBufferPointer {
                meanPatchTokens(x, batch: b, tokens: t, channels: c, prefix: prefix, into: $0.baseAddress!) }
            sgemm(transB: true, m: b, n: b, k: c, a: scratch, lda: c, b: scratch, ldb: c, c: &g, ldc: b)
        }
        return Gram(n: b, k: g.map(Double.init))
    }

    /// g (b, b) = a·aᵀ for a (b, k) with row stride lda: one sgemm — or, when OpenBLAS is
    /// single-threaded (as inside the engine's forward pass, whose taps call this), the rows of g
    /// split over vitlens's workers, so that both cores work on it.
    static func outerProducts(
        _ a: UnsafePointer<Float>, rows b: Int, k: Int, lda: Int, into g: UnsafeMutablePointer<Float>) {
        if BLASRuntime.threads == 1 && Workers.count > 1 && b >= 16 {
            parallelChunks(b, minChunk: 8) { r in
                sgemm(transB: true, m: r.count, n: b, k: k, a: a + r.lowerBound * lda, lda: lda, b: a, ldb: lda,
                      c: g + r.lowerBound * b, ldc: b)
            }
        } else {
            sgemm(transB: true, m: b, n: b, k: k, a: a, lda: lda, b: a, ldb: lda, c: g, ldc: b)
        }
    }
}

/// out (B, C) = the mean of each image's patch tokens of x (B, T, C), summed in float64.
public func meanPatchTokens(_ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, channels c: Int, prefix: Int,
                            into out: UnsafeMutablePointer<Float>) {
    let p = t - prefix
    for i in 0..<b {
        for ch in 0..<c {
            var s: Double = 0
            for tok in prefix..<t { s += Double(x[(i * t + tok) * c + ch]) }
            out[i * c + ch] = Float(s / Double(p))
        }
    }
}

/// The rows of a representation x (B, T, C) a selection gives `similarity`: B vectors (the class
/// token, or the mean of the patch tokens as CKA takes it), or B·(T − prefix) patch tokens.
public func sampleRows(_ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, channels c: Int, prefix: Int,
                       selection: TokenSelection) -> [Float] {
    switch selection {
    case .cls:
        var out = [Float](repeating: 0, count: b * c)
        for i in 0..<b { for ch in 0..<c { out[i * c + ch] = x[i * t * c + ch] } }
        return out
    case .mean:
        var out = [Float](repeating: 0, count: b * c)
        out.withUnsafeMutableBufferPointer {
            meanPatchTokens(x, batch: b, tokens: t, channels: c, prefix: prefix, into: $0.baseAddress!) }
        return out
    case .patches:
        var out = [Float]()
        out.reserveCapacity(b * (t - prefix) * c)
        for i in 0..<b { out.append(contentsOf: UnsafeBufferPointer(start: x + (i * t + prefix) * c, count: (t - prefix) * c)) }
        return out
    }
}

/// The unbiased HSIC estimator of Nguyen, Raghu & Kornblith 2021, eq. 3, as mae-lite's
/// rep_cmp_analyzer computes it (K, L with zero diagonals, n = b ≥ 4):
/// HSIC₁(K, L) = [tr(KL) + (1ᵀK1)(1ᵀL1)/((n−1)(n−2)) − 2·1ᵀKL1/(n−2)] / (n(n−3)).
public func unbiasedHSIC(_ a: Gram, _ b: Gram) -> Double {
    let n = a.n
    precondition(n == b.n && n >= 4, "HSIC needs two Gram matrices of the same batch, b ≥ 4")
    var trace = 0.0  // tr(KL) = Σᵢⱼ Kᵢⱼ Lⱼᵢ = Σᵢⱼ Kᵢⱼ Lᵢⱼ (L symmetric)
    for i in 0..<(n * n) { trace += a.k[i] * b.k[i] }
    var kl1 = 0.0    // 1ᵀKL1 = (K1)ᵀ(L1)
    for i in 0..<n { kl1 += a.rowSums[i] * b.rowSums[i] }
    let nd = Double(n)
    let r = trace + a.total * b.total / ((nd - 1) * (nd - 2)) - 2 * kl1 / (nd - 2)
    return r / (nd * (nd - 3))
}

/// HSIC(K, K), snapped to exactly 0 when it is rounding noise: a representation that is the
/// same for every image (the class token before the first block) has K ∝ 11ᵀ − I, whose HSIC is
/// 0 in exact arithmetic but cancels to ~1e−16 of its terms in floating point. CKA against such
/// a layer is undefined and reported as NaN.
func selfHSIC(_ g: Gram) -> Double {
    let h = unbiasedHSIC(g, g)
    let nd = Double(g.n)
    let scale = g.k.reduce(0) { $0 + $1 * $1 } / (nd * (nd - 3))
    return abs(h) <= 1e-9 * scale ? 0 : h
}

/// One minibatch's contribution to the CKA matrix: HSIC(Kᵢ, Lⱼ) for every layer pair, and
/// HSIC(Kᵢ, Kᵢ), HSIC(Lⱼ, Lⱼ).
public struct CKABatch: Sendable, Equatable {
    public var index: Int
    public var size: Int
    public var kl: [Double]  // (La, Lb)
    public var kk: [Double]  // (La)
    public var ll: [Double]  // (Lb)

    public init(index: Int, size: Int, kl: [Double], kk: [Double], ll: [Double]) {
        self.index = index; self.size = size; self.kl = kl; self.kk = kk; self.ll = ll
    }

    public init(index: Int, a: [Gram], b: [Gram]) {
        self.index = index
        size = a.first?.n ?? 0
        kk = a.map(selfHSIC)
        ll = b.map(selfHSIC)
        var kl = [Double](repeating: 0, count: a.count * b.count)
        for i in a.indices { for j in b.indices { kl[i * b.count + j] = unbiasedHSIC(a[i], b[j]) } }
        self.kl = kl
    }
}

/// CKA(i, j) = mean HSIC(Kᵢ, Lⱼ) / √(mean HSIC(Kᵢ, Kᵢ) · mean HSIC(Lⱼ, Lⱼ)), the means over
/// minibatches with equal weight (docs/reference.md, "`vitlens cka`"; mae-lite `rep_cmp_analyzer`). Sums run in
/// batch-index order, so a run split into
/// shards and merged gives the same sums bit for bit.
public func ckaMatrix(_ batches: [CKABatch], layersA: Int, layersB: Int) -> [Double] {
    let sorted = batches.sorted { $0.index < $1.index }
    var kl = [Double](repeating: 0, count: layersA * layersB)
    var kk = [Double](repeating: 0, count: layersA), ll = [Double](repeating: 0, count: layersB)
    for b in sorted {
        for i in 0..<kl.count { kl[i] += b.kl[i] }
        for i in 0..<layersA { kk[i] += b.kk[i] }
        for j in 0..<layersB { ll[j] += b.ll[j] }
    }
    let m = Double(sorted.count)
    var out = [Double](repeating: .nan, count: layersA * layersB)
    for i in 0..<layersA {
        for j in 0..<layersB {
            // Undefined (NaN) when either representation does not vary across images.
            guard kk[i] > 0, ll[j] > 0 else { continue }
            out[i * layersB + j] = (kl[i * layersB + j] / m) / ((kk[i] / m).squareRoot() * (ll[j] / m).squareRoot())
        }
    }
    return out
}
