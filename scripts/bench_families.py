#!/usr/bin/env python3
"""Forward speed of each model family against the plain ViT, in one run (developer machine: needs
torch, timm, safetensors). Random weights of ViT-Small size (width 384, 12 blocks, 6 heads, patch
16, 224 px) in each family's timm layout; `vitlens bench --batch 32` on each, rounds alternating
over all of them; prints per round and the medians, GFLOP/s and the ratio to the plain ViT.

  python3 scripts/bench_families.py [--rounds 5] [--families eva02,aimv2,...]
"""
import atexit
import shutil
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import timm
import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VITLENS = os.environ.get("VITLENS") or os.path.join(ROOT, ".build", "release", "vitlens")
S = dict(embed_dim=384, depth=12, num_heads=6, patch_size=16, img_size=224)
MODELS = {  # name: (timm builder, extra vitlens arguments)
    "vit": (lambda: timm.create_model("vit_small_patch16_224"), []),
    "rope-vit": (lambda: timm.create_model("vit_small_patch16_rope_224"), ["--image-size", "224"]),
    "rope-mixed": (lambda: timm.create_model("vit_small_patch16_rope_mixed_224"), ["--image-size", "224"]),
    "dinov3": (lambda: timm.create_model("vit_small_patch16_dinov3"), ["--image-size", "224"]),
    "dinov3-swiglu": (lambda: timm.create_model("vit_small_plus_patch16_dinov3"), ["--image-size", "224"]),
    "eva02": (lambda: timm.create_model("eva02_small_patch14_224", **S), []),
    "eva02-clip": (lambda: timm.create_model("eva02_base_patch16_clip_224", **S), []),
    "pe": (lambda: timm.create_model("vit_pe_core_small_patch16_384", img_size=224), []),
    "aimv2": (lambda: timm.create_model("aimv2_large_patch14_224", **S), []),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--families", default=",".join(MODELS))
    a = ap.parse_args()
    names = a.families.split(",")
    tmp = tempfile.mkdtemp(prefix="vitlens-bench-families-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    paths = {}
    for n in names:
        torch.manual_seed(0)
        m = MODELS[n][0]()
        sd = {k: (0.02 * torch.randn_like(v) if v.dtype == torch.float32 and v.dim() > 1 else v).contiguous()
              for k, v in m.state_dict().items() if v.dtype == torch.float32}
        paths[n] = os.path.join(tmp, n + ".safetensors")
        save_file(sd, paths[n], metadata={"num_heads": str(m.blocks[0].attn.num_heads)})
    rates = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names:
            out = subprocess.run([VITLENS, "bench", paths[n], "--batch", "32", "--iters", "5", "--json"] + MODELS[n][1],
                                 check=True, capture_output=True, text=True).stdout
            rates[n].append(json.loads(out)["gflops"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.1f}" for n in names), flush=True)
    base = statistics.median(rates[names[0]])
    print(f"median GFLOP/s over {a.rounds} rounds (ratio to {names[0]}; per-round ratio range):")
    for n in names:
        ratios = [x / y for x, y in zip(rates[n], rates[names[0]])]
        print(f"  {n:14s} {statistics.median(rates[n]):6.1f}  {statistics.median(rates[n]) / base:5.0%}"
              f"  ({min(ratios):.0%}–{max(ratios):.0%})")


if __name__ == "__main__":
    main()
