import Foundation
import KernelsAVX2
import VitLensCore

/// The scale s of attention distances (docs/reference.md, "`vitlens attention`").
public enum DistanceConvention: String, Sendable, CaseIterable {
    /// s = the patch size in pixels: distances in pixels.
    case pixels
    /// s = 14, as mae-lite's attn_analyzer hard-codes (for reproducing the paper's plots).
    case maeLite = "mae-lite"

    public func scale(patch: Int) -> Double { self == .pixels ? Double(patch) : 14 }
}

/// Attention distance and entropy of one model (docs/reference.md, "`vitlens attention`"; mae-lite
/// `projects/eval_tools/visualize/
/// attn_analyzer.py`): per block and head, the attention among patch tokens only (prefix rows and
/// columns dropped, softmax taken again over the patch keys); per query q
///   entropy  = −Σₖ p·ln(p + 1e−6)            (nats)
///   distance = Σₖ p·‖g(q) − g(k)‖₂·s          (g the (row, column) grid position)
/// then the mean over query tokens. Renormalising the full softmax over the patch keys equals
/// the softmax of the patch logits, so the engine's probabilities are used directly.
public struct AttentionGeometry {
    public let grid: Int
    public let prefix: Int
    public let scale: Double
    /// ‖g(q) − g(k)‖₂·s for patch tokens q, k: (P, P).
    let distance: [Float]

    public init(grid: Int, prefix: Int, scale: Double) {
        self.grid = grid
        self.prefix = prefix
        self.scale = scale
        let p = grid * grid
        var d = [Float](repeating: 0, count: p * p)
        for q in 0..<p {
            for k in 0..<p {
                let dy = Double(q / grid - k / grid), dx = Double(q % grid - k % grid)
                d[q * p + k] = Float((dx * dx + dy * dy).squareRoot() * scale)
            }
        }
        distance = d
    }

    public var patches: Int { grid * grid }

    /// The largest mean distance any attention can give: every query attending only to its
    /// farthest key (the fixed top of the distance axis in figures).
    public var maxMeanDistance: Double {
        var total = 0.0
        for q in 0..<patches {
            let r = q / grid, c = q % grid
            let dy = Double(max(r, grid - 1 - r)), dx = Double(max(c, grid - 1 - c))
            total += (dx * dx + dy * dy).squareRoot() * scale
        }
        return total / Double(max(1, patches))
    }

    /// Mean entropy and mean distance over the query patches of one head.
    /// probs: (T, T) softmax over all tokens of one head, T = prefix + P.
    public func headMeans(_ probs: UnsafePointer<Float>) -> (entropy: Double, distance: Double) {
        let p = patches, t = prefix + p
        var entropySum = 0.0, distanceSum = 0.0
        distance.withUnsafeBufferPointer { dist in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * p) { scratch in
                let avx2 = CPUKernels.avx2
                for q in 0..<p {
                    let row = probs + (prefix + q) * t + prefix
                    let inv = 1 / sum(row, p)
                    let drow = dist.baseAddress! + q * p
                    let (e, d) = avx2 ? entropyDistanceAVX2(row, scale: inv, drow, p)
                                      : entropyDistanceTerms(row, scale: inv, drow, p, scratch: scratch.baseAddress!)
                    entropySum -= Double(e)
                    distanceSum += Double(d)
                }
            }
        }
        return (entropySum / Double(p), distanceSum / Double(p))
    }
}

/// One minibatch's attention statistics: per (layer, head) the sums over its images of the
/// per-image means, and with `perImage` every image's values.
public struct AttentionBatch: Sendable, Equatable {
    public var index: Int
    public var size: Int
    /// (L, H): Σ over images of the mean entropy / mean distance.
    public var entropySums: [Double]
    public var distanceSums: [Double]
    /// (size, L, H) per image, or empty.
    public var entropies: [Double]
    public var distances: [Double]

    public init(index: Int, size: Int, entropySums: [Double], distanceSums: [Double],
                entropies: [Double] = [], distances: [Double] = []) {
        self.index = index; self.size = size
        self.entropySums = entropySums; self.distanceSums = distanceSums
        self.entropies = entropies; self.distances = distances
    }
}

/// Collects one batch's statistics from the engine's attention taps. The engine calls `add`
/// concurrently for different images; each image writes its own slots, and `finish` sums them
/// in image order, so the result does not depend on thread timing.
public final class AttentionCollector {
    public let geometry: AttentionGeometry
    public let layers: Int
    public let heads: Int
    public let perImage: Bool
    private var index = 0, size = 0
    /// (size, L, H) per-image means. Raw storage: `add` writes disjoint slots from several
    /// threads at once, which Swift arrays (with their exclusivity checks) do not allow.
    private var entropies: UnsafeMutablePointer<Float64>?, distances: UnsafeMutablePointer<Float64>?
    private var capacity = 0

    public init(geometry: AttentionGeometry, layers: Int, heads: Int, perImage: Bool) {
        self.geometry = geometry
        self.layers = layers
        self.heads = heads
        self.perImage = perImage
    }

    deinit {
        entropies?.deallocate()
        distances?.deallocate()
    }

    public func begin(index: Int, size: Int) {
        self.index = index
        self.size = size
        let n = max(1, size * layers * heads)
        if n > capacity {
            entropies?.deallocate(); distances?.deallocate()
            entropies = .allocate(capacity: n); distances = .allocate(capacity: n)
            capacity = n
        }
        entropies!.update(repeating: 0, count: n)
        distances!.update(repeating: 0, count: n)
    }

    /// probabilities: (H, T, T) of block `layer` for image `image` of the batch.
    public func add(layer: Int, image: Int, probabilities: UnsafePointer<Float>) {
        let t = geometry.prefix + geometry.patches
        let e = entropies!, d = distances!
        for h in 0..<heads {
            let m = geometry.headMeans(probabilities + h * t * t)
            let slot = (image * layers + layer) * heads + h
            e[slot] = m.entropy
            d[slot] = m.distance
        }
    }

    public func finish() -> AttentionBatch {
        let n = layers * heads
        let e = entropies!, d = distances!
        var es = [Double](repeating: 0, count: n), ds = es
        for img in 0..<size {
            for i in 0..<n { es[i] += e[img * n + i]; ds[i] += d[img * n + i] }
        }
        let all = size * n
        return AttentionBatch(index: index, size: size, entropySums: es, distanceSums: ds,
                              entropies: perImage ? Array(UnsafeBufferPointer(start: e, count: all)) : [],
                              distances: perImage ? Array(UnsafeBufferPointer(start: d, count: all)) : [])
    }
}

/// Per (layer, head) means over all images: sums in batch-index order divided by the image count.
public func attentionMeans(_ batches: [AttentionBatch], layers: Int, heads: Int) -> (
    entropy: [Double], distance: [Double]) {
    let sorted = batches.sorted { $0.index < $1.index }
    var e = [Double](repeating: 0, count: layers * heads), d = e
    var n = 0
    for b in sorted {
        n += b.size
        for i in 0..<e.count { e[i] += b.entropySums[i]; d[i] += b.distanceSums[i] }
    }
    return (e.map { $0 / Double(n) }, d.map { $0 / Double(n) })
}
