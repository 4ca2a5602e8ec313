#!/usr/bin/env python3
"""Goldens for `vitlens similarity`, computed by each peer's own code (run locally, committed).

Peers: rsatoolbox from PyPI; netrep, google/svcca and platonic-rep from GitHub at the commits
below (clone them and pass --peers DIR holding ahwillia+netrep, google+svcca, minyoungg+platonic-rep);
Kornblith et al.'s CKA functions (the Colab of "Similarity of Neural Network Representations
Revisited", 2019) are short and copied verbatim below.

  python3 scripts/make_similarity_goldens.py --peers /tmp/peers

Writes Tests/Fixtures/similarity/{a.npy, b.npy, golden.json}: two [L, N, D] float32 arrays with
N > D (so that every CCA is defined) and every measure of every layer pair, in float64.
"""
import argparse, json, os, sys, types
import numpy as np

PEERS = {
    "ahwillia/netrep": "0186b8a77ec1ebaf541cc8f7173cb2556df8a8f0",
    "google/svcca": "1f3fbf19bd31bd9b76e728ef75842aa1d9a4cd2b",
    "minyoungg/platonic-rep": "dcd76ba3c950c1b197a2ae8b1c6713535c94ecf9",
}

# --- Kornblith et al. 2019 (google-research/google-research, representation_similarity/Demo.ipynb)
def gram_linear(x):
    return x.dot(x.T)

def gram_rbf(x, threshold=1.0):
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold ** 2 * sq_median_distance))

def center_gram(gram, unbiased=False):
    if not np.allclose(gram, gram.T):
        raise ValueError('Input must be a symmetric matrix.')
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram

def cka(gram_x, gram_y, debiased=False):
    gram_x = center_gram(gram_x, unbiased=debiased)
    gram_y = center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    normalization_x = np.linalg.norm(gram_x)
    normalization_y = np.linalg.norm(gram_y)
    return scaled_hsic / (normalization_x * normalization_y)

def _debiased_dot_product_similarity_helper(xty, sum_squared_rows_x, sum_squared_rows_y, squared_norm_x,
                                            squared_norm_y, n):
    return (xty - n / (n - 2.) * sum_squared_rows_x.dot(sum_squared_rows_y)
            + squared_norm_x * squared_norm_y / ((n - 1) * (n - 2)))

def feature_space_linear_cka(features_x, features_y, debiased=False):
    features_x = features_x - np.mean(features_x, 0, keepdims=True)
    features_y = features_y - np.mean(features_y, 0, keepdims=True)
    dot_product_similarity = np.linalg.norm(features_x.T.dot(features_y)) ** 2
    normalization_x = np.linalg.norm(features_x.T.dot(features_x))
    normalization_y = np.linalg.norm(features_y.T.dot(features_y))
    if debiased:
        n = features_x.shape[0]
        sum_squared_rows_x = np.einsum('ij,ij->i', features_x, features_x)
        sum_squared_rows_y = np.einsum('ij,ij->i', features_y, features_y)
        squared_norm_x = np.sum(sum_squared_rows_x)
        squared_norm_y = np.sum(sum_squared_rows_y)
        dot_product_similarity = _debiased_dot_product_similarity_helper(
            dot_product_similarity, sum_squared_rows_x, sum_squared_rows_y, squared_norm_x, squared_norm_y, n)
        normalization_x = np.sqrt(_debiased_dot_product_similarity_helper(
            normalization_x ** 2, sum_squared_rows_x, sum_squared_rows_x, squared_norm_x, squared_norm_x, n))
        normalization_y = np.sqrt(_debiased_dot_product_similarity_helper(
            normalization_y ** 2, sum_squared_rows_y, sum_squared_rows_y, squared_norm_y, squared_norm_y, n))
    return dot_product_similarity / (normalization_x * normalization_y)

def cca_kornblith(features_x, features_y):
    qx, _ = np.linalg.qr(features_x)
    qy, _ = np.linalg.qr(features_y)
    return np.linalg.norm(qx.T.dot(qy)) ** 2 / min(features_x.shape[1], features_y.shape[1])
# --- end Kornblith et al.


def load_peers(root):
    sys.path.insert(0, os.path.join(root, "ahwillia+netrep"))
    sys.path.insert(0, os.path.join(root, "google+svcca"))
    from netrep.metrics import LinearMetric
    import cca_core, pwcca
    # platonic-rep's metrics.py imports torchaudio (edit distances only); mutual_knn does not use it.
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    sys.modules.setdefault("torchaudio.functional", types.ModuleType("torchaudio.functional"))
    sys.path.insert(0, os.path.join(root, "minyoungg+platonic-rep"))
    import metrics as platonic
    return LinearMetric, cca_core, pwcca, platonic


def svcca_reduce(x, keep):
    """The fewest singular directions of centred x holding `keep` of the variance: (k, N) activations."""
    xc = x - x.mean(0)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    frac = np.cumsum(s ** 2) / np.sum(s ** 2)
    k = int(np.searchsorted(frac, keep - 1e-15) + 1)
    return (xc @ vt[:k].T).T


def pwcca_paper(cca_core, x, y):
    """google/svcca's compute_pwcca with the canonical directions mapped back to the variates
    (coef_x @ invsqrt_xx, as its own get_cca_similarity does for cca_dirns1) and X's side always."""
    acts1, acts2 = (x - x.mean(0)).T, (y - y.mean(0)).T
    r = cca_core.get_cca_similarity(acts1, acts2, epsilon=0., compute_dirns=False, verbose=False)
    k = len(r["cca_coef1"])
    dirns = (r["coef_x"] @ r["invsqrt_xx"] @ acts1)[:k]
    P, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(P.T @ acts1.T), axis=1)
    weights = weights / np.sum(weights)
    return float(np.sum(weights * r["cca_coef1"][:k]))


def measures(peers, a, b, knn=10, rbf_t=0.5, svcca_keep=0.99, rsa_methods=("spearman",), clamp=None):
    import torch, torch.nn.functional as F
    import rsatoolbox
    LinearMetric, cca_core, pwcca, platonic = peers
    la, lb = a.shape[0], b.shape[0]
    out = {}
    def grid(f):
        return [[float(f(a[i].astype(np.float64), b[j].astype(np.float64))) for j in range(lb)] for i in range(la)]
    out["cka-debiased"] = grid(lambda x, y: feature_space_linear_cka(x, y, debiased=True))
    out["rbf-cka"] = grid(lambda x, y: cka(gram_rbf(x, rbf_t), gram_rbf(y, rbf_t)))
    out["procrustes"] = grid(lambda x, y: LinearMetric(alpha=1.0, center_columns=True, score_method="angular")
                             .fit_score(x, y))
    out["cca"] = grid(lambda x, y: cca_kornblith(x - x.mean(0), y - y.mean(0)))
    out["svcca"] = grid(lambda x, y: np.mean(cca_core.get_cca_similarity(
        svcca_reduce(x, svcca_keep), svcca_reduce(y, svcca_keep), epsilon=0., verbose=False)["cca_coef1"]))
    out["pwcca"] = grid(lambda x, y: pwcca_paper(cca_core, x, y))
    def google_pwcca(x, y):
        # Unmodified; with D_X > D_Y it indexes acts1 with Y's mask and fails (None here).
        try:
            return pwcca.compute_pwcca((x - x.mean(0)).T, (y - y.mean(0)).T)[0]
        except IndexError:
            return float("nan")
    out["pwcca_google_unmodified"] = grid(google_pwcca)
    def mknn(x, y):
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if clamp is not None:
            tx, ty = platonic.remove_outliers(tx, q=clamp), platonic.remove_outliers(ty, q=clamp)
        return platonic.AlignmentMetrics.mutual_knn(F.normalize(tx, p=2, dim=-1), F.normalize(ty, p=2, dim=-1), knn)
    out["mknn"] = grid(mknn)
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare
    names = {"spearman": "spearman", "kendall-tau-a": "tau-a", "pearson": "corr", "cosine": "cosine"}
    for m in rsa_methods:
        key = "rsa" if m == "spearman" else "rsa-" + m
        out[key] = grid(lambda x, y: compare(calc_rdm(Dataset(x), method="correlation"),
                                             calc_rdm(Dataset(y), method="correlation"), method=names[m])[0, 0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", required=True)
    ap.add_argument("--out", default="Tests/Fixtures/similarity")
    args = ap.parse_args()
    peers = load_peers(args.peers)
    rng = np.random.default_rng(24)
    n = 48
    # Two "models": B's layers are noisy linear maps of A's, of another width; heavy-ish tails.
    base = rng.standard_normal((n, 6))
    a = np.stack([base @ rng.standard_normal((6, 10)) + 0.3 * rng.standard_normal((n, 10)) + 2.0
                  for _ in range(3)]).astype(np.float32)
    b = np.stack([a[min(i, 2)].astype(np.float64) @ rng.standard_normal((10, 7))
                  + (0.2 + 0.4 * i) * rng.standard_t(4, (n, 7)) - 1.0 for i in range(4)]).astype(np.float32)
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "a.npy"), a)
    np.save(os.path.join(args.out, "b.npy"), b)
    golden = {"peers": PEERS, "shape_a": list(a.shape), "shape_b": list(b.shape),
              "default": measures(peers, a, b, rsa_methods=("spearman", "kendall-tau-a", "pearson", "cosine")),
              "knn5_clamp0.9_t1_keep0.9": measures(peers, a, b, knn=5, rbf_t=1.0, svcca_keep=0.9, clamp=0.9)}
    # The example docs/reference.md quotes: google's unmodified PWCCA against the variates' (D_X ≤ D_Y).
    r2 = np.random.default_rng(0)
    x = r2.standard_normal((500, 6)) @ r2.standard_normal((6, 6)) + 3
    y = x @ r2.standard_normal((6, 9)) + r2.standard_normal((500, 9))
    xc, yc = x - x.mean(0), y - y.mean(0)
    print("pwcca example: google %.5f, variates %.5f" % (peers[2].compute_pwcca(xc.T, yc.T)[0],
                                                          pwcca_paper(peers[1], x, y)))
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
