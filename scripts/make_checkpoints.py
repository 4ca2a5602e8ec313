#!/usr/bin/env python3
"""Makes the bundled default checkpoint and demo photographs (run once; `make checkpoints`).

- checkpoints/vit_tiny_init.safetensors: timm's deit_tiny_patch16_224 architecture (width 192,
  12 blocks, 3 heads, 16x16 patches, 224x224) at its random initialisation with seed 0 — the
  paper's "Init" baseline — stored as F16 with `num_heads` metadata (about 11 MB).
- checkpoints/images/: 40 JPEGs cut from five public-domain/CC0 photographs bundled with
  scikit-image (NASA astronaut, Chelsea the cat, coffee cup, SpaceX rocket launch, Hubble deep
  field): each whole photograph plus seven seeded random crops, shorter side 256, quality 88.

    pip install torch timm safetensors pillow scikit-image
"""
import os
import random

import skimage
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SK = os.path.join(os.path.dirname(skimage.__file__), "data")


def main():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=1000)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"num_heads": "3", "architecture": "deit_tiny_patch16_224", "weights": "random init (timm, seed 0)",
            "made_by": "scripts/make_checkpoints.py"}
    save_file(sd, os.path.join(ROOT, "checkpoints", "vit_tiny_init.safetensors"), metadata=meta)
    out = os.path.join(ROOT, "checkpoints", "images")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    rng = random.Random(0)
    for name in ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg"]:
        im = Image.open(os.path.join(SK, name)).convert("RGB")
        w, h = im.size
        for k in range(8):
            if k == 0:
                crop = im
            else:
                s = rng.uniform(0.45, 0.9)
                cw, ch = int(w * s), int(h * rng.uniform(0.75, 1.0) * s)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                crop = im.crop((x, y, x + cw, y + ch))
            f = 256 / min(crop.size)
            crop = crop.resize((round(crop.size[0] * f), round(crop.size[1] * f)), Image.LANCZOS)
            crop.save(os.path.join(out, f"{name.rsplit('.', 1)[0]}_{k}.jpg"), quality=88)
    print("wrote checkpoints/vit_tiny_init.safetensors and checkpoints/images/")


if __name__ == "__main__":
    main()
