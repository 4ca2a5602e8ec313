import Foundation
import VitLensCore

/// How attention rollout combines a block's heads into one matrix.
public enum HeadFusion: String, Sendable, CaseIterable {
    case mean, max, min
}

/// Where each map of `vitlens maps` comes from in one image's attention (docs/reference.md, "`vitlens maps`"; Abnar &
/// Zuidema 2020).
///
/// Class attention: per block and head, the class token's softmax probabilities over the patch
/// keys, as the model computed them (not renormalised over the patches); a model without a class
/// token gives the mean over the patch queries instead.
///
/// Attention rollout (Abnar & Zuidema 2020): per block Ā = the heads fused (mean, max or min,
/// element by element) over all T tokens; optionally the smallest ⌊F·T⌋ entries of each row of
/// Ā set to 0 (ties: the lower key index first); A = (Ā + I)/2 with each row divided by its own
/// sum; R = A_L ⋯ A_1 (float64). The map is the class token's row of R over the patch columns
/// (no class token: the mean of the patch rows). Register and distillation tokens take part in
/// the product like any token; only the map is over the patches.
///
/// One instance per image; blocks are added in order 1…L.
public final class AttentionMaps {
    public let tokens: Int
    public let prefix: Int
    public let heads: Int
    public let classToken: Bool
    public let fusion: HeadFusion
    public let discard: Double
    /// R so far (T, T), float64; and the next product's scratch.
    private var r: [Double], next: [Double], a: [Double]
    private var blocks = 0

    public init(tokens: Int, prefix: Int, heads: Int, classToken: Bool, fusion: HeadFusion, discard: Double) {
        precondition(discard >= 0 && discard < 1, "discard must be in [0, 1)")
        (self.tokens, self.prefix, self.heads, self.classToken, self.fusion, self.discard) = (
            tokens, prefix, heads, classToken, fusion, discard)
        r = [Double](repeating: 0, count: tokens * tokens)
        for i in 0..<tokens { r[i * tokens + i] = 1 }
        next = r
        a = r
    }

    public var patches: Int { tokens - prefix }

    /// Class attention of one block: (H, P) into `out`. probabilities: (H, T, T).
    public func classAttention(_ p: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let T = tokens, P = patches
        for h in 0..<heads {
            let head = p + h * T * T, o = out + h * P
            if classToken {
                for k in 0..<P { o[k] = head[prefix + k] }
            } else {
                for k in 0..<P {
                    var s = 0.0
                    for q in 0..<P { s += Double(head[(prefix + q) * T + prefix + k]) }
                    o[k] = Float(s / Double(P))
                }
            }
        }
    }

    /// Multiplies the next block's A into R. probabilities: (H, T, T) of block `blocks + 1`.
    public func addBlock(_ p: UnsafePointer<Float>) {
        let T = tokens, H = heads
        a.withUnsafeMutableBufferPointer { ab in
            let a = ab.baseAddress!
            // Ā: the heads fused.
            for i in 0..<(T * T) {
                switch fusion {
                case .mean:
                    var s = 0.0
                    for h in 0..<H { s += Double(p[h * T * T + i]) }
                    a[i] = s / Double(H)
                case .max:
                    var m = Double(p[i])
                    for h in 1..<max(1, H) { m = Swift.max(m, Double(p[h * T * T + i])) }
                    a[i] = m
                case .min:
                    var m = Double(p[i])
                    for h in 1..<max(1, H) { m = Swift.min(m, Double(p[h * T * T + i])) }
                    a[i] = m
                }
            }
            let drop = Int((discard * Double(T)).rounded(.down))
            var order = [Int](0..<T)
            for i in 0..<T {
                let row = a + i * T
                if drop > 0 {
                    order.sort { row[$0] != row[$1] ? row[$0] < row[$1] : $0 < $1 }
                    for j in order.prefix(drop) { row[j] = 0 }
                    for j in 0..<T { order[j] = j }
                }
                row[i] += 1
                var s = 0.0
                for j in 0..<T { s += row[j] }  // (Ā + I)/2 renormalised: the halving cancels
                for j in 0..<T { row[j] /= s }
            }
            r.withUnsafeBufferPointer { rb in
                next.withUnsafeMutableBufferPointer { nb in
                    dgemm(m: T, n: T, k: T, a: a, lda: T, b: rb.baseAddress!, ldb: T, c: nb.baseAddress!, ldc: T)
                }
            }
        }
        swap(&r, &next)
        blocks += 1
    }

    /// The rollout map over the patches: (P) in row-major grid order.
    public var rollout: [Double] {
        let T = tokens, P = patches
        if classToken { return (0..<P).map { r[prefix + $0] } }
        return (0..<P).map { k in
            var s = 0.0
            for q in 0..<P { s += r[(prefix + q) * T + prefix + k] }
            return s / Double(P)
        }
    }

    public var blocksAdded: Int { blocks }
}

/// A g×g map resampled to size×size bilinearly with half-pixel centres (PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)`; edges clamped).
public func upsampleBilinear(_ map: [Double], grid g: Int, size: Int) -> [Double] {
    var out = [Double](repeating: 0, count: size * size)
    let s = Double(g) / Double(size)
    for y in 0..<size {
        let fy = max(0, (Double(y) + 0.5) * s - 0.5)
        let y0 = min(g - 1, Int(fy)), y1 = min(g - 1, y0 + 1), wy = fy - Double(y0)
        for x in 0..<size {
            let fx = max(0, (Double(x) + 0.5) * s - 0.5)
            let x0 = min(g - 1, Int(fx)), x1 = min(g - 1, x0 + 1), wx = fx - Double(x0)
            let top = map[y0 * g + x0] * (1 - wx) + map[y0 * g + x1] * wx
            let bottom = map[y1 * g + x0] * (1 - wx) + map[y1 * g + x1] * wx
            out[y * size + x] = top * (1 - wy) + bottom * wy
        }
    }
    return out
}
