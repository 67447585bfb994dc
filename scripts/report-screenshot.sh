#!/usr/bin/env bash
# Remake docs/report.png, the README's screenshot of the HTML report, from the bundled model.
# Needs the set-up's .venv and chromium (scripts/install-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
HF_HUB_OFFLINE=1 .venv/bin/attnflow explain "The keys to the cabinet are on the table." \
    --method raw --method rollout --method flow --html "$out/report.html" >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-background-networking \
    --user-data-dir="$out/profile" --window-size=1360,1720 --screenshot="$out/report.png" \
    "file://$out/report.html" 2>/dev/null
cp "$out/report.png" docs/report.png
echo "wrote docs/report.png"
