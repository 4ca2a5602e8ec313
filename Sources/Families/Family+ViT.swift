import Checkpoint
import Engine

extension FamilyDefinition {
    /// ViT, DeiT (also distilled), MAE, MoCo v3, DINO: what is left when nothing else is evident.
    static let vit = FamilyDefinition(
        family: .vit, required: [.classToken], evident: { _, _ in "the tensors" })
}
