/// The families a model can be said to belong to (`--family`, or a safetensors metadata
/// `family`), for what its tensors cannot tell: the activation, and whether vitlens can run it
/// at all. Several families share one set of tensor names — OpenAI CLIP and Meta's Perception
/// Encoder, SigLIP and timm's ViTs without a class token — and running one as the other gives
/// wrong numbers without any error, so where neither the file nor its config says which, vitlens
/// asks instead of guessing.
public enum ModelFamily: String, CaseIterable, Sendable {
    /// ViT, DeiT (also distilled), MAE, MoCo v3, DINO: exact GELU.
    case vit
    /// DeiT III: LayerScale, no position row for the class token.
    case deit3
    /// DINOv2, with or without registers: LayerScale.
    case dinov2
    /// OpenAI CLIP's image tower (`ln_pre`, QuickGELU, LayerNorm eps 1e-5).
    case clip
    /// SigLIP: no class token, tanh GELU, a MAP head (ignored).
    case siglip
    /// SigLIP 2 NaFlex (Hugging Face `Siglip2Model`): SigLIP's block, a linear patch embedding, the
    /// learned position table resized to the run's grid bilinearly with antialiasing, as
    /// transformers resizes it.
    case siglip2
    /// BEiT and mae-lite's RPE ViT: relative position bias.
    case beit
    /// timm's ViTs without a class token (global average pooling, `*_gap_*`, registers or not):
    /// exact GELU.
    case vitGap = "vit-gap"
    /// Meta's Perception Encoder (core and spatial): OpenAI CLIP's tensor names (`ln_pre`), exact
    /// GELU, LayerNorm eps 1e-5, absolute positions and RoPE θ = 10⁴ on the patches, [x, y],
    /// coordinates from 1 rescaled to the trained grid.
    case perceptionEncoder = "pe"
    /// timm's rotary ViTs (`vit_*_rope_224`, naver-ai/rope-vit's RoPE-Axial): DeiT III's block,
    /// no absolute positions, RoPE θ = 100 on q and k of the patches (Rotary.swift).
    case ropeVit = "rope-vit"
    /// DINOv3 (S, B, L; timm's `vit_*_patch16_dinov3`): a class token and 4 registers, LayerScale,
    /// LayerNorm eps 1e-5, no absolute positions, RoPE θ = 100 on centred coordinates, [y, x],
    /// half-split pairs.
    case dinov3
    /// timm's `vit_*_rope_reg*_gap_*`: registers without a class token, q/v biases, LayerScale,
    /// global average pooling (fc_norm), RoPE θ = 10⁴, [y, x], rescaled to the trained grid.
    case ropeVitGap = "rope-vit-gap"
    /// timm's `vit_*_rope_mixed_*` (RoPE-Mixed): DeiT III's block, rotary positions with learned
    /// frequencies per block and head (`rope.freqs`), absolute positions too in `_ape`.
    case ropeVitMixed = "rope-vit-mixed"
    /// EVA-02 and EVA-02 CLIP: a class token, absolute positions and RoPE θ = 10⁴ on the patches
    /// ([y, x], coordinates rescaled to the 16×16 grid it was pre-trained on), a SwiGLU MLP (with
    /// an inner LayerNorm in the larger sizes), q and v biases.
    case eva02
    /// Apple's AIMv2: RMSNorm (eps 1e-5) everywhere, also on the patch embeddings, a SwiGLU MLP,
    /// no biases in the blocks, absolute positions, no class token.
    case aimv2

    /// How error messages and `inspect` name it.
    public var title: String {
        switch self {
        case .vit: return "ViT"
        case .deit3: return "DeiT III"
        case .dinov2: return "DINOv2"
        case .clip: return "CLIP"
        case .siglip: return "SigLIP"
        case .siglip2: return "SigLIP 2 (NaFlex)"
        case .beit: return "BEiT / mae-lite RPE"
        case .vitGap: return "timm ViT without a class token"
        case .perceptionEncoder: return "Perception Encoder"
        case .ropeVit: return "timm rotary ViT"
        case .dinov3: return "DINOv3"
        case .ropeVitGap: return "timm rotary ViT with registers, no class token"
        case .ropeVitMixed: return "timm rotary ViT with learned frequencies (RoPE-Mixed)"
        case .eva02: return "EVA-02"
        case .aimv2: return "AIMv2"
        }
    }

    /// The names `--family` takes, for help texts and errors.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
