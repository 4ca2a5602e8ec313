"""Hostile variants of the 2025 families' fixtures (Tests/Fixtures/corpus/families2025/), each
refused by vitlens in one error line naming what is wrong: a Facebook DINOv3 whose qkv bias mask
has the wrong shape or a value other than 0/1, whose rotary periods are another θ's, or that
lacks a SwiGLU layer; RoPE-Mixed frequencies of the wrong shape or not finite; EVA's rotary buffer
of the wrong shape; an EVA-CLIP SwiGLU half missing or mis-shaped; a SigLIP 2 linear patch
embedding that is not 3·p·p wide; an AIMv2 position table that is no square grid. Deterministic
(derived from the fixtures, no randomness). Run from the repository root after
make_2025_fixtures.py, make_rope_fixtures.py and the Hugging Face fixture scripts."""
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

import make_fixtures as F

OUT = F.out("corpus", "families2025", "x")[:-2]


def main():
    fb = torch.load(F.out("checkpoints", "family_dinov3plus_fb.pth"))
    a = dict(fb); a["blocks.0.attn.qkv.bias_mask"] = torch.ones(5); torch.save(a, f"{OUT}/fb_mask_shape.pth")
    a = dict(fb); m = a["blocks.0.attn.qkv.bias_mask"].clone(); m[0] = 0.5
    a["blocks.0.attn.qkv.bias_mask"] = m; torch.save(a, f"{OUT}/fb_mask_value.pth")
    a = dict(fb); a["rope_embed.periods"] = torch.tensor([1.0, 7.0]); torch.save(a, f"{OUT}/fb_periods.pth")
    a = dict(fb); del a["blocks.1.mlp.w2.weight"]; torch.save(a, f"{OUT}/fb_missing_w2.pth")
    mixed = load_file(F.out("checkpoints", "family_ropemixed.safetensors"))
    b = dict(mixed); b["rope.freqs"] = torch.zeros(2, 2, 2, 3); save_file(b, f"{OUT}/mixed_freqs_shape.safetensors")
    b = dict(mixed); f = b["rope.freqs"].clone(); f[0, 0, 0, 0] = float("nan"); b["rope.freqs"] = f
    save_file(b, f"{OUT}/mixed_freqs_nan.safetensors")
    mim = torch.load(F.out("checkpoints", "family_eva02_mim.pt"))
    c = {"module": dict(mim["module"])}; c["module"]["rope.freqs_cos"] = torch.zeros(3, 8)
    torch.save(c, f"{OUT}/mim_cos_shape.pt")
    eva = load_file(F.out("checkpoints", "family_eva02clip.safetensors"))
    d = dict(eva); del d["blocks.0.mlp.fc1_x.weight"]; save_file(d, f"{OUT}/evaclip_missing_x.safetensors")
    d = dict(eva); d["blocks.0.mlp.fc1_x.weight"] = torch.zeros(7, 16); save_file(d, f"{OUT}/evaclip_x_shape.safetensors")
    for name, source, key, value in [
            ("siglip2_patch", "family_hf_siglip2vision", "embeddings.patch_embedding.weight", torch.zeros(16, 100)),
            ("aimv2_positions", "family_hf_aimv2", "embeddings.position_embedding.weight", torch.zeros(3, 16))]:
        folder = f"{OUT}/{name}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(F.out("checkpoints", source), folder)
        s = load_file(f"{folder}/model.safetensors")
        s[key] = value
        save_file(s, f"{folder}/model.safetensors")
    print("wrote", len(os.listdir(OUT)), "cases to", OUT)


if __name__ == "__main__":
    main()
