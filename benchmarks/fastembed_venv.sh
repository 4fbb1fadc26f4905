#!/usr/bin/env bash
# Builds .venv-fastembed/ at the repository root: fastembed and numpy, nothing else. fastembed
# cannot share .venv (it needs tokenizers>=0.23, which conflicts with the export extra's
# transformers), so benchmarks/engines.py runs `--engine fastembed` with this venv's python;
# engines.py and the modules it imports (harness.py, engine_adapters.py, model_folder.py) import
# only the standard library at module level, so that works. Re-running reuses the venv.
#
#   bash benchmarks/fastembed_venv.sh
#   .venv-fastembed/bin/python benchmarks/engines.py --engine fastembed --model MODEL_DIR \
#       --onnx-dir ONNX_DIR --texts TEXTS_FILE ...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-fastembed"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet fastembed numpy
"$venv/bin/python" -c "import fastembed, onnxruntime, tokenizers, numpy; print('fastembed', fastembed.__version__, \
'| onnxruntime', onnxruntime.__version__, '| tokenizers', tokenizers.__version__, '| numpy', numpy.__version__)"
