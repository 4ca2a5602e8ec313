#!/usr/bin/env bash
# Peak RSS of `vitlens cka` (two ViT-Tiny) and `vitlens attention` (one) at 512 and 2,048 images
# (make bench): memory must follow the batch, not N — the 2,048-image peak within 1.10x of the
# 512-image one, and cka under 800 MB at batch 32. The image folder is the bundled photographs
# linked repeatedly. Prints a markdown table; BATCH (default 32) sets the minibatch.
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
