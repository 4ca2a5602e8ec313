#!/usr/bin/env python3
"""Makes the tiny fixtures and goldens the Swift tests check against (run once; CI never needs it).

A 2-block micro-ViT (32x32 images, 8x8 patches, width 16, 2 heads) with random weights is saved
in every checkpoint layout vitlens reads; timm, run in float64, gives the reference
representations and attention maps; PIL + torchvision give the reference preprocessing.

    pip install torch timm safetensors pillow scikit-image
    python3 Tests/Fixtures/make_fixtures.py        # or: make fixtures

Photographs are crops of scikit-image's bundled public-domain/CC0 samples (NASA astronaut,
Chelsea the cat, coffee cup, SpaceX rocket, Hubble deep field).
"""
import json
import os
import shutil

import numpy as np
import skimage
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
IMG, PATCH, DIM, DEPTH, HEADS, MLP = 32, 8, 16, 2, 2, 2.0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def out(*p):
    path = os.path.join(HERE, *p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def round_weights(sd):
    """Values exactly representable in float16 and bfloat16, so every dtype gives the same model."""
    r = {}
    for k, v in sd.items():
        v = v.float().to(torch.bfloat16).float()
        v[v.abs() < 1e-3] = 0
        r[k] = v.contiguous()
    return r


def make_model(img=IMG, **kw):
    return timm.models.vision_transformer.VisionTransformer(
        img_size=img, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=MLP, qkv_bias=True, num_classes=5, **kw)


def random_state():
    torch.manual_seed(0)
    m = make_model()
    sd = {}
    for k, v in m.state_dict().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            sd[k] = 1 + 0.2 * torch.randn_like(v)
        elif k.endswith("bias") or k in ("cls_token", "pos_embed"):
            sd[k] = 0.3 * torch.randn_like(v)
        else:
            fan_in = v[0].numel()
            sd[k] = torch.randn_like(v) * (1.5 / fan_in ** 0.5)
    return round_weights(sd)


def save_layouts(sd):
    ck = out("checkpoints", "x")
    shutil.rmtree(os.path.dirname(ck))
    os.makedirs(os.path.dirname(ck))
    meta = {"num_heads": str(HEADS)}
    save_file(sd, out("checkpoints", "tiny_f32.safetensors"), metadata=meta)
    # Finite weights whose activations overflow float32 (for the non-finite activation error).
    big = dict(sd)
    big["blocks.0.mlp.fc1.weight"] = torch.full_like(sd["blocks.0.mlp.fc1.weight"], 1e38)
    save_file(big, out("checkpoints", "tiny_overflow_f32.safetensors"), metadata=meta)
    save_file({k: v.half() for k, v in sd.items()}, out("checkpoints", "tiny_f16.safetensors"), metadata=meta)
    save_file({k: v.bfloat16() for k, v in sd.items()}, out("checkpoints", "tiny_bf16.safetensors"), metadata=meta)
    torch.save(sd, out("checkpoints", "tiny_timm.pth"))
    # mae-lite: {"model": {"model.<timm key>", decoder_*, mask_token}, "optimizer": {...}}
    dec = {"model.decoder_embed.weight": torch.zeros(8, DIM), "model.mask_token": torch.zeros(1, 1, 8),
           "model.decoder_pred.bias": torch.zeros(PATCH * PATCH * 3)}
    mae = {"model." + k: v for k, v in sd.items() if not k.startswith("head.")}
    mae.update(dec)
    torch.save({"model": mae, "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0, 1]}]},
                "start_epoch": 400}, out("checkpoints", "tiny_mae.pth"))
    # MoCo v3: module.base_encoder.*, a projector head, a momentum encoder and a predictor.
    moco = {"module.base_encoder." + k: v for k, v in sd.items() if not k.startswith("head.")}
    moco.update({"module.base_encoder.head.0.weight": torch.ones(32, DIM),
                 "module.base_encoder.head.1.running_mean": torch.zeros(32),
                 "module.base_encoder.head.1.num_batches_tracked": torch.tensor(7)})
    moco.update({"module.momentum_encoder." + k: v + 1 for k, v in sd.items() if not k.startswith("head.")})
    moco["module.predictor.0.weight"] = torch.ones(32, 32)
    torch.save({"epoch": 300, "arch": "vit_tiny", "state_dict": moco, "optimizer": {"state": {}, "param_groups": []}},
               out("checkpoints", "tiny_moco.pth.tar"))
    # DINO: teacher/student with backbone. and a DINO head.
    teacher = {"backbone." + k: v for k, v in sd.items() if not k.startswith("head.")}
    teacher["head.mlp.0.weight"] = torch.ones(16, DIM)
    student = {"module." + k: v + 1 for k, v in teacher.items()}
    torch.save({"student": student, "teacher": teacher, "epoch": 100}, out("checkpoints", "tiny_dino.pth"))
    # Hugging Face ViT folder: separate q/k/v, HF names, heads and eps in config.json.
    hf = {}
    hf["vit.embeddings.cls_token"] = sd["cls_token"]
    hf["vit.embeddings.position_embeddings"] = sd["pos_embed"]
    hf["vit.embeddings.patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"]
    hf["vit.embeddings.patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    for i in range(DEPTH):
        p, q = f"blocks.{i}.", f"vit.encoder.layer.{i}."
        hf[q + "layernorm_before.weight"] = sd[p + "norm1.weight"]
        hf[q + "layernorm_before.bias"] = sd[p + "norm1.bias"]
        w, b = sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]
        for j, name in enumerate(["query", "key", "value"]):
            hf[q + f"attention.attention.{name}.weight"] = w[j * DIM:(j + 1) * DIM].clone()
            hf[q + f"attention.attention.{name}.bias"] = b[j * DIM:(j + 1) * DIM].clone()
        hf[q + "attention.output.dense.weight"] = sd[p + "attn.proj.weight"]
        hf[q + "attention.output.dense.bias"] = sd[p + "attn.proj.bias"]
        hf[q + "layernorm_after.weight"] = sd[p + "norm2.weight"]
        hf[q + "layernorm_after.bias"] = sd[p + "norm2.bias"]
        hf[q + "intermediate.dense.weight"] = sd[p + "mlp.fc1.weight"]
        hf[q + "intermediate.dense.bias"] = sd[p + "mlp.fc1.bias"]
        hf[q + "output.dense.weight"] = sd[p + "mlp.fc2.weight"]
        hf[q + "output.dense.bias"] = sd[p + "mlp.fc2.bias"]
    hf["vit.layernorm.weight"] = sd["norm.weight"]
    hf["vit.layernorm.bias"] = sd["norm.bias"]
    hf["classifier.weight"] = sd["head.weight"]
    hf["classifier.bias"] = sd["head.bias"]
    os.makedirs(out("checkpoints", "tiny_hf", "x").rsplit("/", 1)[0], exist_ok=True)
    save_file({k: v.contiguous() for k, v in hf.items()}, out("checkpoints", "tiny_hf", "model.safetensors"))
    with open(out("checkpoints", "tiny_hf", "config.json"), "w") as f:
        json.dump({"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": DIM,
                   "num_hidden_layers": DEPTH, "num_attention_heads": HEADS, "intermediate_size": int(DIM * MLP),
                   "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": IMG, "patch_size": PATCH,
                   "num_channels": 3, "qkv_bias": True}, f, indent=2)


def save_hostile():
    """A deflated re-zip of a real checkpoint, and a torch archive whose pickle calls os.system."""
    import pickle
    import zipfile
    src = out("checkpoints", "tiny_timm.pth")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out("checkpoints", "tiny_timm_deflated.pth"), "w",
                                                      zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(zipfile.ZipInfo(item.filename, date_time=(2020, 1, 1, 0, 0, 0)), zin.read(item.filename),
                          compress_type=zipfile.ZIP_DEFLATED)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/vitlens-pwned",))

    with zipfile.ZipFile(out("checkpoints", "evil_os_system.pth"), "w", zipfile.ZIP_STORED) as z:
        for name, data in [("evil/data.pkl", pickle.dumps({"model": Evil()}, protocol=2)),
                           ("evil/byteorder", b"little"), ("evil/version", b"3\n")]:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


def photos():
    """(name, PIL RGB image) for the bundled public-domain/CC0 photographs."""
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg"]
    return [(n.split(".")[0], Image.open(os.path.join(SK, n)).convert("RGB")) for n in names]


def save_images():
    shutil.rmtree(out("images", "x").rsplit("/", 1)[0], ignore_errors=True)
    ph = photos()
    # --resize none: exactly 32x32, in the PNG flavours vitlens must handle.
    small = [(n, im.resize((IMG, IMG), Image.BICUBIC)) for n, im in ph]
    small[0][1].save(out("images", "none", "a_astronaut.png"))
    small[1][1].convert("L").save(out("images", "none", "b_chelsea_grey.png"))
    rgba = small[2][1].convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out("images", "none", "c_coffee_rgba.png"))
    small[3][1].quantize(64).save(out("images", "none", "sub", "d_rocket_palette.png"))
    # --resize timm-eval: JPEGs and a PNG of other sizes and aspect ratios.
    sizes = [(45, 37), (37, 60), (50, 50), (64, 43)]
    for (n, im), (w, h) in zip(ph[1:], sizes):
        crop = im.resize((w, h), Image.LANCZOS)
        if n == "hubble_deep_field":
            crop.save(out("images", "eval", f"{n}_{w}x{h}.png"))
        else:
            crop.save(out("images", "eval", f"{n}_{w}x{h}.jpg"), quality=92)


def list_images(folder):
    found = []
    for root, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                found.append(os.path.relpath(os.path.join(root, f), folder))
    return [os.path.join(folder, f) for f in sorted(found)]


def preprocess(paths, resize):
    ops = []
    if resize:
        ops += [transforms.Resize(round(IMG / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(IMG)]
    ops += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    t = transforms.Compose(ops)
    return torch.stack([t(Image.open(p).convert("RGB")) for p in paths])


def reference(sd, x, img=IMG):
    """timm in float64: normed and residual representations, attention logits and probabilities."""
    m = make_model(img=img)
    if img != IMG:
        from timm.models.vision_transformer import checkpoint_filter_fn
        sd = checkpoint_filter_fn(sd, m)
    m.load_state_dict(sd)
    m = m.double().eval()
    normed, resid, probs, qs, ks = [], [], [], [], []
    hooks = [m.blocks[0].register_forward_pre_hook(lambda mod, inp: resid.append(inp[0]))]
    for blk in m.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.norm1.register_forward_hook(lambda mod, i, o: normed.append(o)))
        hooks.append(blk.register_forward_hook(lambda mod, i, o: resid.append(o)))
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: probs.append(o)))
        hooks.append(blk.attn.q_norm.register_forward_hook(lambda mod, i, o: qs.append(o)))
        hooks.append(blk.attn.k_norm.register_forward_hook(lambda mod, i, o: ks.append(o)))
    with torch.no_grad():
        final = m.forward_features(x.double())
    normed.append(final)
    logits = [(q * m.blocks[0].attn.scale) @ k.transpose(-2, -1) for q, k in zip(qs, ks)]
    f32 = lambda ts: torch.stack(ts).float().numpy()
    return {"features": f32(normed), "residual": f32(resid), "attention": f32(probs), "logits": f32(logits)}


def save_resize_goldens():
    """PIL bicubic resizes (down, up, one axis) of a photo, uint8, for the resampler test."""
    im = Image.open(os.path.join(SK, "chelsea.png")).convert("RGB").crop((100, 50, 181, 111))  # 81x61
    im.save(out("golden", "resize_src.png"))
    for w, h in [(37, 29), (120, 90), (81, 40), (50, 61)]:
        np.save(out("golden", f"resize_{w}x{h}.npy"), np.asarray(im.resize((w, h), Image.BICUBIC)))


def save_analysis_goldens(sd):
    """CKA and attention statistics (docs/reference.md, "Definitions") in float64 from timm's float64 taps,
    written out formula by formula (numpy), for 12 photographs, batches of 4 and 5."""
    # A second, deeper and wider model with another head count, for two-model CKA.
    torch.manual_seed(1)
    m2 = timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=24, depth=3, num_heads=3, mlp_ratio=2.0, qkv_bias=True, num_classes=0)
    sd2 = {}
    for k, v in m2.state_dict().items():
        sd2[k] = (1 + 0.2 * torch.randn_like(v)) if k.endswith("weight") and v.dim() == 1 else (
            0.3 * torch.randn_like(v) if v.dim() == 1 or k in ("cls_token", "pos_embed") else torch.randn_like(v) * 1.5 / v[0].numel() ** 0.5)
    sd2 = round_weights(sd2)
    save_file(sd2, out("checkpoints", "tiny2_f32.safetensors"), metadata={"num_heads": "3"})

    # Another token grid (4x4-pixel patches: 8x8 grid), for the grid-mismatch error.
    torch.manual_seed(2)
    m3 = timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=4, embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0, qkv_bias=True, num_classes=0)
    save_file(round_weights(m3.state_dict()), out("checkpoints", "tiny_p4_f32.safetensors"), metadata={"num_heads": "2"})

    ph = photos()
    for i in range(12):
        name, im = ph[i % len(ph)]
        w, h = im.size
        s = min(w, h) // (1 + i // len(ph))
        box = ((w - s) * (i % 3) // 2, (h - s) * (i % 2), (w - s) * (i % 3) // 2 + s, (h - s) * (i % 2) + s)
        im.crop(box).resize((IMG, IMG), Image.BICUBIC).save(out("images", "cka", f"{i:02d}_{name}.png"))
    paths = list_images(out("images", "cka"))
    x = preprocess(paths, False)

    def reps(model_sd, make, heads):
        m = make()
        m.load_state_dict(model_sd)
        m = m.double().eval()
        r, qs, ks = [], [], []
        for blk in m.blocks:
            blk.attn.fused_attn = False
            blk.norm1.register_forward_hook(lambda mod, i, o: r.append(o))
            blk.attn.q_norm.register_forward_hook(lambda mod, i, o: qs.append(o))
            blk.attn.k_norm.register_forward_hook(lambda mod, i, o: ks.append(o))
        with torch.no_grad():
            r.append(m.forward_features(x.double()))
        logits = [(q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5) for q, k in zip(qs, ks)]
        return [t.numpy() for t in r], [t.numpy() for t in logits]

    ra, la = reps(sd, make_model, HEADS)
    rb, _ = reps(sd2, lambda: timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=24, depth=3, num_heads=3, mlp_ratio=2.0, qkv_bias=True, num_classes=0), 3)

    def select(r, tokens):
        if tokens == "patches":
            return r[:, 1:, :].reshape(r.shape[0], -1)
        if tokens == "cls":
            return r[:, 0, :]
        return r[:, 1:, :].mean(axis=1)

    def hsic(K, L):
        n = K.shape[0]
        one = np.ones((n, 1))
        r = np.trace(K @ L) + (one.T @ K @ one @ one.T @ L @ one).item() / ((n - 1) * (n - 2)) \
            - 2 * (one.T @ K @ L @ one).item() / (n - 2)
        return r / (n * (n - 3))

    def cka(A, B, batch, tokens):
        n = A[0].shape[0]
        sums = np.zeros((len(A), len(B), 3))
        count = 0
        for s in range(0, n, batch):
            if min(batch, n - s) < 4:
                continue
            Ks = []
            for r in A:
                X = select(r[s:s + batch], tokens)
                K = X @ X.T
                np.fill_diagonal(K, 0)
                Ks.append(K)
            Ls = []
            for r in B:
                Y = select(r[s:s + batch], tokens)
                L = Y @ Y.T
                np.fill_diagonal(L, 0)
                Ls.append(L)
            for i, K in enumerate(Ks):
                for j, L in enumerate(Ls):
                    sums[i, j] += (hsic(K, K), hsic(K, L), hsic(L, L))
            count += 1
        m = sums / count
        return m[:, :, 1] / np.sqrt(m[:, :, 0] * m[:, :, 2])

    np.save(out("golden", "cka_self_b4.npy"), cka(ra, ra, 4, "patches"))
    np.save(out("golden", "cka_self_b5.npy"), cka(ra, ra, 5, "patches"))
    np.save(out("golden", "cka_ab_b4.npy"), cka(ra, rb, 4, "patches"))
    np.save(out("golden", "cka_ab_b5.npy"), cka(ra, rb, 5, "patches"))
    np.save(out("golden", "cka_ab_b4_cls.npy"), cka(ra, rb, 4, "cls"))
    np.save(out("golden", "cka_ab_b4_mean.npy"), cka(ra, rb, 4, "mean"))

    g = IMG // PATCH
    yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    for convention, scale in [("pixels", PATCH), ("mae-lite", 14)]:
        ent, dst = [], []
        for lg in la:  # (N, H, T, T) logits
            z = lg[:, :, 1:, 1:]
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            ent.append((-p * np.log(p + 1e-6)).sum(-1).mean(axis=(0, 2)))
            dst.append((p * dist * scale).sum(-1).mean(axis=(0, 2)))
        np.save(out("golden", f"attention_{convention}.npy"), np.stack([np.array(dst), np.array(ent)]))  # [2, L, H]


def save_png16_golden():
    """A 16-bit RGB PNG (written by hand: PIL cannot) and PIL's convert("RGB") of it (the high bytes)."""
    import struct
    import zlib
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (8, 8, 3)).astype(">u2")
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(8))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    with open(out("golden", "rgb16.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    np.save(out("golden", "rgb16_pil.npy"), np.asarray(Image.open(out("golden", "rgb16.png")).convert("RGB")))


def main():
    sd = random_state()
    save_layouts(sd)
    save_hostile()
    save_images()
    shutil.rmtree(out("golden", "x").rsplit("/", 1)[0], ignore_errors=True)
    save_resize_goldens()
    save_png16_golden()
    save_analysis_goldens(sd)
    for name, folder, resize in [("none", "none", False), ("eval", "eval", True)]:
        paths = list_images(out("images", folder))
        x = preprocess(paths, resize)
        np.save(out("golden", f"{name}_input.npy"), x.numpy().astype(np.float32))
        ref = reference(sd, x)
        for k, v in ref.items():
            np.save(out("golden", f"{name}_{k}.npy"), v)
        with open(out("golden", f"{name}_paths.txt"), "w") as f:
            f.write("\n".join(os.path.relpath(p, out("images", folder)) for p in paths) + "\n")
    # Running at another image size: pos_embed resampled as timm does when loading.
    paths = list_images(out("images", "eval"))
    t = transforms.Compose([transforms.Resize(round(48 / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.CenterCrop(48), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    x = torch.stack([t(Image.open(p).convert("RGB")) for p in paths])
    np.save(out("golden", "size48_input.npy"), x.numpy().astype(np.float32))
    np.save(out("golden", "size48_features.npy"), reference(sd, x, img=48)["features"])
    print("fixtures written under", HERE)


if __name__ == "__main__":
    main()
