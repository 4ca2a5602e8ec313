#!/usr/bin/env python3
"""vitlens similarity against netrep's LinearMetric (procrustes) and platonic-rep's mutual_knn
(mknn): the 6×6 layer matrix of two [6, N, 768] float32 arrays, timed alternately (vitlens as a
whole process: load, compute, report and figures; a peer as its computation), peak RSS of each
process. Then (--memory-n) all nine measures' 13×13 matrix of two [13, N, 768] arrays: time and
peak RSS. Peers from --peers DIR (see make_similarity_goldens.py); a peer that is absent or cannot
run (platonic-rep needs torch) is skipped with a note.

  python3 scripts/bench_similarity_peers.py --peers /tmp/peers --n 6000 --rounds 3 --memory-n 10000
"""
import atexit
import shutil
import argparse, os, resource, subprocess, sys, tempfile, time
import numpy as np

def peer_job(kind, a_path, b_path, peers):
    code = f"""
import sys, types, numpy as np, time, resource
a, b = np.load({a_path!r}), np.load({b_path!r})
t = time.time()
if {kind!r} == "procrustes":
    sys.path.insert(0, {os.path.join(peers, 'ahwillia+netrep')!r})
    from netrep.metrics import LinearMetric
    m = [[LinearMetric(alpha=1.0, center_columns=True, score_method="angular").fit_score(
        a[i].astype(np.float64), b[j].astype(np.float64)) for j in range(b.shape[0])] for i in range(a.shape[0])]
else:
    import torch, torch.nn.functional as F
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    sys.modules.setdefault("torchaudio.functional", types.ModuleType("torchaudio.functional"))
    sys.path.insert(0, {os.path.join(peers, 'minyoungg+platonic-rep')!r})
    import metrics
    A, B = torch.from_numpy(a), torch.from_numpy(b)
    m = [[metrics.AlignmentMetrics.mutual_knn(F.normalize(A[i], dim=-1), F.normalize(B[j], dim=-1), 10)
          for j in range(B.shape[0])] for i in range(A.shape[0])]
print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
    out = r.stdout.split()
    return float(out[-2]), float(out[-1])

def vitlens_job(kind, a_path, b_path, binary, out):
    t = time.time()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out + ".rss", binary, "similarity", a_path, b_path,
                    "--measures", kind, "--out", out, "--quiet"], check=True)
    return time.time() - t, int(open(out + ".rss").read().split()[-1]) / 1024

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="/tmp/peers")
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=".build/release/vitlens")
    ap.add_argument("--memory-n", type=int, default=0, help="also all nine measures on [13, N, 768] (0: skip)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    print(f"CPU: {cpu()}")
    if not os.path.isdir(args.peers):
        print(f"note: no peers in {args.peers}; the comparison is skipped (see scripts/make_similarity_goldens.py)")
    else:
        compare(args, tmp)
    if args.memory_n:
        memory(args, tmp)


def features(layers, n, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 64)).astype(np.float32)
    return [np.stack([base @ rng.standard_normal((64, 768)).astype(np.float32)
                      + rng.standard_normal((n, 768)).astype(np.float32) for _ in range(layers)]) for _ in range(2)]


def compare(args, tmp):
    a, b = features(6, args.n, 0)
    pa, pb = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
    np.save(pa, a); np.save(pb, b)
    del a, b
    for kind, peer in [("procrustes", "netrep LinearMetric"), ("mknn", "platonic-rep mutual_knn")]:
        v, p = [], []
        for r in range(args.rounds):
            v.append(vitlens_job(kind, pa, pb, args.binary, os.path.join(tmp, f"{kind}-{r}")))
            got = peer_job(kind, pa, pb, args.peers)
            if got[0] is None:
                print(f"note: {peer} could not run ({got[1]}); skipped")
                break
            p.append(got)
        vt, vm = np.median([x[0] for x in v]), max(x[1] for x in v)
        if not p:
            print(f"{kind}: vitlens {vt:.1f} s, {vm:.0f} MB peak (N = {args.n})")
            continue
        pt, pm = np.median([x[0] for x in p]), max(x[1] for x in p)
        print(f"{kind}: vitlens {vt:.1f} s, {vm:.0f} MB peak; {peer} {pt:.1f} s, {pm:.0f} MB; "
              f"{pt / vt:.1f}x faster (median of {args.rounds}, alternating; N = {args.n})")
    os.remove(pa); os.remove(pb)


def memory(args, tmp):
    if args.memory_n <= 768:
        print(f"note: --memory-n {args.memory_n}: the CCAs need more images than the 768 channels; skipped")
        return
    a, b = features(13, args.memory_n, 1)
    pa, pb = os.path.join(tmp, "ma.npy"), os.path.join(tmp, "mb.npy")
    np.save(pa, a); np.save(pb, b)
    del a, b
    t, rss = vitlens_job("all", pa, pb, args.binary, os.path.join(tmp, "all"))
    print(f"all nine measures, 13 x 13 layers of width 768, N = {args.memory_n}: {t:.0f} s, {rss:.0f} MB peak RSS")


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
