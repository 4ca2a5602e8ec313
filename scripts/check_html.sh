#!/usr/bin/env bash
# Opens every index.html under the given folders in a real headless browser (Debian's Chromium),
# checks that the page loaded with its figures and tables, and saves a full-page screenshot to
# reports/screenshots/<report>.png to look at. Installs chromium when it is missing.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  echo "installing Debian package: chromium"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
shots=reports/screenshots
mkdir -p "$shots"
status=0
while IFS= read -r page; do
  dir=$(dirname "$page"); name=$(basename "$dir")
  url="file://$(realpath "$page")"
  dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom "$url" 2>/dev/null || true)
  figures=$(grep -o "<svg" <<<"$dom" | wc -l)
  tables=$(grep -o "<table" <<<"$dom" | wc -l)
  texts=$(grep -o "<text\|<image" <<<"$dom" | wc -l)  # text, and the photographs of maps
  want=$(ls "$dir"/*.svg 2>/dev/null | wc -l)
  timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2200 \
    --screenshot="$shots/$name.png" "$url" >/dev/null 2>&1 || true
  size=$(stat -c %s "$shots/$name.png" 2>/dev/null || echo 0)
  if [ "$figures" -ge "$want" ] && [ "$want" -ge 1 ] && [ "$tables" -ge 2 ] && [ "$texts" -ge 20 ] && [ "$size" -gt 20000 ]; then
    echo "ok   $page: $figures figures, $tables tables, $texts text elements rendered; screenshot $shots/$name.png ($size bytes)"
  else
    echo "FAIL $page: $figures/$want figures, $tables tables, $texts text elements, screenshot $size bytes"
    status=1
  fi
done < <(find "$@" -name index.html | sort)
exit $status
