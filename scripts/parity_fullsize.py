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
"""
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
    m = m.double().eval()
    reps, probs = [], []
    for blk in m.blocks:
        blk.attn.fused_attn = False
        blk.norm1.register_forward_hook(lambda mod, i, o: reps.append(o))
        blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: probs.append(o))
    with torch.no_grad():
        reps.append(m.forward_features(x.double()))
    return torch.stack(reps).numpy(), torch.stack(probs).numpy()


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


def main():
    tmp = tempfile.mkdtemp(prefix="vitlens-parity-")
    crops = os.path.join(tmp, "crops")
    os.makedirs(crops)
    crop = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.CenterCrop(224)])
    for f in sorted(os.listdir(PHOTOS)):
        crop(Image.open(os.path.join(PHOTOS, f)).convert("RGB")).save(os.path.join(crops, f.rsplit(".", 1)[0] + ".png"))
    x_none, x_eval = inputs(crops, False), inputs(PHOTOS, True)

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
    sys.exit(0 if all(r[-1] for r in rows) else 1)


if __name__ == "__main__":
    main()
