#!/usr/bin/env bash
# Pack what benchmarks/gpu.py needs on a GPU host with no network into parts of at most 60 MiB.
#
#   bash benchmarks/offline_payload.sh OUT_DIR BUNDLE [ST_MODEL_DIR]     (from the repository root)
#
# The payload holds wheels for CPython 3.12 (PY_VERSION=3.11 etc. for another) on x86-64 Linux (onnxruntime-gpu, the packages of
# fusembed's `serve` extra, onnx for the kernels part, fusembed itself), the bundle's fp16 variant and tokenizer (its fp32
# file too with FP32=1), benchmarks/, and, if given, a sentence-transformers model folder for
# gpu.py's `st` part. OUT_DIR receives p.00, p.01, ... Copy them to the GPU host, then there:
#
#   cat p.* > payload.tar && mkdir -p payload && tar xf payload.tar -C payload
#   bash payload/run.sh RESULTS_DIR [gpu.py options]    e.g. --parts throughput,server
#
# run.sh installs the wheels into a private folder (no pip index needed) and runs gpu.py on
# payload/bundle, writing to RESULTS_DIR. The host needs that Python as `python3`, and the CUDA libraries
# onnxruntime-gpu wants (torch's CUDA wheels carry them); torch and sentence-transformers only
# for the `st` part.
set -euo pipefail
out=${1:?usage: offline_payload.sh OUT_DIR BUNDLE [ST_MODEL_DIR]}
bundle=${2:?usage: offline_payload.sh OUT_DIR BUNDLE [ST_MODEL_DIR]}
st_model=${3:-}
py=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$work/bundle" "$out"

# Binary wheels for the host's interpreter, whatever this machine runs: onnxruntime-gpu and
# every package of fusembed's serve extra, read from pyproject.toml so that the list cannot
# fall behind it.
mapfile -t serve < <($py -c 'import sys, tomllib; print(*tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["serve"], sep="\n")' "$root/pyproject.toml")
$py -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$work/wheels" "onnxruntime-gpu${ORT_GPU_VERSION:+==$ORT_GPU_VERSION}" "${serve[@]}" \
  onnx ml_dtypes  # for the kernels part's packed graph (onnxruntime's converter reads onnx)
$py -m pip wheel -q --no-deps "$root" -w "$work/wheels"

# The bundle: manifest, tokenizer and the files of the variants that run on CUDA.
for f in manifest.json tokenizer.json model.fp16.onnx; do
  cp "$bundle/$f" "$work/bundle/"
done
if [ "${FP32:-0}" = 1 ]; then cp "$bundle/model.onnx" "$work/bundle/"; fi
cp -r "$root/benchmarks" "$work/benchmarks"
rm -rf "$work/benchmarks/results" "$work/benchmarks/__pycache__"
# The commit the results will name (git is not there to ask); -dirty when files differ from it.
(cd "$root" && echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)") > "$work/benchmarks/COMMIT"
if [ -n "$st_model" ]; then cp -r "$st_model" "$work/st"; fi

cat > "$work/run.sh" <<'EOF'
#!/usr/bin/env bash
# bash run.sh RESULTS_DIR [gpu.py options]: install the wheels beside this file, run gpu.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
results=${1:?usage: run.sh RESULTS_DIR [gpu.py options]}; shift
site=${SITE:-/tmp/fusembed-site}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$here"/wheels/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
python3 "$here/benchmarks/payload_check.py"  # every package fusembed needs is there
st=()
if [ -d "$here/st" ]; then st=(--st-model "$here/st"); fi
cd "$here/benchmarks"
python3 gpu.py "$here/bundle" "${st[@]}" --out "$results" "$@"
EOF
chmod +x "$work/run.sh"

tar cf "$work/payload.tar" -C "$work" wheels bundle benchmarks run.sh $( [ -n "$st_model" ] && echo st )
rm -f "$out"/p.*
split -b 60M -d "$work/payload.tar" "$out/p."
ls -la "$out"
