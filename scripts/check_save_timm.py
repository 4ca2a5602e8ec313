#!/usr/bin/env python3
"""`vitlens finetune --save` for the 2025 families, loaded back into timm (developer machine: needs
torch, timm, safetensors, pillow, torchvision). Each fixture of Tests/Fixtures/make_2025_fixtures.py
— in timm's layout and in its authors' — is fine-tuned for two epochs on the bundled test images
and saved; the file must load into timm's own class for the family with nothing missing or left
over (PE core's attention-pooling head and the classifier head excepted: vitlens has neither to
save), and timm in float64 must give the numbers `vitlens extract` gives for the saved file
(features ≤ 1e-3·max(1, |ref|), attention ≤ 1e-4).

  python3 scripts/check_save_timm.py
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "Tests", "Fixtures"))
import make_2025_fixtures as M  # noqa: E402
import make_fixtures as F  # noqa: E402
from make_family_fixtures import reference_of  # noqa: E402

VITLENS = os.environ.get("VITLENS") or os.path.join(ROOT, ".build", "release", "vitlens")
CASES = [  # fixture, family of make_2025_fixtures, extra vitlens arguments
    ("family_eva02.safetensors", "eva02", []), ("family_eva02clip_evaclip.pt", "eva02clip", []),
    ("family_pecore_meta.pt", "pecore", []), ("family_pespatial_meta.pt", "pespatial", ["--family", "pe"]),
    ("family_aimv2_apple.pt", "aimv2", []), ("family_dinov3plus_fb.pth", "dinov3plus", []),
]


def main():
    tmp = tempfile.mkdtemp(prefix="vitlens-save-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    images = os.path.join(tmp, "train")
    photos = sorted(F.list_images(F.out("images", "cka")))
    for i, p in enumerate(photos):  # two classes of the bundled test photographs
        os.makedirs(os.path.join(images, "ab"[i % 2]), exist_ok=True)
        shutil.copy(p, os.path.join(images, "ab"[i % 2]))
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    ok = True
    for file, name, extra in CASES:
        saved = os.path.join(tmp, name + ".safetensors")
        subprocess.run([VITLENS, "finetune", F.out("checkpoints", file), "--heads", "2", "--train", images, "--split",
                        "0.5", "--epochs", "2", "--batch", "4", "--image-size", "32", "--save", saved, "--out",
                        os.path.join(tmp, name + "-report"), "--quiet"] + extra, check=True)
        m = M.make(name, 32)
        m.reset_classifier(2)
        missing, unexpected = m.load_state_dict(load_file(saved), strict=False)
        left = [k for k in missing if not k.startswith("attn_pool.")]
        feats, attn = reference_of(m, x)
        out = os.path.join(tmp, name + "-extract")
        subprocess.run([VITLENS, "extract", saved, "--images", F.out("images", "none"), "--resize", "none", "--batch",
                        "3", "--out", out, "--quiet"], check=True)
        f, a = np.load(os.path.join(out, "features.npy")), np.load(os.path.join(out, "attention.npy"))
        fe = float(np.max(np.abs(f - feats) / np.maximum(1, np.abs(feats))))
        ae = float(np.max(np.abs(a - attn)))
        good = not left and not unexpected and fe <= 1e-3 and ae <= 1e-4
        ok &= good
        print(f"{file:30s} -> timm {type(m).__name__:17s} missing {left} unexpected {unexpected}  "
              f"features {fe:.1e}  attention {ae:.1e}  {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
