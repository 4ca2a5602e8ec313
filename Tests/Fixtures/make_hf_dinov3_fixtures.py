"""DINOv3 as Hugging Face publishes it, with float64 goldens from transformers: DINOv3ViTModel
folders (`layer.N.*` on disk; q/k/v separate with no k bias, LayerScale as lambda1, a class token
and 4 registers, rotary positions θ 100), one with the plain GELU MLP (S, B, L) and one with the
gated SiLU MLP (S+, H+: gate_proj, up_proj, down_proj). 2 layers, width 16, 2 heads, patch 8,
32x32 images. Representation i is layer i's norm1 output, the last one the final norm on every
token; attention the eager probabilities. Run from the repository root:
python3 Tests/Fixtures/make_hf_dinov3_fixtures.py."""
import numpy as np
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel

import make_fixtures as F
from make_hf_aimv2_fixtures import randomise, transformers_reference


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    for i, (name, gated) in enumerate((("hf_dinov3", False), ("hf_dinov3plus", True))):
        cfg = DINOv3ViTConfig(hidden_size=F.DIM, intermediate_size=2 * F.DIM, num_hidden_layers=F.DEPTH,
                              num_attention_heads=F.HEADS, patch_size=F.PATCH, image_size=F.IMG, num_register_tokens=4,
                              use_gated_mlp=gated, hidden_act="silu" if gated else "gelu")
        cfg._attn_implementation = "eager"
        m = DINOv3ViTModel(cfg)
        randomise(m, 61 + i)
        with torch.no_grad():
            for k, v in m.state_dict().items():
                if "lambda1" in k:
                    v.copy_(0.5 + 0.4 * torch.randn_like(v))  # LayerScale far from 1
        m.save_pretrained(F.out("checkpoints", f"family_{name}"))
        layers = lambda m: m.layer if hasattr(m, "layer") else m.model.layer
        feats, attn = transformers_reference(m, lambda m: [layer.norm1 for layer in layers(m)], pixel_values=x.double())
        np.save(F.out("golden", f"family_{name}_features.npy"), feats)
        np.save(F.out("golden", f"family_{name}_attention.npy"), attn)
        print(name, feats.shape, attn.shape)


if __name__ == "__main__":
    main()
