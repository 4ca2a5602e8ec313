import Checkpoint
import Engine

extension FamilyDefinition {
    /// timm's `vit_*_rope_reg*_gap_*`: registers without a class token, RoPE θ 10⁴ [y, x]
    /// rescaled to the trained grid (256 px unless the file says).
    static let ropeVitGap = FamilyDefinition(
        family: .ropeVitGap, required: [.registers, .layerScale, .noPositionTable],
        allowed: [.registers, .layerScale, .keyBias, .noPositionTable],
        evident: { e, _ in
            e.rotary && !e.classToken && e.registers > 0 && e.layerScale && !e.preNorm
                ? "the tensors (no position table, registers without a class token: timm's *_rope_reg*_gap_*)" : nil
        },
        rotary: { .timmRegGap(trainedGrid: $0) }, trainedSize: 256)
}
