import Checkpoint
import VitLensCore

/// The checkpoint key table, for the training module (which sees checkpoints only through the engine).
public typealias ViTKeys = Checkpoint.ViTKeys

/// One pre-norm transformer block's weights, as float32 tensors. Linear weights are (out, in).
public final class BlockWeights {
    public let norm1W, norm1B: Tensor     // (C)
    public let qkvW, qkvB: Tensor         // (3C, C), (3C)
    public let projW, projB: Tensor       // (C, C), (C)
    public let norm2W, norm2B: Tensor     // (C)
    public let fc1W, fc1B: Tensor         // (F, C), (F)
    public let fc2W, fc2B: Tensor         // (C, F), (C)
    /// LayerScale γ₁, γ₂ (C), or nil: the branches are added unscaled.
    public let ls1, ls2: Tensor?
    /// The block's position in the model (0-based).
    public let index: Int

    init(_ get: (String, [Int]) throws -> Tensor, _ i: Int, _ c: ViTConfig) throws {
        let C = c.dim, F = c.mlpHidden
        index = i
        func part(_ p: ViTKeys.BlockPart, _ shape: [Int]) throws -> Tensor { try get(ViTKeys.block(i, p), shape) }
        norm1W = try part(.norm1Weight, [C]); norm1B = try part(.norm1Bias, [C])
        qkvW = try part(.qkvWeight, [3 * C, C])
        qkvB = c.qkvBias ? try part(.qkvBias, [3 * C]) : Tensor(shape: [3 * C])
        projW = try part(.projWeight, [C, C]); projB = try part(.projBias, [C])
        norm2W = try part(.norm2Weight, [C]); norm2B = try part(.norm2Bias, [C])
        fc1W = try part(.fc1Weight, [F, C]); fc1B = try part(.fc1Bias, [F])
        fc2W = try part(.fc2Weight, [C, F]); fc2B = try part(.fc2Bias, [C])
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

    /// The name table: every tensor the engine uses, with the shape it must have.
    public init(checkpoint: LoadedCheckpoint, config c: ViTConfig) throws {
        config = c
        let t = checkpoint.tensors
        func get(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard let raw = t[name] else { throw CheckpointError.missingTensor(name) }
            guard raw.shape == shape else { throw CheckpointError.badShape(tensor: name, expected: shape, got: raw.shape) }
            let v = try raw.floats(name: name)
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw CheckpointError.nonFinite(tensor: name, index: bad, value: v[bad])
            }
            return Tensor(shape: shape, values: v)
        }
        let C = c.dim, p = c.patch
        let pw = try get(ViTKeys.patchWeight, [C, 3, p, p])
        patchW = Tensor(shape: [C, 3 * p * p], values: pw.array)
        // CLIP's patch convolution has no bias: zeros (only there; elsewhere a missing bias is an error).
        patchB = c.preNorm && t[ViTKeys.patchBias] == nil ? Tensor(shape: [C]) : try get(ViTKeys.patchBias, [C])
        if c.preNorm {
            preNormW = try get(ViTKeys.preNormWeight, [C]); preNormB = try get(ViTKeys.preNormBias, [C])
        } else {
            preNormW = nil; preNormB = nil
        }
        let cls = try get(ViTKeys.classToken, [1, 1, C])
        let pre = Tensor(shape: [c.prefixTokens, C])
        pre.data.update(from: cls.data, count: C)
        if c.registers > 0 {
            // [class token, registers…] as timm orders them.
            let reg = try get(ViTKeys.registerTokens, [1, c.registers, C])
            (pre.data + C).update(from: reg.data, count: c.registers * C)
        } else if c.prefixTokens == 2 {
            let dist = try get(ViTKeys.distillationToken, [1, 1, C])
            (pre.data + C).update(from: dist.data, count: C)
        }
        prefix = pre
        let gridOld = c.grid
        let posOld = try get(ViTKeys.positions, [1, c.positionSlots + gridOld * gridOld, C])
        // Prefix tokens without a position row get zeros: x = prefix + pos stays one formula.
        let posFull = Tensor(shape: [c.prefixTokens + gridOld * gridOld, C])
        posFull.data.update(from: posOld.data, count: c.positionSlots * C)
        (posFull.data + c.prefixTokens * C).update(from: posOld.data + c.positionSlots * C, count: gridOld * gridOld * C)
        pos = ViTWeights.resamplePositions(posFull, prefix: c.prefixTokens, dim: C, from: gridOld, to: c.runGrid)
        blocks = try (0..<c.depth).map { try BlockWeights(get, $0, c) }
        if let k = c.finalNorm.keys {
            normW = try get(k.weight, [C]); normB = try get(k.bias, [C])
        } else {
            normW = nil; normB = nil
        }
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
