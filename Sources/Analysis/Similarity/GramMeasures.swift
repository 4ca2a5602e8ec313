import Foundation
import VitLensCore

/// One layer's per-image vectors, float32 (N × D, row-major), for the measures that need every
/// image at once (`rbf-cka`, `mknn`, `rsa`).
public struct LayerVectors {
    public let rows: Int, dim: Int
    public let values: [Float]
    public init(rows: Int, dim: Int, values: [Float]) {
        precondition(values.count == rows * dim)
        (self.rows, self.dim, self.values) = (rows, dim, values)
    }
    /// The rows `index` (a bootstrap resample).
    public func rows(_ index: [Int]) -> LayerVectors {
        var out = [Float](); out.reserveCapacity(index.count * dim)
        for i in index { out.append(contentsOf: values[(i * dim)..<((i + 1) * dim)]) }
        return LayerVectors(rows: index.count, dim: dim, values: out)
    }
    var doubles: [Double] { values.map(Double.init) }
}

/// Z·Zᵀ (N × N) of rows z (N × D), float64.
func rowProducts(_ z: [Double], rows n: Int, dim d: Int) -> [Double] {
    var g = [Double](repeating: 0, count: n * n)
    dgemm(transB: true, m: n, n: n, k: d, a: z, lda: d, b: z, ldb: d, c: &g, ldc: n)
    return g
}

/// Rows i ≠ j that are the same image (bootstrap copies): excluded like the diagonal.
func sameImage(_ identity: [Int]?, _ i: Int, _ j: Int) -> Bool { i == j || (identity.map { $0[i] == $0[j] } ?? false) }

// MARK: - Mutual k-NN (platonic-rep)

/// platonic-rep's `remove_outliers(feats, q)`: the q-quantile of |x| within each row (linear
/// interpolation, as torch.quantile), averaged over rows; every value clamped to ± that.
public func clampAtQuantile(_ x: LayerVectors, _ q: Double) -> LayerVectors {
    guard q < 1 else { return x }
    var total = 0.0
    for i in 0..<x.rows {
        let row = x.values[(i * x.dim)..<((i + 1) * x.dim)].map { abs($0) }.sorted()
        let pos = q * Double(x.dim - 1), lo = Int(pos.rounded(.down)), hi = min(lo + 1, x.dim - 1)
        let f = Float(pos - Double(lo))
        total += Double(row[lo] + (row[hi] - row[lo]) * f)
    }
    let t = Float(total / Double(x.rows))
    return LayerVectors(rows: x.rows, dim: x.dim, values: x.values.map { min(t, max(-t, $0)) })
}

/// Each row's k nearest neighbours by cosine similarity (rows L2-normalised), itself excluded:
/// (N × k), most similar first; ties go to the lower index.
public func nearestNeighbours(_ x: LayerVectors, k: Int, identity: [Int]? = nil) -> [Int32] {
    let n = x.rows, d = x.dim
    var z = x.doubles
    for i in 0..<n {
        var s = 0.0
        for c in 0..<d { s += z[i * d + c] * z[i * d + c] }
        let inv = s > 0 ? 1 / s.squareRoot() : 0
        for c in 0..<d { z[i * d + c] *= inv }
    }
    var out = [Int32](repeating: 0, count: n * k)
    let block = 128
    var sim = [Double](repeating: 0, count: block * n)
    for start in stride(from: 0, to: n, by: block) {
        let r = min(block, n - start)
        z.withUnsafeBufferPointer { zp in
            dgemm(transB: true, m: r, n: n, k: d, a: zp.baseAddress! + start * d, lda: d, b: zp.baseAddress!, ldb: d,
                  c: &sim, ldc: n)
        }
        for i in 0..<r {
            // A running top-k (insertion into a sorted list of k): N·k at worst, N·log-ish typically.
            var best: [(Double, Int)] = []
            best.reserveCapacity(k + 1)
            for j in 0..<n where !sameImage(identity, start + i, j) {
                let v = sim[i * n + j]
                if best.count == k, v <= best[k - 1].0 { continue }
                var p = best.count
                while p > 0 && best[p - 1].0 < v { p -= 1 }
                best.insert((v, j), at: p)
                if best.count > k { best.removeLast() }
            }
            for (c, b) in best.enumerated() { out[(start + i) * k + c] = Int32(b.1) }
        }
    }
    return out
}

/// Mean over images of |N_A(i) ∩ N_B(i)| / k (platonic-rep `mutual_knn`).
public func mutualKNN(_ a: [Int32], _ b: [Int32], rows n: Int, k: Int) -> Double {
    var total = 0.0
    for i in 0..<n {
        let sa = Set(a[(i * k)..<((i + 1) * k)])
        total += Double(b[(i * k)..<((i + 1) * k)].filter { sa.contains($0) }.count) / Double(k)
    }
    return total / Double(n)
}

// MARK: - RSA (rsatoolbox)

/// The RDM's upper triangle (i < j, row-major) of 1 − Pearson correlation between rows, as
/// rsatoolbox's `calc_rdm(method="correlation")`; pairs of copies of one image are left out.
public func correlationRDM(_ x: LayerVectors, identity: [Int]? = nil) -> [Double] {
    let n = x.rows, d = x.dim
    var z = x.doubles
    for i in 0..<n {
        var m = 0.0
        for c in 0..<d { m += z[i * d + c] }
        m /= Double(d)
        var s = 0.0
        for c in 0..<d { z[i * d + c] -= m; s += z[i * d + c] * z[i * d + c] }
        let inv = 1 / s.squareRoot()
        for c in 0..<d { z[i * d + c] *= inv }
    }
    let g = rowProducts(z, rows: n, dim: d)
    var out: [Double] = []
    out.reserveCapacity(n * (n - 1) / 2)
    for i in 0..<n { for j in (i + 1)..<max(i + 1, n) where !sameImage(identity, i, j) { out.append(1 - g[i * n + j]) } }
    return out
}

/// Ranks 1…M with ties given their average rank (scipy's `rankdata`).
public func averageRanks(_ v: [Double]) -> [Double] {
    let order = v.indices.sorted { v[$0] < v[$1] }
    var r = [Double](repeating: 0, count: v.count)
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
        let rank = Double(i + j) / 2 + 1
        for t in i...j { r[order[t]] = rank }
        i = j + 1
    }
    return r
}

/// An RDM vector as `method` compares it: its ranks for Spearman (computed once per layer), else
/// the values themselves.
public func preparedRDM(_ v: [Double], for method: RDMComparison) -> [Double] {
    method == .spearman ? averageRanks(v) : v
}

/// rsatoolbox's comparison of two RDM vectors prepared by `preparedRDM` (Spearman is the
/// Pearson correlation of the ranks).
public func compareRDMs(_ a: [Double], _ b: [Double], _ method: RDMComparison) -> Double {
    func cosine(_ x: [Double], _ y: [Double]) -> Double {
        var xy = 0.0, xx = 0.0, yy = 0.0
        for i in x.indices { xy += x[i] * y[i]; xx += x[i] * x[i]; yy += y[i] * y[i] }
        return xy / (xx.squareRoot() * yy.squareRoot())
    }
    func centred(_ x: [Double]) -> [Double] { let m = x.reduce(0, +) / Double(x.count); return x.map { $0 - m } }
    switch method {
    case .cosine: return cosine(a, b)
    case .pearson, .spearman: return cosine(centred(a), centred(b))
    case .kendallTauA: return kendallTauA(a, b)
    }
}

/// Kendall's τ_a = (concordant − discordant) / (n(n−1)/2), ties counting as neither
/// (rsatoolbox `_tau_a`), in O(n log n): sort by a, count b's inversions by merge sort.
public func kendallTauA(_ a: [Double], _ b: [Double]) -> Double {
    let n = a.count
    let order = a.indices.sorted { a[$0] != a[$1] ? a[$0] < a[$1] : b[$0] < b[$1] }
    // Pairs tied in a, in b, in both.
    func tiedPairs(_ key: (Int) -> (Double, Double), _ eq: (Int, Int) -> Bool, _ idx: [Int]) -> Double {
        var t = 0.0, run = 1.0
        for i in 1..<max(1, idx.count) {
            if eq(idx[i - 1], idx[i]) { run += 1 } else { t += run * (run - 1) / 2; run = 1 }
        }
        return t + run * (run - 1) / 2
    }
    let tiesA = tiedPairs({ (a[$0], 0) }, { a[$0] == a[$1] }, order)
    let tiesAB = tiedPairs({ (a[$0], b[$0]) }, { a[$0] == a[$1] && b[$0] == b[$1] }, order)
    // Inversions of b in a-order (ties in b are not inversions): discordant pairs.
    var seq = order.map { b[$0] }, buffer = seq
    func sortCount(_ lo: Int, _ hi: Int) -> Double {
        guard hi - lo > 1 else { return 0 }
        let mid = (lo + hi) / 2
        var inv = sortCount(lo, mid) + sortCount(mid, hi)
        var i = lo, j = mid, k = lo
        while i < mid || j < hi {
            if j >= hi || (i < mid && seq[i] <= seq[j]) { buffer[k] = seq[i]; i += 1 } else {
                buffer[k] = seq[j]; inv += Double(mid - i); j += 1 }
            k += 1
        }
        for t in lo..<hi { seq[t] = buffer[t] }
        return inv
    }
    let discordant = sortCount(0, n)
    let sortedB = seq
    let tiesB = tiedPairs({ (sortedB[$0], 0) }, { sortedB[$0] == sortedB[$1] }, Array(0..<n))
    let pairs = Double(n) * Double(n - 1) / 2
    let concordant = pairs - discordant - tiesA - tiesB + tiesAB
    return (concordant - discordant) / pairs
}

// MARK: - RBF CKA (Kornblith et al.), tile by tile

/// One layer's rows with their squared norms, for tiles of Kornblith et al.'s `gram_rbf` squared
/// distances ‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ (float64; 0 on the diagonal, as theirs).
struct DistanceRows {
    let x: LayerVectors
    let norms: [Double]

    init(_ x: LayerVectors) {
        self.x = x
        norms = (0..<x.rows).map { i in
            var s = 0.0
            for c in 0..<x.dim { let v = Double(x.values[i * x.dim + c]); s += v * v }
            return s
        }
    }

    /// The distances of rows I × rows J into `out` (|I| × |J|, row-major); `rows` is scratch.
    func tile(_ I: Range<Int>, _ J: Range<Int>, into out: inout [Double], rows: inout [Double]) {
        let d = x.dim, ni = I.count, nj = J.count
        for (k, i) in (Array(I) + Array(J)).enumerated() {
            for c in 0..<d { rows[k * d + c] = Double(x.values[i * d + c]) }
        }
        rows.withUnsafeBufferPointer { r in
            dgemm(transB: true, m: ni, n: nj, k: d, a: r.baseAddress!, lda: d, b: r.baseAddress! + ni * d, ldb: d,
                  c: &out, ldc: nj)
        }
        for (a, i) in I.enumerated() {
            for (b, j) in J.enumerated() { out[a * nj + b] = i == j ? 0 : -2 * out[a * nj + b] + norms[i] + norms[j] }
        }
    }
}

/// The tiles (I, J) of 0..<n with J starting at or after I: the upper triangle of an N × N matrix.
func upperTiles(_ n: Int, size: Int) -> [(Range<Int>, Range<Int>)] {
    let starts = Array(stride(from: 0, to: n, by: size))
    return starts.flatMap { i in starts.filter { $0 >= i }.map { j in (i..<min(n, i + size), j..<min(n, j + size)) } }
}

/// The key of a float64 whose unsigned order is the values' order.
@inline(__always) func orderKey(_ v: Double) -> UInt64 {
    let b = v.bitPattern
    return b >> 63 == 1 ? ~b : b | (1 << 63)
}

/// numpy's median of the N × N squared distances (N zeros, every other value twice), without
/// holding them: a histogram of the top 20 bits of each value's order key, then the values of the
/// one or two buckets that hold the middle ranks, sorted.
func medianSquaredDistance(_ rows: DistanceRows, tile size: Int) -> Double {
    let n = rows.x.rows, total = n * n, bits = 20
    let ranks = total % 2 == 1 ? [total / 2] : [total / 2 - 1, total / 2]
    var out = [Double](repeating: 0, count: size * size), scratch = [Double](repeating: 0, count: 2 * size * rows.x.dim)
    func visit(_ body: (Double, Int) -> Void) {
        for (I, J) in upperTiles(n, size: size) {
            rows.tile(I, J, into: &out, rows: &scratch)
            for (a, i) in I.enumerated() {
                for (b, j) in J.enumerated() where j >= i { body(out[a * J.count + b], i == j ? 1 : 2) }
            }
        }
    }
    var histogram = [Int](repeating: 0, count: 1 << bits)
    visit { v, w in histogram[Int(orderKey(v) >> UInt64(64 - bits))] += w }
    var buckets: [Int] = [], first = 0, below = 0
    for (b, c) in histogram.enumerated() where c > 0 {
        if ranks.contains(where: { $0 >= below && $0 < below + c }) {
            if buckets.isEmpty { first = below }
            buckets.append(b)
        }
        below += c
    }
    var picked: [Double] = []
    visit { v, w in
        let b = Int(orderKey(v) >> UInt64(64 - bits))
        if buckets.contains(b) { picked.append(v); if w == 2 { picked.append(v) } }
    }
    picked.sort()
    return ranks.map { picked[$0 - first] }.reduce(0, +) / Double(ranks.count)
}

/// `rbf-cka` of every layer pair (La × Lb, row-major): CKA of the RBF kernels K = exp(−d²/2σ²),
/// σ² = t²·median d² of each layer (Kornblith et al.'s `gram_rbf` and `cka`). The kernels are
/// never held: tile by tile, ⟨K_p, K_q⟩ of every two layers of both sides and each kernel's row
/// sums K1 are summed, and ⟨HKH, HLH⟩ = ⟨K, L⟩ − (2/N)(K1)·(L1) + (1ᵀK1)(1ᵀL1)/N². K − 1
/// (expm1) stands for K: centring removes the constant, and the sums then cancel only as much as
/// the centring itself does (at large t, K is 1 − O(1/t²)).
public func rbfCKA(_ a: [LayerVectors], _ b: [LayerVectors], t: Double, tile size: Int = 512) -> [Double] {
    let layers = (a + b).map(DistanceRows.init), count = layers.count
    guard let n = layers.first?.x.rows, n > 0 else { return [] }
    let tile = min(size, n)
    let scales = layers.map { -1 / (2 * t * t * medianSquaredDistance($0, tile: tile)) }
    var products = [Double](repeating: 0, count: count * count)
    var rowSums = [[Double]](repeating: [Double](repeating: 0, count: n), count: count)
    var stacked = [Double](repeating: 0, count: count * tile * tile)
    var out = [Double](repeating: 0, count: tile * tile), scratch = [Double](repeating: 0, count: 2 * tile * (layers.map(\.x.dim).max() ?? 0))
    for (I, J) in upperTiles(n, size: tile) {
        let m = I.count * J.count
        for (p, rows) in layers.enumerated() {
            rows.tile(I, J, into: &out, rows: &scratch)
            for (ai, i) in I.enumerated() {
                var s = 0.0
                for (bj, j) in J.enumerated() {
                    let k = expm1(out[ai * J.count + bj] * scales[p])
                    stacked[p * m + ai * J.count + bj] = k
                    s += k
                    if J != I { rowSums[p][j] += k }
                }
                rowSums[p][i] += s
            }
        }
        // A tile above the diagonal stands for its mirror image too.
        dgemm(transB: true, m: count, n: count, k: m, alpha: J == I ? 1 : 2, a: stacked, lda: m, b: stacked, ldb: m,
              beta: 1, c: &products, ldc: count)
    }
    let totals = rowSums.map { $0.reduce(0, +) }, nn = Double(n)
    func centred(_ p: Int, _ q: Int) -> Double {
        var cross = 0.0
        for i in 0..<n { cross += rowSums[p][i] * rowSums[q][i] }
        return products[p * count + q] - 2 / nn * cross + totals[p] * totals[q] / (nn * nn)
    }
    let la = a.count, lb = b.count
    let selfA = (0..<la).map { centred($0, $0).squareRoot() }, selfB = (0..<lb).map { centred(la + $0, la + $0).squareRoot() }
    return (0..<(la * lb)).map { k in centred(k / lb, la + k % lb) / (selfA[k / lb] * selfB[k % lb]) }
}

/// The settings of the measures computed over all images at once.
public struct GramSettings: Equatable, Sendable {
    public var knn = 10
    /// platonic-rep's outlier clamp before mknn (nil: off).
    public var clampQuantile: Double?
    public var rbfT = 0.5
    public var rsaCompare = RDMComparison.spearman
    public init(knn: Int = 10, clampQuantile: Double? = nil, rbfT: Double = 0.5, rsaCompare: RDMComparison = .spearman) {
        (self.knn, self.clampQuantile, self.rbfT, self.rsaCompare) = (knn, clampQuantile, rbfT, rsaCompare)
    }
}

/// `rbf-cka`, `mknn` and `rsa` of every layer pair: each layer's kernel, neighbours or RDM
/// computed once, then every pair compared. `identity`: the image each row is (bootstrap copies).
public func gramMeasures(_ a: [LayerVectors], _ b: [LayerVectors], measures: [SimilarityMeasure],
                         settings: GramSettings, identity: [Int]? = nil) -> [SimilarityMeasure: [Double]] {
    let la = a.count, lb = b.count
    var out: [SimilarityMeasure: [Double]] = [:]
    if measures.contains(.rbfCKA) { out[.rbfCKA] = rbfCKA(a, b, t: settings.rbfT) }
    if measures.contains(.mknn) {
        let k = settings.knn
        let prep = { (x: LayerVectors) in settings.clampQuantile.map { clampAtQuantile(x, $0) } ?? x }
        let na = a.map { nearestNeighbours(prep($0), k: k, identity: identity) }
        let nb = b.map { nearestNeighbours(prep($0), k: k, identity: identity) }
        out[.mknn] = (0..<(la * lb)).map { mutualKNN(na[$0 / lb], nb[$0 % lb], rows: a[0].rows, k: k) }
    }
    if measures.contains(.rsa) {
        let method = settings.rsaCompare
        let ra = a.map { preparedRDM(correlationRDM($0, identity: identity), for: method) }
        let rb = b.map { preparedRDM(correlationRDM($0, identity: identity), for: method) }
        out[.rsa] = (0..<(la * lb)).map { compareRDMs(ra[$0 / lb], rb[$0 % lb], method) }
    }
    return out
}

/// Deterministic bootstrap resamples of N images (splitmix64 from the seed): each draws N indices
/// with replacement.
public func bootstrapResamples(count n: Int, resamples: Int, seed: UInt64) -> [[Int]] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    return (0..<resamples).map { _ in (0..<n).map { _ in Int(next() % UInt64(n)) } }
}

/// The 2.5 % and 97.5 % percentiles (linear interpolation, numpy's default) of each cell over
/// the resamples; NaN where fewer than 2 resamples are finite.
public func percentileInterval(_ samples: [[Double]], level: Double = 0.95) -> (low: [Double], high: [Double]) {
    guard let cells = samples.first?.count else { return ([], []) }
    func q(_ s: [Double], _ p: Double) -> Double {
        let pos = p * Double(s.count - 1), lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }
    var low = [Double](repeating: .nan, count: cells), high = low
    for c in 0..<cells {
        let s = samples.map { $0[c] }.filter(\.isFinite).sorted()
        guard s.count >= 2 else { continue }
        low[c] = q(s, (1 - level) / 2)
        high[c] = q(s, 1 - (1 - level) / 2)
    }
    return (low, high)
}
