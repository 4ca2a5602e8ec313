"""Tiny rotary ViTs and their float64 goldens from timm's own Eva: 2 blocks, width 16, 2 heads,
patch 8, at 32 px and, with the same weights, 48 px (the rotary grid follows the run size):
- ropevit: timm's `vit_*_patch16_rope_224` recipe (naver-ai/rope-vit's RoPE-Axial: θ = 100, 'xy'
  grid indexing, integer coordinates, interleaved pairs; no absolute position embedding;
  LayerScale as gamma_1/gamma_2);
- ropemixed: timm's `vit_*_patch16_rope_mixed_224` (RoPE-Mixed: learned frequencies per block and
  head, `rope.freqs`, 'xy' grid, no absolute position embedding);
- ropeape: timm's `vit_*_patch16_rope_ape_224` (the rope ViT with an absolute position
  embedding too, without a class row);
- dinov3: timm's `vit_*_patch16_dinov3` recipe (θ = 100, 'ij' indexing, 0.5-centred coordinates
  normalised to [-1, 1] times 2π, half-split pairs; a class token and 4 registers; no qkv bias;
  LayerNorm eps 1e-5).
Run from the repository root: python3 Tests/Fixtures/make_rope_fixtures.py (needs torch, timm,
safetensors, pillow, torchvision). Writes Tests/Fixtures/checkpoints/family_{ropevit,dinov3,ropeape}.safetensors
and Tests/Fixtures/golden/family_{ropevit,dinov3,ropeape}*."""
from functools import partial

import numpy as np
import torch
from safetensors.torch import save_file
from timm.models.eva import Eva

import make_fixtures as F
from make_family_fixtures import reference_of


FAMILIES = {
    "ropevit": dict(attn_type="rope", qkv_bias=True, rope_grid_indexing="xy", rope_temperature=100.0,
                    use_abs_pos_emb=False),
    "dinov3": dict(qkv_bias=False, rope_type="dinov3", rope_temperature=100, rope_rotate_half=True, num_reg_tokens=4,
                   use_fc_norm=False, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5), use_abs_pos_emb=False),
    # timm's *_rope_ape_*: the rope ViT with an absolute position embedding too (no class row).
    "ropeape": dict(attn_type="rope", qkv_bias=True, rope_grid_indexing="xy", rope_temperature=100.0,
                    use_abs_pos_emb=True, no_embed_class=True),
    # timm's *_rope_reg*_gap_*: registers and no class token, q/v biases, global average pooling
    # (fc_norm), RoPE θ 1e4, 'ij' indexing, coordinates rescaled to a reference grid (here 4, the
    # fixture's own: at 48 px the 6x6 grid's coordinates are i·4/6).
    "ropereggap": dict(class_token=False, num_reg_tokens=2, global_pool="avg", qkv_fused=True,
                       ref_feat_shape=(4, 4), use_abs_pos_emb=False),
    # timm's *_rope_mixed_* (RoPE-Mixed): learned frequencies per block and head (rope.freqs), 'xy'.
    "ropemixed": dict(attn_type="rope", qkv_bias=True, rope_grid_indexing="xy", rope_temperature=10.0,
                      rope_type="mixed", use_abs_pos_emb=False),
    # ... and with an absolute position embedding too (no class row): *_rope_mixed_ape_*.
    "ropemixedape": dict(attn_type="rope", qkv_bias=True, rope_grid_indexing="xy", rope_temperature=10.0,
                         rope_type="mixed", use_abs_pos_emb=True, no_embed_class=True),
}


def make(name, img):
    return Eva(img_size=img, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS, mlp_ratio=F.MLP,
               init_values=1e-5, use_rot_pos_emb=True, num_classes=5,
               **{"class_token": True, "global_pool": "token", **FAMILIES[name]})


def state(name, seed):
    torch.manual_seed(seed)
    sd = {}
    for k, v in make(name, F.IMG).state_dict().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k in ("norm.weight", "fc_norm.weight"):
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("gamma_1") or k.endswith("gamma_2"):
            sd[k] = 0.5 + 0.4 * torch.randn_like(v)  # LayerScale far from 1, so a missing γ shows
        elif k == "rope.freqs":
            sd[k] = 0.8 * torch.randn_like(v)  # learned frequencies, far from their initialisation
        elif k.endswith("bias") or k in ("cls_token", "reg_token", "pos_embed"):
            sd[k] = 0.3 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5)
    return F.round_weights(sd)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    x48 = torch.from_numpy(np.load(F.out("golden", "size48_input.npy")))
    for i, name in enumerate(FAMILIES):
        sd = state(name, 40 + i)
        make(name, F.IMG).load_state_dict(sd, strict=True)
        meta = {"num_heads": str(F.HEADS)}
        if name == "ropereggap":
            meta["image_size"] = str(F.IMG)  # the trained size, which the rotary grid is rescaled to
        save_file(sd, F.out("checkpoints", f"family_{name}.safetensors"), metadata=meta)
        # (48 px with an absolute table would resample it: the rotary grid alone is what 48 px tests.)
        for suffix, img, inp in (("", F.IMG, x), ("_size48", 48, x48))[:1 if name.endswith("ape") else 2]:
            m = make(name, img)
            m.load_state_dict(sd)
            feats, attn = reference_of(m, inp)
            np.save(F.out("golden", f"family_{name}{suffix}_features.npy"), feats)
            np.save(F.out("golden", f"family_{name}{suffix}_attention.npy"), attn)
            print(name, img, "px", feats.shape, attn.shape)


if __name__ == "__main__":
    main()
