#!/usr/bin/env python3
"""Full-size check of `vitlens cka` and `vitlens attention` against a float64 reference of the
formulas of docs/reference.md (timm in float64 for the representations and attention logits, numpy for CKA and
the attention statistics). Run on a developer machine: `make parity` (needs torch, timm,
safetensors, pillow, scikit-image).

128 crops of the scikit-image photographs (224x224 PNG, --resize none); models: the bundled
checkpoints (ViT-Tiny init, 3 heads; the MAE demo model, 12 heads). Prints max |Δ| of the CKA
matrices (bound 2e-3) for batch 64 and 32, and the max relative error of the attention means
(bound 1e-3) for both conventions.
"""
import atexit
import shutil
import os
import random
import subprocess
import tempfile

import numpy as np
import skimage
import timm
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from torchvision import transforms

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VITLENS = os.environ.get("VITLENS") or os.path.join(ROOT, ".build", "release", "vitlens")  # VITLENS=PATH: another build
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def crops(folder, n=128):
    rng = random.Random(1)
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg"]
    ims = [Image.open(os.path.join(SK, f)).convert("RGB") for f in names]
    for i in range(n):
        im = ims[i % len(ims)]
        w, h = im.size
        s = int(min(w, h) * rng.uniform(0.3, 1.0))
        x, y = rng.randint(0, w - s), rng.randint(0, h - s)
        im.crop((x, y, x + s, y + s)).resize((224, 224), Image.BICUBIC).save(os.path.join(folder, f"{i:03d}.png"))
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def taps(path, x):
    with safe_open(path, "pt") as f:
        heads = int(f.metadata()["num_heads"])
    m = timm.models.vision_transformer.VisionTransformer(embed_dim=192, depth=12, num_heads=heads, num_classes=0)
    sd = {k: v.float() for k, v in load_file(path).items() if not k.startswith("head.")}
    m.load_state_dict(sd)
    m = m.double().eval()
    reps, qs, ks = [], [], []
    for blk in m.blocks:
        blk.attn.fused_attn = False
        blk.norm1.register_forward_hook(lambda mod, i, o: reps.append(o))
        blk.attn.q_norm.register_forward_hook(lambda mod, i, o: qs.append(o))
        blk.attn.k_norm.register_forward_hook(lambda mod, i, o: ks.append(o))
    out_reps, logits = [], []
    with torch.no_grad():
        for s in range(0, len(x), 16):
            reps.clear(); qs.clear(); ks.clear()
            reps_final = m.forward_features(x[s:s + 16].double())
            out_reps.append([r.numpy() for r in reps] + [reps_final.numpy()])
            logits.append([((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).numpy() for q, k in zip(qs, ks)])
    return ([np.concatenate([b[i] for b in out_reps]) for i in range(13)],
            [np.concatenate([b[i] for b in logits]) for i in range(12)])


def hsic(K, L):
    n = K.shape[0]
    one = np.ones((n, 1))
    r = np.trace(K @ L) + (one.T @ K @ one @ one.T @ L @ one).item() / ((n - 1) * (n - 2)) - 2 * (one.T @ K @ L @ one).item() / (n - 2)
    return r / (n * (n - 3))


def cka(A, B, batch):
    sums, count = np.zeros((len(A), len(B), 3)), 0
    n = A[0].shape[0]
    for s in range(0, n, batch):
        if min(batch, n - s) < 4:
            continue
        def gram(r):
            X = r[s:s + batch, 1:, :].reshape(min(batch, n - s), -1)
            K = X @ X.T
            np.fill_diagonal(K, 0)
            return K
        Ks, Ls = [gram(r) for r in A], [gram(r) for r in B]
        for i, K in enumerate(Ks):
            for j, L in enumerate(Ls):
                sums[i, j] += (hsic(K, K), hsic(K, L), hsic(L, L))
        count += 1
    m = sums / count
    return m[:, :, 1] / np.sqrt(m[:, :, 0] * m[:, :, 2])


def attention(logits, scale):
    g = 14
    yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    dist = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1)) * scale
    d, e = [], []
    for lg in logits:
        z = lg[:, :, 1:, 1:]
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        e.append((-p * np.log(p + 1e-6)).sum(-1).mean(axis=(0, 2)))
        d.append((p * dist).sum(-1).mean(axis=(0, 2)))
    return np.array(d), np.array(e)


def read_csv(path, col):
    rows = open(path).read().split("\n")[1:]
    return np.array([float(r.split(",")[col]) for r in rows if r])


def main():
    tmp = tempfile.mkdtemp(prefix="vitlens-an-parity-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    folder = os.path.join(tmp, "img")
    os.makedirs(folder)
    paths = crops(folder)
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    x = torch.stack([t(Image.open(p).convert("RGB")) for p in paths])
    a = os.path.join(ROOT, "checkpoints", "vit_tiny_init.safetensors")
    b = os.path.join(ROOT, "checkpoints", "vit_tiny_mae_demo.safetensors")
    ra, la = taps(a, x)
    rb, lb = taps(b, x)
    ok = True
    for batch in (64, 32):
        for name, (p, q), (A, B) in [("init vs mae", (a, b), (ra, rb)), ("mae vs mae", (b, None), (rb, rb))]:
            out = os.path.join(tmp, f"cka-{batch}-{name.replace(' ', '')}")
            subprocess.run([VITLENS, "cka", p] + ([q] if q else []) + ["--images", folder, "--resize", "none",
                            "--batch", str(batch), "--out", out, "--quiet"], check=True)
            got = read_csv(os.path.join(out, "cka.csv"), 2).reshape(13, 13)
            ref = cka(A, B, batch)
            err = np.nanmax(np.abs(got - ref))
            ok &= err <= 2e-3
            print(f"CKA {name:12s} batch {batch}: max |Δ| {err:.2e}  (diag {np.diag(got).min():.6f}..{np.diag(got).max():.6f})")
    for model, logits in [(a, la), (b, lb)]:
        for conv, scale in [("pixels", 16), ("mae-lite", 14)]:
            out = os.path.join(tmp, f"att-{os.path.basename(model)}-{conv}")
            subprocess.run([VITLENS, "attention", model, "--images", folder, "--resize", "none", "--convention", conv,
                            "--out", out, "--quiet"], check=True)
            d, e = read_csv(os.path.join(out, "attention.csv"), 2), read_csv(os.path.join(out, "attention.csv"), 3)
            rd, re_ = attention(logits, scale)
            ed = np.max(np.abs(d - rd.ravel()) / np.abs(rd.ravel()))
            ee = np.max(np.abs(e - re_.ravel()) / np.abs(re_.ravel()))
            ok &= ed <= 1e-3 and ee <= 1e-3
            print(f"attention {os.path.basename(model):28s} {conv:8s}: distance max rel {ed:.2e}, entropy max rel {ee:.2e}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
