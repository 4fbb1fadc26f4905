#!/usr/bin/env bash
# Shows the runtime working with only its core dependencies: a fresh virtual environment with
# onnxruntime, tokenizers and numpy (no torch, transformers or sentence-transformers), searching
# with a bundle exported elsewhere.
#
#   bash benchmarks/runtime_only.sh BUNDLE [RESULT_FILE]
# e.g. after `make demo`:  bash benchmarks/runtime_only.sh bundles/all-MiniLM-L6-v2 benchmarks/results/runtime_only.txt
set -euo pipefail
bundle=$(realpath "$1")
result=${2:-/dev/stdout}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$(mktemp -d)/core
trap 'rm -rf "$(dirname "$venv")"' EXIT

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "$root"          # core dependencies only: no extras
{
  echo "\$ bash benchmarks/runtime_only.sh $1"
  echo "# packages in the runtime-only environment:"
  "$venv/bin/pip" list --format=freeze | grep -v '^pip=' | sed 's/^/#   /'
  echo "# import torch / transformers / sentence_transformers:"
  for m in torch transformers sentence_transformers; do
    if "$venv/bin/python" -c "import $m" 2>/dev/null; then echo "#   $m: importable (unexpected)"; exit 1
    else echo "#   $m: not installed"; fi
  done
  echo "\$ fusembed search BUNDLE --query 'How many people live in London?' --docs examples/london.txt"
  "$venv/bin/fusembed" search "$bundle" --query "How many people live in London?" --docs "$root/examples/london.txt"
  echo "\$ python -X importtime -c 'import fusembed' (total, ms)"
  "$venv/bin/python" -X importtime -c "import fusembed" 2>&1 | tail -1 | awk -F'|' '{printf "#   %.0f ms\n", $2/1000}'
} > "$result"
[ "$result" = /dev/stdout ] || cat "$result"
