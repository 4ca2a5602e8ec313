/// The tensor names of a ViT under timm's naming: every layout is mapped onto them, the engine
/// loads by them, the training module saves under them. Spelled once, here.
public enum ViTKeys {
    public static let classToken = "cls_token"
    /// DeiT's distillation token (a second prefix token).
    public static let distillationToken = "dist_token"
    public static let positions = "pos_embed"
    /// Register tokens (DINOv2 with registers): prefix tokens after the class token, usually
    /// without a position embedding.
    public static let registerTokens = "reg_token"
    public static let patchWeight = "patch_embed.proj.weight"
    public static let patchBias = "patch_embed.proj.bias"
    /// CLIP's `ln_pre`: a LayerNorm after the embeddings, before the blocks.
    public static let preNormWeight = "norm_pre.weight"
    public static let preNormBias = "norm_pre.bias"
    /// AIMv2's norm on the patch embeddings, before the positions are added (RMSNorm: no bias).
    public static let patchNormWeight = "patch_embed.norm.weight"
    public static let patchNormBias = "patch_embed.norm.bias"
    /// Facebook DINOv3's rotary periods θ^(4k/D) (stored in bfloat16): checked, not used.
    public static let ropePeriods = "rope_embed.periods"
    /// timm's learned rotary frequencies (`rope_mixed`) [2, depth, H, D/2].
    public static let ropeFrequencies = "rope.freqs"
    /// EVA's rotary buffers at the trained grid (cos and sin of every angle, each repeated for its
    /// pair): checked against the rotation vitlens builds, not used.
    public static let ropeCos = "rope.freqs_cos", ropeSin = "rope.freqs_sin"
    /// BEiT's relative position bias shared by every block, and its index (checked, not used).
    public static let sharedRelativeTable = "rel_pos_bias.relative_position_bias_table"
    public static let sharedRelativeIndex = "rel_pos_bias.relative_position_index"

    /// The final norm: `norm` (on every token) or `fc_norm` (timm's global-pool models).
    public enum FinalNorm: String, Sendable, CaseIterable {
        case norm, fcNorm = "fc_norm"
        public var weight: String { rawValue + ".weight" }
        public var bias: String { rawValue + ".bias" }
    }

    /// The tensors of one pre-norm block, in the order of the computation.
    public enum BlockPart: String, Sendable, CaseIterable {
        case norm1Weight = "norm1.weight", norm1Bias = "norm1.bias"
        case qkvWeight = "attn.qkv.weight", qkvBias = "attn.qkv.bias"
        case projWeight = "attn.proj.weight", projBias = "attn.proj.bias"
        case norm2Weight = "norm2.weight", norm2Bias = "norm2.bias"
        case fc1Weight = "mlp.fc1.weight", fc1Bias = "mlp.fc1.bias"
        case fc2Weight = "mlp.fc2.weight", fc2Bias = "mlp.fc2.bias"
        /// A norm on the attention's output before the projection (EVA-02 CLIP's `inner_attn_ln`).
        case attentionNormWeight = "attn.norm.weight", attentionNormBias = "attn.norm.bias"
        /// A norm inside a SwiGLU MLP, after the gate (EVA-02's `ffn_ln`). With SwiGLU, fc1 holds
        /// the gate's rows, then the up projection's (timm's packed `fc1`, EVA's `w12`).
        case mlpNormWeight = "mlp.norm.weight", mlpNormBias = "mlp.norm.bias"
        /// LayerScale (DeiT III, DINOv2): x + γ₁·attn(…), x + γ₂·mlp(…).
        case layerScale1 = "ls1.gamma", layerScale2 = "ls2.gamma"
        /// BEiT's per-block relative position bias [(2g−1)² + 3, H], and the index it was saved
        /// with (checked against the one vitlens builds, never used as given).
        case relativePositionTable = "attn.relative_position_bias_table"
        case relativePositionIndex = "attn.relative_position_index"
    }

    /// `blocks.i.<part>`.
    public static func block(_ i: Int, _ part: BlockPart) -> String { "blocks.\(i).\(part.rawValue)" }

    /// The keys outside the blocks that the forward pass uses.
    public static let topLevel = Set([classToken, distillationToken, registerTokens, positions, patchWeight, patchBias,
                                      preNormWeight, preNormBias, patchNormWeight, patchNormBias, ropePeriods,
                                      ropeFrequencies, ropeCos, ropeSin,
                                      sharedRelativeTable, sharedRelativeIndex]
        + FinalNorm.allCases.flatMap { [$0.weight, $0.bias] })

    /// (i, part) for `blocks.i.<part>` of a known part.
    public static func blockPart(_ key: String) -> (Int, BlockPart)? {
        guard let (i, rest) = blockIndex(key), let part = BlockPart(rawValue: rest) else { return nil }
        return (i, part)
    }

    /// (i, "attn.qkv.weight") for `blocks.i.attn.qkv.weight`, whatever the part.
    public static func blockIndex(_ k: String) -> (Int, String)? {
        guard k.hasPrefix("blocks.") else { return nil }
        let rest = k.dropFirst("blocks.".count)
        guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { return nil }
        return (n, String(rest[rest.index(after: dot)...]))
    }
}
