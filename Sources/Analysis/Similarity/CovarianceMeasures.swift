import Foundation
import VitLensCore

/// Why a covariance measure cannot be computed for a layer.
public enum SimilarityError: Error, Equatable {
    /// A side's centred features at `layer` have rank < width (a CCA needs full rank).
    case rankDeficient(side: Int, layer: Int, rank: Int, width: Int, measure: SimilarityMeasure)
    /// Every image has the same vector at `layer` of `side`.
    case constant(side: Int, layer: Int)
    case tooFewImages(count: Int, needed: Int, measure: SimilarityMeasure)
    case linearAlgebra(LinearAlgebraError)
}

/// One side's layer, centred: C = X̃ᵀX̃ (the scatter matrix), and what the CCAs need of it.
struct CentredLayer {
    /// C itself when the measures need more than its trace.
    let c: Matrix?
    let trace: Double
    let frobeniusSquared: Double
    /// Mean of the shifted rows (d = Σu / n) and ‖d‖².
    let meanShifted: [Double], meanSquared: Double
    /// Eigenvalues (ascending) and eigenvectors (columns) when SVCCA or a rank check needs them.
    var eigen: (values: [Double], vectors: Matrix?)?
    var lower: Matrix?
}

/// The covariance measures of every layer pair, from the sums (docs/reference.md).
public struct CovarianceMeasures {
    public let sums: CovarianceSums
    public let measures: [SimilarityMeasure]
    /// SVCCA keeps the fewest directions holding this share of the variance.
    public var svccaKeep: Double

    /// `sums` must hold the moments the measures need (`CovarianceSums.Moments.needed(by:)`).
    public init(sums: CovarianceSums, measures: [SimilarityMeasure], svccaKeep: Double = 0.99) {
        self.sums = sums
        self.measures = measures.filter { $0.kind == .covariance }
        self.svccaKeep = svccaKeep
        precondition(sums.moments.isSuperset(of: .needed(by: self.measures)) || sums.dimA * sums.dimB == 1,
                     "the sums lack moments the measures need")
    }

    /// The centred scatter of layer l of a side (0: A, 1: B), with the factorisations asked for.
    func centred(side: Int, layer l: Int) throws -> CentredLayer {
        let s = sums, n = Double(s.count)
        let d = side == 0 ? s.dimA : s.dimB
        let sum = side == 0 ? s.sumA : s.sumB
        let mean = (0..<d).map { sum[l * d + $0] / n }
        let meanSquared = mean.reduce(0) { $0 + $1 * $1 }
        let trace = s.scatterDiagonal(side: side, layer: l).reduce(0, +) - n * meanSquared
        guard trace > 0 else { throw SimilarityError.constant(side: side, layer: l) }
        guard s.moments.contains(.scatter) else {
            return CentredLayer(c: nil, trace: trace, frobeniusSquared: .nan, meanShifted: mean,
                                meanSquared: meanSquared)
        }
        var c = Matrix(rows: d, columns: d, values: s.scatter(side: side, layer: l))
        for i in 0..<d { for j in 0..<d { c.values[i * d + j] -= n * mean[i] * mean[j] } }
        var layer = CentredLayer(c: c, trace: trace, frobeniusSquared: c.frobeniusSquared, meanShifted: mean,
                                 meanSquared: meanSquared)
        let needsEigen = measures.contains(.svcca) || measures.contains(where: \.isCCA)
        if needsEigen {
            do { layer.eigen = try symmetricEigen(c, vectors: measures.contains(.svcca)) } catch let e as LinearAlgebraError {
                throw SimilarityError.linearAlgebra(e) }
        }
        if let m = measures.first(where: \.isCCA) {
            let w = layer.eigen!.values, top = w.last ?? 0
            // Rank: eigenvalues above 1e-10 of the largest (float32 features cannot resolve less).
            let rank = w.filter { $0 > 1e-10 * top }.count
            guard rank == d, let l0 = cholesky(c) else {
                throw SimilarityError.rankDeficient(side: side, layer: l, rank: rank, width: d, measure: m)
            }
            layer.lower = l0
        }
        return layer
    }

    /// X̃ᵀỸ of layers (a, b).
    func cross(_ a: Int, _ b: Int, _ ca: CentredLayer, _ cb: CentredLayer) -> Matrix {
        let s = sums, n = Double(s.count), da = s.dimA, db = s.dimB, wb = s.layersB * db
        var m = Matrix(zeros: da, db)
        for i in 0..<da {
            let row = (a * da + i) * wb + b * db
            for j in 0..<db { m.values[i * db + j] = s.ab[row + j] - n * ca.meanShifted[i] * cb.meanShifted[j] }
        }
        return m
    }

    /// Σᵢ ‖x̃ᵢ‖²‖ỹᵢ‖² for layers (a, b) of sides A and B (or A with itself), expanded around the
    /// shift: with p = ‖u‖², d the mean of u, e = ‖d‖²,
    /// Σ r q = Σpq − 2d_b·Σp v − 2d_a·Σq u + 4 d_aᵀ(Σu vᵀ)d_b + e_b Σp + e_a Σq − 3n e_a e_b.
    func rowNormProducts(_ a: Int, _ b: Int, _ ca: CentredLayer, _ cb: CentredLayer) -> Double {
        let s = sums, n = Double(s.count), da = s.dimA, db = s.dimB, wa = s.layersA * da, wb = s.layersB * db
        var pvTerm = 0.0, quTerm = 0.0, quad = 0.0
        for j in 0..<db { pvTerm += cb.meanShifted[j] * s.pv[a * wb + b * db + j] }
        for i in 0..<da { quTerm += ca.meanShifted[i] * s.qu[b * wa + a * da + i] }
        for i in 0..<da {
            var t = 0.0
            let row = (a * da + i) * wb + b * db
            for j in 0..<db { t += s.ab[row + j] * cb.meanShifted[j] }
            quad += ca.meanShifted[i] * t
        }
        let pSum = rawTrace(side: 0, a), qSum = rawTrace(side: 1, b)
        return s.pq[a * s.layersB + b] - 2 * pvTerm - 2 * quTerm + 4 * quad + cb.meanSquared * pSum
            + ca.meanSquared * qSum - 3 * n * ca.meanSquared * cb.meanSquared
    }

    /// Σᵢ ‖x̃ᵢ‖⁴ for layer l of a side.
    func rowNormSquares(side: Int, _ l: Int, _ c: CentredLayer) -> Double {
        let s = sums, n = Double(s.count), d = side == 0 ? s.dimA : s.dimB
        let raw = s.scatter(side: side, layer: l), pu = side == 0 ? s.pu : s.qv, pp = side == 0 ? s.pp : s.qq
        var lin = 0.0, quad = 0.0
        for i in 0..<d {
            lin += c.meanShifted[i] * pu[l * d + i]
            var t = 0.0
            for j in 0..<d { t += raw[i * d + j] * c.meanShifted[j] }
            quad += c.meanShifted[i] * t
        }
        let p = rawTrace(side: side, l)
        return pp[l] - 4 * lin + 4 * quad + 2 * c.meanSquared * p - 3 * n * c.meanSquared * c.meanSquared
    }

    /// Σ‖u‖² of a layer (the trace of its shifted, uncentred sum).
    func rawTrace(side: Int, _ l: Int) -> Double {
        sums.scatterDiagonal(side: side, layer: l).reduce(0, +)
    }

    /// Kornblith et al.'s `_debiased_dot_product_similarity_helper`.
    static func debiased(_ xty: Double, _ rowProducts: Double, _ nx: Double, _ ny: Double, _ n: Double) -> Double {
        xty - n / (n - 2) * rowProducts + nx * ny / ((n - 1) * (n - 2))
    }

    /// Every asked measure's La × Lb matrix (row-major), NaN where undefined.
    public func compute() throws -> [SimilarityMeasure: [Double]] {
        let s = sums, n = Double(s.count)
        if measures.contains(.ckaDebiased), s.count < 4 {
            throw SimilarityError.tooFewImages(count: s.count, needed: 4, measure: .ckaDebiased) }
        let sideA = try (0..<s.layersA).map { try centred(side: 0, layer: $0) }
        let sideB = try (0..<s.layersB).map { try centred(side: 1, layer: $0) }
        let selfA = measures.contains(.ckaDebiased)
            ? sideA.indices.map { rowNormSquares(side: 0, $0, sideA[$0]) } : []
        let selfB = measures.contains(.ckaDebiased)
            ? sideB.indices.map { rowNormSquares(side: 1, $0, sideB[$0]) } : []
        let reducedA = measures.contains(.svcca) ? sideA.map { reduced($0) } : []
        let reducedB = measures.contains(.svcca) ? sideB.map { reduced($0) } : []
        var out: [SimilarityMeasure: [Double]] = [:]
        for m in measures { out[m] = [Double](repeating: .nan, count: s.layersA * s.layersB) }
        if measures.contains(.procrustes) { out[.procrustes] = try procrustes(sideA, sideB) }
        for a in 0..<s.layersA {
            for b in 0..<s.layersB {
                let ca = sideA[a], cb = sideB[b], cross = cross(a, b, ca, cb), k = a * s.layersB + b
                do {
                    if measures.contains(.ckaDebiased) {
                        let xy = Self.debiased(cross.frobeniusSquared, rowNormProducts(a, b, ca, cb), ca.trace,
                                               cb.trace, n)
                        let xx = Self.debiased(ca.frobeniusSquared, selfA[a], ca.trace, ca.trace, n)
                        let yy = Self.debiased(cb.frobeniusSquared, selfB[b], cb.trace, cb.trace, n)
                        out[.ckaDebiased]![k] = xy / (xx.squareRoot() * yy.squareRoot())
                    }
                    if measures.contains(where: \.isCCA) {
                        // M = L_x⁻¹ X̃ᵀỸ L_y⁻ᵀ: its singular values are the canonical correlations.
                        let lx = ca.lower!, ly = cb.lower!
                        let m = solveLower(ly, solveLower(lx, cross), right: true)
                        if measures.contains(.cca) {
                            out[.cca]![k] = m.frobeniusSquared / Double(min(s.dimA, s.dimB))
                        }
                        if measures.contains(.pwcca) { out[.pwcca]![k] = try pwcca(m, lx) }
                    }
                    if measures.contains(.svcca) {
                        out[.svcca]![k] = try svcca(cross, reducedA[a], reducedB[b])
                    }
                } catch let e as LinearAlgebraError { throw SimilarityError.linearAlgebra(e) }
            }
        }
        return out
    }

    /// Procrustes angles of every layer pair: arccos(‖X̃ᵀỸ‖_* / (‖X̃‖_F‖Ỹ‖_F)). The singular values
    /// of the pairs are found two at a time (one per core): LAPACK's bidiagonalisation is mostly
    /// matrix-vector work that one core does as fast as two.
    func procrustes(_ sideA: [CentredLayer], _ sideB: [CentredLayer]) throws -> [Double] {
        let lb = sums.layersB, n = sums.layersA * lb
        var results = [Result<Double, Error>](repeating: .success(.nan), count: n)
        results.withUnsafeMutableBufferPointer { r in
            let out = r
            parallelItems(n) { k in
                let ca = sideA[k / lb], cb = sideB[k % lb]
                out[k] = Result {
                    let nuclear = try singularValues(cross(k / lb, k % lb, ca, cb), vectors: false).values.reduce(0, +)
                    return acos(min(1, max(-1, nuclear / (ca.trace.squareRoot() * cb.trace.squareRoot()))))
                }
            }
        }
        do { return try results.map { try $0.get() } } catch let e as LinearAlgebraError {
            throw SimilarityError.linearAlgebra(e) }
    }

    /// The directions SVCCA keeps of a layer: the fewest top eigenvectors of X̃ᵀX̃ whose
    /// eigenvalues hold `svccaKeep` of the total, each scaled by λ^(−1/2) (whitening them).
    func reduced(_ c: CentredLayer) -> Matrix {
        let (w, v) = (c.eigen!.values, c.eigen!.vectors!)
        let d = w.count, total = w.reduce(0) { $0 + max(0, $1) }
        var kept = 0, held = 0.0
        while kept < d && held < svccaKeep * total { held += max(0, w[d - 1 - kept]); kept += 1 }
        var r = Matrix(zeros: d, kept)
        for j in 0..<kept {
            let col = d - 1 - j, scale = 1 / w[col].squareRoot()
            for i in 0..<d { r.values[i * kept + j] = v[i, col] * scale }
        }
        return r
    }

    /// Mean canonical correlation of the reduced sides: singular values of W_xᵀ X̃ᵀỸ W_y.
    func svcca(_ cross: Matrix, _ wx: Matrix, _ wy: Matrix) throws -> Double {
        let m = multiply(multiply(wx, cross, transA: true), wy)
        let s = try singularValues(m, vectors: false).values
        return s.reduce(0) { $0 + min(1, $1) } / Double(s.count)
    }

    /// Projection-weighted CCA: with M = U S Vᵀ, X's canonical variates hᵢ = X̃ L_x⁻ᵀ uᵢ have unit
    /// norm and ⟨hᵢ, x̃ⱼ⟩ = (L_x uᵢ)ⱼ; weight αᵢ = Σⱼ |(L_x uᵢ)ⱼ|, result Σ αᵢ ρᵢ / Σ αᵢ over the
    /// min(D_X, D_Y) correlations.
    func pwcca(_ m: Matrix, _ lx: Matrix) throws -> Double {
        let svd = try singularValues(m, vectors: true)
        let k = svd.values.count
        let projections = multiply(lx, svd.u!)  // (Dx × k)
        var weighted = 0.0, total = 0.0
        for i in 0..<k {
            var w = 0.0
            for j in 0..<projections.rows { w += abs(projections[j, i]) }
            weighted += w * svd.values[i]
            total += w
        }
        return weighted / total
    }
}
