import Checkpoint
import Engine

extension FamilyDefinition {
    /// timm's `vit_*_rope_mixed_*` (RoPE-Mixed): learned rotary frequencies per block and head,
    /// absolute positions too in `_ape`.
    static let ropeVitMixed = FamilyDefinition(
        family: .ropeVitMixed, required: [.classToken, .layerScale, .learnedFrequencies],
        allowed: [.classToken, .layerScale, .keyBias, .learnedFrequencies, .noPositionTable],
        evident: { e, path in
            guard e.learnedFrequencies else { return nil }
            guard e.classToken, e.registers == 0, e.layerScale, !e.preNorm, !e.swiGLU else {
                throw FamilyError.noFamily(path: path, what: "learned rotary frequencies (rope.freqs) in a model that "
                    + "is not timm's RoPE-Mixed ViT (a class token, LayerScale, no registers)")
            }
            return "the tensors (learned rotary frequencies: timm's *_rope_mixed_*)"
        },
        rotary: { _ in .timmMixed })
}
