import Checkpoint
import Engine

extension FamilyDefinition {
    /// timm's ViTs without a class token (`*_gap_*`, registers or not): exact GELU. Without
    /// registers, a MAP head or a stated activation their tensors are SigLIP's too: asked.
    static let vitGap = FamilyDefinition(
        family: .vitGap, allowed: [.registers, .layerScale, .keyBias],
        evident: { e, path in
            guard !e.classToken else { return nil }
            if e.registers > 0 { return "the tensors (registers without a class token; SigLIP has none)" }
            if e.statedActivation == .gelu { return "the stated activation (exact GELU)" }
            throw FamilyError.ambiguous(path: path, candidates: [.siglip, .vitGap],
                                        why: "no class token, no registers and no attention-pooling head")
        })
}
