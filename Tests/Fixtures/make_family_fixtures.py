"""Tiny checkpoints and float64 goldens of the ViT families beyond the plain ViT (DeiT III,
DINOv2, DINOv2 with registers, CLIP, SigLIP, BEiT and mae-lite's RPE ViT), made from timm: 2 blocks, width 16, 2 heads, 32x32 images,
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
    # SigLIP: no class token, attention-pooling (MAP) head, tanh GELU (as the Google checkpoints
    # were trained; timm's vit_*_siglip_* builders differ in act_layer, see docs/reference.md).
    "siglip": dict(class_token=False, global_pool="map", act_layer="gelu_tanh"),
    # BEiT (timm's Beit): q/v biases, a relative position table per block, LayerScale, no absolute
    # position embedding, fc_norm.
    "beit": dict(beit=True, use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1),
    # BEiT with one table shared by every block, an absolute position embedding, no LayerScale, norm.
    "beitshared": dict(beit=True, use_abs_pos_emb=True, use_rel_pos_bias=False, use_shared_rel_pos_bias=True,
                       use_fc_norm=False),
    # mae-lite's RPE ViT (projects/eval_tools/models_vit_rpe.py, as its fine-tuning runs it): absolute
    # position embedding and a table per block, q/v biases, no LayerScale, fc_norm, eps 1e-6.
    "rpe": dict(beit=True, use_abs_pos_emb=True, use_rel_pos_bias=True),
}


def make(kw):
    kw = dict(kw)
    if kw.pop("beit", False):
        return timm.models.beit.Beit(img_size=F.IMG, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS,
                                     mlp_ratio=F.MLP, qkv_bias=True, num_classes=5, **kw)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=F.IMG, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS,
        mlp_ratio=F.MLP, qkv_bias=True, num_classes=5, **kw)


def state(kw, seed):
    torch.manual_seed(seed)
    sd = {}
    for k, v in make(kw).state_dict().items():
        if v.dtype != torch.float32:
            continue  # buffers (BEiT's relative position index, kept by mae-lite only)
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k in ("norm.weight", "norm_pre.weight", "fc_norm.weight"):
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("relative_position_bias_table"):
            sd[k] = 0.8 * torch.randn_like(v)  # large enough to reorder the attention
        elif k.endswith("gamma") or k.endswith("gamma_1") or k.endswith("gamma_2"):
            sd[k] = 0.5 + 0.4 * torch.randn_like(v)  # LayerScale far from 1, so a missing γ shows
        elif k.endswith("bias") or k.endswith("_bias") or k in ("cls_token", "pos_embed", "reg_token"):
            sd[k] = 0.3 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5)
    return F.round_weights(sd)


def reference(kw, sd, x):
    m = make(kw)
    m.load_state_dict(sd, strict=False)  # strict but for BEiT's index buffers, which timm rebuilds
    return reference_of(m, x)


def reference_of(m, x):
    """timm in float64: every block's norm1 output, the final norm on every token, the attention."""
    m = m.double().eval()
    normed, probs = [], []
    hooks = []
    for blk in m.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.norm1.register_forward_hook(lambda mod, i, o: normed.append(o)))
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: probs.append(o)))
    with torch.no_grad():
        final = m.forward_features(x.double())
        # The last representation is the final norm on every token: BEiT's fc_norm (timm applies
        # it after pooling; norm is then the identity).
        if isinstance(getattr(m, "fc_norm", None), torch.nn.LayerNorm):
            final = m.fc_norm(final)
    normed.append(final)
    f32 = lambda ts: torch.stack(ts).float().numpy()
    return f32(normed), f32(probs)


def openai_clip(sd):
    """A timm CLIP state dict under OpenAI's names (the image tower as `visual.*`: conv1,
    class_embedding [D], positional_embedding [T, D], resblocks, ln_pre/ln_post); head dropped."""
    swaps = [("patch_embed.proj", "conv1"), ("pos_embed", "positional_embedding"), ("blocks.", "transformer.resblocks."),
             ("norm_pre", "ln_pre"), (".norm1", ".ln_1"), (".norm2", ".ln_2"), ("attn.qkv.", "attn.in_proj_"),
             ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
    clip = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if k in ("norm.weight", "norm.bias"):
            clip["visual.ln_post." + k.split(".")[1]] = v
            continue
        for a, b in swaps:
            k = k.replace(a, b)
        if k == "cls_token":
            k, v = "class_embedding", v.reshape(-1)
        elif k == "positional_embedding":
            v = v[0]
        clip["visual." + k] = v.contiguous()
    return clip


def check_strict(kw, sd):
    """Every key of the state dict is one timm's model has, and only BEiT's index buffers are left out."""
    missing, unexpected = make(kw).load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    for i, (name, kw) in enumerate(FAMILIES.items()):
        sd = state(kw, 10 + i)
        check_strict(kw, sd)
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
    clip = openai_clip(sd)
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
    # BEiT at other sizes (48 px, a 6×6 grid, and 24 px, 3×3): timm's checkpoint_filter_fn resizes
    # the relative position tables (resize_rel_pos_bias_table, without scipy) and resamples pos_embed.
    x48 = torch.from_numpy(np.load(F.out("golden", "size48_input.npy")))
    x24 = torch.nn.functional.avg_pool2d(x48, 2).contiguous()
    np.save(F.out("golden", "family_size24_input.npy"), x24.numpy())
    for name, size, x_in in [(n, sz, x) for n in ("beit", "rpe", "beitshared") for sz, x in ((48, x48), (24, x24))]:
        kw = dict(FAMILIES[name])
        sd = state(kw, 10 + list(FAMILIES).index(name))
        kw.pop("beit")
        m = timm.models.beit.Beit(img_size=size, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS,
                                  mlp_ratio=F.MLP, qkv_bias=True, num_classes=5, **kw)
        m.load_state_dict(timm.models.beit.checkpoint_filter_fn(dict(sd), m), strict=False)
        feats, attn = reference_of(m, x_in)
        np.save(F.out("golden", f"family_{name}_size{size}_features.npy"), feats)
        np.save(F.out("golden", f"family_{name}_size{size}_attention.npy"), attn)
        print(name, f"at {size} px", feats.shape)
    # mae-lite's RPE ViT as its training saves it: {"model": {"model.<timm key>": …}, "optimizer": …},
    # the relative position index buffers included (mae-lite registers them persistent).
    kw = FAMILIES["rpe"]
    sd = state(kw, 10 + list(FAMILIES).index("rpe"))
    index = {k: v.clone() for k, v in make(kw).named_buffers() if k.endswith("relative_position_index")}
    assert len(index) == F.DEPTH
    ckpt = {"model." + k: v for k, v in {**sd, **index}.items()}
    torch.manual_seed(7)
    optimizer = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.randn(F.DIM)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}
    torch.save({"model": ckpt, "optimizer": optimizer, "start_epoch": 100}, F.out("checkpoints", "family_rpe_maelite.pth"))
    # Damaged BEiT files, each refused in one line: an index that is not BEiT's, a table of the
    # wrong size.
    bad = dict(sd, **index)
    bad["blocks.1.attn.relative_position_index"] = index["blocks.1.attn.relative_position_index"].flip(1).contiguous()
    save_file(bad, F.out("checkpoints", "family_rpe_badindex.safetensors"), metadata={"num_heads": str(F.HEADS)})
    bad = dict(sd)
    bad["blocks.1.attn.relative_position_bias_table"] = bad["blocks.1.attn.relative_position_bias_table"][:-1].contiguous()
    save_file(bad, F.out("checkpoints", "family_rpe_badtable.safetensors"), metadata={"num_heads": str(F.HEADS)})


if __name__ == "__main__":
    main()
