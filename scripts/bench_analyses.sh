#!/usr/bin/env bash
# Overhead of the analyses over the forward passes they need (make bench).
#   cka:        wall time of `vitlens cka A B` / (N/ips(A) + N/ips(B))
#   attention:  wall time of `vitlens attention A` / (N/ips(A))
#   probe:      wall time of `vitlens probe A --split 0.2` / (N/ips(A))  (12 linear probes included)
# ips from `vitlens bench` (forward only, batch 64, synthetic input). The image folder is the
# bundled photographs linked repeatedly up to N (default 1024), or IMAGES=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.build/release/vitlens
A=${A:-checkpoints/vit_tiny_init.safetensors}
B=${B:-checkpoints/vit_tiny_mae_demo.safetensors}
N=${N:-1024}
# The probe's labelled folder: the same N links, class = the photograph a crop comes from.
PROBE=$(mktemp -d)
trap 'rm -rf "$PROBE"' EXIT
if [ -z "${IMAGES:-}" ]; then
  IMAGES=$(mktemp -d)
  trap 'rm -rf "$IMAGES" "$PROBE"' EXIT
  i=0
  while [ $i -lt "$N" ]; do
    for f in checkpoints/images/*.jpg; do
      [ $i -lt "$N" ] || break
      ln -s "$PWD/$f" "$IMAGES/$(printf %05d $i).jpg"; i=$((i + 1))
      c=$(basename "$f" | sed 's/_[0-9]*\.jpg$//'); mkdir -p "$PROBE/$c"
      ln -s "$PWD/$f" "$PROBE/$c/$(printf %05d $i).jpg"
    done
  done
fi
ips() { $V bench "$1" --batch 64 --iters 5 --json | sed -n 's/.*"images_per_second": \([0-9.]*\).*/\1/p'; }
now() { date +%s.%N; }
ipsA=$(ips "$A"); ipsB=$(ips "$B")
t0=$(now); $V cka "$A" "$B" --images "$IMAGES" --num "$N" --quiet --out "$(mktemp -d)/cka"; t1=$(now)
t2=$(now); $V attention "$A" --images "$IMAGES" --num "$N" --quiet --out "$(mktemp -d)/att"; t3=$(now)
t4=$(now); [ -d "$PROBE" ] && [ -n "$(ls "$PROBE")" ] && $V probe "$A" --train "$PROBE" --split 0.2 --quiet --out "$(mktemp -d)/probe"; t5=$(now)
ipsA2=$(ips "$A"); ipsB2=$(ips "$B")
python3 - "$N" "$ipsA" "$ipsB" "$ipsA2" "$ipsB2" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
n, a1, b1, a2, b2, t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:])
a, b = (a1 + a2) / 2, (b1 + b2) / 2
fa, fb = n / a, n / b
print(f"forward only: A {a1:.1f}/{a2:.1f} img/s, B {b1:.1f}/{b2:.1f} img/s (before/after)")
print(f"cka A B, N={n:.0f}: {t1 - t0:.1f} s vs forwards {fa + fb:.1f} s -> {(t1 - t0) / (fa + fb):.3f}x")
print(f"attention A, N={n:.0f}: {t3 - t2:.1f} s vs forward {fa:.1f} s -> {(t3 - t2) / fa:.3f}x")
if t5 - t4 > 0.5:
    print(f"probe A (linear, 12 depths), N={n:.0f}: {t5 - t4:.1f} s vs forward {fa:.1f} s -> {(t5 - t4) / fa:.3f}x")
PY
