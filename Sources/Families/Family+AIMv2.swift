import Checkpoint
import Engine

extension FamilyDefinition {
    /// Apple's AIMv2: RMSNorm (eps 1e-5) everywhere, also on the patch embeddings, a SwiGLU MLP,
    /// no biases in the blocks, absolute positions, no class token.
    static let aimv2 = FamilyDefinition(
        family: .aimv2, required: [.biasFreeNorms, .gatedMLP], allowed: [.biasFreeNorms, .gatedMLP],
        evident: { e, path in
            guard !e.normBias else { return nil }
            guard e.swiGLU, e.patchNorm, !e.classToken, !e.rotary else {
                throw FamilyError.noFamily(
                    path: path, what: e.rotary && e.patchNorm ? "norms without a bias and no position table (AIMv2's "
                        + "native-resolution models, with fixed sin-cos positions, are not run yet)"
                        : "norms without a bias")
            }
            return "the tensors (norms without a bias, one on the patch embeddings, a SwiGLU MLP: AIMv2)"
        },
        activation: .silu, eps: 1e-5, norm: .rmsNorm, biasFreeBlocks: true)
}
