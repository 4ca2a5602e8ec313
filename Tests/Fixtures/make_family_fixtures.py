"""Tiny checkpoints and float64 goldens of the ViT families beyond the plain ViT (DeiT III,
DINOv2, DINOv2 with registers, CLIP), made from timm: 2 blocks, width 16, 2 heads, 32x32 images,
patch 8. Run from the repository root: python3 Tests/Fixtures/make_family_fixtures.py
(needs torch, timm, safetensors, pillow, torchvision). Writes Tests/Fixtures/checkpoints/family_*
and Tests/Fixtures/golden/family_*."""
import os
from functools import partial

import numpy as np
import timm
import torch
from safetensors.torch import save_file

import make_fixtures as F

FAMILIES = {
    # name: (timm keyword arguments, metadata)
    "deit3": dict(no_embed_class=True, init_values=0.1),
    "dinov2": dict(init_values=0.1),
    "dinov2reg": dict(no_embed_class=True, init_values=0.1, reg_tokens=4),
    # CLIP's image tower: ln_pre (norm_pre), QuickGELU, LayerNorm eps 1e-5, no patch bias.
    "clip": dict(pre_norm=True, act_layer="quick_gelu", norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)),
}


def make(kw):
    return timm.models.vision_transformer.VisionTransformer(
        img_size=F.IMG, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS,
        mlp_ratio=F.MLP, qkv_bias=True, num_classes=5, **kw)


def state(kw, seed):
    torch.manual_seed(seed)
    sd = {}
    for k, v in make(kw).state_dict().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k in ("norm.weight", "norm_pre.weight"):
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("gamma"):
            sd[k] = 0.5 + 0.4 * torch.randn_like(v)  # LayerScale far from 1, so a missing γ shows
        elif k.endswith("bias") or k in ("cls_token", "pos_embed", "reg_token"):
            sd[k] = 0.3 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5)
    return F.round_weights(sd)


def reference(kw, sd, x):
    m = make(kw)
    m.load_state_dict(sd)
    m = m.double().eval()
    normed, probs = [], []
    hooks = []
    for blk in m.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.norm1.register_forward_hook(lambda mod, i, o: normed.append(o)))
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: probs.append(o)))
    with torch.no_grad():
        final = m.forward_features(x.double())
    normed.append(final)
    f32 = lambda ts: torch.stack(ts).float().numpy()
    return f32(normed), f32(probs)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    for i, (name, kw) in enumerate(FAMILIES.items()):
        sd = state(kw, 10 + i)
        save_file(sd, F.out("checkpoints", f"family_{name}.safetensors"), metadata={"num_heads": str(F.HEADS)})
        feats, attn = reference(kw, sd, x)
        np.save(F.out("golden", f"family_{name}_features.npy"), feats)
        np.save(F.out("golden", f"family_{name}_attention.npy"), attn)
        print(name, "features", feats.shape, "attention", attn.shape)
    # DeiT III as Facebook publishes it: {"model": …} with gamma_1/gamma_2 instead of ls1/ls2.
    sd = {k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2"): v for k, v in state(FAMILIES["deit3"], 10).items()}
    torch.save({"model": sd, "epoch": 1}, F.out("checkpoints", "family_deit3_fb.pth"))
    # CLIP as OpenAI and OpenCLIP publish it: the image tower under visual.* (class_embedding [D],
    # positional_embedding [T, D], resblocks, ln_pre/ln_post, proj), beside a (tiny) text tower.
    sd = state(FAMILIES["clip"], 10 + list(FAMILIES).index("clip"))
    swaps = [("patch_embed.proj", "conv1"), ("pos_embed", "positional_embedding"), ("blocks.", "transformer.resblocks."),
             ("norm_pre", "ln_pre"), (".norm1", ".ln_1"), (".norm2", ".ln_2"), ("attn.qkv.", "attn.in_proj_"),
             ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
    clip = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if k == "norm.weight" or k == "norm.bias":
            clip["visual.ln_post." + k.split(".")[1]] = v
            continue
        for a, b in swaps:
            k = k.replace(a, b)
        if k == "cls_token":
            k, v = "class_embedding", v.reshape(-1)
        elif k == "positional_embedding":
            v = v[0]
        clip["visual." + k] = v
    torch.manual_seed(99)
    clip["visual.proj"] = torch.randn(F.DIM, 8)
    clip["token_embedding.weight"] = torch.randn(50, 8)
    clip["positional_embedding"] = torch.randn(7, 8)
    clip["transformer.resblocks.0.ln_1.weight"] = torch.ones(8)
    clip["ln_final.weight"] = torch.ones(8)
    clip["text_projection"] = torch.randn(8, 8)
    clip["logit_scale"] = torch.tensor(4.6)
    torch.save(clip, F.out("checkpoints", "family_clip_openai.pt"))
    # A CLIP state dict of the text tower alone: refused (no image tower).
    text = {k: v for k, v in clip.items() if not k.startswith("visual.")}
    save_file({k: v.contiguous() for k, v in text.items()}, F.out("checkpoints", "family_clip_textonly.safetensors"))


if __name__ == "__main__":
    main()
