import Checkpoint
import Engine

extension Layout {
    static let huggingFaceDINOv3 = Layout(rawValue: "Hugging Face DINOv3")
}

extension FamilyDefinition {
    /// DINOv3: a class token and 4 registers, LayerScale, LayerNorm eps 1e-5, no absolute
    /// positions, RoPE θ 100 on centred coordinates; a SwiGLU MLP in S+ and H+.
    static let dinov3 = FamilyDefinition(
        family: .dinov3, required: [.classToken, .registers, .layerScale, .noPositionTable],
        allowed: [.classToken, .registers, .layerScale, .keyBias, .noPositionTable, .gatedMLP],
        evident: { e, _ in
            e.rotary && e.classToken && e.registers > 0 && e.layerScale && !e.preNorm
                ? "the tensors (no position table, a class token and registers: DINOv3)" : nil
        },
        eps: 1e-5, rotary: { _ in .dinov3 }, layouts: [dinov3Layouts])

    /// transformers' DINOv3ViTModel as saved (`[prefix]embeddings.{cls_token, register_tokens,
    /// patch_embeddings, mask_token}`, `layer.N.{norm1, attention.{q,k,v,o}_proj, layer_scale1.lambda1,
    /// norm2, mlp.{gate,up,down}_proj, layer_scale2.lambda1}`, `norm`), renamed to timm's names: the
    /// rule (nil: not this model's key) and the layout.
    static let dinov3Layouts: LayoutRenamer = { keys in
        guard let patch = keys.first(where: { $0.hasSuffix("embeddings.patch_embeddings.weight") }) else { return nil }
        let prefix = String(patch.dropLast("embeddings.patch_embeddings.weight".count))
        guard keys.contains(prefix + "layer.0.attention.o_proj.weight") else { return nil }
        let gated = keys.contains(prefix + "layer.0.mlp.gate_proj.weight")
        return ({ key in
            guard key.hasPrefix(prefix) else { return nil }
            var k = String(key.dropFirst(prefix.count))
            for (a, b) in [("embeddings.cls_token", "cls_token"), ("embeddings.register_tokens", "reg_token"),
                           ("embeddings.mask_token", "mask_token"),
                           ("embeddings.patch_embeddings.", "patch_embed.proj."),
                           ("layer.", "blocks."), (".attention.o_proj.", ".attn.proj."), (".attention.", ".attn."),
                           (".layer_scale1.lambda1", ".ls1.gamma"), (".layer_scale2.lambda1", ".ls2.gamma"),
                           (".mlp.gate_proj.", ".mlp.fc1_g."), (".mlp.up_proj.", gated ? ".mlp.fc1_x." : ".mlp.fc1."),
                           (".mlp.down_proj.", ".mlp.fc2.")] where k.hasPrefix(a) || k.contains(a) {
                k = k.replacingOccurrences(of: a, with: b)
            }
            return k
        }, .huggingFaceDINOv3)
    }
}
