"""float64 goldens of `vitlens maps` (class attention, attention rollout): timm runs the fixture
models in float64 on Tests/Fixtures/images/none (4 images, 32x32); class attention and rollout
are then computed here with NumPy, from the definitions, independently of vitlens's code:

  class attention  P[l, h, 0, prefix:]                      (the class token's row, patch keys)
  rollout          per block: A = heads fused (mean/max/min); the smallest floor(F*T) entries of
                   each row set to 0 (ties: lower key index first); A = (A + I)/2, rows divided by
                   their own sums; R = A_L ... A_1; the class token's row of R over the patches.

Run from the repository root: python3 Tests/Fixtures/make_maps_goldens.py (needs torch, timm,
safetensors, torchvision, pillow). Writes Tests/Fixtures/golden/maps_*.npy."""
import numpy as np
import timm
import torch
from safetensors.torch import load_file

import make_fixtures as F
import make_family_fixtures as FF

MODELS = {
    # name: (checkpoint, timm keyword arguments, prefix tokens)
    "tiny": ("tiny_f32.safetensors", {}, 1),
    "dinov2reg": ("family_dinov2reg.safetensors", FF.FAMILIES["dinov2reg"], 5),
}
ROLLOUTS = [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.25)]


def probabilities(kw, sd, x):
    m = FF.make(kw)
    m.load_state_dict(sd)
    m = m.double().eval()
    probs = []
    for blk in m.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: probs.append(o))
    with torch.no_grad():
        m.forward_features(x.double())
    return torch.stack(probs).transpose(0, 1).numpy()  # [N, L, H, T, T] float64


def rollout(p, prefix, fusion, discard):
    """p: [L, H, T, T] of one image."""
    T = p.shape[-1]
    R = np.eye(T)
    k = int(np.floor(discard * T))
    for a in p:
        A = {"mean": a.mean(0), "max": a.max(0), "min": a.min(0)}[fusion].copy()
        if k:
            for i in range(T):
                A[i, np.lexsort((np.arange(T), A[i]))[:k]] = 0
        A = (A + np.eye(T)) / 2
        A = A / A.sum(-1, keepdims=True)
        R = A @ R
    return R[0, prefix:]


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    for name, (ckpt, kw, prefix) in MODELS.items():
        sd = load_file(F.out("checkpoints", ckpt))
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")} if not kw else sd
        model = FF.make(kw)
        sd = {k: v for k, v in sd.items() if k in model.state_dict()}
        missing = set(model.state_dict()) - set(sd)
        for k in missing:  # the classifier of a checkpoint saved without one
            sd[k] = model.state_dict()[k]
        p = probabilities(kw, sd, x)
        N, L, H, T, _ = p.shape
        g = int(round((T - prefix) ** 0.5))
        cls = p[:, :, :, 0, prefix:].reshape(N, L, H, g, g)
        np.save(F.out("golden", f"maps_{name}_cls.npy"), cls.astype(np.float32))
        for fusion, discard in ROLLOUTS:
            r = np.stack([rollout(p[n], prefix, fusion, discard) for n in range(N)]).reshape(N, g, g)
            np.save(F.out("golden", f"maps_{name}_rollout_{fusion}_{discard:g}.npy"), r.astype(np.float32))
        print(name, "class attention", cls.shape, "range", cls.min(), cls.max(), "rollout", r.shape, r.min(), r.max())


if __name__ == "__main__":
    main()
