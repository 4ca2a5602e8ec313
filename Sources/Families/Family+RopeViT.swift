import Checkpoint
import Engine

extension FamilyDefinition {
    /// timm's rotary ViTs (`vit_*_rope_224`, RoPE-Axial): DeiT III's block, RoPE θ 100 [x, y] on
    /// the patches; absolute positions too in `_rope_ape_` (asked: DeiT III's tensors).
    static let ropeVit = FamilyDefinition(
        family: .ropeVit, required: [.classToken, .layerScale],
        allowed: [.classToken, .layerScale, .keyBias, .noPositionTable],
        evident: { e, path in
            guard e.rotary else { return nil }
            guard e.classToken, e.registers == 0, !e.preNorm, e.layerScale else {
                let what = e.preNorm ? "CLIP's ln_pre" : e.registers > 0 ? "\(e.registers) registers (DINOv3, timm's "
                    + "rope_reg*_gap)" : !e.classToken ? "no class token" : "no LayerScale"
                throw FamilyError.rotaryNotYet(path: path, what: "no position table, and " + what)
            }
            return "the tensors (no position table, a class token, LayerScale: timm's *_rope_* ViTs)"
        },
        rotary: { _ in .timmAxial })
}
