import Checkpoint
import Engine

extension FamilyDefinition {
    /// SigLIP 2 NaFlex (Hugging Face `Siglip2Model`): SigLIP's block, a linear patch embedding, the
    /// position table resized as transformers resizes it (bilinear, antialiased).
    static let siglip2 = FamilyDefinition(
        family: .siglip2, allowed: [.layerScale, .keyBias],
        evident: { e, _ in
            e.layout == .huggingFaceSigLIP2
                ? "the Hugging Face SigLIP 2 folder (a linear patch embedding: NaFlex)" : nil
        },
        activation: .geluTanh, resampling: .bilinearAntialiased)
}
