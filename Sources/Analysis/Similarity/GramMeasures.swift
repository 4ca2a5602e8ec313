import Foundation
import VitLensCore

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

// MARK: - Tiles of N × N row comparisons

/// The tiles (I, J) of 0..<n with J starting at or after I: the upper triangle of an N × N matrix.
func upperTiles(_ n: Int, size: Int) -> [(Range<Int>, Range<Int>)] {
    let starts = Array(stride(from: 0, to: n, by: size))
    return starts.flatMap { i in starts.filter { $0 >= i }.map { j in (i..<min(n, i + size), j..<min(n, j + size)) } }
}

/// Tiles of one layer's N × N comparisons of rows, read from a store, float64: Kornblith et al.'s
/// `gram_rbf` squared distances ‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ (0 on the diagonal, as theirs), or
/// rsatoolbox's correlation distances 1 − r(xᵢ, xⱼ) (`calc_rdm(method="correlation")`).
final class PairTiles {
    enum Kind { case squaredDistance, correlationDistance }
    let store: LayerStore, layer: Int, kind: Kind, dim: Int
    private(set) var norms: [Double] = []

    init(_ store: LayerStore, layer: Int, kind: Kind, buffers: TileBuffers) throws {
        (self.store, self.layer, self.kind, dim) = (store, layer, kind, store.dims[layer])
        if kind == .squaredDistance {
            for start in stride(from: 0, to: store.rows, by: buffers.tile) {
                let r = start..<min(store.rows, start + buffers.tile)
                try load(r, at: 0, buffers)
                let x = buffers.rows
                norms += (0..<r.count).map { k in (0..<dim).reduce(0.0) { $0 + x[k * dim + $1] * x[k * dim + $1] } }
            }
        }
    }

    /// Rows r into the buffers' rows from row slot `at`: as float64, centred and of unit norm for
    /// correlations.
    private func load(_ r: Range<Int>, at slot: Int, _ b: TileBuffers) throws {
        let d = dim, correlation = kind == .correlationDistance
        try b.raw.withUnsafeMutableBufferPointer { raw in
            try store.read(layer, rows: r, into: raw.baseAddress! + slot * d)
            b.rows.withUnsafeMutableBufferPointer { x in
                for k in slot..<(slot + r.count) {
                    for c in 0..<d { x[k * d + c] = Double(raw[k * d + c]) }
                    guard correlation else { continue }
                    var m = 0.0
                    for c in 0..<d { m += x[k * d + c] }
                    m /= Double(d)
                    var s = 0.0
                    for c in 0..<d { x[k * d + c] -= m; s += x[k * d + c] * x[k * d + c] }
                    let inv = 1 / s.squareRoot()
                    for c in 0..<d { x[k * d + c] *= inv }
                }
            }
        }
    }

    /// The comparisons of rows I × rows J into `out` (|I| × |J|, row-major).
    func tile(_ I: Range<Int>, _ J: Range<Int>, into out: inout [Double], _ b: TileBuffers) throws {
        let d = dim, ni = I.count, nj = J.count
        try load(I, at: 0, b)
        try load(J, at: ni, b)
        b.rows.withUnsafeBufferPointer { r in
            dgemm(transB: true, m: ni, n: nj, k: d, a: r.baseAddress!, lda: d, b: r.baseAddress! + ni * d, ldb: d,
                  c: &out, ldc: nj)
        }
        for (a, i) in I.enumerated() {
            for (b, j) in J.enumerated() {
                let g = out[a * nj + b]
                out[a * nj + b] = kind == .correlationDistance ? 1 - g : i == j ? 0 : -2 * g + norms[i] + norms[j]
            }
        }
    }
}

/// The rows of one tile (I and J) of any layer, shared by every layer's `PairTiles`.
final class TileBuffers {
    let tile: Int
    var rows: [Double], raw: [Float]
    init(tile: Int, dim: Int) {
        self.tile = tile
        (rows, raw) = ([Double](repeating: 0, count: 2 * tile * dim), [Float](repeating: 0, count: 2 * tile * dim))
    }
}

// MARK: - RSA (rsatoolbox), through a scratch file

/// The RDM entries (i < j, pairs of copies of one image left out) of a layer, in tile order
/// (every layer the same order; the comparisons do not depend on it), to `body` tile by tile.
func forEachRDMTile(_ tiles: PairTiles, _ buffers: TileBuffers, identity: [Int]?,
                    _ body: ([Double]) throws -> Void) throws {
    let size = buffers.tile
    var out = [Double](repeating: 0, count: size * size), entries: [Double] = []
    entries.reserveCapacity(size * size)
    for (I, J) in upperTiles(tiles.store.rows, size: size) {
        try tiles.tile(I, J, into: &out, buffers)
        entries.removeAll(keepingCapacity: true)
        for (a, i) in I.enumerated() {
            for (b, j) in J.enumerated() where j > i && !sameImage(identity, i, j) {
                entries.append(out[a * J.count + b])
            }
        }
        try body(entries)
    }
}

/// The RDM entries' count: N(N−1)/2 less the pairs of copies of one image.
func rdmEntries(_ n: Int, identity: [Int]?) -> Int {
    guard let identity else { return n * (n - 1) / 2 }
    var copies: [Int: Int] = [:]
    for i in identity { copies[i, default: 0] += 1 }
    return n * (n - 1) / 2 - copies.values.reduce(0) { $0 + $1 * ($1 - 1) / 2 }
}

/// `rsa` of every layer pair (La × Lb, row-major): each layer's RDM is computed once, in tiles,
/// and written to a scratch file as `method` compares it (average ranks for Spearman and τ_a, the
/// values otherwise; less their mean for Spearman and Pearson), so that no N² vector stays
/// resident: 8·M bytes per layer on disk for M = N(N−1)/2 entries; ranking holds one layer's M
/// values in memory. Spearman, Pearson and cosine then read every layer's entries in chunks
/// (⟨x_p, x_q⟩ of all layers at once: the cosine of the centred vectors); τ_a reads two layers at
/// a time.
public func rsa(_ a: LayerStore, _ b: LayerStore, method: RDMComparison, identity: [Int]? = nil,
                tile size: Int = 512) throws -> [Double] {
    let n = a.rows, tile = max(1, min(size, n)), m = rdmEntries(n, identity: identity)
    let layers = (0..<a.layerCount).map { (a, $0) } + (0..<b.layerCount).map { (b, $0) }
    let prepared = try ScratchFile()
    let values = method == .spearman || method == .kendallTauA ? try ScratchFile() : nil
    let buffers = TileBuffers(tile: tile, dim: (a.dims + b.dims).max() ?? 0)
    for (p, (store, l)) in layers.enumerated() {
        let tiles = try PairTiles(store, layer: l, kind: .correlationDistance, buffers: buffers)
        let target = values ?? prepared, base = values == nil ? p * m * 8 : 0
        var written = 0, total = 0.0
        try forEachRDMTile(tiles, buffers, identity: identity) { e in
            try e.withUnsafeBufferPointer { try target.write($0.baseAddress!, count: e.count, at: base + written * 8) }
            written += e.count
            total += e.reduce(0, +)
        }
        if let values {
            try rank(values, count: m, into: prepared, at: p * m * 8, centred: method == .spearman)
        } else if method == .pearson {
            try subtractMean(prepared, count: m, at: p * m * 8, mean: total / Double(m))
        }
    }
    let la = a.layerCount, lb = b.layerCount
    if method == .kendallTauA {
        func load(_ p: Int) throws -> [Double] {
            var v = [Double](repeating: 0, count: m)
            try v.withUnsafeMutableBufferPointer { try prepared.read(into: $0.baseAddress!, count: m, at: p * m * 8) }
            return v
        }
        return try (0..<la).flatMap { i in
            let x = try load(i)
            return try (0..<lb).map { j in kendallTauA(x, try load(la + j)) }
        }
    }
    let count = layers.count, chunk = 1 << 15
    var products = [Double](repeating: 0, count: count * count), stacked = [Double](repeating: 0, count: count * chunk)
    for start in stride(from: 0, to: m, by: chunk) {
        let c = min(chunk, m - start)
        for p in 0..<count {
            try stacked.withUnsafeMutableBufferPointer {
                try prepared.read(into: $0.baseAddress! + p * c, count: c, at: (p * m + start) * 8) }
        }
        dgemm(transB: true, m: count, n: count, k: c, a: stacked, lda: c, b: stacked, ldb: c, beta: 1,
              c: &products, ldc: count)
    }
    return (0..<(la * lb)).map { k in
        let p = k / lb, q = la + k % lb
        return products[p * count + q] / (products[p * count + p].squareRoot() * products[q * count + q].squareRoot())
    }
}

/// Subtracts `mean` from the M values at byte `offset` of `file`, a chunk at a time.
func subtractMean(_ file: ScratchFile, count m: Int, at offset: Int, mean: Double) throws {
    let chunk = 1 << 16
    var v = [Double](repeating: 0, count: chunk)
    for start in stride(from: 0, to: m, by: chunk) {
        let c = min(chunk, m - start)
        try v.withUnsafeMutableBufferPointer { try file.read(into: $0.baseAddress!, count: c, at: offset + start * 8) }
        for k in 0..<c { v[k] -= mean }
        try v.withUnsafeBufferPointer { try file.write($0.baseAddress!, count: c, at: offset + start * 8) }
    }
}

/// The average ranks 1…M (scipy's `rankdata`) of the M values at the start of `values`, written at
/// byte `offset` of `out` in the same order (less (M+1)/2, their mean, when `centred`). The values
/// are held once, as two sorted halves (one per core); then each chunk of 2²⁰ of them is sorted
/// with its positions and walks both halves once — nearly in order, since a chunk's values are
/// dense in them — galloping to each value's tie group: its positions in the whole sorted vector
/// are the sums of those in the halves.
func rank(_ values: ScratchFile, count m: Int, into out: ScratchFile, at offset: Int, centred: Bool) throws {
    var sorted = [Double](repeating: 0, count: m)
    try sorted.withUnsafeMutableBufferPointer { try values.read(into: $0.baseAddress!, count: m, at: 0) }
    let h = m / 2
    sorted.withUnsafeMutableBufferPointer { b in
        let whole = b
        parallelItems(2) { k in
            var half = UnsafeMutableBufferPointer(rebasing: k == 0 ? whole[0..<h] : whole[h...])
            half.sort()
        }
    }
    let chunk = 1 << 20, mean = centred ? Double(m + 1) / 2 : 0
    let failure = FirstError()
    struct Entry { var value: Double, position: Int32 }
    sorted.withUnsafeBufferPointer { s in
        let halves = [UnsafeBufferPointer(rebasing: s[0..<h]), UnsafeBufferPointer(rebasing: s[h...])]
        parallelItems((m + chunk - 1) / chunk) { k in
            do {
                let start = k * chunk, c = min(chunk, m - start)
                var v = [Double](repeating: 0, count: c)
                try v.withUnsafeMutableBufferPointer { try values.read(into: $0.baseAddress!, count: c, at: start * 8) }
                var entries = (0..<c).map { Entry(value: v[$0], position: Int32($0)) }
                entries.sort { $0.value < $1.value }
                var lo = [0, 0], hi = [0, 0]
                for e in entries {
                    let x = e.value
                    // The tie group of x in each half: [lo, hi).
                    for (q, half) in halves.enumerated() {
                        lo[q] = gallop(half, from: lo[q]) { $0 < x }
                        hi[q] = gallop(half, from: max(lo[q], hi[q])) { $0 <= x }
                    }
                    v[Int(e.position)] = Double(lo[0] + lo[1] + hi[0] + hi[1] + 1) / 2 - mean
                }
                try v.withUnsafeBufferPointer { try out.write($0.baseAddress!, count: c, at: offset + start * 8) }
            } catch { failure.record(error) }
        }
    }
    if let e = failure.error { throw e }
}

/// The first index from `start` on whose value fails `holds` (which holds on a prefix from start):
/// doubling steps, then a binary search.
@inline(__always) func gallop(_ s: UnsafeBufferPointer<Double>, from start: Int, _ holds: (Double) -> Bool) -> Int {
    var lo = start, hi = start, step = 1
    while hi < s.count && holds(s[hi]) { lo = hi + 1; hi = start + step; step *= 2 }
    hi = min(hi, s.count)
    while lo < hi { let mid = (lo + hi) / 2; if holds(s[mid]) { lo = mid + 1 } else { hi = mid } }
    return lo
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

/// The key of a float64 whose unsigned order is the values' order.
@inline(__always) func orderKey(_ v: Double) -> UInt64 {
    let b = (v + 0).bitPattern  // −0 + 0 is +0: equal values, one key
    return b >> 63 == 1 ? ~b : b | (1 << 63)
}

/// numpy's median of the N × N squared distances (N zeros, every other value twice), without
/// holding them: a histogram of the top 20 bits of each value's order key, then the values of the
/// one or two buckets that hold the middle ranks, sorted.
func medianSquaredDistance(_ rows: PairTiles, _ buffers: TileBuffers) throws -> Double {
    let n = rows.store.rows, total = n * n, bits = 20
    let ranks = total % 2 == 1 ? [total / 2] : [total / 2 - 1, total / 2]
    let size = buffers.tile
    var out = [Double](repeating: 0, count: size * size)
    func visit(_ body: (Double, Int) -> Void) throws {
        for (I, J) in upperTiles(n, size: size) {
            try rows.tile(I, J, into: &out, buffers)
            for (a, i) in I.enumerated() {
                for (b, j) in J.enumerated() where j >= i { body(out[a * J.count + b], i == j ? 1 : 2) }
            }
        }
    }
    var histogram = [Int](repeating: 0, count: 1 << bits)
    try histogram.withUnsafeMutableBufferPointer { h in
        try visit { v, w in h[Int(orderKey(v) >> UInt64(64 - bits))] += w }
    }
    var buckets: [Int] = [], first = 0, below = 0
    for (b, c) in histogram.enumerated() where c > 0 {
        if ranks.contains(where: { $0 >= below && $0 < below + c }) {
            if buckets.isEmpty { first = below }
            buckets.append(b)
        }
        below += c
    }
    var picked: [Double] = []
    try visit { v, w in
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
public func rbfCKA(_ a: LayerStore, _ b: LayerStore, t: Double, tile size: Int = 512) throws -> [Double] {
    let n = a.rows, tile = max(1, min(size, n))
    guard n > 0 else { return [] }
    let buffers = TileBuffers(tile: tile, dim: (a.dims + b.dims).max() ?? 0)
    let layers = try (0..<a.layerCount).map { try PairTiles(a, layer: $0, kind: .squaredDistance, buffers: buffers) }
        + (0..<b.layerCount).map { try PairTiles(b, layer: $0, kind: .squaredDistance, buffers: buffers) }
    let count = layers.count
    let scales = try layers.map { -1 / (2 * t * t * (try medianSquaredDistance($0, buffers))) }
    var products = [Double](repeating: 0, count: count * count)
    var rowSums = [Double](repeating: 0, count: count * n)  // layer p's row sums at p·n
    var stacked = [Double](repeating: 0, count: count * tile * tile)
    var out = [Double](repeating: 0, count: tile * tile)
    for (I, J) in upperTiles(n, size: tile) {
        let m = I.count * J.count, nj = J.count, mirrored = J != I
        for (p, rows) in layers.enumerated() {
            try rows.tile(I, J, into: &out, buffers)
            let scale = scales[p]
            out.withUnsafeBufferPointer { d in
                stacked.withUnsafeMutableBufferPointer { k in
                    rowSums.withUnsafeMutableBufferPointer { sums in
                        let row = sums.baseAddress! + p * n
                        for (ai, i) in I.enumerated() {
                            var s = 0.0
                            for (bj, j) in J.enumerated() {
                                let v = expm1(d[ai * nj + bj] * scale)
                                k[p * m + ai * nj + bj] = v
                                s += v
                                if mirrored { row[j] += v }
                            }
                            row[i] += s
                        }
                    }
                }
            }
        }
        // A tile above the diagonal stands for its mirror image too.
        dgemm(transB: true, m: count, n: count, k: m, alpha: mirrored ? 2 : 1, a: stacked, lda: m, b: stacked, ldb: m,
              beta: 1, c: &products, ldc: count)
    }
    let totals = (0..<count).map { p in rowSums[(p * n)..<((p + 1) * n)].reduce(0, +) }, nn = Double(n)
    func centred(_ p: Int, _ q: Int) -> Double {
        var cross = 0.0
        for i in 0..<n { cross += rowSums[p * n + i] * rowSums[q * n + i] }
        return products[p * count + q] - 2 / nn * cross + totals[p] * totals[q] / (nn * nn)
    }
    let la = a.layerCount, lb = b.layerCount
    let selfA = (0..<la).map { centred($0, $0).squareRoot() }
    let selfB = (0..<lb).map { centred(la + $0, la + $0).squareRoot() }
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
/// computed once (in tiles, or one layer at a time), then every pair compared. `identity`: the
/// image each row is (bootstrap copies).
public func gramMeasures(_ a: LayerStore, _ b: LayerStore, measures: [SimilarityMeasure], settings: GramSettings,
                         identity: [Int]? = nil) throws -> [SimilarityMeasure: [Double]] {
    let la = a.layerCount, lb = b.layerCount
    var out: [SimilarityMeasure: [Double]] = [:]
    if measures.contains(.rbfCKA) { out[.rbfCKA] = try rbfCKA(a, b, t: settings.rbfT) }
    if measures.contains(.mknn) {
        let k = settings.knn
        func neighbours(_ s: LayerStore, _ l: Int) throws -> [Int32] {
            let x = try s.layer(l)
            let clamped = settings.clampQuantile.map { clampAtQuantile(x, $0) } ?? x
            return nearestNeighbours(clamped, k: k, identity: identity)
        }
        let na = try (0..<la).map { try neighbours(a, $0) }, nb = try (0..<lb).map { try neighbours(b, $0) }
        out[.mknn] = (0..<(la * lb)).map { mutualKNN(na[$0 / lb], nb[$0 % lb], rows: a.rows, k: k) }
    }
    if measures.contains(.rsa) {
        out[.rsa] = try rsa(a, b, method: settings.rsaCompare, identity: identity)
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
