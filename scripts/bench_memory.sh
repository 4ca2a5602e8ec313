#!/usr/bin/env bash
# Peak RSS of `vitlens cka` (two ViT-Tiny) and `vitlens attention` (one) at 512 and 2,048 images
# (make bench): memory must follow the batch, not N — the 2,048-image peak within 1.10x of the
# 512-image one, and cka under 800 MB at batch 32. The image folder is the bundled photographs
# linked repeatedly. Also cka on two feature arrays from elsewhere (.npy [13, N, 50, 192] float32,
# 1 GB each at N = 2,048; memory-mapped, read a minibatch at a time). Prints a markdown table;
# BATCH (default 32) sets the minibatch.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${V:-.build/release/vitlens}
A=${A:-checkpoints/vit_tiny_init.safetensors}
B=${B:-checkpoints/vit_tiny_mae_demo.safetensors}
BATCH=${BATCH:-32}
IMAGES=$(mktemp -d)
OUT=$(mktemp -d)
trap 'rm -rf "$IMAGES" "$OUT"' EXIT
i=0
while [ $i -lt 2048 ]; do
  for f in checkpoints/images/*.jpg; do
    [ $i -lt 2048 ] || break
    ln -s "$PWD/$f" "$IMAGES/$(printf %05d $i).jpg"; i=$((i + 1))
  done
done
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
echo "| command | batch | N = 512, peak RSS MB | N = 2048, peak RSS MB | ratio |"
echo "| --- | --- | --- | --- | --- |"
for cmd in cka attention; do
  if [ $cmd = cka ]; then models=("$A" "$B"); else models=("$A"); fi
  k512=$(rss $V $cmd "${models[@]}" --images "$IMAGES" --num 512 --batch "$BATCH" --quiet --out "$OUT/$cmd-512")
  k2048=$(rss $V $cmd "${models[@]}" --images "$IMAGES" --num 2048 --batch "$BATCH" --quiet --out "$OUT/$cmd-2048")
  python3 -c "import sys; a, b = int(sys.argv[2]) / 1024, int(sys.argv[3]) / 1024; print(f'| {sys.argv[1]} | {sys.argv[4]} | {a:.0f} | {b:.0f} | {b / a:.2f}x |')" "$cmd" "$k512" "$k2048" "$BATCH"
done
python3 - "$OUT" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
for name in ("a", "b"):
    a = np.lib.format.open_memmap(f"{sys.argv[1]}/{name}.npy", mode="w+", dtype=np.float32, shape=(13, 2048, 50, 192))
    for l in range(13):
        a[l] = rng.standard_normal((2048, 50, 192), dtype=np.float32)
    a.flush()
    np.save(f"{sys.argv[1]}/{name}512.npy", a[:, :512])
PY
k512=$(rss $V cka "$OUT/a512.npy" "$OUT/b512.npy" --prefix-tokens 1 --batch "$BATCH" --quiet --out "$OUT/npy-512")
k2048=$(rss $V cka "$OUT/a.npy" "$OUT/b.npy" --prefix-tokens 1 --batch "$BATCH" --quiet --out "$OUT/npy-2048")
python3 -c "import sys; a, b = int(sys.argv[1]) / 1024, int(sys.argv[2]) / 1024; print(f'| cka, two .npy [13, N, 50, 192] | {sys.argv[3]} | {a:.0f} | {b:.0f} | {b / a:.2f}x |')" "$k512" "$k2048" "$BATCH"
