import Checkpoint
import Engine

extension Layout {
    static let evaCLIP = Layout(rawValue: "EVA-CLIP")
}

extension FamilyDefinition {
    /// EVA-02 and EVA-02 CLIP: a class token, absolute positions and RoPE θ 10⁴ [y, x] rescaled to
    /// 16×16, a SwiGLU MLP, q and v biases only.
    static let eva02 = FamilyDefinition(
        family: .eva02, required: [.classToken, .gatedMLP], allowed: [.classToken, .gatedMLP, .layerScale],
        evident: { e, path in
            guard e.swiGLU && !e.rotary && !e.preNorm && e.normBias else { return nil }
            guard e.classToken, e.registers == 0, !e.patchNorm, !e.keyBias else {
                throw FamilyError.noFamily(path: path, what: "a SwiGLU MLP beside a position table, with "
                    + (e.keyBias ? "a k bias (EVA-02 has q and v biases only)" : "no class token or with registers"))
            }
            return "the tensors (a SwiGLU MLP beside a position table and a class token: EVA-02)"
        },
        activation: .silu, rotary: { _ in .eva02 },
        // timm's Eva keeps q, k, v fused or apart as the size was published (qkv_fused), and packs
        // the SwiGLU (GluMlp) unless it has its inner norm (SwiGLU): as the checkpoint had them.
        saveNames: { c in
            .init(layerScaleAsGamma: true, qvBiases: !c.separateQKV, separateQKV: c.separateQKV, separateGLU: c.mlpNorm)
        },
        layouts: [evaCLIPLayout])

    /// EVA-CLIP's image tower: timm-like names under `visual.` beside a text tower (ignored).
    static let evaCLIPLayout: LayoutRenamer = { keys in
        guard keys.contains("visual.patch_embed.proj.weight"), !keys.contains("patch_embed.proj.weight") else {
            return nil }
        return ({ k in k.hasPrefix("visual.") ? String(k.dropFirst("visual.".count)) : nil }, .evaCLIP)
    }
}
