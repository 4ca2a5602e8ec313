#!/usr/bin/env python3
"""The table docs/reference.md shows: each similarity measure of `vitlens similarity` against its
peer's own code on real features — the bundled MAE and fine-tuned demo checkpoints on the 96 probe
images, every one of the 13 × 13 layer pairs — with the largest |vitlens − peer| and the time of each.

  python3 scripts/similarity_peer_table.py --peers /tmp/peers

Peers as scripts/make_similarity_goldens.py (netrep, google/svcca, platonic-rep cloned at the
commits named there; rsatoolbox, torch, scipy from PyPI), run in float64 on the features vitlens
extracts (features.npy of the residual stream, float32), vitlens on the same folders. Image-level
measures use the mean of the patch tokens, pooled as vitlens pools them (N = 96 images); the CCAs
need N > D (192), so they run on every patch token (N = 96 · 196 rows).
vitlens is timed as a whole process (load, compute, report files and figures); a peer as its
computation only.
"""
import atexit
import shutil
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_similarity_peers import cpu
from make_similarity_goldens import (feature_space_linear_cka, cka, gram_rbf, cca_kornblith, svcca_reduce,
                                     pwcca_paper, load_peers)

A, B = "checkpoints/vit_tiny_mae_demo.safetensors", "checkpoints/vit_tiny_ft_demo.safetensors"


def pwcca_qr(x, y):
    """PWCCA by the QR route of CCA (Björck & Golub 1973), numpy: X̃ = Q_x R_x, Q_xᵀQ_y = U S Vᵀ,
    variates H = Q_x U, αᵢ = Σⱼ |⟨hᵢ, x̃ⱼ⟩| = Σⱼ |(R_xᵀU)ⱼᵢ|."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    qx, rx = np.linalg.qr(xc)
    qy, _ = np.linalg.qr(yc)
    u, s, _ = np.linalg.svd(qx.T @ qy)
    a = np.abs(rx.T @ u).sum(0)
    return (a * s).sum() / a.sum()


def peer_grid(kind, a, b, peers):
    """(13 × 13 values, seconds) of the peer's own code, float64."""
    import torch, torch.nn.functional as F
    LinearMetric, cca_core, _, platonic = peers
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare
    a, b = a.astype(np.float64), b.astype(np.float64)
    f = {
        "cka-debiased": lambda x, y: feature_space_linear_cka(x, y, debiased=True),
        "rbf-cka": lambda x, y: cka(gram_rbf(x, 0.5), gram_rbf(y, 0.5)),
        "procrustes": lambda x, y: LinearMetric(alpha=1.0, center_columns=True, score_method="angular").fit_score(x, y),
        "cca": lambda x, y: cca_kornblith(x - x.mean(0), y - y.mean(0)),
        "svcca": lambda x, y: np.mean(cca_core.get_cca_similarity(
            svcca_reduce(x, 0.99), svcca_reduce(y, 0.99), epsilon=0., verbose=False)["cca_coef1"]),
        "pwcca": lambda x, y: pwcca_paper(cca_core, x, y),
        "pwcca-qr": pwcca_qr,
        "mknn": lambda x, y: platonic.AlignmentMetrics.mutual_knn(
            F.normalize(torch.from_numpy(x), dim=-1), F.normalize(torch.from_numpy(y), dim=-1), 10),
        "rsa": lambda x, y: compare(calc_rdm(Dataset(x), method="correlation"),
                                    calc_rdm(Dataset(y), method="correlation"), method="spearman")[0, 0],
    }[kind]
    t = time.time()
    g = np.array([[float(f(a[i], b[j])) for j in range(b.shape[0])] for i in range(a.shape[0])])
    return g, time.time() - t


def vitlens_grid(kind, folders, tokens, binary, out):
    t = time.time()
    subprocess.run([binary, "similarity", *folders, "--measures", kind, "--tokens", tokens, "--out", out,
                    "--quiet"], check=True)
    sec = time.time() - t
    # similarity.json holds every value at full precision (the CSV rounds to 9 decimals).
    g = np.array(json.load(open(os.path.join(out, "similarity.json")))["pairs"][0]["measures"][kind]["value"],
                 dtype=np.float64)
    return g, sec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="/tmp/peers")
    ap.add_argument("--binary", default=".build/release/vitlens")
    ap.add_argument("--images", default="checkpoints/probe_images")
    args = ap.parse_args()
    peers = load_peers(args.peers)
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # gigabytes of checkpoints and features
    folders = []
    for name, ckpt in [("mae", A), ("ft", B)]:
        d = os.path.join(tmp, name)
        # The residual stream: a LayerNorm output has rank D − 1 once centred, which no CCA accepts.
        subprocess.run([args.binary, "extract", ckpt, "--images", args.images, "--no-attention", "--rep", "residual",
                        "--out", d, "--quiet"], check=True)
        folders.append(d)
    feats = [np.load(os.path.join(d, "features.npy")) for d in folders]
    def prefix_tokens(d):
        meta = json.load(open(os.path.join(d, "meta.json")))
        return meta["files"]["features.npy"].get("prefix_tokens", meta["architecture"]["prefix_tokens"])
    prefix = [prefix_tokens(d) for d in folders]
    def pooled(f, p):
        # As vitlens pools (--tokens mean): a float64 sum over the patch tokens in order, / count, to float32.
        s = np.zeros(f.shape[:2] + f.shape[3:], dtype=np.float64)
        for t in range(p, f.shape[2]):
            s += f[:, :, t, :]
        return (s / (f.shape[2] - p)).astype(np.float32)
    mean = [pooled(f, p) for f, p in zip(feats, prefix)]
    patches = [f[:, :, p:, :].reshape(f.shape[0], -1, f.shape[3]) for f, p in zip(feats, prefix)]
    peer_name = {"cka-debiased": "Kornblith et al. 2019 (feature_space_linear_cka, debiased)",
                 "rbf-cka": "Kornblith et al. 2019 (gram_rbf, threshold 0.5)",
                 "procrustes": "netrep LinearMetric(alpha=1, angular)",
                 "cca": "Kornblith et al. 2019 (cca, QR)", "svcca": "google/svcca cca_core (99 % kept)",
                 "pwcca": "google/svcca cca_core, variates (docs)",
                 "pwcca-qr": "the QR route of CCA in numpy (Björck & Golub)",
                 "mknn": "platonic-rep mutual_knn (k = 10)", "rsa": "rsatoolbox 0.3.2 (correlation RDM, Spearman)"}
    print(f"MAE vs fine-tuned demo checkpoints, {feats[0].shape[1]} images, {feats[0].shape[0]} x "
          f"{feats[1].shape[0]} layer pairs, CPU: {cpu()}")
    print("| measure | peer | rows | max \\|vitlens − peer\\| | vitlens | peer |")
    print("|---|---|---|---|---|---|")
    for kind in ["cka-debiased", "rbf-cka", "procrustes", "cca", "svcca", "pwcca", "pwcca-qr", "mknn", "rsa"]:
        on_patches = kind.startswith(("cca", "svcca", "pwcca"))
        xa, xb = (patches if on_patches else mean)
        measure = kind.split("-qr")[0]
        v, vt = vitlens_grid(measure, folders, "patches" if on_patches else "mean", args.binary,
                             os.path.join(tmp, "out-" + kind))
        p, pt = peer_grid(kind, xa, xb, peers)
        diff = np.nanmax(np.abs(v - p))
        print(f"| {measure} | {peer_name[kind]} | {xa.shape[1]:,} | {diff:.1e} | {vt:.2f} s | {pt:.2f} s |")


if __name__ == "__main__":
    main()
