import Foundation
import VitLensCore

/// 95 % percentile-bootstrap intervals of CKA over minibatches: `resamples` times, draw as many
/// minibatches as there are, with replacement (seeded), and recompute every CKA(i, j) from the
/// drawn batches' HSIC values; the interval is the 2.5th and 97.5th percentile (numpy's linear
/// rule) of the resampled values. Batches are taken in index order, so shards merged give the
/// same interval as one run. Fewer than 2 minibatches: no interval (NaN).
public func ckaBootstrap(_ batches: [CKABatch], layersA: Int, layersB: Int, resamples: Int, seed: UInt64 = 0,
                         level: Double = 0.95) -> (low: [Double], high: [Double]) {
    let n = layersA * layersB
    let sorted = batches.sorted { $0.index < $1.index }
    guard sorted.count >= 2,
        resamples > 0 else { return ([Double](repeating: .nan, count: n), [Double](repeating: .nan, count: n)) }
    var rng = SplitMix64(seed: seed)
    var samples = [[Double]](repeating: [], count: n)
    for i in 0..<n { samples[i].reserveCapacity(resamples) }
    for _ in 0..<resamples {
        let draw = (0..<sorted.count).map { _ in sorted[Int(rng.next() % UInt64(sorted.count))] }
        let m = ckaMatrix(
            draw.enumerated().map { k, b in CKABatch(index: k, size: b.size, kl: b.kl, kk: b.kk, ll: b.ll) },
                          layersA: layersA, layersB: layersB)
        for i in 0..<n { samples[i].append(m[i]) }
    }
    let a = (1 - level) / 2
    var low = [Double](repeating: .nan, count: n), high = low
    for i in 0..<n {
        let v = samples[i].filter(\.isFinite).sorted()
        guard v.count == resamples else { continue }  // undefined in some resample: no interval
        low[i] = BoxStats.percentile(v, a)
        high[i] = BoxStats.percentile(v, 1 - a)
    }
    return (low, high)
}

/// The Wilson score interval of a proportion `correct`/`n` (95 % by default): what a test
/// accuracy on n images can be said to be.
public func wilsonInterval(correct: Int, of n: Int, z: Double = 1.959963984540054) -> (low: Double, high: Double) {
    guard n > 0 else { return (.nan, .nan) }
    let N = Double(n), p = Double(correct) / N, z2 = z * z
    let centre = (p + z2 / (2 * N)) / (1 + z2 / N)
    let half = z / (1 + z2 / N) * (p * (1 - p) / N + z2 / (4 * N * N)).squareRoot()
    return (max(0, centre - half), min(1, centre + half))
}
