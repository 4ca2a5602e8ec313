#!/usr/bin/env bash
# libFuzzer over vitlens's readers (make fuzz): builds Fuzz/ with -sanitize=fuzzer, seeds a
# corpus per target from the test fixtures, and runs each target for FUZZ_SECONDS (default 300)
# with a 2 GB memory limit and a 10 s per-input timeout. Crashing inputs are kept in
# reports/fuzz/<target>/ (crash-*, oom-*, timeout-*); the summary lists executions and findings.
# FUZZ_ASAN=1 adds AddressSanitizer (out-of-bounds reads in the readers' unsafe pointers).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-300}
TARGETS=${FUZZ_TARGETS:-"checkpoint pickle npy png jpeg"}
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
  (cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld --build-path .build-asan >/dev/null)
  BIN=Fuzz/.build-asan/release/vitlens-fuzz
else
  (cd Fuzz && swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld >/dev/null)
  BIN=Fuzz/.build/release/vitlens-fuzz
fi
OUT=reports/fuzz
mkdir -p "$OUT"
for t in $TARGETS; do
  corpus="$OUT/$t/corpus"; mkdir -p "$corpus"
  case $t in
    checkpoint) cp Tests/Fixtures/checkpoints/*.safetensors Tests/Fixtures/checkpoints/*.pth* "$corpus/"
      for d in Tests/Fixtures/checkpoints/*/; do cp "$d/model.safetensors" "$corpus/$(basename "$d").safetensors" 2>/dev/null || true; done ;;
    pickle) python3 - "$corpus" <<'PY'
import sys, zipfile, glob, os
for p in glob.glob("Tests/Fixtures/checkpoints/*.pth*"):
    try:
        z = zipfile.ZipFile(p)
        for n in z.namelist():
            if n.endswith("data.pkl"):
                open(os.path.join(sys.argv[1], os.path.basename(p) + ".pkl"), "wb").write(z.read(n))
    except zipfile.BadZipFile:
        pass
PY
    ;;
    npy) cp Tests/Fixtures/golden/maps_*.npy Tests/Fixtures/golden/cka_*.npy "$corpus/" ;;
    png) find Tests/Fixtures/images -name '*.png' -size -200k | head -20 | xargs -I{} cp {} "$corpus/" ;;
    jpeg) find Tests/Fixtures/images checkpoints/probe_images -name '*.jpg' -size -60k | head -20 | xargs -I{} cp {} "$corpus/" ;;
  esac
  log="$OUT/$t/log.txt"
  set +e
  (cd "$OUT/$t" && VITLENS_FUZZ_TARGET=$t "$OLDPWD/$BIN" corpus -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
      -timeout=10 -max_len=131072 -print_final_stats=1 >"log.txt" 2>&1)
  status=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  findings=$(ls "$OUT/$t" | grep -cE '^(crash|oom|timeout|leak)-' || true)
  echo "$t: $execs executions in ${SECONDS_PER_TARGET}s, findings: $findings (exit $status; log $log)"
done
