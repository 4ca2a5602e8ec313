#!/usr/bin/env python3
"""Trains the demo's second checkpoint: a ViT-Tiny pretrained as a masked autoencoder (MAE,
mae-lite's recipe in miniature: 75% masking, a 1-block decoder, normalised-pixel loss) on random
crops of the photographs scikit-image bundles. A toy — minutes on a CPU, a few thousand crops —
but a trained model whose attention and representations differ visibly from the random init.

    pip install torch timm safetensors pillow scikit-image
    python3 scripts/train_demo_checkpoint.py [--steps 1500]

Writes checkpoints/vit_tiny_mae_demo.safetensors (F16 encoder weights, timm names,
num_heads=12 in the metadata, as mae-lite's Tiny) — vitlens's own trainer will replace this
script once the training module exists.
"""
import argparse
import math
import os

import numpy as np
import skimage
import timm
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
          "motorcycle_left.png", "horse.png", "brick.png", "grass.png", "gravel.png", "camera.png"]


def sincos(dim, grid):
    y, x = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4.0))
    out = [np.sin(np.outer(x.ravel(), omega)), np.cos(np.outer(x.ravel(), omega)),
           np.sin(np.outer(y.ravel(), omega)), np.cos(np.outer(y.ravel(), omega))]
    pe = np.concatenate(out, 1)
    return torch.tensor(np.concatenate([np.zeros((1, dim)), pe], 0), dtype=torch.float32)[None]


class MAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = timm.models.vision_transformer.VisionTransformer(
            img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=12, num_classes=0)
        self.enc.pos_embed.data.copy_(sincos(192, 14))
        self.dec_embed = nn.Linear(192, 96)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 96))
        self.dec_pos = nn.Parameter(sincos(96, 14), requires_grad=False)
        self.dec = timm.models.vision_transformer.Block(96, 3, 4.0, qkv_bias=True)
        self.dec_norm = nn.LayerNorm(96)
        self.pred = nn.Linear(96, 16 * 16 * 3)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, imgs, ratio=0.75):
        e = self.enc
        x = e.patch_embed(imgs) + e.pos_embed[:, 1:]
        n, l, d = x.shape
        keep = int(l * (1 - ratio))
        ids = torch.argsort(torch.rand(n, l), 1)
        restore = torch.argsort(ids, 1)
        x = torch.gather(x, 1, ids[:, :keep, None].expand(-1, -1, d))
        x = torch.cat([(e.cls_token + e.pos_embed[:, :1]).expand(n, -1, -1), x], 1)
        x = e.norm(e.blocks(x))
        y = self.dec_embed(x)
        y_ = torch.cat([y[:, 1:], self.mask_token.expand(n, l - keep, -1)], 1)
        y_ = torch.gather(y_, 1, restore[:, :, None].expand(-1, -1, 96))
        y = torch.cat([y[:, :1], y_], 1) + self.dec_pos
        y = self.pred(self.dec_norm(self.dec(y)))[:, 1:]
        target = imgs.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 4, 5, 1).reshape(n, l, -1)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        mask = torch.ones(n, l)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        return (((y - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(os.cpu_count())
    images = [Image.open(os.path.join(SK, f)).convert("RGB") for f in PHOTOS]
    aug = transforms.Compose([
        transforms.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    model = MAE()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4 * args.batch / 256 * 4, betas=(0.9, 0.95), weight_decay=0.05)
    warm = max(1, args.steps // 10)
    for step in range(args.steps):
        lr_scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm)))
        for g in opt.param_groups:
            g["lr"] = 1.5e-4 * args.batch / 256 * 4 * lr_scale
        batch = torch.stack([aug(images[np.random.randint(len(images))]) for _ in range(args.batch)])
        loss = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    sd = {k: v.detach().half().contiguous() for k, v in model.enc.state_dict().items()}
    meta = {"num_heads": "12", "architecture": "ViT-Tiny (mae-lite Tiny: 12 heads)",
            "weights": f"MAE-pretrained {args.steps} steps x {args.batch} crops of scikit-image's sample photographs",
            "made_by": "scripts/train_demo_checkpoint.py"}
    save_file(sd, os.path.join(ROOT, "checkpoints", "vit_tiny_mae_demo.safetensors"), metadata=meta)
    print("wrote checkpoints/vit_tiny_mae_demo.safetensors")


if __name__ == "__main__":
    main()
