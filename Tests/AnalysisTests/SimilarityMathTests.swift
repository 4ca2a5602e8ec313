@testable import Analysis
import XCTest

/// The similarity measures' small pieces against numpy, scipy and rsatoolbox (values computed
/// with numpy 2 / scipy / rsatoolbox 0.3.2 and written here).
final class SimilarityMathTests: XCTestCase {
    func testPercentileIntervalIsNumpysLinearPercentile() {
        // np.percentile([3,1,4,1,5,9,2,6,5,3,5], [2.5, 97.5]) = [1.0, 8.25]
        let x: [Double] = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
        let ci = percentileInterval(x.map { [$0, .nan] })
        XCTAssertEqual(ci.low[0], 1.0, accuracy: 1e-12)
        XCTAssertEqual(ci.high[0], 8.25, accuracy: 1e-12)
        XCTAssertTrue(ci.low[1].isNaN && ci.high[1].isNaN, "no finite resample: no interval")
    }

    func testRanksAndKendallTauAWithTies() {
        let a: [Double] = [1, 2, 2, 3, 4, 4, 4, 5], b: [Double] = [2, 1, 3, 3, 5, 4, 4, 1]
        // scipy.stats.rankdata(a)
        XCTAssertEqual(averageRanks(a), [1, 2.5, 2.5, 4, 6, 6, 6, 8])
        // rsatoolbox.rdm.compare._tau_a(a, b) = 0.2857142857142857
        XCTAssertEqual(kendallTauA(a, b), 0.2857142857142857, accuracy: 1e-15)
        XCTAssertEqual(kendallTauA(a, a), 1 - 4.0 / 28, accuracy: 1e-15, "ties count as neither (τ_a)")
    }

    func testBootstrapResamplesAreSeededDraws() {
        let r = bootstrapResamples(count: 10, resamples: 3, seed: 7)
        XCTAssertEqual(r, bootstrapResamples(count: 10, resamples: 3, seed: 7))
        XCTAssertNotEqual(r, bootstrapResamples(count: 10, resamples: 3, seed: 8))
        XCTAssertTrue(r.allSatisfy { $0.count == 10 && $0.allSatisfy { (0..<10).contains($0) } })
    }

    func testNeighboursExcludeSelfAndCopiesAndBreakTiesToTheLowerIndex() {
        // Rows 0, 1, 2 point the same way (cosine 1), row 3 elsewhere.
        let x = LayerVectors(rows: 4, dim: 2, values: [1, 0, 2, 0, 3, 0, 0, 1])
        XCTAssertEqual(nearestNeighbours(x, k: 1), [1, 0, 0, 0])
        // Rows 0 and 1 are copies of one image (a bootstrap resample): not each other's neighbours.
        XCTAssertEqual(nearestNeighbours(x, k: 1, identity: [5, 5, 6, 7]), [2, 2, 0, 0])
        XCTAssertEqual(mutualKNN([1, 0, 0, 0], [1, 0, 1, 0], rows: 4, k: 1), 0.75)
    }
    /// Integer features (many equal distances, so the middle ranks fall among ties), N odd and even.
    func tiedRows(_ n: Int) -> LayerVectors {
        LayerVectors(rows: n, dim: 3, values: (0..<(n * 3)).map { Float(($0 * 7 + $0 / 3) % 5) })
    }

    func testMedianOfTheDistanceTilesIsNumpysMedianOfTheMatrix() {
        for n in [1, 2, 11, 24] {
            let rows = DistanceRows(tiedRows(n))
            var full = [Double](repeating: 0, count: n * n), scratch = [Double](repeating: 0, count: 2 * n * 3)
            rows.tile(0..<n, 0..<n, into: &full, rows: &scratch)
            let s = full.sorted()
            let expected = n * n % 2 == 1 ? s[n * n / 2] : (s[n * n / 2 - 1] + s[n * n / 2]) / 2
            for tile in [1, 3, 5, 64] {
                XCTAssertEqual(medianSquaredDistance(rows, tile: min(tile, n)), expected, "n \(n), tile \(tile)")
            }
        }
    }

    func testRBFCKADoesNotDependOnTheTiles() {
        let a = [tiedRows(23), LayerVectors(rows: 23, dim: 2, values: (0..<46).map { Float(sin(Double($0))) })]
        let b = [LayerVectors(rows: 23, dim: 4, values: (0..<92).map { Float(cos(Double($0) * 0.7)) })]
        let whole = rbfCKA(a, b, t: 0.5)
        for tile in [1, 4, 7] {
            for (x, y) in zip(rbfCKA(a, b, t: 0.5, tile: tile), whole) { XCTAssertEqual(x, y, accuracy: 1e-13) }
        }
        XCTAssertEqual(rbfCKA(a, a, t: 0.5)[0], 1, accuracy: 1e-13)
    }
}
