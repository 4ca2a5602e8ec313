import Checkpoint
import VitLensCore

/// One pre-norm transformer block's weights, as float32 tensors. Linear weights are (out, in).
public final class BlockWeights {
    public let norm1W, norm1B: Tensor     // (C)
    public let qkvW, qkvB: Tensor         // (3C, C), (3C)
    public let projW, projB: Tensor       // (C, C), (C)
    public let norm2W, norm2B: Tensor     // (C)
    public let fc1W, fc1B: Tensor         // (F, C), (F)
    public let fc2W, fc2B: Tensor         // (C, F), (C)

    init(_ get: (String, [Int]) throws -> Tensor, _ i: Int, _ c: ViTConfig) throws {
        let p = "blocks.\(i)."
        let C = c.dim, F = c.mlpHidden
        norm1W = try get(p + "norm1.weight", [C]); norm1B = try get(p + "norm1.bias", [C])
        qkvW = try get(p + "attn.qkv.weight", [3 * C, C])
        qkvB = c.qkvBias ? try get(p + "attn.qkv.bias", [3 * C]) : Tensor(shape: [3 * C])
        projW = try get(p + "attn.proj.weight", [C, C]); projB = try get(p + "attn.proj.bias", [C])
        norm2W = try get(p + "norm2.weight", [C]); norm2B = try get(p + "norm2.bias", [C])
        fc1W = try get(p + "mlp.fc1.weight", [F, C]); fc1B = try get(p + "mlp.fc1.bias", [F])
        fc2W = try get(p + "mlp.fc2.weight", [C, F]); fc2B = try get(p + "mlp.fc2.bias", [C])
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
        let pw = try get("patch_embed.proj.weight", [C, 3, p, p])
        patchW = Tensor(shape: [C, 3 * p * p], values: pw.array)
        patchB = try get("patch_embed.proj.bias", [C])
        let cls = try get("cls_token", [1, 1, C])
        let pre = Tensor(shape: [c.prefixTokens, C])
        pre.data.update(from: cls.data, count: C)
        if c.prefixTokens == 2 {
            let dist = try get("dist_token", [1, 1, C])
            (pre.data + C).update(from: dist.data, count: C)
        }
        prefix = pre
        let gridOld = c.grid
        let posOld = try get("pos_embed", [1, c.prefixTokens + gridOld * gridOld, C])
        pos = ViTWeights.resamplePositions(posOld, prefix: c.prefixTokens, dim: C, from: gridOld, to: c.runGrid)
        blocks = try (0..<c.depth).map { try BlockWeights(get, $0, c) }
        switch c.finalNorm {
        case .norm: normW = try get("norm.weight", [C]); normB = try get("norm.bias", [C])
        case .fcNorm: normW = try get("fc_norm.weight", [C]); normB = try get("fc_norm.bias", [C])
        case .none: normW = nil; normB = nil
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
