import Foundation
import VitLensCore

/// Streamed float64 sums from which every covariance measure (`cka-debiased`, `procrustes`,
/// `cca`, `svcca`, `pwcca`) of every layer pair of two sides follows: memory O((L·D)²), whatever
/// the number of images. Rows are shifted by fixed per-column values (the first minibatch's
/// means) before they are summed, so that the centring at the end does not cancel; sums of
/// shards with the same shift add up to the single run's.
public struct CovarianceSums: Equatable {
    public let layersA: Int, dimA: Int, layersB: Int, dimB: Int
    /// Rows summed.
    public internal(set) var count = 0
    /// The per-column shifts (La·Da, Lb·Db).
    public let shiftA: [Double], shiftB: [Double]
    /// Σu, Σv (u = x − shift).
    public internal(set) var sumA: [Double], sumB: [Double]
    /// Σ u_a u_aᵀ per layer (La·Da·Da), Σ v_b v_bᵀ.
    public internal(set) var aa: [Double], bb: [Double]
    /// Σ u vᵀ over all layers stacked: (La·Da) × (Lb·Db).
    public internal(set) var ab: [Double]
    /// For the unbiased HSIC: p = ‖u_a‖², q = ‖v_b‖² per row and layer; Σp·q (La × Lb), Σp² (La),
    /// Σq² (Lb), Σp_a·u_a (La·Da), Σq_b·v_b (Lb·Db), Σp_a·v (La × Lb·Db), Σq_b·u (Lb × La·Da).
    public internal(set) var pq: [Double], pp: [Double], qq: [Double]
    public internal(set) var pu: [Double], qv: [Double], pv: [Double], qu: [Double]

    public init(layersA: Int, dimA: Int, layersB: Int, dimB: Int, shiftA: [Double], shiftB: [Double]) {
        precondition(shiftA.count == layersA * dimA && shiftB.count == layersB * dimB)
        (self.layersA, self.dimA, self.layersB, self.dimB) = (layersA, dimA, layersB, dimB)
        (self.shiftA, self.shiftB) = (shiftA, shiftB)
        let wa = layersA * dimA, wb = layersB * dimB
        func z(_ n: Int) -> [Double] { [Double](repeating: 0, count: n) }
        (sumA, sumB, aa, bb, ab) = (z(wa), z(wb), z(layersA * dimA * dimA), z(layersB * dimB * dimB), z(wa * wb))
        (pq, pp, qq, pu, qv, pv, qu) = (z(layersA * layersB), z(layersA), z(layersB), z(wa), z(wb),
                                         z(layersA * wb), z(layersB * wa))
    }

    /// Column means of rows (rows × D, float32, one pointer per layer): a shift.
    public static func means(_ layers: [UnsafePointer<Float>], rows: Int, dim: Int) -> [Double] {
        var out = [Double](repeating: 0, count: layers.count * dim)
        for (l, x) in layers.enumerated() {
            for i in 0..<rows { for d in 0..<dim { out[l * dim + d] += Double(x[i * dim + d]) } }
        }
        return out.map { $0 / Double(max(1, rows)) }
    }

    /// Adds `rows` rows: layer l of side A at a[l] (rows × Da, float32), of side B at b[l].
    public mutating func add(a: [UnsafePointer<Float>], b: [UnsafePointer<Float>], rows: Int) {
        precondition(a.count == layersA && b.count == layersB)
        let chunk = 256
        var start = 0
        while start < rows {
            let r = min(chunk, rows - start)
            addChunk(a.map { $0 + start * dimA }, b.map { $0 + start * dimB }, rows: r)
            start += r
        }
    }

    private static func shifted(_ x: [UnsafePointer<Float>], rows r: Int, dim: Int, shift: [Double]) -> [Double] {
        let w = x.count * dim
        var u = [Double](repeating: 0, count: r * w)
        for (l, p) in x.enumerated() {
            for i in 0..<r { for d in 0..<dim { u[i * w + l * dim + d] = Double(p[i * dim + d]) - shift[l * dim + d] } }
        }
        return u
    }

    private mutating func addChunk(_ a: [UnsafePointer<Float>], _ b: [UnsafePointer<Float>], rows r: Int) {
        let la = layersA, lb = layersB, da = dimA, db = dimB, wa = la * da, wb = lb * db
        let u = Self.shifted(a, rows: r, dim: da, shift: shiftA)
        let v = Self.shifted(b, rows: r, dim: db, shift: shiftB)
        var p = [Double](repeating: 0, count: r * la), q = [Double](repeating: 0, count: r * lb)
        for i in 0..<r {
            for l in 0..<la { var s = 0.0; for d in 0..<da { let x = u[i * wa + l * da + d]; s += x * x }; p[i * la + l] = s }
            for l in 0..<lb { var s = 0.0; for d in 0..<db { let x = v[i * wb + l * db + d]; s += x * x }; q[i * lb + l] = s }
        }
        for i in 0..<r {
            for c in 0..<wa { sumA[c] += u[i * wa + c] }
            for c in 0..<wb { sumB[c] += v[i * wb + c] }
            for l in 0..<la { pp[l] += p[i * la + l] * p[i * la + l] }
            for l in 0..<lb { qq[l] += q[i * lb + l] * q[i * lb + l] }
            for l in 0..<la { let w = p[i * la + l]; for d in 0..<da { pu[l * da + d] += w * u[i * wa + l * da + d] } }
            for l in 0..<lb { let w = q[i * lb + l]; for d in 0..<db { qv[l * db + d] += w * v[i * wb + l * db + d] } }
        }
        // Σ u_a u_aᵀ per layer, Σ v_b v_bᵀ, and the stacked cross products (dgemm, β = 1).
        Self.addLayerScatter(u, layers: la, dim: da, rows: r, into: &aa)
        Self.addLayerScatter(v, layers: lb, dim: db, rows: r, into: &bb)
        func gemmT(_ x: [Double], _ m: Int, _ y: [Double], _ n: Int, into c: inout [Double]) {
            dgemm(transA: true, m: m, n: n, k: r, a: x, lda: m, b: y, ldb: n, beta: 1, c: &c, ldc: n)
        }
        gemmT(u, wa, v, wb, into: &ab)
        gemmT(p, la, q, lb, into: &pq)
        gemmT(p, la, v, wb, into: &pv)
        gemmT(q, lb, u, wa, into: &qu)
        count += r
    }

    /// scatter[l] += x_lᵀ x_l for each layer's block of the rows x (rows × layers·dim).
    private static func addLayerScatter(_ x: [Double], layers: Int, dim: Int, rows: Int, into scatter: inout [Double]) {
        let w = layers * dim
        x.withUnsafeBufferPointer { xp in
            scatter.withUnsafeMutableBufferPointer { o in
                for l in 0..<layers {
                    dgemm(transA: true, m: dim, n: dim, k: rows, a: xp.baseAddress! + l * dim, lda: w,
                          b: xp.baseAddress! + l * dim, ldb: w, beta: 1, c: o.baseAddress! + l * dim * dim, ldc: dim)
                }
            }
        }
    }

    /// The sums of two shards of one run (same shifts), added.
    public mutating func merge(_ o: CovarianceSums) {
        precondition(o.shiftA == shiftA && o.shiftB == shiftB, "shards with different shifts")
        func add(_ x: inout [Double], _ y: [Double]) { for i in x.indices { x[i] += y[i] } }
        count += o.count
        add(&sumA, o.sumA); add(&sumB, o.sumB); add(&aa, o.aa); add(&bb, o.bb); add(&ab, o.ab)
        add(&pq, o.pq); add(&pp, o.pp); add(&qq, o.qq); add(&pu, o.pu); add(&qv, o.qv); add(&pv, o.pv)
        add(&qu, o.qu)
    }

    /// Every array by name, for writing a shard's sums.
    public var arrays: [(String, [Double])] {
        [("shift_a", shiftA), ("shift_b", shiftB), ("sum_a", sumA), ("sum_b", sumB), ("aa", aa), ("bb", bb),
         ("ab", ab), ("pq", pq), ("pp", pp), ("qq", qq), ("pu", pu), ("qv", qv), ("pv", pv), ("qu", qu)]
    }

    /// From `arrays` (and the row count): nil when a name is missing or a length is wrong.
    public init?(layersA: Int, dimA: Int, layersB: Int, dimB: Int, count: Int, arrays: [String: [Double]]) {
        guard let sa = arrays["shift_a"], let sb = arrays["shift_b"],
              sa.count == layersA * dimA, sb.count == layersB * dimB else { return nil }
        var s = CovarianceSums(layersA: layersA, dimA: dimA, layersB: layersB, dimB: dimB, shiftA: sa, shiftB: sb)
        for (name, value) in s.arrays.dropFirst(2) {
            guard let given = arrays[name], given.count == value.count else { return nil }
            switch name {
            case "sum_a": s.sumA = given
            case "sum_b": s.sumB = given
            case "aa": s.aa = given
            case "bb": s.bb = given
            case "ab": s.ab = given
            case "pq": s.pq = given
            case "pp": s.pp = given
            case "qq": s.qq = given
            case "pu": s.pu = given
            case "qv": s.qv = given
            case "pv": s.pv = given
            default: s.qu = given
            }
        }
        s.count = count
        self = s
    }
}
