import VitLensCore

// Attention's two small products for one head, as register-blocked AVX2 + FMA kernels: the
// OpenBLAS calls they replace are T×T×D and T×D×T (197×197×64 for DeiT-Tiny, 197×197×16 for
// mae-lite's 12 heads), small enough that packing, the β pass and call overhead cost as much
// as the arithmetic. Six query rows at a time: twelve accumulators (6 rows × 16 columns) stay
// in registers while the inner loop streams one packed row of the other operand.

/// Rows of a query block (the register tile's height); callers pad query counts to a multiple.
public let attentionRowBlock = 6
/// Columns of a key panel (the register tile's width); callers pad key counts to a multiple.
public let attentionColBlock = 16

/// Packs the queries (nq, D; row stride lq) into qp (nqPad, D), zero rows after nq, and the keys
/// (T, D; row stride lk) into 16-column panels kp (Tpad/16 panels of (D, 16)), zeros after T.
@inline(never)
public func attentionPackAVX2(
    q: UnsafePointer<Float>, lq: Int, nq: Int, k: UnsafePointer<Float>, lk: Int, T: Int, D: Int,
                              qp: UnsafeMutablePointer<Float>, kp: UnsafeMutablePointer<Float>) {
    let nqPad = (nq + attentionRowBlock - 1) / attentionRowBlock * attentionRowBlock
    for i in 0..<nq { (qp + i * D).update(from: q + i * lq, count: D) }
    if nqPad > nq { (qp + nq * D).update(repeating: 0, count: (nqPad - nq) * D) }
    let panels = (T + attentionColBlock - 1) / attentionColBlock
    for p in 0..<panels {
        let panel = kp + p * D * attentionColBlock
        for jj in 0..<attentionColBlock {
            let j = p * attentionColBlock + jj
            if j < T {
                let row = k + j * lk
                for d in 0..<D { panel[d * attentionColBlock + jj] = row[d] }
            } else {
                for d in 0..<D { panel[d * attentionColBlock + jj] = 0 }
            }
        }
    }
}

/// Eight floats from p, unaligned (shared by this module's kernels).
@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) private func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}
@inline(__always) private func fma8(_ acc: SIMD8<Float>, _ a: Float, _ b: SIMD8<Float>) -> SIMD8<Float> {
    acc.addingProduct(SIMD8(repeating: a), b)
}

/// Six rows × sixteen columns of accumulators: twelve of the sixteen AVX registers.
struct Tile6x16 {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    var c40 = SIMD8<Float>(), c41 = SIMD8<Float>(), c50 = SIMD8<Float>(), c51 = SIMD8<Float>()

    /// Row r += a_r · (b0, b1).
    @inline(__always)
    mutating func add(_ a0: Float, _ a1: Float, _ a2: Float, _ a3: Float, _ a4: Float, _ a5: Float,
                      _ b0: SIMD8<Float>, _ b1: SIMD8<Float>) {
        c00 = fma8(c00, a0, b0); c01 = fma8(c01, a0, b1)
        c10 = fma8(c10, a1, b0); c11 = fma8(c11, a1, b1)
        c20 = fma8(c20, a2, b0); c21 = fma8(c21, a2, b1)
        c30 = fma8(c30, a3, b0); c31 = fma8(c31, a3, b1)
        c40 = fma8(c40, a4, b0); c41 = fma8(c41, a4, b1)
        c50 = fma8(c50, a5, b0); c51 = fma8(c51, a5, b1)
    }

    /// Writes the first `rows` rows, row r scaled by scale(r), to o (row stride ld).
    @inline(__always)
    func store(_ o: UnsafeMutablePointer<Float>, ld: Int, rows: Int, scale: (Int) -> Float) {
        store8(c00 * scale(0), o); store8(c01 * scale(0), o + 8)
        if rows > 1 { store8(c10 * scale(1), o + ld); store8(c11 * scale(1), o + ld + 8) }
        if rows > 2 { store8(c20 * scale(2), o + 2 * ld); store8(c21 * scale(2), o + 2 * ld + 8) }
        if rows > 3 { store8(c30 * scale(3), o + 3 * ld); store8(c31 * scale(3), o + 3 * ld + 8) }
        if rows > 4 { store8(c40 * scale(4), o + 4 * ld); store8(c41 * scale(4), o + 4 * ld + 8) }
        if rows > 5 { store8(c50 * scale(5), o + 5 * ld); store8(c51 * scale(5), o + 5 * ld + 8) }
    }
}

/// s (nqPad, Tpad; row stride Tpad) = alpha · qp kpᵀ from the packed operands, plus, when given,
/// `bias` (nq rows of stride Tpad: BEiT's relative position bias for these queries) on the first
/// nq rows, added as each tile is stored.
@inline(never)
public func attentionScoresAVX2(qp: UnsafePointer<Float>, kp: UnsafePointer<Float>, nqPad: Int, Tpad: Int, D: Int,
                                alpha: Float, s: UnsafeMutablePointer<Float>,
                                bias: UnsafePointer<Float>? = nil, nq: Int = 0) {
    let panels = Tpad / attentionColBlock
    var i = 0
    while i < nqPad {
        let q0 = qp + i * D, q1 = q0 + D, q2 = q1 + D, q3 = q2 + D, q4 = q3 + D, q5 = q4 + D
        let biased = bias == nil ? 0 : max(0, min(attentionRowBlock, nq - i))
        for p in 0..<panels {
            let b = kp + p * D * attentionColBlock
            var t = Tile6x16()
            for d in 0..<D {
                t.add(q0[d], q1[d], q2[d], q3[d], q4[d], q5[d], load8(b + d * 16), load8(b + d * 16 + 8))
            }
            let o = s + i * Tpad + p * 16
            t.store(o, ld: Tpad, rows: attentionRowBlock) { _ in alpha }
            if biased > 0 {
                // The tile is still in L1: one more pass over its biased rows.
                let src = bias! + i * Tpad + p * 16
                for r in 0..<biased {
                    store8(load8(o + r * Tpad) + load8(src + r * Tpad), o + r * Tpad)
                    store8(load8(o + r * Tpad + 8) + load8(src + r * Tpad + 8), o + r * Tpad + 8)
                }
            }
        }
        i += attentionRowBlock
    }
}

/// out[i, 0..<D] = inv[i] · Σ_{j<T} p[i, j] v[j, 0..<D] for the rows i < nq (row stride ldo), from
/// p (nqPad, Tpad; row stride Tpad) and v (T, D; row stride lv). D must be a multiple of 8.
@inline(never)
public func attentionValuesAVX2(p: UnsafePointer<Float>, nq: Int, nqPad: Int, Tpad: Int, T: Int,
                                v: UnsafePointer<Float>, lv: Int, D: Int, inv: UnsafePointer<Float>,
                                out: UnsafeMutablePointer<Float>, ldo: Int) {
    var i = 0
    while i < nqPad {
        let p0 = p + i * Tpad, p1 = p0 + Tpad, p2 = p1 + Tpad, p3 = p2 + Tpad, p4 = p3 + Tpad, p5 = p4 + Tpad
        let rows = min(attentionRowBlock, nq - i)
        var d0 = 0
        while d0 + 16 <= D {
            var t = Tile6x16()
            var vj = v + d0
            for j in 0..<T {
                t.add(p0[j], p1[j], p2[j], p3[j], p4[j], p5[j], load8(vj), load8(vj + 8))
                vj += lv
            }
            let w = inv + i
            t.store(out + i * ldo + d0, ld: ldo, rows: rows) { w[$0] }
            d0 += 16
        }
        if d0 < D {  // eight columns left: six accumulators
            var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>()
            var c3 = SIMD8<Float>(), c4 = SIMD8<Float>(), c5 = SIMD8<Float>()
            var vj = v + d0
            for j in 0..<T {
                let b0 = load8(vj)
                c0 = fma8(c0, p0[j], b0); c1 = fma8(c1, p1[j], b0); c2 = fma8(c2, p2[j], b0)
                c3 = fma8(c3, p3[j], b0); c4 = fma8(c4, p4[j], b0); c5 = fma8(c5, p5[j], b0)
                vj += lv
            }
            let o = out + i * ldo + d0, w = inv + i
            store8(c0 * w[0], o)
            if rows > 1 { store8(c1 * w[1], o + ldo) }
            if rows > 2 { store8(c2 * w[2], o + 2 * ldo) }
            if rows > 3 { store8(c3 * w[3], o + 3 * ldo) }
            if rows > 4 { store8(c4 * w[4], o + 4 * ldo) }
            if rows > 5 { store8(c5 * w[5], o + 5 * ldo) }
        }
        i += attentionRowBlock
    }
}

/// exp(x − row max) for the first `cols` entries of each row (row stride ld ≥ cols, a multiple
/// of 8), `sums` the row sums. The row's padding, cols..<ld, is set to −∞ first and so becomes
/// 0: every pass runs whole vectors, with no scalar tail.
@inline(never)
public func expRowsPaddedAVX2(
    _ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, sums: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * ld
        for i in cols..<ld { row[i] = -.infinity }
        let m = maximum(row, ld)
        for i in 0..<ld { row[i] = expSoftmaxFMA(row[i] - m) }
        sums[r] = sum(row, ld)
    }
}
