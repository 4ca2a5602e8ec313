import Foundation
import VitLensCore

/// Where the weights come from: the engine asks it for tensors by timm's names (ViTKeys) and the
/// shapes they must have; it names what is wrong in its own terms (a checkpoint file: Families).
public protocol WeightSource {
    /// The file, for messages.
    var path: String { get }
    /// Whether a tensor of this name exists.
    func has(_ name: String) -> Bool
    /// The tensor as float32 of exactly `shape`, every value finite; throws naming it otherwise.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
    /// A stored integer tensor of exactly `shape` (BEiT's relative position index), nil if absent.
    func integers(_ name: String, shape: [Int]) throws -> [Int]?
}


/// One pre-norm transformer block's weights, as float32 tensors. Linear weights are (out, in).
public final class BlockWeights {
    public let norm1W, norm1B: Tensor     // (C)
    public let qkvW, qkvB: Tensor         // (3C, C), (3C)
    public let projW, projB: Tensor       // (C, C), (C)
    public let norm2W, norm2B: Tensor     // (C)
    public let fc1W, fc1B: Tensor         // (F, C), (F); with SwiGLU (2F, C), (2F): gate rows, then up rows
    public let fc2W, fc2B: Tensor         // (C, F), (C)
    /// The norm on the attention's output (C) and on SwiGLU's hidden layer (F), or nil.
    public let attnNormW, attnNormB, mlpNormW, mlpNormB: Tensor?
    /// LayerScale γ₁, γ₂ (C), or nil: the branches are added unscaled.
    public let ls1, ls2: Tensor?
    /// BEiT's relative position bias added to every head's logits, (H, T, ld) with ld = T rounded
    /// up to 16 (zeros after T), or nil; blocks of a shared table share one tensor.
    public let relativeBias: Tensor?
    /// The block's own relative position table [(2g−1)² + 3, H] (nil with a shared one only).
    public let relativeTable: Tensor?
    /// The block's position in the model (0-based).
    public let index: Int

    init(_ get: (String, [Int]) throws -> Tensor, _ i: Int, _ c: ViTConfig, relativeBias: Tensor?,
        relativeTable: Tensor?) throws {
        let C = c.dim, F = c.mlpHidden
        index = i
        self.relativeBias = relativeBias
        self.relativeTable = relativeTable
        func part(_ p: ViTKeys.BlockPart, _ shape: [Int]) throws -> Tensor { try get(ViTKeys.block(i, p), shape) }
        // Biases a model does not have are zeros (RMSNorm's, AIMv2's linear layers').
        func part(_ p: ViTKeys.BlockPart, _ shape: [Int], if present: Bool) throws -> Tensor {
            present ? try part(p, shape) : Tensor(shape: shape)
        }
        let normBias = c.norm == .layerNorm, up = c.swiGLU ? 2 * F : F
        norm1W = try part(.norm1Weight, [C]); norm1B = try part(.norm1Bias, [C], if: normBias)
        qkvW = try part(.qkvWeight, [3 * C, C])
        qkvB = try part(.qkvBias, [3 * C], if: c.qkvBias)
        projW = try part(.projWeight, [C, C]); projB = try part(.projBias, [C], if: c.projectionBias)
        norm2W = try part(.norm2Weight, [C]); norm2B = try part(.norm2Bias, [C], if: normBias)
        fc1W = try part(.fc1Weight, [up, C]); fc1B = try part(.fc1Bias, [up], if: c.mlpBias)
        fc2W = try part(.fc2Weight, [C, F]); fc2B = try part(.fc2Bias, [C], if: c.mlpBias)
        attnNormW = c.attentionNorm ? try part(.attentionNormWeight, [C]) : nil
        attnNormB = c.attentionNorm ? try part(.attentionNormBias, [C], if: normBias) : nil
        mlpNormW = c.mlpNorm ? try part(.mlpNormWeight, [F]) : nil
        mlpNormB = c.mlpNorm ? try part(.mlpNormBias, [F], if: normBias) : nil
        ls1 = c.layerScale ? try part(.layerScale1, [C]) : nil
        ls2 = c.layerScale ? try part(.layerScale2, [C]) : nil
    }
}

/// All weights of the forward pass, checked against the name table and converted to float32.
public final class ViTWeights {
    public let config: ViTConfig
    public let patchW: Tensor    // (C, 3·p·p), the conv kernel flattened in (channel, ky, kx) order
    public let patchB: Tensor    // (C)
    public let prefix: Tensor    // (prefixTokens, C): class token, then distillation token
    public let pos: Tensor       // (prefixTokens + P, C) at the run image size
    public let blocks: [BlockWeights]
    public let normW, normB: Tensor?  // (C): `norm` or `fc_norm`, nil when the model has neither
    public let preNormW, preNormB: Tensor?  // (C): CLIP's `ln_pre`, nil elsewhere
    public let patchNormW, patchNormB: Tensor?  // (C): AIMv2's norm on the patch embeddings, nil elsewhere
    /// BEiT's relative position table shared by every block [(2g−1)² + 3, H], or nil.
    public let sharedRelativeTable: Tensor?
    /// Learned rotary frequencies [2, depth, H, D/2] (timm's `rope_mixed`), or nil.
    public let rotaryFrequencies: Tensor?

    /// The rotation of q and k in every block at the run's grid (empty without rotary positions).
    public func rotaryTables(depth: Int? = nil, frequencies: Tensor? = nil) -> [RotaryTable] {
        let c = config
        return c.rotary?.tables(grid: c.runGrid, headDim: c.headDim, heads: c.heads, depth: depth ?? c.depth,
                                frequencies: (frequencies ?? rotaryFrequencies).map { UnsafePointer($0.data) }) ?? []
    }
    /// Row stride of the blocks' relative position bias (T rounded up to the attention kernel's 16).
    public var relativeBiasStride: Int { (config.tokens + 15) / 16 * 16 }

    /// The name table: every tensor the engine uses, with the shape it must have.
    public init(source: WeightSource, config c: ViTConfig) throws {
        config = c
        func get(_ name: String, _ shape: [Int]) throws -> Tensor { try source.tensor(name, shape: shape) }
        let C = c.dim, p = c.patch
        let pw = try get(ViTKeys.patchWeight, [C, 3, p, p])
        patchW = Tensor(shape: [C, 3 * p * p], values: pw.array)
        // CLIP's patch convolution has no bias: zeros (only there; elsewhere a missing bias is an error).
        patchB = c.preNorm && !source.has(ViTKeys.patchBias) ? Tensor(shape: [C]) : try get(ViTKeys.patchBias, [C])
        if c.preNorm {
            preNormW = try get(ViTKeys.preNormWeight, [C]); preNormB = try get(ViTKeys.preNormBias, [C])
        } else {
            preNormW = nil; preNormB = nil
        }
        if c.patchNorm {
            patchNormW = try get(ViTKeys.patchNormWeight, [C])
            patchNormB = c.norm == .layerNorm ? try get(ViTKeys.patchNormBias, [C]) : Tensor(shape: [C])
        } else {
            patchNormW = nil; patchNormB = nil
        }
        let pre = Tensor(shape: [c.prefixTokens, C])
        let first = c.classToken ? 1 : 0
        if c.classToken {
            let cls = try get(ViTKeys.classToken, [1, 1, C])
            pre.data.update(from: cls.data, count: C)
        }
        if c.registers > 0 {
            // [class token, registers…] as timm orders them.
            let reg = try get(ViTKeys.registerTokens, [1, c.registers, C])
            (pre.data + first * C).update(from: reg.data, count: c.registers * C)
        } else if c.prefixTokens == first + 1 {
            let dist = try get(ViTKeys.distillationToken, [1, 1, C])
            (pre.data + first * C).update(from: dist.data, count: C)
        }
        prefix = pre
        let gridOld = c.grid
        // Without an absolute position embedding (BEiT) the positions are zeros.
        let posOld = c.absolutePositions ? try get(ViTKeys.positions, [1, c.positionSlots + gridOld * gridOld, C])
            : Tensor(shape: [1, c.positionSlots + gridOld * gridOld, C])
        // Prefix tokens without a position row get zeros: x = prefix + pos stays one formula.
        let posFull = Tensor(shape: [c.prefixTokens + gridOld * gridOld, C])
        posFull.data.update(from: posOld.data, count: c.positionSlots * C)
        (posFull.data + c.prefixTokens * C).update(
            from: posOld.data + c.positionSlots * C, count: gridOld * gridOld * C)
        // SigLIP 2 resizes its table as transformers does; every other family as timm does.
        let resample = c.positionResampling == .bilinearAntialiased
            ? ViTWeights.resamplePositionsBilinear : ViTWeights.resamplePositions
        pos = resample(posFull, c.prefixTokens, C, gridOld, c.runGrid)
        // BEiT's relative position bias, gathered once per block into (H, T, ld) at the run grid
        // (which the config keeps equal to the tables' grid).
        var shared: [Float]?, biases: [Tensor?] = Array(repeating: nil, count: c.depth), tables: [Tensor?] = biases
        if c.relativePositionBias {
            guard c.classToken, c.prefixTokens == 1 else {
                throw EngineError.architecture(
                    "\(source.path): relative position bias needs exactly one class token")
            }
            // The stored index is the checkpoint grid's; the tables are resized to the run grid.
            let stored0 = ViTWeights.relativePositionIndex(grid: c.grid), T0 = c.grid * c.grid + 1
            let index = ViTWeights.relativePositionIndex(grid: c.runGrid)
            let rows = (2 * c.grid - 1) * (2 * c.grid - 1) + 3, T = c.tokens
            func gather(_ table: String, _ stored: String) throws -> [Float] {
                let values = try get(table, [rows, c.heads])
                if let given = try source.integers(stored, shape: [T0, T0]) {
                    if let k = given.indices.first(where: { given[$0] != stored0[$0] }) {
                        throw EngineError.storedValueMismatch(
                            path: source.path,
                            what: "\(stored) differs from the index BEiT builds at (\(k / T0), \(k % T0)): "
                            + "\(given[k]) stored, \(stored0[k]) built")
                    }
                }
                return ViTWeights.resizeRelativeTable(values.array, heads: c.heads, from: c.grid, to: c.runGrid)
            }
            if c.relativeSharedTable { shared = try gather(ViTKeys.sharedRelativeTable, ViTKeys.sharedRelativeIndex) }
            let ld = (T + 15) / 16 * 16
            func expand(_ tables: [[Float]]) -> Tensor {
                let out = Tensor(shape: [c.heads, T, ld])
                for h in 0..<c.heads {
                    for i in 0..<T {
                        let row = out.data + (h * T + i) * ld
                        for j in 0..<T {
                            let r = index[i * T + j] * c.heads + h
                            row[j] = tables.reduce(0) { $0 + $1[r] }
                        }
                    }
                }
                return out
            }
            let sharedBias = shared.map { expand([$0]) }
            for i in 0..<c.depth {
                if c.relativeBlockTables {
                    let own = try gather(
                        ViTKeys.block(i, .relativePositionTable), ViTKeys.block(i, .relativePositionIndex))
                    biases[i] = expand([own] + (shared.map { [$0] } ?? []))
                    tables[i] = Tensor(shape: [own.count / c.heads, c.heads], values: own)
                } else {
                    biases[i] = sharedBias
                }
            }
        }
        sharedRelativeTable = shared.map { Tensor(shape: [$0.count / c.heads, c.heads], values: $0) }
        rotaryFrequencies = c.rotary?.learned == true
            ? try get(ViTKeys.ropeFrequencies, [2, c.depth, c.heads, c.headDim / 2]) : nil
        blocks = try (0..<c.depth).map {
            try BlockWeights(get, $0, c, relativeBias: biases[$0], relativeTable: tables[$0]) }
        if let k = c.finalNorm.keys {
            normW = try get(k.weight, [C]); normB = c.norm == .layerNorm ? try get(k.bias, [C]) : Tensor(shape: [C])
        } else {
            normW = nil; normB = nil
        }
    }

    /// BEiT's relative position index for a g×g grid after one class token, row-major (T, T):
    /// patch i → patch j gets (Δy + g − 1)·(2g − 1) + (Δx + g − 1) with Δ = position(i) − position(j);
    /// the last three table rows are class → patch, patch → class and class → class.
    public static func relativePositionIndex(grid g: Int) -> [Int] {
        let T = g * g + 1, n = (2 * g - 1) * (2 * g - 1) + 3
        var index = [Int](repeating: 0, count: T * T)
        for i in 0..<T {
            for j in 0..<T {
                if i == 0 && j == 0 { index[0] = n - 1 }
                else if i == 0 { index[j] = n - 3 }
                else if j == 0 { index[i * T] = n - 2 }
                else {
                    let (yi, xi) = ((i - 1) / g, (i - 1) % g), (yj, xj) = ((j - 1) / g, (j - 1) % g)
                    index[i * T + j] = (yi - yj + g - 1) * (2 * g - 1) + (xi - xj + g - 1)
                }
            }
        }
        return index
    }

    /// A relative position table [(2g₀−1)² + 3, H] resized to a g₁×g₁ grid as timm resizes one when
    /// a BEiT checkpoint is loaded at another size (`resize_rel_pos_bias_table`, its default path
    /// without scipy): per head, the (2g₀−1)² offsets are placed at geometrically spaced coordinates
    /// ±(1, 1 + q, 1 + q + q², …) with q found by bisection so that they span ±(g₁ − 1), and the
    /// integer offsets −(g₁ − 1)…g₁ − 1 are read off by bilinear interpolation (clamped at the
    /// edges); the three class-token rows are kept.
    public static func resizeRelativeTable(_ table: [Float], heads H: Int, from g0: Int, to g1: Int) -> [Float] {
        guard g0 != g1 else { return table }
        let src = 2 * g0 - 1, dst = 2 * g1 - 1
        // timm's _calc: bisection on the ratio, then the cumulative offsets.
        var left = 1.01, right = 1.5, q = 0.0
        while right - left > 1e-6 {
            q = (left + right) / 2
            let gp = (1 - pow(q, Double(src / 2))) / (1 - q)
            if gp > Double(dst / 2) { right = q } else { left = q }
        }
        var dis: [Double] = [], cur = 1.0
        for i in 0..<(src / 2) { dis.append(cur); cur += pow(q, Double(i + 1)) }
        // torch.tensor of Python floats: float32 coordinates.
        let coords = (dis.reversed().map { -$0 } + [0] + dis).map { Double(Float($0)) }
        let half = dst / 2
        let targets = (0..<dst).map { Double($0 - half) }
        // Bilinear weights along one axis, as timm's RegularGridInterpolator computes them.
        func axis(_ x: Double) -> (Int, Int, Double, Double) {
            var r = coords.firstIndex { $0 >= x } ?? coords.count - 1
            r = min(r, coords.count - 1)
            let l = max(0, min(r - 1, coords.count - 1))
            var dl = max(0, x - coords[l]), dr = max(0, coords[r] - x)
            if dl == 0 && dr == 0 { (dl, dr) = (1, 1) }
            return (l, r, dl, dr)
        }
        let ax = targets.map(axis)
        var out = [Float](repeating: 0, count: (dst * dst + 3) * H)
        for h in 0..<H {
            for (iy, y) in ax.enumerated() {
                for (ix, x) in ax.enumerated() {
                    func v(_ a: Int, _ b: Int) -> Double { Double(table[(a * src + b) * H + h]) }
                    let num = v(y.0, x.0) * y.3 * x.3 + v(y.0, x.1) * y.3 * x.2 + v(y.1, x.0) * y.2 * x.3
                        + v(y.1, x.1) * y.2 * x.2
                    out[(iy * dst + ix) * H + h] = Float(num / ((y.2 + y.3) * (x.2 + x.3)))
                }
            }
            for e in 0..<3 { out[(dst * dst + e) * H + h] = table[(src * src + e) * H + h] }
        }
        return out
    }

    /// transformers' SigLIP 2 resize of the position table (`resize_positional_embeddings`,
    /// `F.interpolate(mode="bilinear", align_corners=False, antialias=True)`): per axis, output i
    /// takes the triangle weights max(0, 1 − |s − c|/w) of the source rows s, normalised, with
    /// c = (i + ½)·g₀/g₁ − ½ and w = max(1, g₀/g₁); the grid is their product. Prefix rows kept.
    static func resamplePositionsBilinear(_ pos: Tensor, prefix: Int, dim C: Int, from g0: Int, to g1: Int) -> Tensor {
        let out = Tensor(shape: [prefix + g1 * g1, C])
        out.data.update(from: pos.data, count: prefix * C)
        let scale = Double(g0) / Double(g1), support = max(scale, 1)
        let weights: [[Double]] = (0..<g1).map { i in
            let centre = (Double(i) + 0.5) * scale - 0.5
            let w = (0..<g0).map { max(0, 1 - abs(Double($0) - centre) / support) }
            let total = w.reduce(0, +)
            return w.map { $0 / total }
        }
        for oy in 0..<g1 {
            for ox in 0..<g1 {
                var acc = [Double](repeating: 0, count: C)
                for sy in 0..<g0 where weights[oy][sy] != 0 {
                    for sx in 0..<g0 where weights[ox][sx] != 0 {
                        let w = weights[oy][sy] * weights[ox][sx], row = pos.data + (prefix + sy * g0 + sx) * C
                        for ch in 0..<C { acc[ch] += w * Double(row[ch]) }
                    }
                }
                let dst = out.data + (prefix + oy * g1 + ox) * C
                for ch in 0..<C { dst[ch] = Float(acc[ch]) }
            }
        }
        return out
    }

    /// timm `resample_abs_pos_embed`: prefix rows kept, the patch grid resized with
    /// antialiased bicubic interpolation (timm's default when loading at another image size).
    static func resamplePositions(_ pos: Tensor, prefix: Int, dim C: Int, from g0: Int, to g1: Int) -> Tensor {
        let out = Tensor(shape: [prefix + g1 * g1, C])
        out.data.update(from: pos.data, count: prefix * C)
        if g0 == g1 {
            (out.data + prefix * C).update(from: pos.data + prefix * C, count: g0 * g0 * C)
            return out
        }
        // (g0·g0, C) → channel planes (C, g0, g0) → resize → back to (g1·g1, C).
        var planes = [Float](repeating: 0, count: C * g0 * g0)
        for i in 0..<(g0 * g0) { for ch in 0..<C { planes[ch * g0 * g0 + i] = pos.data[(prefix + i) * C + ch] } }
        let r = resampleBicubicFloat(planes, channels: C, inH: g0, inW: g0, outH: g1, outW: g1)
        for i in 0..<(g1 * g1) { for ch in 0..<C { out.data[(prefix + i) * C + ch] = r[ch * g1 * g1 + i] } }
        return out
    }
}
