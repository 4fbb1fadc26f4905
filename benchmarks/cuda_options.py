"""The model alone on CUDA under onnxruntime provider options fusembed does not set: which
attention kernels onnxruntime may pick (`sdpa_kernel`), and CUDA graphs (`enable_cuda_graph`).

gpu.py's `kernels` part calls `measure`; on its own:

    python benchmarks/cuda_options.py BUNDLE [--device cpu]

- `sdpa_kernel` is a bit mask of the attention kernels onnxruntime may use (1 flash, 2 memory-
  efficient, 4 TensorRT fused, 8 cuDNN flash, 16 unfused; 0 lets it choose). Each is timed on one
  fixed batch of pre-tokenized texts, short and of 256 word pieces, and its vectors are compared
  with the default's: a kernel that cannot take the graph's key-length mask is refused at load or
  falls back, and either shows here.
- `enable_cuda_graph`: onnxruntime captures the whole run once per shape and replays it, which
  needs every compute node on the GPU (shape arithmetic aside) and inputs at fixed addresses. The
  part reports whether onnxruntime accepts it for this graph and, where it does, batch-1 latency
  against the same IO-bound call without it.

With `--device cpu` the same code runs on the CPU provider, with the CUDA-only options left out:
a dry run of the plumbing, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from harness import go_offline, long_texts, short_texts

SDPA_KERNELS = {"0 (onnxruntime chooses)": 0, "1 flash": 1, "2 memory-efficient": 2,
                "4 TensorRT fused": 4, "8 cuDNN flash": 8, "16 unfused": 16}
Feeds = dict[str, npt.NDArray[np.int64]]


def measure(bundle: Path, device: str, *, rows: int = 512, repeats: int = 10) -> dict[str, Any]:
    from fusembed import Encoder

    encoder = Encoder(bundle, device="cpu", precision="fp16", warmup=False)  # only to tokenize
    model = bundle / encoder.variant.file
    batches = {kind: feeds_of(encoder, texts) for kind, texts in
               (("short", short_texts(rows, seed=11)), ("long", long_texts(rows, seed=12)))}
    shapes = {kind: list(feeds["input_ids"].shape) for kind, feeds in batches.items()}
    result: dict[str, Any] = {"rows": rows, "shapes": shapes}
    kernels = SDPA_KERNELS if device == "cuda" else {"0 (onnxruntime chooses)": 0}
    reference: dict[str, np.ndarray] = {}
    table: dict[str, Any] = {}
    for label, mask in kernels.items():
        options = {"sdpa_kernel": str(mask)} if mask else {}
        try:
            session = new_session(model, device, options)
        except Exception as exc:  # onnxruntime raises several unrelated types
            table[label] = {"error": first_line(exc)}
            log(f"sdpa_kernel {label}: {table[label]['error']}")
            continue
        row: dict[str, Any] = {}
        for kind, feeds in batches.items():
            try:
                out, seconds = timed_runs(session, encoder.manifest.output, feeds, repeats)
            except Exception as exc:
                row[kind] = {"error": first_line(exc)}
                continue
            reference.setdefault(kind, out)
            row[kind] = {"texts_per_s": rows / seconds,
                         "min_cosine_to_default": min_cosine(out, reference[kind])}
        table[label] = row
        log(f"sdpa_kernel {label}: {row}")
    result["sdpa_kernel"] = table
    result["cuda_graph"] = cuda_graph(model, device, encoder)
    log(f"cuda graph: {result['cuda_graph']}")
    return result


def feeds_of(encoder: Any, texts: list[str]) -> Feeds:
    rows = encoder.tokenize(texts)
    width = max(map(len, rows))
    ids = np.full((len(rows), width), encoder.manifest.pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    if encoder._needs_type_ids:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def new_session(model: Path, device: str, options: dict[str, str]) -> Any:
    import onnxruntime as ort
    from fusembed._providers import CUDA_OPTIONS

    providers: list[Any] = (
        [("CUDAExecutionProvider", {**CUDA_OPTIONS, **options}), "CPUExecutionProvider"]
        if device == "cuda" else ["CPUExecutionProvider"])
    session = ort.InferenceSession(str(model), providers=providers)
    if session.get_providers()[0] != providers[0][0] and device == "cuda":
        raise RuntimeError(f"the session runs on {session.get_providers()}")
    return session


def timed_runs(session: Any, output: str, feeds: Feeds, repeats: int) -> tuple[np.ndarray, float]:
    """The output and the median seconds of `repeats` runs, after two untimed ones."""
    for _ in range(2):
        out = session.run([output], feeds)[0]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        session.run([output], feeds)
        times.append(time.perf_counter() - began)
    return np.asarray(out, dtype=np.float32), statistics.median(times)


def cuda_graph(model: Path, device: str, encoder: Any, calls: int = 300) -> dict[str, Any]:
    """Batch-1 latency of IO-bound runs at one shape (one short text), with and without a CUDA
    graph: each call copies new ids into the bound input and the vector back to the host. On the
    CPU only the plain run, as a dry run of the calls."""
    import onnxruntime as ort

    feeds = feeds_of(encoder, ["How many people live in London?"])
    output = encoder.manifest.output
    result: dict[str, Any] = {"shape": list(feeds["input_ids"].shape)}
    variants = {"plain": {}, "cuda graph": {"enable_cuda_graph": "1"}}
    for label, options in list(variants.items())[: 2 if device == "cuda" else 1]:
        try:
            session = new_session(model, device, options)
            inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, device, 0) for k, v in feeds.items()}
            out = ort.OrtValue.ortvalue_from_shape_and_type((1, encoder.manifest.dim), np.float32, device, 0)
            binding = session.io_binding()
            for name, value in inputs.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(output, out)
            times = []
            for i in range(calls + 20):
                began = time.perf_counter()
                for name, value in inputs.items():
                    value.update_inplace(feeds[name])
                session.run_with_iobinding(binding)
                vector = out.numpy()
                if i >= 20:
                    times.append((time.perf_counter() - began) * 1000)
            p50, p99 = np.percentile(times, [50, 99])
            result[label] = {"p50_ms": float(p50), "p99_ms": float(p99),
                             "vector_norm": float(np.linalg.norm(vector))}
        except Exception as exc:
            result[label] = {"error": first_line(exc)}
    return result


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def markdown(r: dict[str, Any]) -> list[str]:
    lines = ["## The model alone under other CUDA provider options", "",
             "One batch of pre-tokenized texts per shape ("
             + ", ".join(f"{kind}: {a} x {b}" for kind, (a, b) in r["shapes"].items())
             + " tokens), median of 10 runs; "
             "cosine against the first row's vectors.", "",
             "| sdpa_kernel | short texts/s | min cosine | 256-token texts/s | min cosine |",
             "|---|---:|---:|---:|---:|"]
    for label, row in r["sdpa_kernel"].items():
        if "error" in row:
            lines.append(f"| {label} | refused: {row['error']} | | | |")
            continue
        cells = []
        for kind in ("short", "long"):
            cell = row[kind]
            cells += ([f"error: {cell['error']}", ""] if "error" in cell else
                      [f"{cell['texts_per_s']:,.0f}", f"{cell['min_cosine_to_default']:.6f}"])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "cuda_graph" in r:
        g = r["cuda_graph"]
        lines += ["", f"Batch 1, shape {g['shape']}, IO binding, new ids copied in and the vector out "
                  "per call:", ""]
        for label in ("plain", "cuda graph"):
            if label not in g:
                continue
            v = g[label]
            lines.append(f"- {label}: " + (f"not available: {v['error']}" if "error" in v else
                                           f"p50 {v['p50_ms']:.3f} ms, p99 {v['p99_ms']:.3f} ms"))
    return [*lines, ""]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    go_offline()
    result = measure(args.bundle, args.device, rows=args.rows)
    print(json.dumps(result, indent=2))
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
