import Checkpoint
import Engine
import VitLensCore

extension Layout {
    static let appleAIMv2 = Layout(rawValue: "Apple AIMv2")
    static let huggingFaceAIMv2 = Layout(rawValue: "Hugging Face AIMv2")
}

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
        activation: .silu, eps: 1e-5, norm: .rmsNorm, biasFreeBlocks: true, layouts: [aimv2Layouts])

    /// AIMv2 in Apple's names (ml-aim: `preprocessor.patchifier.*`, `preprocessor.pos_embed`,
    /// `trunk.blocks.N.{norm_1, attn.qkv, attn.proj, norm_2, mlp.fc1 (gate), mlp.fc3 (up), mlp.fc2}`,
    /// `trunk.post_trunk_norm`, as timm's `_convert_aimv2` reads them) or Hugging Face's
    /// (`[vision_model.]embeddings.{patch_embed, rms_norm, position_embedding}`, `encoder.layers.N.
    /// {rms_norm1, attention.{q,k,v,out}_proj, rms_norm2, ffn.{gate,up,down}_proj}`, `rms_norm`):
    /// the rule that renames a key to timm's names (nil: not this tower's), and the layout.
    static let aimv2Layouts: LayoutRenamer = { keys in
        if keys.contains("preprocessor.patchifier.proj.weight") {
            return ({ k in
                var k = k
                for (a, b) in [("norm_1", "norm1"), ("norm_2", "norm2"), ("preprocessor.patchifier.", "patch_embed."),
                               ("preprocessor.pos_embed", "pos_embed"), ("trunk.", ""), ("post_trunk_norm.", "norm."),
                               ("mlp.fc1.", "mlp.fc1_g."), ("mlp.fc3.", "mlp.fc1_x.")] {
                    k = k.replacingOccurrences(of: a, with: b)
                }
                return k
            }, .appleAIMv2)
        }
        guard let norm = keys.first(where: { $0.hasSuffix("embeddings.rms_norm.weight") }),
              keys.contains(where: { $0.hasSuffix("encoder.layers.0.ffn.gate_proj.weight") }) else { return nil }
        let prefix = String(norm.dropLast("embeddings.rms_norm.weight".count))
        return ({ key in
            guard key.hasPrefix(prefix) else { return nil }
            var k = String(key.dropFirst(prefix.count))
            if k == "rms_norm.weight" { return ViTKeys.FinalNorm.norm.weight }
            for (a, b) in [("embeddings.patch_embed.", "patch_embed.proj."),
                           ("embeddings.rms_norm.", "patch_embed.norm."),
                           ("embeddings.position_embedding.weight", "pos_embed"), ("encoder.layers.", "blocks."),
                           (".rms_norm1.", ".norm1."), (".rms_norm2.", ".norm2."),
                           (".attention.out_proj.", ".attn.proj."),
                           (".attention.", ".attn."), (".ffn.gate_proj.", ".mlp.fc1_g."),
                           (".ffn.up_proj.", ".mlp.fc1_x."),
                           (".ffn.down_proj.", ".mlp.fc2.")] {
                k = k.replacingOccurrences(of: a, with: b)
            }
            return k
        }, .huggingFaceAIMv2)
    }
}
