import Checkpoint
import Engine

extension FamilyDefinition {
    /// BEiT and mae-lite's RPE ViT: relative position bias.
    static let beit = FamilyDefinition(
        family: .beit, required: [.classToken, .relativeTables],
        allowed: [.classToken, .relativeTables, .layerScale, .keyBias, .registers],
        evident: { e, _ in e.relative ? "the tensors (relative position tables)" : nil })
}
