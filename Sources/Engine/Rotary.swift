import Foundation

/// 2-D rotary position embedding (RoPE) on q and k of the patch tokens, as timm's
/// `RotaryEmbeddingCat` builds it for its `vit_*_rope_*` ViTs (RoPE-Axial, Heo et al. 2024,
/// naver-ai/rope-vit; timm `layers/pos_embed_sincos.py`): per head of width D, D/4 frequencies
/// ω_k = θ^(−k/(D/4)); a patch at column x and row y turns its D/2 pairs by the angles
/// [x·ω, y·ω] (x first: timm's 'xy' grid indexing; integer coordinates from 0), each pair
/// (2i, 2i+1) — interleaved — by out₂ᵢ = a·cos − b·sin, out₂ᵢ₊₁ = b·cos + a·sin. Prefix tokens
/// are not turned.
public struct RotarySpec: Equatable, Sendable {
    /// The frequencies' base θ (100 for timm's `*_rope_224`).
    public var theta: Double

    public init(theta: Double) { self.theta = theta }

    /// cos and sin of every (patch, pair) angle of a g×g grid, row-major patches, D/2 pairs each.
    public func table(grid g: Int, headDim D: Int) -> RotaryTable {
        let bands = D / 4, pairs = D / 2
        let omega = (0..<bands).map { pow(theta, -Double($0) / Double(bands)) }
        var cos = [Float](repeating: 0, count: g * g * pairs), sin = cos
        for row in 0..<g {
            for col in 0..<g {
                let p = row * g + col
                for k in 0..<bands {
                    for (i, coordinate) in [(k, col), (bands + k, row)] {
                        let angle = Double(coordinate) * omega[k]
                        cos[p * pairs + i] = Float(Foundation.cos(angle))
                        sin[p * pairs + i] = Float(Foundation.sin(angle))
                    }
                }
            }
        }
        return RotaryTable(cos: cos, sin: sin, pairs: pairs)
    }
}

/// The rotation of every patch position at the run's grid: (P, D/2) cos and sin.
public struct RotaryTable: Sendable {
    let cos: [Float], sin: [Float]
    let pairs: Int
}

/// Turns q and k of the rows `rows` of a qkv buffer in place.  qkv: (rows, 3C), each row
/// [q | k | v] with the H heads of width D side by side; a row's token is row mod T, the
/// first `prefix` tokens of each image are left as they are. `inverse` turns back (by −angle):
/// the backward pass of the rotation, which is orthogonal (dq = Rᵀ·dq′).
public func applyRotary(_ qkv: UnsafeMutablePointer<Float>, rows: Range<Int>, tokens T: Int, prefix: Int, dim C: Int,
                        heads H: Int, table: RotaryTable, inverse: Bool = false) {
    let D = C / H, pairs = table.pairs, direction: Float = inverse ? -1 : 1
    table.cos.withUnsafeBufferPointer { cosBuffer in
        table.sin.withUnsafeBufferPointer { sinBuffer in
            guard let cs = cosBuffer.baseAddress, let sn = sinBuffer.baseAddress else { return }
            for r in rows {
                let token = r % T
                guard token >= prefix else { continue }
                let c = cs + (token - prefix) * pairs, sines = sn + (token - prefix) * pairs
                for part in 0..<2 {
                    let row = qkv + r * 3 * C + part * C
                    for h in 0..<H {
                        let v = row + h * D
                        for i in 0..<pairs {
                            let a = v[2 * i], b = v[2 * i + 1], s = direction * sines[i]
                            v[2 * i] = a * c[i] - b * s
                            v[2 * i + 1] = b * c[i] + a * s
                        }
                    }
                }
            }
        }
    }
}
