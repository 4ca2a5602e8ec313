import Checkpoint
import Engine

extension FamilyDefinition {
    /// DINOv3: a class token and 4 registers, LayerScale, LayerNorm eps 1e-5, no absolute
    /// positions, RoPE θ 100 on centred coordinates; a SwiGLU MLP in S+ and H+.
    static let dinov3 = FamilyDefinition(
        family: .dinov3, required: [.classToken, .registers, .layerScale, .noPositionTable],
        allowed: [.classToken, .registers, .layerScale, .keyBias, .noPositionTable, .gatedMLP],
        evident: { e, _ in
            e.rotary && e.classToken && e.registers > 0 && e.layerScale && !e.preNorm
                ? "the tensors (no position table, a class token and registers: DINOv3)" : nil
        },
        eps: 1e-5, rotary: { _ in .dinov3 })
}
