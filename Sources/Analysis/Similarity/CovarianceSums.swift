import Foundation
import VitLensCore

/// Streamed float64 sums from which every covariance measure (`cka-debiased`, `procrustes`,
/// `cca`, `svcca`, `pwcca`) of every layer pair of two sides follows: memory O((L·D)²), whatever
/// the number of images. Rows are shifted by fixed per-column values (the first minibatch's
/// means) before they are summed, so that the centring at the end does not cancel; sums of
/// shards with the same shift add up to the single run's. Only the moments the asked measures
/// need are summed (`Moments`).
public struct CovarianceSums: Equatable {
    /// What is summed beyond Σu, Σv and the cross products Σu vᵀ.
    public struct Moments: OptionSet, Equatable, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Each layer's whole scatter Σu uᵀ (upper triangle); without it only its diagonal, which
        /// is all `procrustes` needs (the traces).
        public static let scatter = Moments(rawValue: 1)
        /// The row-norm sums of the unbiased HSIC (`cka-debiased`).
        public static let fourth = Moments(rawValue: 2)

        /// The moments `measures` need.
        public static func needed(by measures: [SimilarityMeasure]) -> Moments {
            var m: Moments = []
            if measures.contains(where: { $0 == .ckaDebiased || $0 == .svcca || $0.isCCA }) { m.insert(.scatter) }
            if measures.contains(.ckaDebiased) { m.insert(.fourth) }
            return m
        }
    }

    public let layersA: Int, dimA: Int, layersB: Int, dimB: Int
    public let moments: Moments
    /// Rows summed.
    public internal(set) var count = 0
    /// The per-column shifts (La·Da, Lb·Db).
    public let shiftA: [Double], shiftB: [Double]
    /// Σu, Σv (u = x − shift).
    public internal(set) var sumA: [Double], sumB: [Double]
    /// Σ u_a u_aᵀ per layer (La·Da·Da, upper triangle; with `.scatter`), or its diagonal (La·Da,
    /// without); Σ v_b v_bᵀ likewise.
    public internal(set) var aa: [Double], bb: [Double]
    /// Σ u vᵀ over all layers stacked: (La·Da) × (Lb·Db).
    public internal(set) var ab: [Double]
    /// With `.fourth` (else empty), for the unbiased HSIC: p = ‖u_a‖², q = ‖v_b‖² per row and
    /// layer; Σp·q (La × Lb), Σp² (La), Σq² (Lb), Σp_a·u_a (La·Da), Σq_b·v_b (Lb·Db),
    /// Σp_a·v (La × Lb·Db), Σq_b·u (Lb × La·Da).
    public internal(set) var pq: [Double], pp: [Double], qq: [Double]
    public internal(set) var pu: [Double], qv: [Double], pv: [Double], qu: [Double]

    public init(layersA: Int, dimA: Int, layersB: Int, dimB: Int, shiftA: [Double], shiftB: [Double],
                moments: Moments = [.scatter, .fourth]) {
        precondition(shiftA.count == layersA * dimA && shiftB.count == layersB * dimB)
        (self.layersA, self.dimA, self.layersB, self.dimB) = (layersA, dimA, layersB, dimB)
        (self.shiftA, self.shiftB, self.moments) = (shiftA, shiftB, moments)
        let wa = layersA * dimA, wb = layersB * dimB
        func z(_ n: Int) -> [Double] { [Double](repeating: 0, count: n) }
        let full = moments.contains(.scatter), f = moments.contains(.fourth) ? 1 : 0
        (sumA, sumB, ab) = (z(wa), z(wb), z(wa * wb))
        (aa, bb) = (z(full ? wa * dimA : wa), z(full ? wb * dimB : wb))
        (pq, pp, qq, pu, qv, pv, qu) = (z(f * layersA * layersB), z(f * layersA), z(f * layersB), z(f * wa),
                                         z(f * wb), z(f * layersA * wb), z(f * layersB * wa))
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
        let chunk = 256, wa = layersA * dimA, wb = layersB * dimB
        var u = [Double](repeating: 0, count: min(chunk, rows) * wa)
        var v = [Double](repeating: 0, count: min(chunk, rows) * wb)
        var start = 0
        while start < rows {
            let r = min(chunk, rows - start)
            Self.shift(a.map { $0 + start * dimA }, rows: r, dim: dimA, by: shiftA, into: &u)
            Self.shift(b.map { $0 + start * dimB }, rows: r, dim: dimB, by: shiftB, into: &v)
            addChunk(u, v, rows: r)
            start += r
        }
    }

    /// Adds every row of two stores (a bootstrap resample), a chunk of rows at a time.
    public mutating func add(a: LayerStore, b: LayerStore) throws {
        precondition(a.rows == b.rows && a.layerCount == layersA && b.layerCount == layersB)
        let chunk = 256
        var xa = [[Float]](repeating: [Float](repeating: 0, count: chunk * dimA), count: layersA)
        var xb = [[Float]](repeating: [Float](repeating: 0, count: chunk * dimB), count: layersB)
        for start in stride(from: 0, to: a.rows, by: chunk) {
            let r = start..<min(a.rows, start + chunk)
            for l in 0..<layersA {
                try xa[l].withUnsafeMutableBufferPointer { try a.read(l, rows: r, into: $0.baseAddress!) }
            }
            for l in 0..<layersB {
                try xb[l].withUnsafeMutableBufferPointer { try b.read(l, rows: r, into: $0.baseAddress!) }
            }
            xa.withPointers { pa in xb.withPointers { pb in add(a: pa, b: pb, rows: r.count) } }
        }
    }

    /// u = x − shift, rows × (layers·dim), as float64.
    private static func shift(_ x: [UnsafePointer<Float>], rows r: Int, dim: Int, by shift: [Double],
                              into u: inout [Double]) {
        let w = x.count * dim
        for (l, p) in x.enumerated() {
            for i in 0..<r { for d in 0..<dim { u[i * w + l * dim + d] = Double(p[i * dim + d]) - shift[l * dim + d] } }
        }
    }

    private mutating func addChunk(_ u: [Double], _ v: [Double], rows r: Int) {
        let la = layersA, lb = layersB, da = dimA, db = dimB, wa = la * da, wb = lb * db
        for i in 0..<r {
            for c in 0..<wa { sumA[c] += u[i * wa + c] }
            for c in 0..<wb { sumB[c] += v[i * wb + c] }
        }
        func gemmT(_ x: [Double], _ m: Int, _ y: [Double], _ n: Int, into c: inout [Double]) {
            dgemm(transA: true, m: m, n: n, k: r, a: x, lda: m, b: y, ldb: n, beta: 1, c: &c, ldc: n)
        }
        // The stacked cross products and each layer's scatter (or its diagonal).
        gemmT(u, wa, v, wb, into: &ab)
        if moments.contains(.scatter) {
            Self.addLayerScatter(u, layers: la, dim: da, rows: r, into: &aa)
            Self.addLayerScatter(v, layers: lb, dim: db, rows: r, into: &bb)
        } else {
            for i in 0..<r {
                for c in 0..<wa { aa[c] += u[i * wa + c] * u[i * wa + c] }
                for c in 0..<wb { bb[c] += v[i * wb + c] * v[i * wb + c] }
            }
        }
        if moments.contains(.fourth) {
            var p = [Double](repeating: 0, count: r * la), q = [Double](repeating: 0, count: r * lb)
            func squaredNorms(_ x: [Double], layers: Int, dim: Int, into out: inout [Double]) {
                let w = layers * dim
                for i in 0..<r {
                    for l in 0..<layers {
                        var s = 0.0
                        for d in 0..<dim { let e = x[i * w + l * dim + d]; s += e * e }
                        out[i * layers + l] = s
                    }
                }
            }
            squaredNorms(u, layers: la, dim: da, into: &p)
            squaredNorms(v, layers: lb, dim: db, into: &q)
            for i in 0..<r {
                for l in 0..<la { pp[l] += p[i * la + l] * p[i * la + l] }
                for l in 0..<lb { qq[l] += q[i * lb + l] * q[i * lb + l] }
                for l in 0..<la {
                    let w = p[i * la + l]
                    for d in 0..<da { pu[l * da + d] += w * u[i * wa + l * da + d] }
                }
                for l in 0..<lb {
                    let w = q[i * lb + l]
                    for d in 0..<db { qv[l * db + d] += w * v[i * wb + l * db + d] }
                }
            }
            gemmT(p, la, q, lb, into: &pq)
            gemmT(p, la, v, wb, into: &pv)
            gemmT(q, lb, u, wa, into: &qu)
        }
        count += r
    }

    /// scatter[l] += x_lᵀ x_l (upper triangle) for each layer's block of the rows x (rows × layers·dim).
    private static func addLayerScatter(_ x: [Double], layers: Int, dim: Int, rows: Int, into scatter: inout [Double]) {
        let w = layers * dim
        x.withUnsafeBufferPointer { xp in
            scatter.withUnsafeMutableBufferPointer { o in
                for l in 0..<layers {
                    dsyrkUpper(n: dim, k: rows, a: xp.baseAddress! + l * dim, lda: w, beta: 1,
                               c: o.baseAddress! + l * dim * dim, ldc: dim)
                }
            }
        }
    }

    /// Layer l's Σu uᵀ of a side (0: A, 1: B), both triangles (needs `.scatter`).
    public func scatter(side: Int, layer l: Int) -> [Double] {
        precondition(moments.contains(.scatter))
        let d = side == 0 ? dimA : dimB, raw = side == 0 ? aa : bb
        var c = Array(raw[(l * d * d)..<((l + 1) * d * d)])
        for i in 0..<d { for j in 0..<i { c[i * d + j] = c[j * d + i] } }
        return c
    }

    /// The diagonal of layer l's Σu uᵀ of a side.
    public func scatterDiagonal(side: Int, layer l: Int) -> [Double] {
        let d = side == 0 ? dimA : dimB, raw = side == 0 ? aa : bb
        return moments.contains(.scatter) ? (0..<d).map { raw[l * d * d + $0 * d + $0] }
            : Array(raw[(l * d)..<((l + 1) * d)])
    }

    /// The sums of two shards of one run (same shifts), added.
    public mutating func merge(_ o: CovarianceSums) {
        precondition(o.shiftA == shiftA && o.shiftB == shiftB && o.moments == moments, "shards of different runs")
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
        guard let sa = arrays["shift_a"], let sb = arrays["shift_b"], let aa = arrays["aa"], let pq = arrays["pq"],
              sa.count == layersA * dimA, sb.count == layersB * dimB else { return nil }
        // The moments summed, from the lengths (with D = 1 a scatter is its diagonal).
        var moments: Moments = aa.count == layersA * dimA * dimA ? .scatter : []
        if !pq.isEmpty { moments.insert(.fourth) }
        var s = CovarianceSums(layersA: layersA, dimA: dimA, layersB: layersB, dimB: dimB, shiftA: sa, shiftB: sb,
                               moments: moments)
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
