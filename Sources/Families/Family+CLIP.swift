import Checkpoint
import Engine

extension FamilyDefinition {
    /// OpenAI CLIP's image tower: `ln_pre`, QuickGELU, LayerNorm eps 1e-5. Perception Encoder
    /// saves the same tensor names: a CLIP state dict that nothing else tells apart is asked.
    static let clip = FamilyDefinition(
        family: .clip, required: [.classToken, .lnPre], allowed: [.classToken, .lnPre, .layerScale, .keyBias],
        evident: { e, path in
            guard e.preNorm else { return nil }
            if e.layout == .huggingFaceCLIP { return "the Hugging Face CLIP folder" }
            if e.statedActivation == .quickGelu { return "the stated activation (QuickGELU)" }
            throw FamilyError.ambiguous(
                path: path, candidates: [.clip, .perceptionEncoder],
                why: "CLIP's tensors (a LayerNorm before the first block) with nothing that says which model wrote "
                    + "them")
        },
        activation: .quickGelu, eps: 1e-5)
}
