@testable import Analysis
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// Features (B, T, C) as the engine hands them to a tap.
func features(_ b: Int, _ t: Int, _ c: Int, _ rng: inout SplitMix) -> [Float] {
    (0..<(b * t * c)).map { _ in rng.normal() } }

func gram(_ x: [Float], _ b: Int, _ t: Int, _ c: Int, _ sel: TokenSelection = .patches) -> Gram {
    var scratch: [Float] = []
    return x.withUnsafeBufferPointer {
        Gram.of($0.baseAddress!, batch: b, tokens: t, channels: c, prefix: 1, selection: sel, scratch: &scratch) }
}

final class HSICTests: XCTestCase {
    /// The estimator against eq. 3 written with explicit matrices and ones-vectors, as mae-lite does.
    func testMatchesTheMatrixFormula() {
        var rng = SplitMix(state: 1)
        for n in [4, 5, 9] {
            let k = (0..<(n * n)).map { _ in Double(rng.normal()) }, l = (0..<(n * n)).map { _ in Double(rng.normal()) }
            // Symmetrise, zero the diagonal.
            var K = [Double](repeating: 0, count: n * n), L = K
            for i in 0..<n {
                for j in 0..<n where i != j {
                K[i * n + j] = k[i * n + j] + k[j * n + i]; L[i * n + j] = l[i * n + j] + l[j * n + i] } }
            var trKL = 0.0, kSum = 0.0, lSum = 0.0, klSum = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    kSum += K[i * n + j]; lSum += L[i * n + j]
                    var kl = 0.0
                    for m in 0..<n { kl += K[i * n + m] * L[m * n + j] }
                    klSum += kl
                    if i == j { trKL += kl }
                }
            }
            let nd = Double(n)
            let want = (trKL + kSum * lSum / ((nd - 1) * (nd - 2)) - 2 * klSum / (nd - 2)) / (nd * (nd - 3))
            XCTAssertEqual(unbiasedHSIC(Gram(n: n, k: K), Gram(n: n, k: L)), want, accuracy: 1e-12 * max(1, abs(want)))
        }
    }
}

final class CKAPropertyTests: XCTestCase {
    let b = 16, t = 10, c = 12

    func batches(_ layersA: [[Float]], _ layersB: [[Float]], batches: Int = 1) -> [CKABatch] {
        (0..<batches).map { i in
            CKABatch(index: i, a: layersA.map { gram($0, b, t, c) }, b: layersB.map { gram($0, b, t, c) })
        }
    }

    func testSelfSimilarityDiagonalIsOne() {
        var rng = SplitMix(state: 2)
        let layers = (0..<4).map { _ in features(b, t, c, &rng) }
        let m = ckaMatrix(batches(layers, layers), layersA: 4, layersB: 4)
        for i in 0..<4 { XCTAssertEqual(m[i * 4 + i], 1, accuracy: 1e-6) }
    }

    func testSymmetry() {
        var rng = SplitMix(state: 3)
        let a = (0..<3).map { _ in features(b, t, c, &rng) }, bb = (0..<2).map { _ in features(b, t, c, &rng) }
        let ab = ckaMatrix(batches(a, bb), layersA: 3, layersB: 2),
            ba = ckaMatrix(batches(bb, a), layersA: 2, layersB: 3)
        for i in 0..<3 { for j in 0..<2 { XCTAssertEqual(ab[i * 2 + j], ba[j * 3 + i], accuracy: 1e-12) } }
    }

    /// CKA is invariant to isotropic scaling and to an orthogonal transform of the channels.
    func testInvarianceToScaleAndRotation() {
        var rng = SplitMix(state: 4)
        let x = features(b, t, c, &rng)
        // A random orthogonal C×C matrix by Gram–Schmidt.
        var q = [[Double]]()
        while q.count < c {
            var v = (0..<c).map { _ in Double(rng.normal()) }
            for u in q { let d = zip(u, v).map(*).reduce(0, +); v = zip(v, u).map { $0 - d * $1 } }
            let n = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            q.append(v.map { $0 / n })
        }
        var rotated = x, scaled = x
        for row in 0..<(b * t) {
            for j in 0..<c {
                var s = 0.0
                for k in 0..<c { s += Double(x[row * c + k]) * q[k][j] }
                rotated[row * c + j] = Float(s)
                scaled[row * c + j] = x[row * c + j] * 7.5
            }
        }
        let y = features(b, t, c, &rng).enumerated().map { $0.element * 0.3 + x[$0.offset] }
        let base = ckaMatrix(batches([x], [y]), layersA: 1, layersB: 1)[0]
        XCTAssertEqual(ckaMatrix(batches([rotated], [y]), layersA: 1, layersB: 1)[0], base, accuracy: 1e-5)
        XCTAssertEqual(ckaMatrix(batches([scaled], [y]), layersA: 1, layersB: 1)[0], base, accuracy: 1e-5)
        XCTAssertGreaterThan(base, 0.5)
    }

    /// Independent random features: the unbiased estimator is centred on 0.
    func testIndependentFeaturesGiveCKANearZero() {
        var rng = SplitMix(state: 5)
        let bigB = 64
        var all: [CKABatch] = []
        for i in 0..<8 {
            let x = features(bigB, t, c, &rng), y = features(bigB, t, c, &rng)
            all.append(CKABatch(index: i, a: [gram(x, bigB, t, c)], b: [gram(y, bigB, t, c)]))
        }
        XCTAssertLessThan(abs(ckaMatrix(all, layersA: 1, layersB: 1)[0]), 0.05)
    }

    func testTokenSelections() {
        var rng = SplitMix(state: 6)
        let x = features(b, t, c, &rng)
        // cls: the Gram of token 0 alone; mean: of the mean patch token.
        let cls = gram(x, b, t, c, .cls), mean = gram(x, b, t, c, .mean)
        for i in 0..<b {
            for j in 0..<b where i != j {
                var s = 0.0, sm = 0.0
                for ch in 0..<c {
                    s += Double(x[i * t * c + ch]) * Double(x[j * t * c + ch])
                    var mi = 0.0, mj = 0.0
                    for tok in 1..<t {
                        mi += Double(x[(i * t + tok) * c + ch]); mj += Double(x[(j * t + tok) * c + ch]) }
                    sm += mi / Double(t - 1) * mj / Double(t - 1)
                }
                XCTAssertEqual(cls.k[i * b + j], s, accuracy: 1e-4)
                XCTAssertEqual(mean.k[i * b + j], sm, accuracy: 1e-4)
            }
        }
    }

    /// Sums run in batch-index order whatever order batches arrive in: merged shards are bit-identical.
    func testOrderOfBatchesDoesNotChangeTheBits() {
        var rng = SplitMix(state: 7)
        let bs = (0..<5).map {
            i in CKABatch(
            index: i, a: [gram(features(b, t, c, &rng), b, t, c)], b: [gram(features(b, t, c, &rng), b, t, c)]) }
        let m1 = ckaMatrix(bs, layersA: 1, layersB: 1),
            m2 = ckaMatrix([bs[3], bs[0], bs[4], bs[2], bs[1]], layersA: 1, layersB: 1)
        XCTAssertEqual(m1[0].bitPattern, m2[0].bitPattern)
    }
}

final class GramTests: XCTestCase {
    /// XXᵀ over the patch tokens against float64, computed as one sgemm (OpenBLAS threads) and
    /// with its rows split over vitlens's workers (OpenBLAS single-threaded, as inside a forward
    /// pass), for every token selection.
    func testGramRowsSplitOverWorkers() {
        var rng = SplitMix(state: 7)
        let b = 20, t = 5, c = 6
        let x = features(b, t, c, &rng)
        let savedBLAS = BLASRuntime.threads, savedWorkers = Workers.count
        defer { BLASRuntime.setThreads(savedBLAS); Workers.count = savedWorkers }
        for sel in [TokenSelection.patches, .cls, .mean] {
            var ref = [Double](repeating: 0, count: b * b)
            func token(_ i: Int, _ k: Int) -> Double {
                switch sel {
                case .patches: return Double(x[i * t * c + c + k])
                case .cls: return Double(x[i * t * c + k])
                case .mean: return (1..<t).reduce(0.0) { $0 + Double(x[(i * t + $1) * c + k]) } / Double(t - 1)
                }
            }
            let kDim = sel == .patches ? (t - 1) * c : c
            for i in 0..<b {
                for j in 0..<b where i != j {
                ref[i * b + j] = (0..<kDim).reduce(0.0) { $0 + token(i, $1) * token(j, $1) } } }
            for (blas, workers) in [(savedBLAS, 1), (1, 2), (1, 3)] {
                BLASRuntime.setThreads(blas); Workers.count = workers
                let g = gram(x, b, t, c, sel)
                let r = compare(g.k, ref, tolerance: 1e-4, mixed: true)
                XCTAssertEqual(r.violations, 0, "\(sel), OpenBLAS threads \(blas), workers \(workers): \(r)")
            }
        }
    }
}

final class AttentionStatsTests: XCTestCase {
    /// Uniform attention: entropy −Σ (1/P) ln(1/P + 1e−6) ≈ ln P, and the mean distance is the
    /// mean of all pairwise grid distances × scale.
    func testUniformAttention() {
        let g = 5, p = g * g, t = p + 1
        let geo = AttentionGeometry(grid: g, prefix: 1, scale: 16)
        var probs = [Float](repeating: 1 / Float(t), count: t * t)  // uniform over all tokens, class token included
        let m = probs.withUnsafeMutableBufferPointer { geo.headMeans($0.baseAddress!) }
        let pe = 1 / Double(p)
        XCTAssertEqual(m.entropy, -log(pe + 1e-6), accuracy: 1e-5)
        XCTAssertEqual(m.entropy, log(Double(p)), accuracy: 1e-4)
        var d = 0.0
        for q in 0..<p {
            for k in 0..<p {
            d += ((Double(q / g - k / g) * Double(q / g - k / g)
            + Double(q % g - k % g) * Double(q % g - k % g)).squareRoot()) } }
        XCTAssertEqual(m.distance, d / Double(p * p) * 16, accuracy: 1e-4)
        probs[0] = 0
    }

    /// Renormalising the engine's probabilities over the patch keys equals softmax of the patch logits.
    func testPatchOnlySoftmaxAgainstFloat64Reference() {
        var rng = SplitMix(state: 8)
        let g = 4, p = g * g, t = p + 1
        let logits = (0..<(t * t)).map { _ in Double(rng.normal()) * 3 }
        var full = [Float](repeating: 0, count: t * t)
        for r in 0..<t {
            let mx = (0..<t).map { logits[r * t + $0] }.max()!
            let e = (0..<t).map { exp(logits[r * t + $0] - mx) }
            let s = e.reduce(0, +)
            for k in 0..<t { full[r * t + k] = Float(e[k] / s) }
        }
        var ent = 0.0, dist = 0.0
        for q in 0..<p {
            let row = (0..<p).map { logits[(q + 1) * t + 1 + $0] }
            let mx = row.max()!
            let e = row.map { exp($0 - mx) }
            let s = e.reduce(0, +)
            for k in 0..<p {
                let v = e[k] / s
                ent -= v * log(v + 1e-6)
                dist += v * (
                    Double((q / g - k / g) * (q / g - k / g) + (q % g - k % g) * (q % g - k % g))).squareRoot() * 14
            }
        }
        let m = full.withUnsafeMutableBufferPointer {
            AttentionGeometry(grid: g, prefix: 1, scale: 14).headMeans($0.baseAddress!) }
        XCTAssertEqual(m.entropy, ent / Double(p), accuracy: 1e-5 * ent / Double(p))
        XCTAssertEqual(m.distance, dist / Double(p), accuracy: 1e-5 * dist / Double(p))
    }

    func testMeansWeightImagesEqually() {
        let b1 = AttentionBatch(index: 1, size: 1, entropySums: [3], distanceSums: [30])
        let b0 = AttentionBatch(index: 0, size: 3, entropySums: [3], distanceSums: [6])
        let (e, d) = attentionMeans([b1, b0], layers: 1, heads: 1)
        XCTAssertEqual(e, [1.5]); XCTAssertEqual(d, [9])
    }
}

final class BoxStatsTests: XCTestCase {
    /// Against numpy.percentile (linear) and matplotlib's whisker rule, values worked by hand.
    func testQuartilesWhiskersOutliers() {
        let s = BoxStats([4, 1, 100, 3, 2])
        XCTAssertEqual([s.min, s.q1, s.median, s.q3, s.max], [1, 2, 3, 4, 100])
        XCTAssertEqual([s.whiskerLow, s.whiskerHigh], [1, 4])  // 100 > 4 + 1.5·2
        XCTAssertEqual(s.outliers, [100])
        XCTAssertEqual(s.n, 5)
        let t = BoxStats([1, 2, 3, 4])  // np.percentile([1,2,3,4], [25, 50, 75]) = 1.75, 2.5, 3.25
        XCTAssertEqual([t.q1, t.median, t.q3], [1.75, 2.5, 3.25])
        XCTAssertTrue(t.outliers.isEmpty)
        let one = BoxStats([7])
        XCTAssertEqual(
            [one.min, one.q1, one.median, one.q3, one.max, one.whiskerLow, one.whiskerHigh], [7, 7, 7, 7, 7, 7, 7])
    }
}
