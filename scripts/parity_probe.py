#!/usr/bin/env python3
"""Full-size check of `vitlens probe` against an independent reference (run on a developer
machine: `make parity-probe`; needs torch, timm, safetensors, torchvision, scikit-learn,
scikit-image, pillow).

Real photographs (scripts/make_probe_images.py: 12 classes of crops of scikit-image's
public-domain/CC0 photographs, 40 each, 160 px) are split by vitlens (--split 0.3). The reference
computes the truncated features itself — timm in float64 from the same checkpoint, PIL bicubic
resize + centre crop (timm's eval transform), the final norm on every token, the mean of the
patch tokens — and fits scikit-learn's StandardScaler + LogisticRegression(C=1) to convergence
on the same train/test split. For each bundled model and each depth k the test accuracies are
compared: the issue's bound is |Δ| ≤ 0.06 for at least 11 of 12 depths.
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
from safetensors import safe_open
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torchvision import transforms

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VITLENS = os.path.join(ROOT, ".build", "release", "vitlens")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def truncated_features(ckpt, paths):
    heads = int(safe_open(ckpt, "pt").metadata()["num_heads"])
    from functools import partial
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_heads=heads, num_classes=0,
                          norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    sd = {k: v.float() for k, v in load_file(ckpt).items() if not k.startswith("head.")}
    m.load_state_dict(sd)
    m = m.double().eval()
    t = transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    feats = [[] for _ in m.blocks]
    with torch.no_grad():
        for i in range(0, len(paths), 32):
            x = torch.stack([t(Image.open(p).convert("RGB")) for p in paths[i:i + 32]]).double()
            x = m._pos_embed(m.patch_embed(x))
            for k, blk in enumerate(m.blocks):
                x = blk(x)
                feats[k].append(m.norm(x)[:, 1:].mean(1).numpy())
    return [np.concatenate(f) for f in feats]


def main():
    tmp = tempfile.mkdtemp(prefix="vitlens-probe-parity-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    data = os.path.join(tmp, "photos")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_probe_images.py"), data,
                    "--classes", "12", "--per-class", "40", "--size", "160", "--seed", "1"], check=True)
    ok_all = True
    for ckpt in ["checkpoints/vit_tiny_init.safetensors", "checkpoints/vit_tiny_mae_demo.safetensors"]:
        ckpt = os.path.join(ROOT, ckpt)
        out = os.path.join(tmp, os.path.basename(ckpt) + ".probe")
        subprocess.run([VITLENS, "probe", ckpt, "--train", data, "--split", "0.3", "--batch", "32", "--out", out, "--quiet"], check=True)
        rep = json.load(open(os.path.join(out, "probe.json")))
        ds = rep["setup"]["dataset"]
        classes = ds["classes"]
        def labelled(s):
            paths = s["images"]["paths"]
            return paths, np.array([classes.index(os.path.basename(os.path.dirname(p))) for p in paths])
        ptr, ytr = labelled(ds["train"])
        pte, yte = labelled(ds["test"])
        ftr, fte = truncated_features(ckpt, ptr), truncated_features(ckpt, pte)
        mine = {r["layers_kept"]: r for r in rep["results"][0]["layers"]}
        within = 0
        print(f"{os.path.basename(ckpt)}: {len(ptr)} train / {len(pte)} test images, {len(classes)} classes")
        print("   k   vitlens test  sklearn test   |Δ|     vitlens train  sklearn train")
        for k in range(1, len(ftr) + 1):
            sc = StandardScaler().fit(ftr[k - 1])
            clf = LogisticRegression(C=1.0, max_iter=20000, tol=1e-10).fit(sc.transform(ftr[k - 1]), ytr)
            te = clf.score(sc.transform(fte[k - 1]), yte)
            tr = clf.score(sc.transform(ftr[k - 1]), ytr)
            d = abs(mine[k]["test_accuracy"] - te)
            within += d <= 0.06
            print(f"  {k:2d}   {mine[k]['test_accuracy']:.4f}        {te:.4f}       {d:.4f}   "
                  f"{mine[k]['train_accuracy']:.4f}         {tr:.4f}")
        ok = within >= len(ftr) - 1
        ok_all &= ok
        print(f"  within ±0.06 at {within} of {len(ftr)} depths: {'ok' if ok else 'FAIL'}")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
