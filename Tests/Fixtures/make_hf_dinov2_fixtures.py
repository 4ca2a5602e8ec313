"""DINOv2 as Hugging Face and Facebook publish it, with float64 goldens from transformers:
`Dinov2Model` and `Dinov2WithRegistersModel` folders (2 layers, width 16, 2 heads, 32x32
images, patch 8, LayerScale), and the registers model's weights in Facebook's plain state-dict
layout (`register_tokens`, `pos_embed` with the class token's row, fused qkv, `ls1.gamma`,
`mask_token`). The reference is transformers in float64: representation i is layer i's `norm1`
output, the last one `layernorm` on every token, attention the eager probabilities.
Run from the repository root: python3 Tests/Fixtures/make_hf_dinov2_fixtures.py."""
import numpy as np
import torch
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

import make_fixtures as F
import make_hf_clip_fixtures as C

COMMON = dict(hidden_size=F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS, mlp_ratio=2, image_size=F.IMG,
              patch_size=F.PATCH, layerscale_value=0.5)


def randomise(model, seed):
    C.randomise(model, seed, layer_scale="lambda1", extra_norms=("layernorm.weight",))


def reference(model, x):
    model = model.double().eval()
    normed = []
    for layer in model.encoder.layer:
        layer.norm1.register_forward_hook(lambda m, i, o: normed.append(o))
    with torch.no_grad():
        out = model(pixel_values=x.double(), output_attentions=True)
    normed.append(out.last_hidden_state)  # Dinov2Model applies layernorm to every token
    f32 = lambda ts: torch.stack(list(ts)).float().numpy()
    return f32(normed), f32(out.attentions)


def facebook(folder):
    """The registers model under Facebook's names, from its saved file (transformers 5 renames
    the attention projections in memory, not in the files it writes)."""
    from safetensors.torch import load_file
    sd = load_file(folder + "/model.safetensors")
    fb = {"cls_token": sd["embeddings.cls_token"], "mask_token": sd["embeddings.mask_token"][None],
          "register_tokens": sd["embeddings.register_tokens"], "pos_embed": sd["embeddings.position_embeddings"],
          "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
          "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
          "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    for n in range(F.DEPTH):
        p = f"encoder.layer.{n}."
        q = {kind: torch.cat([sd[p + f"attention.attention.{w}.{kind}"] for w in ("query", "key", "value")]) for kind in ("weight", "bias")}
        fb.update({f"blocks.{n}.norm1.weight": sd[p + "norm1.weight"], f"blocks.{n}.norm1.bias": sd[p + "norm1.bias"],
                   f"blocks.{n}.attn.qkv.weight": q["weight"], f"blocks.{n}.attn.qkv.bias": q["bias"],
                   f"blocks.{n}.attn.proj.weight": sd[p + "attention.output.dense.weight"],
                   f"blocks.{n}.attn.proj.bias": sd[p + "attention.output.dense.bias"],
                   f"blocks.{n}.ls1.gamma": sd[p + "layer_scale1.lambda1"], f"blocks.{n}.ls2.gamma": sd[p + "layer_scale2.lambda1"],
                   f"blocks.{n}.norm2.weight": sd[p + "norm2.weight"], f"blocks.{n}.norm2.bias": sd[p + "norm2.bias"],
                   f"blocks.{n}.mlp.fc1.weight": sd[p + "mlp.fc1.weight"], f"blocks.{n}.mlp.fc1.bias": sd[p + "mlp.fc1.bias"],
                   f"blocks.{n}.mlp.fc2.weight": sd[p + "mlp.fc2.weight"], f"blocks.{n}.mlp.fc2.bias": sd[p + "mlp.fc2.bias"]})
    return {k: v.clone().float() for k, v in fb.items()}


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    for name, (cls, cfg_cls, extra) in {"dinov2": (Dinov2Model, Dinov2Config, {}),
                                        "dinov2reg": (Dinov2WithRegistersModel, Dinov2WithRegistersConfig, {"num_register_tokens": 4})}.items():
        cfg = cfg_cls(**COMMON, **extra)
        cfg._attn_implementation = "eager"
        model = cls(cfg)
        randomise(model, 41 if name == "dinov2" else 42)
        model.save_pretrained(F.out("checkpoints", f"family_hf_{name}"))
        if name == "dinov2reg":
            torch.save(facebook(F.out("checkpoints", f"family_hf_{name}")), F.out("checkpoints", "family_dinov2reg_fb.pth"))
        feats, attn = reference(model, x)
        np.save(F.out("golden", f"family_hf_{name}_features.npy"), feats)
        np.save(F.out("golden", f"family_hf_{name}_attention.npy"), attn)
        print(name, "features", feats.shape, "attention", attn.shape)


if __name__ == "__main__":
    main()
