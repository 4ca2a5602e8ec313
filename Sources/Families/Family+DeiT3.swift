import Checkpoint
import Engine

extension FamilyDefinition {
    /// DeiT III: LayerScale, no position row for the class token. timm's rope ViTs with absolute
    /// positions too (`*_rope_ape_*`) save the same tensors under the same names: asked.
    static let deit3 = FamilyDefinition(
        family: .deit3, required: [.classToken, .layerScale],
        evident: { e, path in
            if e.evaStyleWithoutClassRow && e.classToken && e.registers == 0 {
                throw FamilyError.ambiguous(
                    path: path, candidates: [.deit3, .ropeVit],
                    why: "DeiT III's tensors (LayerScale as gamma_1/gamma_2, no position row for the class token) in "
                        + "a top-level state dict, as timm's rope ViTs with absolute positions (*_rope_ape_*) save "
                        + "them")
            }
            return e.layerScale && e.registers == 0 ? "the tensors (LayerScale)" : nil
        })
}
