"""Tiny 2025 ViTs and their float64 goldens from timm's own modules: 2 blocks, width 16, 2 heads,
patch 8, at 32 px and, for the rotary ones, 48 px (absolute tables resampled by timm's
checkpoint_filter_fn, the rotary grid following the run size):
- eva02: timm's `eva02_*_patch14_*` recipe (Eva: q/v biases, packed SwiGLU `fc1` gate first,
  absolute positions + RoPE θ 1e4 'ij' rescaled to the 16x16 pre-training grid, fc_norm);
  also as EVA's MIM pre-training saves it (`w12`, `w3`, `norm`, its rotary buffers, the MIM head);
- eva02clip: EVA-02 CLIP's (separate q/k/v projections, SwiGLU with the inner LayerNorm, a
  LayerNorm on the attention output, final norm), also saved as EVA-CLIP names it (`visual.*`,
  `q_bias`, `w1/w2/ffn_ln/w3`, `inner_attn_ln`) beside a text tower;
- pecore / pespatial: timm's `vit_pe_core_*` / `vit_pe_spatial_*` (ln_pre, no patch bias, RoPE
  θ 1e4 'xy' from 1 rescaled to the trained grid, exact GELU, eps 1e-5; core with LayerScale, an
  attention-pooling head and ln_post; spatial with neither), also in Meta's `.pt` layout
  (OpenAI CLIP's names, `visual.` prefix for core, none for spatial), checked by loading it back
  through timm's own converter (checkpoint_filter_fn);
- aimv2: timm's `aimv2_*` (VisionTransformer with RMSNorm eps 1e-5 everywhere and on the patch
  embeddings, SwiGLU fc1_g/fc1_x without biases, no qkv/proj biases, no class token), also in
  Apple's ml-aim layout (preprocessor.*, trunk.*), checked through timm's checkpoint_filter_fn;
- dinov3plus: timm's `vit_small_plus_patch16_dinov3` (DINOv3 with a SwiGLU MLP), also in
  Facebook's layout (storage_tokens, ls1.gamma, rope_embed.periods, qkv.bias with its bias_mask
  zeroing k, mlp.w1/w2/w3, mask_token, the rotary periods in bfloat16 as Facebook's files hold them), checked through timm's checkpoint_filter_fn.
Run from the repository root: python3 Tests/Fixtures/make_2025_fixtures.py (needs torch, timm,
safetensors, pillow, torchvision)."""
from functools import partial

import numpy as np
import torch
from safetensors.torch import save_file
from timm.layers import RmsNorm, SwiGLU
from timm.models import eva as timm_eva
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn as vit_checkpoint_filter_fn

import make_fixtures as F
from make_family_fixtures import reference_of

LN5 = partial(torch.nn.LayerNorm, eps=1e-5)
EVA = {
    "eva02": dict(qkv_bias=True, swiglu_mlp=True, mlp_ratio=4 * 2 / 3, use_rot_pos_emb=True, ref_feat_shape=(16, 16),
                  global_pool="avg"),
    "eva02clip": dict(qkv_bias=True, qkv_fused=False, swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True,
                      mlp_ratio=4 * 2 / 3, use_rot_pos_emb=True, ref_feat_shape=(16, 16), global_pool="token"),
    "pecore": dict(attn_type="rope", use_pre_transformer_norm=True, use_rot_pos_emb=True, rope_grid_offset=1.0,
                   rope_grid_indexing="xy", ref_feat_shape=(4, 4), global_pool="map", attn_pool_num_heads=2,
                   norm_layer=LN5, init_values=1e-5, mlp_ratio=F.MLP),
    "pespatial": dict(attn_type="rope", use_pre_transformer_norm=True, use_post_transformer_norm=False,
                      use_fc_norm=False, use_rot_pos_emb=True, rope_grid_offset=1.0, rope_grid_indexing="xy",
                      ref_feat_shape=(4, 4), global_pool="token", norm_layer=LN5, mlp_ratio=F.MLP),
    "dinov3plus": dict(qkv_bias=True, rope_type="dinov3", rope_temperature=100, rope_rotate_half=True,
                       num_reg_tokens=4, use_fc_norm=False, norm_layer=LN5, use_abs_pos_emb=False,
                       use_rot_pos_emb=True, swiglu_mlp=True, swiglu_align_to=8, init_values=1e-5,
                       global_pool="token", mlp_ratio=4.0),
}
ROTARY_48 = ("eva02", "eva02clip", "pecore", "pespatial", "dinov3plus")


def make(name, img):
    if name == "aimv2":
        return VisionTransformer(
            img_size=img, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS, mlp_ratio=2.75,
            class_token=False, fc_norm=False, global_pool="avg", qkv_bias=False, proj_bias=False, act_layer="silu",
            norm_layer=partial(RmsNorm, eps=1e-5), embed_norm_layer=partial(RmsNorm, eps=1e-5), mlp_layer=SwiGLU,
            num_classes=5)
    kw = dict(EVA[name])
    kw.setdefault("mlp_ratio", F.MLP)
    return Eva(img_size=img, patch_size=F.PATCH, embed_dim=F.DIM, depth=F.DEPTH, num_heads=F.HEADS, num_classes=5,
               **kw)


def state(name, seed):
    torch.manual_seed(seed)
    sd = {}
    for k, v in make(name, F.IMG).state_dict().items():
        if k.startswith("attn_pool") or k.startswith("head"):
            sd[k] = 0.1 * torch.randn_like(v)
        elif "norm" in k and k.endswith("weight"):
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("gamma_1") or k.endswith("gamma_2"):
            sd[k] = 0.5 + 0.4 * torch.randn_like(v)  # LayerScale far from 1, so a missing γ shows
        elif k.endswith("bias") or k in ("cls_token", "reg_token", "pos_embed"):
            sd[k] = 0.3 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) * (1.5 / v[0].numel() ** 0.5)
    return F.round_weights(sd)


def eva_clip(sd):
    """EVA-CLIP's names for the image tower (`visual.*`), beside a stand-in text tower."""
    out = {"text.token_embedding.weight": torch.zeros(8, 4), "logit_scale": torch.ones(())}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        for a, b in (("attn.q_proj.bias", "attn.q_bias"), ("attn.v_proj.bias", "attn.v_bias"), ("mlp.fc1_g", "mlp.w1"),
                     ("mlp.fc1_x", "mlp.w2"), ("mlp.norm", "mlp.ffn_ln"), ("mlp.fc2", "mlp.w3"),
                     ("attn.norm", "attn.inner_attn_ln")):
            k = k.replace(a, b)
        out["visual." + k] = v
    return out


def meta_pe(sd, prefix):
    """Meta's Perception Encoder names (the inverse of timm's _convert_pe)."""
    out = {}
    C = F.DIM
    for k, v in sd.items():
        if k.startswith("head."):
            if k == "head.weight":
                out[prefix + "proj"] = v.t().contiguous()
            continue
        if k == "cls_token":
            out[prefix + "class_embedding"] = v.reshape(-1)
            continue
        if k == "pos_embed":
            out[prefix + "positional_embedding"] = v[0]
            continue
        if k == "attn_pool.q.weight" or k == "attn_pool.q.bias":
            kind = k.split(".")[-1]
            out[prefix + f"attn_pool.attn.in_proj_{kind}"] = torch.cat([v, sd[f"attn_pool.kv.{kind}"]])
            continue
        if k.startswith("attn_pool.kv."):
            continue
        for a, b in (("attn_pool.latent", "attn_pool.probe"), ("attn_pool.norm", "attn_pool.layernorm"),
                     ("attn_pool.proj", "attn_pool.attn.out_proj"), ("attn_pool.mlp.fc1", "attn_pool.mlp.c_fc"),
                     ("attn_pool.mlp.fc2", "attn_pool.mlp.c_proj"), ("patch_embed.proj", "conv1"),
                     ("blocks.", "transformer.resblocks."), ("norm_pre", "ln_pre"), (".norm1", ".ln_1"),
                     (".norm2", ".ln_2"), ("gamma_1", "ls_1.gamma"), ("gamma_2", "ls_2.gamma"),
                     ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"), ("mlp.fc1", "mlp.c_fc"),
                     ("mlp.fc2", "mlp.c_proj")):
            k = k.replace(a, b)
        if k.startswith("norm."):
            k = "ln_post." + k[len("norm."):]
        out[prefix + k] = v.contiguous()
    return out


def eva_mim(sd):
    """EVA-02's MIM checkpoints as EVA's own code saves them (under "module"): `mlp.w12` (packed
    gate and up), `mlp.w3`, `norm` as the final norm, the MIM head and mask token, and the rotary
    buffers `rope.freqs_cos`/`rope.freqs_sin` of EVA's VisionRotaryEmbeddingFast at the trained grid
    (pt_seq_len 16; the grid's positions i·16/g, [y, x] bands, each angle repeated for its pair)."""
    D, g = F.DIM // F.HEADS, F.IMG // F.PATCH
    half = D // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    t = torch.arange(g).float() / g * 16
    f = torch.einsum("i,f->if", t, freqs).repeat_interleave(2, dim=-1)  # (g, half)
    angles = torch.cat([f[:, None, :].expand(g, g, half), f[None, :, :].expand(g, g, half)], dim=-1).reshape(g * g, D)
    out = {"mask_token": torch.zeros(1, 1, F.DIM), "lm_head.weight": torch.zeros(8, F.DIM),
           "lm_head.bias": torch.zeros(8), "rope.freqs_cos": angles.cos(), "rope.freqs_sin": angles.sin()}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        k = k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.").replace("fc_norm.", "norm.")
        out[k] = v.contiguous()
    return {"module": out}


def apple_aimv2(sd):
    """Apple's ml-aim names (the inverse of timm's _convert_aimv2): preprocessor.patchifier.*,
    preprocessor.pos_embed, trunk.blocks.N.{norm_1, norm_2, mlp.fc1 (gate), mlp.fc3 (up), mlp.fc2},
    trunk.post_trunk_norm."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if k.startswith("patch_embed."):
            k = "preprocessor.patchifier." + k[len("patch_embed."):]
        elif k == "pos_embed":
            k = "preprocessor.pos_embed"
        elif k.startswith("norm."):
            k = "trunk.post_trunk_norm." + k[len("norm."):]
        else:
            k = "trunk." + k.replace("norm1", "norm_1").replace("norm2", "norm_2").replace("mlp.fc1_g", "mlp.fc1")
            k = k.replace("mlp.fc1_x", "mlp.fc3")
        out[k] = v.contiguous()
    return out


def facebook_dinov3(sd):
    """Facebook's DINOv3 names: storage_tokens, ls1/ls2.gamma, qkv.bias with a bias_mask that
    zeroes k (the stored k bias is nonzero here, so a mask not applied shows), w1/w2/w3, the rope
    periods and a mask token."""
    D = F.DIM // F.HEADS
    periods = (100.0 ** (2 * torch.arange(D // 4, dtype=torch.float32) / (D // 2))).to(torch.bfloat16)
    out = {"mask_token": torch.zeros(1, F.DIM), "rope_embed.periods": periods}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        k2 = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        k2 = k2.replace("mlp.fc1_g", "mlp.w1").replace("mlp.fc1_x", "mlp.w2").replace("mlp.fc2", "mlp.w3")
        if k2.endswith("attn.q_bias"):
            n = k2[: -len("attn.q_bias")]
            kb = 0.3 * torch.ones_like(v)
            out[n + "attn.qkv.bias"] = torch.cat([v, kb, sd[k.replace("q_bias", "v_bias")]])
            out[n + "attn.qkv.bias_mask"] = torch.cat([torch.ones_like(v), torch.zeros_like(v), torch.ones_like(v)])
            continue
        if k2.endswith("attn.v_bias"):
            continue
        out[k2] = v.contiguous()
    return out


def through_timm(name, converted, img):
    """A model of `name` at `img` px loaded strictly from `converted` by timm's own converter."""
    m = make(name, img)
    convert = vit_checkpoint_filter_fn if name == "aimv2" else timm_eva.checkpoint_filter_fn
    missing, unexpected = m.load_state_dict(convert(converted, m), strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    return m


def parameter_counts():
    """timm's parameter count of each 2025 fixture's forward pass (the classifier and the
    attention-pooling head left out, as vitlens runs neither), for `inspect`'s parameters."""
    import json
    import make_rope_fixtures as R
    counts = {name: make(name, F.IMG) for name in list(EVA) + ["aimv2"]}
    counts["ropemixed"] = R.make("ropemixed", F.IMG)
    counts = {k: sum(p.numel() for n, p in m.named_parameters() if not n.startswith(("head", "attn_pool")))
              for k, m in counts.items()}
    with open(F.out("golden", "family_2025_parameters.json"), "w") as f:
        json.dump(counts, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    x48 = torch.from_numpy(np.load(F.out("golden", "size48_input.npy")))
    parameter_counts()
    names = list(EVA) + ["aimv2"]
    for i, name in enumerate(names):
        sd = state(name, 60 + i)
        make(name, F.IMG).load_state_dict(sd, strict=True)
        meta = {"num_heads": str(F.HEADS)}
        save_file(sd, F.out("checkpoints", f"family_{name}.safetensors"), metadata=meta)
        goldens = []
        for suffix, img, inp in (("", F.IMG, x), ("_size48", 48, x48)):
            if suffix and name not in ROTARY_48:
                continue
            m = make(name, img)
            if img == F.IMG:
                m.load_state_dict(sd, strict=True)
            else:
                m.load_state_dict(timm_eva.checkpoint_filter_fn(dict(sd), m), strict=True)
            feats, attn = reference_of(m, inp)
            np.save(F.out("golden", f"family_{name}{suffix}_features.npy"), feats)
            np.save(F.out("golden", f"family_{name}{suffix}_attention.npy"), attn)
            goldens.append((img, feats, attn))
            print(name, img, "px", feats.shape, attn.shape)
        # The authors' layouts, checked by timm's converter giving the same numbers.
        other = {"eva02": ("family_eva02_mim.pt", eva_mim(sd)),
                 "eva02clip": ("family_eva02clip_evaclip.pt", eva_clip(sd)),
                 "pecore": ("family_pecore_meta.pt", meta_pe(sd, "visual.")),
                 "pespatial": ("family_pespatial_meta.pt", meta_pe(sd, "")),
                 "dinov3plus": ("family_dinov3plus_fb.pth", facebook_dinov3(sd)),
                 "aimv2": ("family_aimv2_apple.pt", apple_aimv2(sd))}.get(name)
        if other:
            file, converted = other
            if name != "eva02clip":  # timm has no converter for EVA-CLIP's names with a text tower
                feats, attn = reference_of(through_timm(name, dict(converted), F.IMG), x)
                assert np.abs(feats - goldens[0][1]).max() < 1e-6 and np.abs(attn - goldens[0][2]).max() < 1e-6, file
            torch.save(converted, F.out("checkpoints", file))
            print(" ", file, "(through timm's converter: same goldens)" if name != "eva02clip" else "")


if __name__ == "__main__":
    main()
