import Foundation
import VitLensCore

public enum EngineError: Error, CustomStringConvertible {
    case architecture(String)
    case input(String)
    /// A precision this machine cannot run, and why.
    case precision(String)
    /// NaN or ±∞ in the residual stream: `at` 0 for the embeddings, i for block i's output.
    case nonFinite(model: String, at: Int, batch: Int)
    /// A head count that does not divide the embedding width, and where it came from.
    case headsDoNotDivide(heads: Int, dim: Int, source: ViTConfig.HeadsSource)
    /// A run image size that is not a whole number of patches.
    case imageSizeNotMultiple(size: Int, patch: Int)
    /// A head count that contradicts the relative position tables' columns.
    case headsContradictTable(heads: Int, source: ViTConfig.HeadsSource, table: Int)
    /// A stored value that contradicts what vitlens builds (BEiT's relative position index).
    case storedValueMismatch(path: String, what: String)

    public var description: String {
        switch self {
        case let .architecture(s): return s
        case let .input(s): return s
        case let .precision(s): return s
        case let .nonFinite(model, at, batch):
            let place = at == 0 ? "the patch + position embeddings" : "the output of block \(at)"
            return "\(model): non-finite activations (NaN or inf) in \(place), batch \(batch); the weights overflow "
                + "float32 on these images"
        case let .headsDoNotDivide(heads, dim, source):
            return "\(heads) heads (\(source.rawValue)) do not divide the embedding width \(dim)"
        case let .imageSizeNotMultiple(size, patch):
            return "image size \(size) is not a multiple of the patch size \(patch)"
        case let .storedValueMismatch(path, what): return "\(path): malformed: \(what)"
        case let .headsContradictTable(heads, source, table):
            return "\(heads) heads (\(source.rawValue)) contradict the relative position tables, which have "
                + "\(table) columns (one per head)"
        }
    }
}

/// The architecture of a ViT of any supported family, read from its tensors (and config.json).
public struct ViTConfig: Sendable, Equatable {
    public enum FinalNorm: String, Sendable {
        case norm, fcNorm = "fc_norm", none
        /// Its tensors' names (nil: no final norm).
        public var keys: ViTKeys.FinalNorm? { ViTKeys.FinalNorm(rawValue: rawValue) }
    }
    public enum HeadsSource: String, Sendable {
        case option = "given", metadata = "safetensors metadata num_heads", config = "config.json num_attention_heads"
        case convention = "default dim/64 (DeiT/ViT convention)"
        case table = "the relative position table's columns"
        case periods = "the rotary periods (a quarter of the head width)"
        case frequencies = "the learned rotary frequencies (one set per head)"
    }

    public var dim: Int
    public var depth: Int
    public var heads: Int
    public var headsSource: HeadsSource
    public var patch: Int
    /// Patch grid side of the checkpoint's position embedding.
    public var grid: Int
    public var mlpHidden: Int
    /// Class token (when the model has one), plus DeiT's distillation token or the register
    /// tokens when present.
    public var prefixTokens: Int
    /// Whether the sequence starts with a class token (SigLIP-style models have none).
    public var classToken = true
    /// Register tokens (DINOv2 with registers), part of the prefix tokens.
    public var registers = 0
    /// Rows of `pos_embed` before the patch grid: the prefix count (each prefix token has a
    /// position), 0 (none has one: DeiT III, timm's DINOv2 with registers), or with registers
    /// the class token's alone (Facebook's and Hugging Face's DINOv2 with registers).
    public var positionSlots = 1
    /// LayerScale: every block's branches are scaled by learned γ₁, γ₂ (DeiT III, DINOv2).
    public var layerScale = false
    /// CLIP's `ln_pre`: a LayerNorm on the embeddings before the first block.
    public var preNorm = false
    /// The MLP's activation.
    public enum Activation: String, Sendable {
        /// Exact-erf GELU, x·Φ(x).
        case gelu
        /// CLIP's QuickGELU, x·σ(1.702·x).
        case quickGelu = "quick_gelu"
        /// The tanh approximation, ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (SigLIP).
        case geluTanh = "gelu_pytorch_tanh"
        /// SiLU, x·σ(x): the gate of a SwiGLU MLP (EVA-02, AIMv2, DINOv3 S+/H+).
        case silu

        /// The names configs use: transformers' `hidden_act`, timm's `act_layer`.
        public init?(name: String) {
            switch name {
            case "gelu": self = .gelu
            case "quick_gelu", "quickgelu": self = .quickGelu
            case "gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu_fast": self = .geluTanh
            case "silu", "swish": self = .silu
            default: return nil
            }
        }
    }
    /// The architecture as the families have it — the combinations a type can hold are those some
    /// family has; the flags below are read-only views of it.
    ///
    /// Where positions come from: a learned table; rotary positions on q and k of the patches,
    /// alone or beside a table; BEiT's relative position bias (tables per block, one shared, or
    /// both), beside a table or not.
    public enum Positions: Equatable, Sendable {
        case absolute
        case rotary(RotarySpec, withTable: Bool)
        case relative(perBlock: Bool, shared: Bool, withTable: Bool)
    }
    public var positions = Positions.absolute
    /// The MLP: fc1, an activation, fc2; or SwiGLU — fc1 holds the gate's F rows then the up
    /// projection's, the hidden layer is silu(gate)·up (EVA-02, AIMv2, DINOv3 S+/H+), normed before
    /// fc2 where `innerNorm` (EVA-02's `ffn_ln`).
    public enum MLP: Equatable, Sendable {
        case plain(Activation)
        case swiGLU(innerNorm: Bool)
    }
    public var mlp = MLP.plain(.gelu)
    /// Which of q, k and v have a bias: all, q and v only (BEiT, EVA-02, DINOv3's masked k), none.
    public enum QKVBias: String, Sendable { case full, qv = "q and v", none }
    public var qkvBiases = QKVBias.full

    /// The MLP's activation (SiLU: SwiGLU's gate).
    public var activation: Activation {
        if case let .plain(a) = mlp { return a }
        return .silu
    }
    /// Where the activation came from (the tensors cannot tell exact from tanh GELU).
    public var activationSource = "family default"
    /// The family the model runs as, and where that came from (`--family`, metadata, or what
    /// made it evident).
    public var modelFamily: ModelFamily = .vit
    public var familySource = "the tensors"
    /// Rotary position embeddings on q and k of the patches, or none.
    public var rotary: RotarySpec? {
        if case let .rotary(spec, _) = positions { return spec }
        return nil
    }
    /// Where the checkpoint's image size came from when no position table gives it (rotary).
    public var imageSizeSource = "the position embedding"
    /// BEiT-style relative position bias: a table per block, one shared by every block, or both
    /// (added); the logits of every head get bias[index(i, j)] (BEiT, Bao et al. 2022; timm `beit.py`).
    public var relativeBlockTables: Bool {
        if case let .relative(perBlock, _, _) = positions { return perBlock }
        return false
    }
    public var relativeSharedTable: Bool {
        if case let .relative(_, shared, _) = positions { return shared }
        return false
    }
    public var relativePositionBias: Bool { relativeBlockTables || relativeSharedTable }
    /// Whether the checkpoint has an absolute position embedding (BEiT's may not).
    public var absolutePositions: Bool {
        switch positions {
        case .absolute: return true
        case let .rotary(_, withTable), let .relative(_, _, withTable): return withTable
        }
    }
    /// The blocks' (and the final) norm: LayerNorm, or RMSNorm with a weight only (AIMv2).
    public enum Norm: String, Sendable {
        case layerNorm = "LayerNorm"
        /// x / √(mean(x²) + eps) · w (timm's RmsNorm).
        case rmsNorm = "RMSNorm"
    }
    public var norm: Norm = .layerNorm
    /// How an absolute position table is resized to another grid.
    public enum PositionResampling: String, Sendable {
        /// timm's `resample_abs_pos_embed`: bicubic, antialiased.
        case timmBicubic = "bicubic (timm)"
        /// transformers' SigLIP 2: bilinear, antialiased, half-pixel centres.
        case bilinearAntialiased = "bilinear, antialiased (transformers)"
    }
    public var positionResampling = PositionResampling.timmBicubic
    /// A gated (SwiGLU) MLP.
    public var swiGLU: Bool {
        if case .swiGLU = mlp { return true }
        return false
    }
    /// A norm on the SwiGLU's hidden layer before fc2 (EVA-02's `ffn_ln`).
    public var mlpNorm: Bool { mlp == .swiGLU(innerNorm: true) }
    /// A norm on the attention's output before the projection (EVA-02 CLIP's `inner_attn_ln`).
    public var attentionNorm = false
    /// A norm on the patch embeddings before the positions are added (AIMv2).
    public var patchNorm = false
    /// Whether the attention projection and the MLP's linear layers have biases (AIMv2's have none).
    public var projectionBias = true
    public var mlpBias = true
    /// How the checkpoint stored q, k, v and SwiGLU's gate and up (separately or packed).
    public var separateQKV = false, separateGLU = false
    /// Where timm's class for the family names tensors otherwise than its plain ViT, for
    /// `finetune --save` (set by the family: Families/Family+<Name>.swift).
    public struct SaveNames: Sendable, Equatable {
        /// LayerScale as `gamma_1`/`gamma_2` (timm's Eva and Beit), not `ls1.gamma`/`ls2.gamma`.
        public var layerScaleAsGamma = false
        /// The q and v biases as `attn.q_bias`/`attn.v_bias` (a model without a k bias).
        public var qvBiases = false
        /// q, k, v as `attn.q_proj`/`k_proj`/`v_proj`.
        public var separateQKV = false
        /// SwiGLU's gate and up as `mlp.fc1_g`/`mlp.fc1_x` (timm's SwiGLU), not one `mlp.fc1` (GluMlp).
        public var separateGLU = false
        public init(layerScaleAsGamma: Bool = false, qvBiases: Bool = false, separateQKV: Bool = false,
                    separateGLU: Bool = false) {
            (self.layerScaleAsGamma, self.qvBiases, self.separateQKV, self.separateGLU) = (
                layerScaleAsGamma, qvBiases, separateQKV, separateGLU)
        }
    }
    public var saveNames = SaveNames()
    /// Whether the patch convolution has a bias (CLIP's has none: zeros, never trained).
    public var patchBias = true
    /// Whether q, k, v have biases at all, and whether k has one (BEiT's, EVA-02's, DINOv3's do not:
    /// the k slice of qkv's bias is zeros, never trained).
    public var qkvBias: Bool { qkvBiases != .none }
    public var keyBias: Bool { qkvBiases != .qv }
    public var finalNorm: FinalNorm
    public var eps: Float
    /// Where eps came from (the tensors cannot show it).
    public var epsSource = "family default"
    /// The image side the engine runs at (== grid·patch unless changed, then pos_embed is resampled).
    public var imageSize: Int

    /// The settings every ViT has; the rest default to a plain ViT's and are set by the reader
    /// (Families: the tensors, the family, config.json).
    public init(dim: Int, depth: Int, heads: Int, headsSource: HeadsSource, patch: Int, grid: Int, mlpHidden: Int,
                prefixTokens: Int, finalNorm: FinalNorm, eps: Float, imageSize: Int) {
        (self.dim, self.depth, self.heads, self.headsSource, self.patch, self.grid) = (
            dim, depth, heads, headsSource, patch, grid)
        (self.mlpHidden, self.prefixTokens, self.finalNorm, self.eps, self.imageSize) = (
            mlpHidden, prefixTokens, finalNorm, eps, imageSize)
    }

    public var checkpointImageSize: Int { grid * patch }
    public var runGrid: Int { imageSize / patch }
    public var patches: Int { runGrid * runGrid }
    /// T: tokens per image at the run size.
    public var tokens: Int { prefixTokens + patches }
    public var headDim: Int { dim / heads }

    /// The model family, as far as the tensors tell it.
    public var family: String {
        if relativePositionBias { return "BEiT / mae-lite RPE" }
        if [.dinov3, .eva02, .aimv2, .perceptionEncoder, .siglip2].contains(modelFamily) { return modelFamily.title }
        if rotary != nil { return "RoPE ViT (timm)" }
        if modelFamily == .vitGap {
            return registers > 0 ? "ViT with registers, no class token" : "ViT, no class token" }
        if !classToken { return "SigLIP-style" }
        if preNorm { return "CLIP" }
        if registers > 0 { return "DINOv2 with registers" }
        if layerScale { return positionSlots == 0 ? "DeiT III" : "DINOv2" }
        return prefixTokens == 2 ? "DeiT (distilled)" : "ViT"
    }

    /// The MLP in a word: "plain" (fc1, a GELU, fc2) or "swiglu", "+ inner norm" when it has one.
    public var mlpSummary: String { swiGLU ? (mlpNorm ? "swiglu + inner norm" : "swiglu") : "plain" }

    /// Parameters of the forward pass (classifier heads excluded).
    public var parameterCount: Int {
        let table = ((2 * grid - 1) * (2 * grid - 1) + 3) * heads
        let embed = dim * 3 * patch * patch + (preNorm ? 2 * dim : dim) + prefixTokens * dim
            + (absolutePositions ? (positionSlots + grid * grid) * dim : 0) + (relativeSharedTable ? table : 0)
        let normSize = norm == .rmsNorm ? 1 : 2, up = swiGLU ? 2 * mlpHidden : mlpHidden
        let block = 2 * normSize * dim + 3 * dim * dim + (qkvBias ? (keyBias ? 3 : 2) * dim : 0) + dim * dim
            + (projectionBias ? dim : 0) + dim * up + mlpHidden * dim + (mlpBias ? up + dim : 0)
            + (layerScale ? 2 * dim : 0) + (relativeBlockTables ? table : 0) + (attentionNorm ? normSize * dim : 0)
            + (mlpNorm ? normSize * mlpHidden : 0)
        // Learned rotary frequencies (RoPE-Mixed) are parameters: [2, depth, H, D/2].
        let frequencies = rotary?.learned == true ? depth * dim : 0
        return embed + depth * block + (finalNorm == .none ? 0 : normSize * dim) + (patchNorm ? normSize * dim : 0)
            + frequencies
    }

    /// Forward FLOPs per image (multiply-adds counted as 2), for benchmarks.
    public var flopsPerImage: Double {
        let t = Double(tokens), c = Double(dim), f = Double(mlpHidden)
        let perBlock = 2 * t * c * (3 * c) + 2 * t * t * c * 2 + 2 * t * c * c + (swiGLU ? 3 : 2) * 2 * t * c * f
        return Double(depth) * perBlock + 2 * Double(patches) * c * Double(3 * patch * patch)
    }
}
