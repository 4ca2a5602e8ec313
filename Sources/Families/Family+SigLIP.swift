import Checkpoint
import Engine

extension FamilyDefinition {
    /// SigLIP: no class token, tanh GELU, a MAP head (ignored).
    static let siglip = FamilyDefinition(
        family: .siglip, allowed: [.layerScale, .keyBias],
        evident: { e, _ in
            guard !e.classToken else { return nil }
            if e.layout == .huggingFaceSigLIP { return "the Hugging Face SigLIP folder" }
            guard e.registers == 0 else { return nil }
            if e.hasAttentionPool { return "the tensors (an attention-pooling head)" }
            return e.statedActivation == .geluTanh ? "the stated activation (tanh GELU)" : nil
        },
        activation: .geluTanh)
}
