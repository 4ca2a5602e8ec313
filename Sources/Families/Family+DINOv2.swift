import Checkpoint
import Engine

extension FamilyDefinition {
    /// DINOv2, with or without registers: LayerScale.
    static let dinov2 = FamilyDefinition(
        family: .dinov2, required: [.classToken, .layerScale],
        evident: { e, _ in e.layerScale && e.registers > 0 ? "the tensors (LayerScale)" : nil })
}
