import Checkpoint
import Engine

extension FamilyDefinition {
    /// Meta's Perception Encoder, core and spatial: OpenAI CLIP's tensor names, exact GELU,
    /// LayerNorm eps 1e-5, absolute positions and RoPE θ 10⁴ [x, y] from 1, rescaled to the
    /// trained grid. Evident from PE core's attention-pooling head; PE spatial must be named.
    static let perceptionEncoder = FamilyDefinition(
        family: .perceptionEncoder, required: [.classToken, .lnPre],
        allowed: [.classToken, .lnPre, .layerScale, .keyBias],
        evident: { e, _ in
            e.preNorm && e.hasAttentionPool && e.layout != .huggingFaceCLIP
                ? "the tensors (an attention-pooling head beside CLIP's ln_pre: PE core)" : nil
        },
        eps: 1e-5, rotary: { .perceptionEncoder(trainedGrid: $0) })
}
