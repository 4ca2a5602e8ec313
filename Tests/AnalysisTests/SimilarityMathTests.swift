@testable import Analysis
import VitLensCore
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

    func testMedianOfTheDistanceTilesIsNumpysMedianOfTheMatrix() throws {
        for n in [1, 2, 11, 24] {
            let whole = TileBuffers(tile: n, dim: 3)
            let rows = try PairTiles(HeldLayers([tiedRows(n)]), layer: 0, kind: .squaredDistance, buffers: whole)
            var full = [Double](repeating: 0, count: n * n)
            try rows.tile(0..<n, 0..<n, into: &full, whole)
            let s = full.sorted()
            let expected = n * n % 2 == 1 ? s[n * n / 2] : (s[n * n / 2 - 1] + s[n * n / 2]) / 2
            for tile in [1, 3, 5, 64] {
                let b = TileBuffers(tile: min(tile, n), dim: 3)
                let t = try PairTiles(HeldLayers([tiedRows(n)]), layer: 0, kind: .squaredDistance, buffers: b)
                XCTAssertEqual(try medianSquaredDistance(t, b), expected, "n \(n), tile \(tile)")
            }
        }
    }

    var sidesForTiles: (HeldLayers, HeldLayers) {
        (HeldLayers([tiedRows(23), LayerVectors(rows: 23, dim: 2, values: (0..<46).map { Float(sin(Double($0))) })]),
         HeldLayers([LayerVectors(rows: 23, dim: 4, values: (0..<92).map { Float(cos(Double($0) * 0.7)) })]))
    }

    func testRBFCKADoesNotDependOnTheTiles() throws {
        let (a, b) = sidesForTiles
        let whole = try rbfCKA(a, b, t: 0.5)
        for tile in [1, 4, 7] {
            for (x, y) in zip(try rbfCKA(a, b, t: 0.5, tile: tile), whole) { XCTAssertEqual(x, y, accuracy: 1e-13) }
        }
        XCTAssertEqual(try rbfCKA(a, a, t: 0.5)[0], 1, accuracy: 1e-13)
    }

    /// RSA through tiles and the scratch file against the whole RDMs compared directly (ranks by
    /// `averageRanks`, Pearson as the cosine of centred vectors, τ_a), with and without bootstrap copies.
    func testRSAInTilesEqualsTheWholeRDMs() throws {
        // Features without ties among the correlations (rounding would break ties differently).
        let a = HeldLayers([LayerVectors(rows: 23, dim: 5,
                                         values: (0..<115).map { Float(sin(Double($0 * $0) * 0.37)) })])
        let b = HeldLayers([LayerVectors(rows: 23, dim: 4, values: (0..<92).map { Float(cos(Double($0) * 0.7)) })])
        func rdm(_ x: LayerVectors, _ identity: [Int]?) -> [Double] {
            var z = x.values.map(Double.init)
            let d = x.dim
            for i in 0..<x.rows {
                let m = z[(i * d)..<((i + 1) * d)].reduce(0, +) / Double(d)
                for c in 0..<d { z[i * d + c] -= m }
                let norm = z[(i * d)..<((i + 1) * d)].reduce(0) { $0 + $1 * $1 }.squareRoot()
                for c in 0..<d { z[i * d + c] /= norm }
            }
            var out: [Double] = []
            for i in 0..<x.rows { for j in (i + 1)..<x.rows where identity.map({ $0[i] != $0[j] }) ?? true {
                out.append(1 - (0..<d).reduce(0) { $0 + z[i * d + $1] * z[j * d + $1] })
            } }
            return out
        }
        func cosine(_ x: [Double], _ y: [Double]) -> Double {
            let xy = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
            return xy / (x.reduce(0) { $0 + $1 * $1 } * y.reduce(0) { $0 + $1 * $1 }).squareRoot()
        }
        func centred(_ x: [Double]) -> [Double] { let m = x.reduce(0, +) / Double(x.count); return x.map { $0 - m } }
        let copies = (0..<23).map { $0 % 17 }
        for identity in [nil, copies] {
            let x = try rdm(a.layer(0), identity), y = try rdm(b.layer(0), identity)
            let expected: [RDMComparison: Double] = [
                .spearman: cosine(centred(averageRanks(x)), centred(averageRanks(y))),
                .pearson: cosine(centred(x), centred(y)), .cosine: cosine(x, y), .kendallTauA: kendallTauA(x, y)]
            for (method, value) in expected {
                for tile in [3, 512] {
                    let got = try rsa(a, b, method: method, identity: identity, tile: tile)
                    XCTAssertEqual(got.count, 1)
                    XCTAssertEqual(got[0], value, accuracy: 1e-12, "\(method), tile \(tile), copies \(identity != nil)")
                }
            }
        }
    }
    func testRanksThroughTheScratchFileAreScipysAverageRanks() throws {
        let v: [Double] = [0.5, -1, 2, 0.5, 0.5, 3, -1, 1e-300, -0.0, 0, 2, 7]
        let values = try ScratchFile(), out = try ScratchFile()
        try v.withUnsafeBufferPointer { try values.write($0.baseAddress!, count: v.count, at: 0) }
        for centred in [false, true] {
            try rank(values, count: v.count, into: out, at: 16, centred: centred)
            var r = [Double](repeating: 0, count: v.count)
            try r.withUnsafeMutableBufferPointer { try out.read(into: $0.baseAddress!, count: v.count, at: 16) }
            let mean = centred ? Double(v.count + 1) / 2 : 0
            XCTAssertEqual(r, averageRanks(v).map { $0 - mean })
        }
    }

    func testRanksOfManyTiedValuesAcrossChunks() throws {
        let v = (0..<150_000).map { Double(($0 * 7919) % 1000) * 0.25 - 50 }
        let values = try ScratchFile(), out = try ScratchFile()
        try v.withUnsafeBufferPointer { try values.write($0.baseAddress!, count: v.count, at: 0) }
        try rank(values, count: v.count, into: out, at: 0, centred: false)
        var r = [Double](repeating: 0, count: v.count)
        try r.withUnsafeMutableBufferPointer { try out.read(into: $0.baseAddress!, count: v.count, at: 0) }
        XCTAssertEqual(r, averageRanks(v))
    }
}
