import Analysis
import TestSupport
import VitLensCore
import XCTest

final class IntervalTests: XCTestCase {
    /// Wilson score intervals against published values (Newcombe 1998, Table I: 5/10, 0/20).
    func testWilsonKnownValues() {
        let half = wilsonInterval(correct: 5, of: 10)
        XCTAssertEqual(half.low, 0.2366, accuracy: 5e-5)
        XCTAssertEqual(half.high, 0.7634, accuracy: 5e-5)
        let none = wilsonInterval(correct: 0, of: 20)
        XCTAssertEqual(none.low, 0, accuracy: 1e-12)
        XCTAssertEqual(none.high, 0.1611, accuracy: 5e-5)
        let all = wilsonInterval(correct: 20, of: 20)
        XCTAssertEqual(all.high, 1, accuracy: 1e-12)
        XCTAssertEqual(all.low, 1 - 0.1611, accuracy: 5e-5)
        XCTAssertTrue(wilsonInterval(correct: 0, of: 0).low.isNaN)
    }

    /// Minibatches whose HSIC(K,L) scatter around a known value with HSIC(K,K) = HSIC(L,L) = 1:
    /// the true CKA is that value, and the 95 % bootstrap interval must cover it in about 95 %
    /// of repeated experiments (percentile bootstrap of a mean over 40 batches: 0.90–0.99).
    func testBootstrapCoverage() {
        var rng = SplitMix64(seed: 11)
        func normal() -> Double {
            let u1 = Double(rng.next() >> 11) / Double(1 << 53) + 1e-12, u2 = Double(rng.next() >> 11) / Double(1 << 53)
            return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
        }
        let truth = 0.6, trials = 300
        var covered = 0
        for t in 0..<trials {
            let batches = (0..<40).map {
                i in CKABatch(index: i, size: 8, kl: [truth + 0.1 * normal()], kk: [1], ll: [1]) }
            let ci = ckaBootstrap(batches, layersA: 1, layersB: 1, resamples: 400, seed: UInt64(t))
            XCTAssertLessThan(ci.low[0], ci.high[0])
            if ci.low[0] <= truth && truth <= ci.high[0] { covered += 1 }
        }
        let coverage = Double(covered) / Double(trials)
        XCTAssertGreaterThanOrEqual(coverage, 0.90, "coverage \(coverage)")
        XCTAssertLessThanOrEqual(coverage, 0.99, "coverage \(coverage)")
    }

    /// The interval depends on the batches, not on their order or how shards split them; one
    /// minibatch gives none.
    func testBootstrapIsOrderFreeAndNeedsTwoBatches() {
        let b = (0..<6).map { CKABatch(index: $0, size: 8, kl: [0.5 + 0.01 * Double($0 * $0 % 5)], kk: [1], ll: [1]) }
        let x = ckaBootstrap(b, layersA: 1, layersB: 1, resamples: 200)
        let y = ckaBootstrap(b.reversed(), layersA: 1, layersB: 1, resamples: 200)
        XCTAssertEqual(x.low, y.low)
        XCTAssertEqual(x.high, y.high)
        XCTAssertTrue(ckaBootstrap(Array(b.prefix(1)), layersA: 1, layersB: 1, resamples: 200).low[0].isNaN)
    }
}

/// Attention rollout in closed form: with uniform attention Ā = J/T in every block,
/// A = ½I + ½J/T and A^L = 2^−L·I + (1 − 2^−L)·J/T, so the class row over the patches is
/// (1 − 2^−L)/T everywhere; class attention is 1/T.
final class RolloutTests: XCTestCase {
    func testUniformAttentionHasAClosedForm() {
        let T = 4, H = 3, L = 4, prefix = 1
        let p = [Float](repeating: 1 / Float(T), count: H * T * T)
        let maps = AttentionMaps(tokens: T, prefix: prefix, heads: H, classToken: true, fusion: .mean, discard: 0)
        var cls = [Float](repeating: 0, count: H * (T - prefix))
        for _ in 0..<L { p.withUnsafeBufferPointer { maps.addBlock($0.baseAddress!) } }
        p.withUnsafeBufferPointer {
            q in cls.withUnsafeMutableBufferPointer { maps.classAttention(q.baseAddress!, into: $0.baseAddress!) } }
        let want = (1 - pow(0.5, Double(L))) / Double(T)
        for v in maps.rollout { XCTAssertEqual(v, want, accuracy: 1e-14) }
        for v in cls { XCTAssertEqual(v, 1 / Float(T), accuracy: 1e-7) }
        // Discarding ⌊0.75·4⌋ = 3 of 4 equal entries per row drops keys 0, 1, 2 (ties: the lower
        // index first) and keeps key 3: the class row is (1 + 0, 0, 0, 0.25)/1.25.
        let d = AttentionMaps(tokens: T, prefix: prefix, heads: H, classToken: true, fusion: .max, discard: 0.75)
        p.withUnsafeBufferPointer { d.addBlock($0.baseAddress!) }
        XCTAssertEqual(d.rollout, [0, 0, 0.2])
    }

    func testBilinearUpsamplingMatchesPyTorch() {
        // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=4, mode="bilinear", align_corners=False)
        let want: [Double] = [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3]
        XCTAssertEqual(upsampleBilinear([0, 1, 2, 3], grid: 2, size: 4), want)
    }
}
