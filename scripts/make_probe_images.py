#!/usr/bin/env python3
"""A small labelled set of real photographs in ImageFolder layout (OUT/<class>/<n>.jpg) for the
layer-truncation probe: the class is the photograph a crop comes from (scikit-image's bundled
public-domain/CC0 photographs). Crops are seeded: random position,
scale 20–60 % of the shorter side, horizontal flip, brightness ±20 %.

  python3 scripts/make_probe_images.py OUT --classes 6 --per-class 16 --size 112 --seed 0
Needs: pip install scikit-image pillow numpy."""
import argparse, os
import numpy as np
import skimage.data as sk
from PIL import Image, ImageEnhance

# Only public-domain / CC0 photographs (their licences are in scikit-image's docstrings).
SOURCES = [
    ("astronaut", lambda: sk.astronaut()), ("cat", lambda: sk.chelsea()), ("coffee", lambda: sk.coffee()),
    ("rocket", lambda: sk.rocket()), ("hubble", lambda: sk.hubble_deep_field()), ("cells", lambda: sk.immunohistochemistry()),
    ("retina", lambda: sk.retina()), ("camera", lambda: sk.camera()), ("coins", lambda: sk.coins()),
    ("brick", lambda: sk.brick()), ("grass", lambda: sk.grass()), ("gravel", lambda: sk.gravel()),
    ("clock", lambda: sk.clock()),
]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--per-class", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for name, load in SOURCES[:a.classes]:
        im = Image.fromarray(load()).convert("RGB")
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        w, h = im.size
        for k in range(a.per_class):
            s = int(min(w, h) * rng.uniform(0.2, 0.6))
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            c = im.crop((x, y, x + s, y + s)).resize((a.size, a.size), Image.LANCZOS)
            if rng.random() < 0.5:
                c = c.transpose(Image.FLIP_LEFT_RIGHT)
            c = ImageEnhance.Brightness(c).enhance(float(rng.uniform(0.8, 1.2)))
            c.save(os.path.join(d, f"{k:03d}.jpg"), quality=85)
    print(f"wrote {a.classes} classes x {a.per_class} images to {a.out}")

if __name__ == "__main__":
    main()
