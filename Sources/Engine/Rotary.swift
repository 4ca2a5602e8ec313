import Foundation

/// 2-D rotary position embedding (RoPE) on q and k of the patch tokens, as timm builds it
/// (`layers/pos_embed_sincos.py`) for its `vit_*_rope_*` ViTs (`RotaryEmbeddingCat`; RoPE-Axial,
/// Heo et al. 2024, naver-ai/rope-vit) and DINOv3 (`RotaryEmbeddingDinoV3`, after
/// facebookresearch/dinov3's RopePositionEmbedding). Per head of width D: D/4 frequencies
/// ω_k = θ^(−4k/D); a patch turns its D/2 pairs by the angles [a·ω, b·ω], a and b its two
/// coordinates in the family's order; prefix tokens are not turned.
public struct RotarySpec: Equatable, Sendable {
    /// How a patch's grid position becomes a coordinate.
    public enum Coordinates: String, Sendable {
        /// The integer index 0, 1, …, g − 1 (timm's rope ViTs).
        case index
        /// 2π·(2(i + ½)/g − 1): the patch centre, normalised to [−1, 1] (DINOv3), times 2π.
        case centered
    }
    /// The frequencies' base θ (100 for timm's `*_rope_224` and DINOv3).
    public var theta: Double
    public var coordinates: Coordinates
    /// Whether the first half of the frequencies follow the column (x; timm's 'xy' indexing) or
    /// the row (y; 'ij').
    public var columnFirst: Bool
    /// Pairs (i, i + D/2) (`rotate_half`, DINOv3) instead of interleaved (2i, 2i + 1).
    public var halfSplit: Bool
    /// Integer coordinates rescaled so that the run's grid spans this one's (timm's `ref_feat_shape`,
    /// EVA's scheme): i·r/g. nil: not rescaled.
    public var referenceGrid: Int?
    /// Added to the integer coordinates before any rescaling (timm's `grid_offset`: 1 for PE,
    /// whose class token takes position 0).
    public var offset: Double
    /// Learned frequencies, one set per block and head (timm's `rope_mixed`, RoPE-Mixed of
    /// naver-ai/rope-vit): the checkpoint's `rope.freqs` [2, depth, H, D/2] turn pair i of head h in
    /// block l by x·f[0, l, h, i] + y·f[1, l, h, i]; θ is then unused.
    public var learned = false

    public init(theta: Double, coordinates: Coordinates = .index, columnFirst: Bool = true, halfSplit: Bool = false,
                referenceGrid: Int? = nil, offset: Double = 0) {
        (self.theta, self.coordinates, self.columnFirst, self.halfSplit) = (theta, coordinates, columnFirst, halfSplit)
        (self.referenceGrid, self.offset) = (referenceGrid, offset)
    }

    /// timm's `vit_*_patch16_rope_224`: θ 100, integer coordinates, [x, y], interleaved pairs.
    public static let timmAxial = RotarySpec(theta: 100)
    /// DINOv3: θ 100, centred coordinates × 2π, [y, x], half-split pairs.
    public static let dinov3 = RotarySpec(theta: 100, coordinates: .centered, columnFirst: false, halfSplit: true)
    /// timm's `*_rope_reg*_gap_*`: θ 10⁴, integer [y, x] rescaled to the trained grid, interleaved.
    public static func timmRegGap(trainedGrid: Int) -> RotarySpec {
        RotarySpec(theta: 10_000, columnFirst: false, referenceGrid: trainedGrid)
    }

    /// timm's `vit_*_rope_mixed_*`: learned frequencies, integer [x, y] coordinates from 0,
    /// interleaved pairs.
    public static let timmMixed: RotarySpec = {
        var spec = RotarySpec(theta: 10)
        spec.learned = true
        return spec
    }()

    /// EVA-02 (timm's `eva02_*`, EVA-CLIP): θ 10⁴, integer [y, x] rescaled to the 16×16 grid of its
    /// 224 px pre-training (EVA's `pt_seq_len`, timm's `ref_feat_shape`), interleaved pairs.
    public static let eva02 = RotarySpec(theta: 10_000, columnFirst: false, referenceGrid: 16)
    /// Perception Encoder: θ 10⁴, [x, y], coordinates from 1 (the class token is position 0)
    /// rescaled to the trained grid, interleaved pairs.
    public static func perceptionEncoder(trainedGrid: Int) -> RotarySpec {
        RotarySpec(theta: 10_000, referenceGrid: trainedGrid, offset: 1)
    }

    /// The settings in one phrase, for `inspect`.
    public var summary: String {
        let order = columnFirst ? "[x, y]" : "[y, x]", pairs = halfSplit ? "half-split pairs" : "interleaved pairs"
        if learned {
            return "learned frequencies per block and head (rope.freqs), \(order), \(pairs), integer coordinates from 0"
        }
        let from = offset == offset.rounded() ? String(Int(offset)) : String(offset)
        var grid = coordinates == .index ? "integer coordinates from \(from)" : "centred coordinates in [−1, 1] × 2π"
        if let r = referenceGrid { grid += ", rescaled to a \(r)×\(r) grid" }
        return "θ = \(theta == theta.rounded() ? String(Int(theta)) : String(theta)), \(order), \(pairs), \(grid)"
    }

    /// A coordinate of grid position i of g.
    func coordinate(_ i: Int, of g: Int) -> Double {
        switch coordinates {
        case .index: return referenceGrid.map { (Double(i) + offset) * Double($0) / Double(g) } ?? Double(i) + offset
        case .centered: return 2 * Double.pi * (2 * (Double(i) + 0.5) / Double(g) - 1)
        }
    }

    /// cos and sin of every (patch, pair) angle of a g×g grid, row-major patches, D/2 pairs each.
    public func table(grid g: Int, headDim D: Int) -> RotaryTable {
        let bands = D / 4, pairs = D / 2
        let omega = (0..<bands).map { pow(theta, -4 * Double($0) / Double(D)) }
        var cos = [Float](repeating: 0, count: g * g * pairs), sin = cos
        for row in 0..<g {
            for col in 0..<g {
                let p = row * g + col
                let (first, second) = columnFirst ? (coordinate(col, of: g), coordinate(row, of: g))
                    : (coordinate(row, of: g), coordinate(col, of: g))
                for k in 0..<bands {
                    for (i, coordinate) in [(k, first), (bands + k, second)] {
                        let angle = coordinate * omega[k]
                        cos[p * pairs + i] = Float(Foundation.cos(angle))
                        sin[p * pairs + i] = Float(Foundation.sin(angle))
                    }
                }
            }
        }
        return RotaryTable(cos: cos, sin: sin, pairs: pairs, halfSplit: halfSplit)
    }

    /// The tables of every block: one shared by all blocks, or with learned frequencies
    /// ([2, depth, H, D/2], x's then y's) one per block, each head its own.
    public func tables(grid g: Int, headDim D: Int, heads H: Int, depth L: Int, frequencies: UnsafePointer<Float>?)
        -> [RotaryTable] {
        guard learned, let f = frequencies else { return Array(repeating: table(grid: g, headDim: D), count: L) }
        let pairs = D / 2, stride = L * H * pairs
        return (0..<L).map { l in
            var cos = [Float](repeating: 0, count: g * g * H * pairs), sin = cos
            for row in 0..<g {
                for col in 0..<g {
                    let (x, y) = columnFirst ? (coordinate(col, of: g), coordinate(row, of: g))
                        : (coordinate(row, of: g), coordinate(col, of: g))
                    for h in 0..<H {
                        let base = ((row * g + col) * H + h) * pairs, fb = (l * H + h) * pairs
                        for i in 0..<pairs {
                            // In float32, as timm computes the angles.
                            let angle = Double(Float(x) * f[fb + i] + Float(y) * f[stride + fb + i])
                            cos[base + i] = Float(Foundation.cos(angle))
                            sin[base + i] = Float(Foundation.sin(angle))
                        }
                    }
                }
            }
            return RotaryTable(cos: cos, sin: sin, pairs: pairs, halfSplit: halfSplit, heads: H)
        }
    }
}

/// The rotation of every patch position at the run's grid: (P, D/2) cos and sin, or (P, H, D/2)
/// when each head has its own (learned frequencies).
public struct RotaryTable: Sendable {
    public let cos: [Float], sin: [Float]
    let pairs: Int
    /// Pair i is (i, i + D/2), else (2i, 2i + 1).
    let halfSplit: Bool
    /// 1: one rotation for every head; H: one per head.
    var heads = 1
}

/// Turns q and k of the rows `rows` of a qkv buffer in place.  qkv: (rows, 3C), each row
/// [q | k | v] with the H heads of width D side by side; a row's token is row mod T, the
/// first `prefix` tokens of each image are left as they are. Pair i, (a, b), becomes
/// (a·cos − b·sin, b·cos + a·sin). `inverse` turns back (by −angle): the backward pass of the
/// rotation, which is orthogonal (dq = Rᵀ·dq′).
public func applyRotary(_ qkv: UnsafeMutablePointer<Float>, rows: Range<Int>, tokens T: Int, prefix: Int, dim C: Int,
                        heads H: Int, table: RotaryTable, inverse: Bool = false) {
    let D = C / H, pairs = table.pairs, direction: Float = inverse ? -1 : 1
    // Where pair i's two values sit in a head.
    let (stride, offset) = table.halfSplit ? (1, pairs) : (2, 1)
    table.cos.withUnsafeBufferPointer { cosBuffer in
        table.sin.withUnsafeBufferPointer { sinBuffer in
            guard let cs = cosBuffer.baseAddress, let sn = sinBuffer.baseAddress else { return }
            for r in rows {
                let token = r % T
                guard token >= prefix else { continue }
                for part in 0..<2 {
                    let row = qkv + r * 3 * C + part * C
                    for h in 0..<H {
                        let at = ((token - prefix) * table.heads + (table.heads == 1 ? 0 : h)) * pairs
                        let c = cs + at, sines = sn + at
                        let v = row + h * D
                        for i in 0..<pairs {
                            let j = i * stride
                            let a = v[j], b = v[j + offset], s = direction * sines[i]
                            v[j] = a * c[i] - b * s
                            v[j + offset] = b * c[i] + a * s
                        }
                    }
                }
            }
        }
    }
}

/// dL/dangle of every turned pair of `rows`, added into `out` (P, H, D/2): with (a′, b′) a pair as
/// turned (in qkv) and (da′, db′) the loss's gradient with respect to it, dL/dangle = a′·db′ − b′·da′
/// (d(a′, b′)/dangle = (−b′, a′)); q's and k's pairs both count. For learned frequencies, whose
/// gradient is then Σ_p x(p)·dL/dangle and Σ_p y(p)·dL/dangle.
public func rotaryAngleGradients(_ qkv: UnsafePointer<Float>, _ dqkv: UnsafePointer<Float>, rows: Range<Int>,
                                 tokens T: Int, prefix: Int, dim C: Int, heads H: Int, halfSplit: Bool,
                                 into out: UnsafeMutablePointer<Double>) {
    let D = C / H, pairs = D / 2
    let (stride, offset) = halfSplit ? (1, pairs) : (2, 1)
    for r in rows {
        let token = r % T
        guard token >= prefix else { continue }
        for part in 0..<2 {
            let v = qkv + r * 3 * C + part * C, d = dqkv + r * 3 * C + part * C
            for h in 0..<H {
                let o = out + ((token - prefix) * H + h) * pairs
                for i in 0..<pairs {
                    let j = h * D + i * stride
                    o[i] += Double(v[j] * d[j + offset] - v[j + offset] * d[j])
                }
            }
        }
    }
}
