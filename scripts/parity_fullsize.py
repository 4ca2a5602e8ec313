#!/usr/bin/env python3
"""Full-size parity of `vitlens extract` against timm in float64 (run on a developer machine:
`make parity`; needs torch, timm, safetensors, pillow).

For each layout — DeiT-Tiny (3 heads), mae-lite's MAE-Tiny (12 heads), MoCo v3 ViT-Small,
DINO ViT-S/16, a Hugging Face ViT folder, a ViT-Small — in safetensors F32/F16 and torch .pth,
random weights at a scale that makes attention far from uniform are saved, vitlens extracts
representations and attention of the bundled photographs, and the largest deviations from
timm (float64, same weights) are printed:
  rep   max |Δ| / max(1, |ref|) over every tapped representation   (bound 1e-3)
  attn  max |Δ| of the attention probabilities                       (bound 1e-4)
with --resize none on 224x224 PNG crops, and, with --resize timm-eval on the original JPEGs,
the mean relative error of the features against PIL + torchvision + timm (bound 3e-2).

Then the model families at their published sizes (random weights, timm float64, --resize none at
224 px, same bounds): DeiT III-S/16, DINOv2 ViT-S/14 with 4 registers (a 518 px checkpoint run at
224: position embeddings resampled as timm resamples them), CLIP ViT-B/16 with QuickGELU as
OpenAI's weights need (timm's `vit_base_patch16_clip_quickgelu_224`; timm and OpenAI layouts), SigLIP B/16 (timm's builder, exact GELU, told by a `hidden_act` in the metadata),
BEiT-B/16 and mae-lite's RPE ViT-Tiny (12 heads, its own checkpoint layout).
`--families` runs only those.
"""
import atexit
import shutil
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "Tests", "Fixtures"))
from make_family_fixtures import openai_clip as openai_clip_tower, reference_of as family_reference  # noqa: E402
VITLENS = os.environ.get("VITLENS") or os.path.join(ROOT, ".build", "release", "vitlens")  # VITLENS=PATH: another build
PHOTOS = os.path.join(ROOT, "checkpoints", "images")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def weights(arch, heads, seed, **kw):
    torch.manual_seed(seed)
    m = timm.create_model(arch, pretrained=False, num_heads=heads, **kw)
    sd = {}
    for k, v in m.state_dict().items():
        if k.endswith(("norm1.weight", "norm2.weight")) or k in ("norm.weight", "fc_norm.weight"):
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("bias") or k in ("cls_token", "pos_embed"):
            sd[k] = 0.1 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) / v[0].numel() ** 0.5
    return {k: v.contiguous() for k, v in sd.items()}


def reference(arch, heads, sd, x, eps=1e-6):
    from functools import partial
    m = timm.create_model(arch, pretrained=False, num_heads=heads,
                          norm_layer=partial(torch.nn.LayerNorm, eps=eps))
    m.load_state_dict(sd)
    return family_reference(m, x)


def hf_state(sd, dim, depth):
    hf = {"vit.embeddings.cls_token": sd["cls_token"], "vit.embeddings.position_embeddings": sd["pos_embed"],
          "vit.embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
          "vit.embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
          "vit.layernorm.weight": sd["norm.weight"], "vit.layernorm.bias": sd["norm.bias"]}
    names = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
             "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    for i in range(depth):
        for a, b in names.items():
            for t in ("weight", "bias"):
                hf[f"vit.encoder.layer.{i}.{b}.{t}"] = sd[f"blocks.{i}.{a}.{t}"]
        for t in ("weight", "bias"):
            qkv = sd[f"blocks.{i}.attn.qkv.{t}"]
            for j, n in enumerate(("query", "key", "value")):
                hf[f"vit.encoder.layer.{i}.attention.attention.{n}.{t}"] = qkv[j * dim:(j + 1) * dim].clone()
    return hf


def inputs(folder, resize):
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    ops = ([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224)]
           if resize else []) + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    t = transforms.Compose(ops)
    return torch.stack([t(Image.open(p).convert("RGB")) for p in paths])


def run_vitlens(ckpt, images, resize, heads, out):
    cmd = [VITLENS, "extract", ckpt, "--images", images, "--resize", resize, "--out", out, "--quiet", "--batch", "8"]
    if heads:
        cmd += ["--heads", str(heads)]
    subprocess.run(cmd, check=True)
    return np.load(os.path.join(out, "features.npy")), np.load(os.path.join(out, "attention.npy"))


def family_weights(model, seed):
    """Seeded weights far from uniform attention: norms near 1, LayerScale near 0.5, relative
    tables of size 0.8, biases and tokens 0.1, matrices of unit gain."""
    torch.manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if v.dtype != torch.float32:
            continue
        if k.endswith(("norm1.weight", "norm2.weight", "norm.weight")) or k == "norm_pre.weight":
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith(("gamma", "gamma_1", "gamma_2")):
            sd[k] = 0.5 + 0.2 * torch.randn_like(v)
        elif k == "rope.freqs":
            sd[k] = 0.3 * torch.randn_like(v)  # learned frequencies, seeded like everything else
        elif k.endswith("relative_position_bias_table"):
            sd[k] = 0.8 * torch.randn_like(v)
        elif k.endswith("bias") or v.dim() < 2 or k in ("cls_token", "pos_embed", "reg_token"):
            sd[k] = 0.1 * torch.randn_like(v)
        else:
            sd[k] = torch.randn_like(v) / v[0].numel() ** 0.5
    return {k: v.contiguous() for k, v in sd.items()}


def openai_clip(sd):
    """timm's CLIP names back to OpenAI's (`visual.*`) as the state dicts are published, beside
    text-tower tensors for the layout to be recognised by."""
    out = openai_clip_tower(sd)
    out["text_projection"] = torch.zeros(512, 512)
    out["token_embedding.weight"] = torch.zeros(10, 512)
    return out


def families(tmp, crops, x_none):
    from timm.models.beit import Beit
    from timm.models.vision_transformer import checkpoint_filter_fn
    cases = [  # name, builder, heads, layout, image size the checkpoint is made at
        ("DeiT III-S/16", lambda s: timm.create_model("deit3_small_patch16_224", img_size=s), 6, "timm", 224),
        ("DINOv2-S/14 reg4", lambda s: timm.create_model("vit_small_patch14_reg4_dinov2", img_size=s), 6, "timm", 518),
        ("CLIP B/16", lambda s: timm.create_model("vit_base_patch16_clip_quickgelu_224", img_size=s), 12, "timm", 224),
        ("CLIP B/16", lambda s: timm.create_model("vit_base_patch16_clip_quickgelu_224", img_size=s), 12, "openai", 224),
        ("SigLIP B/16", lambda s: timm.create_model("vit_base_patch16_siglip_224", img_size=s), 12, "siglip", 224),
        ("BEiT-B/16", lambda s: timm.create_model("beit_base_patch16_224", img_size=s), 12, "timm", 224),
        ("mae-lite RPE-Tiny", lambda s: Beit(img_size=s, embed_dim=192, depth=12, num_heads=12, use_abs_pos_emb=True,
                                             use_rel_pos_bias=True), 12, "mae-lite", 224),
        ("RoPE ViT-B/16", lambda s: timm.create_model("vit_base_patch16_rope_224", img_size=s), 12, "timm", 224),
        ("DINOv3-S/16", lambda s: timm.create_model("vit_small_patch16_dinov3", img_size=s), 6, "timm", 224),
        ("RoPE ViT-B/16 reg1 gap", lambda s: timm.create_model("vit_base_patch16_rope_reg1_gap_256", img_size=s), 12,
         "timm", 256),
        # Registers without a class token (global pooling): exact GELU, not SigLIP's.
        ("ViT-Little reg4 gap", lambda s: timm.create_model("vit_little_patch16_reg4_gap_256", img_size=s), 5, "timm",
         256),
        # The 2025 families: EVA-02 (SwiGLU, q/v biases, absolute + rotary positions), EVA-02 CLIP (separate
        # q/k/v, SwiGLU with its inner norm, a norm on the attention output), Perception Encoder core and
        # spatial (made at 384 and 512 px: positions resampled, the rotary grid rescaled), AIMv2 (RMSNorm,
        # no biases; narrowed to width 512, depth 8 to keep the run short), DINOv3 S+ (SwiGLU).
        ("EVA-02-Ti/14", lambda s: timm.create_model("eva02_tiny_patch14_224", img_size=s), 3, "timm", 224),
        ("EVA-02 CLIP B/16", lambda s: timm.create_model("eva02_base_patch16_clip_224", img_size=s), 12, "timm", 224),
        ("PE-core-T/16", lambda s: timm.create_model("vit_pe_core_tiny_patch16_384", img_size=s), 3, "timm", 384),
        ("PE-spatial-T/16", lambda s: timm.create_model("vit_pe_spatial_tiny_patch16_512", img_size=s), 3, "pe", 512),
        ("AIMv2-L/14 narrowed", lambda s: timm.create_model("aimv2_large_patch14_224", img_size=s, embed_dim=512,
                                                            depth=8, num_heads=4), 4, "timm", 224),
        ("DINOv3-S+/16", lambda s: timm.create_model("vit_small_plus_patch16_dinov3", img_size=s), 6, "timm", 224),
        ("RoPE-Mixed ViT-S/16", lambda s: timm.create_model("vit_small_patch16_rope_mixed_224", img_size=s), 6, "timm",
         224),
    ]
    ok = True
    only = os.environ.get("FAMILIES")  # e.g. FAMILIES=CLIP: the rows whose name contains it
    for i, (name, build, heads, layout, size) in enumerate(cases):
        if only and only not in name:
            continue
        sd = family_weights(build(size), seed=100 + i)
        path = os.path.join(tmp, f"family{i}")
        meta = {"num_heads": str(heads)}
        if layout == "openai":
            path += ".pt"
            torch.save(openai_clip(sd), path)
        elif layout == "mae-lite":
            path += ".pth"
            torch.save({"model": {"model." + k: v for k, v in sd.items()}, "optimizer": {"state": {}, "param_groups": []}}, path)
        else:
            if layout == "siglip":
                meta["hidden_act"] = "gelu"  # timm's vit_base_patch16_siglip_224 builds exact GELU
            path += ".safetensors"
            save_file(sd, path, metadata=meta)
        model = build(224)
        # At 224 a 518 px checkpoint's position embedding is resampled as timm resamples it on load.
        from timm.models import eva
        filter_fn = eva.checkpoint_filter_fn if isinstance(model, eva.Eva) else checkpoint_filter_fn
        model.load_state_dict(filter_fn(dict(sd), model) if size != 224 else sd, strict=False)
        ref_rep, ref_att = family_reference(model, x_none)
        cmd_heads = heads if layout in ("openai", "mae-lite") else None
        cmd = [VITLENS, "extract", path, "--images", crops, "--resize", "none", "--image-size", "224", "--out", path + ".out",
               "--quiet", "--batch", "8"] + (["--heads", str(cmd_heads)] if cmd_heads else [])
        if name.startswith("CLIP"):
            cmd += ["--family", "clip"]  # CLIP's tensor names are Perception Encoder's too: vitlens asks
        if layout == "pe":
            cmd += ["--family", "pe"]  # PE spatial: CLIP's tensors without a final norm or a pooling head
        subprocess.run(cmd, check=True)
        rep, att = np.load(os.path.join(path + ".out", "features.npy")), np.load(os.path.join(path + ".out", "attention.npy"))
        rep_err = float(np.max(np.abs(rep - ref_rep) / np.maximum(1, np.abs(ref_rep))))
        att_err = float(np.max(np.abs(att - ref_att)))
        good = rep_err <= 1e-3 and att_err <= 1e-4
        ok &= good
        print(f"{name:22s} heads {heads:2d}  {layout:8s} {size} px  rep {rep_err:.2e}  attn {att_err:.2e}  {'ok' if good else 'FAIL'}",
              flush=True)
    return ok


def main():
    tmp = tempfile.mkdtemp(prefix="vitlens-parity-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    crops = os.path.join(tmp, "crops")
    os.makedirs(crops)
    crop = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.CenterCrop(224)])
    for f in sorted(os.listdir(PHOTOS)):
        crop(Image.open(os.path.join(PHOTOS, f)).convert("RGB")).save(os.path.join(crops, f.rsplit(".", 1)[0] + ".png"))
    x_none, x_eval = inputs(crops, False), inputs(PHOTOS, True)
    if "--families" in sys.argv[1:]:
        sys.exit(0 if families(tmp, crops, x_none) else 1)

    cases = [  # name, timm arch, heads, layout, format
        ("DeiT-Tiny", "deit_tiny_patch16_224", 3, "timm", "f32"),
        ("DeiT-Tiny", "deit_tiny_patch16_224", 3, "timm", "f16"),
        ("DeiT-Tiny", "deit_tiny_patch16_224", 3, "timm", "pth"),
        ("MAE-Tiny (mae-lite)", "deit_tiny_patch16_224", 12, "mae", "pth"),
        ("MoCo v3 ViT-Small", "vit_small_patch16_224", 12, "moco", "pth"),
        ("DINO ViT-S/16", "vit_small_patch16_224", 6, "dino", "pth"),
        ("HF ViT (Tiny)", "deit_tiny_patch16_224", 3, "hf", "f32"),
        ("ViT-Small", "vit_small_patch16_224", 6, "timm", "f32"),
        ("ViT-Small", "vit_small_patch16_224", 6, "timm", "f16"),
    ]
    rows = []
    for i, (name, arch, heads, layout, fmt) in enumerate(cases):
        sd = weights(arch, heads, seed=i)
        if fmt == "f16":
            sd = {k: v.half().float() for k, v in sd.items()}
        body = {k: v for k, v in sd.items() if not k.startswith("head.")}
        path = os.path.join(tmp, f"case{i}")
        eps = 1e-6
        pass_heads = heads
        if layout == "timm" and fmt in ("f32", "f16"):
            path += ".safetensors"
            save_file({k: (v.half() if fmt == "f16" else v) for k, v in sd.items()}, path)
        elif layout == "timm":
            path += ".pth"
            torch.save(sd, path)
        elif layout == "mae":
            path += ".pth"
            m = {"model." + k: v for k, v in body.items()}
            m["model.decoder_embed.weight"] = torch.zeros(96, 192)
            m["model.mask_token"] = torch.zeros(1, 1, 96)
            torch.save({"model": m, "optimizer": {"state": {}, "param_groups": []}}, path)
        elif layout == "moco":
            path += ".pth.tar"
            m = {"module.base_encoder." + k: v for k, v in body.items()}
            m.update({"module.momentum_encoder." + k: v for k, v in body.items()})
            m["module.base_encoder.head.0.weight"] = torch.zeros(4096, 384)
            m["module.predictor.0.weight"] = torch.zeros(4096, 256)
            torch.save({"epoch": 300, "arch": "vit_small", "state_dict": m}, path)
        elif layout == "dino":
            path += ".pth"
            t = {"backbone." + k: v for k, v in body.items()}
            t["head.mlp.0.weight"] = torch.zeros(2048, 384)
            torch.save({"teacher": t, "student": {"module." + k: v for k, v in t.items()}, "epoch": 100}, path)
        elif layout == "hf":
            os.makedirs(path)
            eps = 1e-12
            save_file(hf_state(body, 192, 12), os.path.join(path, "model.safetensors"))
            json.dump({"model_type": "vit", "hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3,
                       "intermediate_size": 768, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                       "image_size": 224, "patch_size": 16, "qkv_bias": True}, open(os.path.join(path, "config.json"), "w"))
            pass_heads = None
        ref_rep, ref_att = reference(arch, heads, sd, x_none, eps)
        rep, att = run_vitlens(path, crops, "none", pass_heads, path + ".out-none")
        rep_err = float(np.max(np.abs(rep - ref_rep) / np.maximum(1, np.abs(ref_rep))))
        att_err = float(np.max(np.abs(att - ref_att)))
        ref_eval, _ = reference(arch, heads, sd, x_eval, eps)
        rep_e, _ = run_vitlens(path, PHOTOS, "timm-eval", pass_heads, path + ".out-eval")
        mre = float(np.abs(rep_e - ref_eval).mean() / np.abs(ref_eval).mean())
        ok = rep_err <= 1e-3 and att_err <= 1e-4 and mre <= 3e-2
        rows.append((name, heads, layout, fmt, rep_err, att_err, mre, ok))
        print(f"{name:22s} heads {heads:2d}  {layout:5s} {fmt:4s}  rep {rep_err:.2e}  attn {att_err:.2e}  "
              f"timm-eval mean rel {mre:.2e}  {'ok' if ok else 'FAIL'}", flush=True)
    fam = families(tmp, crops, x_none)
    sys.exit(0 if all(r[-1] for r in rows) and fam else 1)


if __name__ == "__main__":
    main()
