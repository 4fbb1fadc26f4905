"""The model alone on CUDA under onnxruntime provider options fusembed does not set: which
attention kernels onnxruntime may pick (`sdpa_kernel`), and CUDA graphs (`enable_cuda_graph`).

gpu.py's `kernels` part calls `measure`; on its own:

    python benchmarks/cuda_options.py BUNDLE [--device cpu]

- `sdpa_kernel` is a bit mask of the attention kernels onnxruntime may use (1 flash, 2 memory-
  efficient, 4 TensorRT fused, 8 cuDNN flash, 16 unfused; 0 lets it choose). Each is timed on one
  fixed batch of pre-tokenized texts, short and of 256 word pieces, and its vectors are compared
  with the default's: a kernel that cannot take the graph's key-length mask is refused at load or
  falls back, and either shows here.
- Packed: the same graph with padding removed between the embeddings and the last layer norm, by
  onnxruntime's own converter (RemovePadding, PackedAttention, RestorePadding: CUDA-only
  operators). Every layer then runs on real tokens only, and attention on variable-length
  sequences needs no mask (cutlass memory-efficient attention where the TensorRT kernels do not
  serve the GPU). The mixed batch, half short texts and half of 256 word pieces, is where padding
  costs most.
- `enable_cuda_graph`: onnxruntime captures the whole run once per shape and replays it, which
  needs every compute node on the GPU (shape arithmetic aside) and inputs at fixed addresses. The
  part reports whether onnxruntime accepts it for this graph and, where it does, batch-1 latency
  against the same IO-bound call without it.
- Shape stalls: on one session with fusembed's options, a sequence of shapes, each run twice: the
  first run of a shape is where onnxruntime prepares it. Some shapes are new in their rows only,
  some in their width only, some are a pair of rows and width each seen before, some new in both:
  which of these stall says what a warm-up must cover. onnxruntime's profiler splits the first
  run that took longest over its second against that second run, by operator, and names the time
  outside every operator.

With `--device cpu` the same code runs on the CPU provider, with the CUDA-only options left out:
a dry run of the plumbing, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from harness import go_offline, long_texts, short_texts

PACKED = "packed (padding removed)"
KINDS = {"short": "short", "long": "256-token", "mixed": "mixed"}
SDPA_KERNELS = {"0 (onnxruntime chooses)": 0, "1 flash": 1, "2 memory-efficient": 2,
                "4 TensorRT fused": 4, "8 cuDNN flash": 8, "16 unfused": 16}
Feeds = dict[str, npt.NDArray[np.int64]]


def measure(bundle: Path, device: str, *, rows: int = 512, repeats: int = 10) -> dict[str, Any]:
    from fusembed import Encoder

    encoder = Encoder(bundle, device="cpu", precision="fp16", warmup=False)  # only to tokenize
    model = bundle / encoder.variant.file
    short, long = short_texts(rows, seed=11), long_texts(rows, seed=12)
    batches = {kind: feeds_of(encoder, texts) for kind, texts in
               (("short", short), ("long", long), ("mixed", short[: rows // 2] + long[rows // 2:]))}
    shapes = {kind: list(feeds["input_ids"].shape) for kind, feeds in batches.items()}
    result: dict[str, Any] = {"rows": rows, "shapes": shapes}
    kernels = SDPA_KERNELS if device == "cuda" else {"0 (onnxruntime chooses)": 0}
    reference: dict[str, np.ndarray] = {}
    table: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Path | str, dict[str, str]]] = [
            (label, model, {"sdpa_kernel": str(mask)} if mask else {}) for label, mask in kernels.items()]
        runs.append((PACKED, packed_model(model, Path(tmp)), {}))
        for label, graph, options in runs:
            try:
                if isinstance(graph, str):
                    raise RuntimeError(graph)
                session = new_session(graph, device, options)
            except Exception as exc:  # onnxruntime raises several unrelated types
                table[label] = {"error": first_line(exc)}
                log(f"{label}: {table[label]['error']}")
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
            log(f"{label}: {row}")
            del session
    result["sdpa_kernel"] = table
    result["cuda_graph"] = cuda_graph(model, device, encoder)
    log(f"cuda graph: {result['cuda_graph']}")
    result["stalls"] = shape_stalls(model, device, encoder)
    log(f"shape stalls: {result['stalls']['probes']}")
    return result


def packed_model(model: Path, out_dir: Path) -> Path | str:
    """`model` converted to packing mode by onnxruntime's converter, written to `out_dir`; or why
    it could not be (the converter leaves a graph without fused Attention as it was)."""
    try:
        import onnx
        from onnxruntime.transformers.convert_to_packing_mode import PackingMode
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as exc:
        return f"not convertible here: {exc}"
    graph = OnnxModel(onnx.load(str(model)))
    PackingMode(graph).convert(use_symbolic_shape_infer=False)
    ops = {node.op_type for node in graph.model.graph.node}
    if not {"RemovePadding", "PackedAttention", "RestorePadding"} <= ops:
        return "not convertible: the graph has no fused Attention with one key-length mask"
    out = out_dir / "packed.onnx"
    graph.save_model_to_file(str(out))
    return out


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


def new_session(model: Path, device: str, options: dict[str, str], session_options: Any = None) -> Any:
    import onnxruntime as ort
    from fusembed._providers import CUDA_OPTIONS

    providers: list[Any] = (
        [("CUDAExecutionProvider", {**CUDA_OPTIONS, **options}), "CPUExecutionProvider"]
        if device == "cuda" else ["CPUExecutionProvider"])
    session = ort.InferenceSession(str(model), sess_options=session_options, providers=providers)
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


# (rows, width) run in this order after (1, 8), and what each adds to the shapes run before it
STALL_PROBES: tuple[tuple[tuple[int, int], str], ...] = (
    ((1, 8), "nothing: run before"),
    ((2, 8), "rows"),
    ((64, 8), "rows"),
    ((1, 16), "width"),
    ((1, 48), "width"),
    ((2, 16), "the pair: rows and width each run before"),
    ((64, 48), "the pair: rows and width each run before"),
    ((128, 32), "rows and width"),
)


def shape_stalls(model: Path, device: str, encoder: Any, probes: Any = STALL_PROBES) -> dict[str, Any]:
    """Each probe shape run twice on one profiled session (fusembed's provider options): the first
    and second run's milliseconds, and for the probe whose first run took longest over its
    second, the profile's operator time of both runs by operator type and the time outside every
    operator."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp, "stalls"))
        session = new_session(model, device, {}, options)
        output = encoder.manifest.output
        runs: list[float] = []

        def run(rows: int, width: int) -> float:
            ids = np.full((rows, width), encoder.manifest.pad_token_id, dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if encoder._needs_type_ids:
                feeds["token_type_ids"] = np.zeros_like(ids)
            began = time.perf_counter()
            session.run([output], feeds)
            runs.append((time.perf_counter() - began) * 1000)
            return runs[-1]

        run(1, 8)
        table = [{"shape": list(shape), "new": new, "first_ms": run(*shape), "second_ms": run(*shape)}
                 for shape, new in probes]
        events = json.loads(Path(session.end_profiling()).read_text())
    result: dict[str, Any] = {"probes": table}
    slowest = max(range(len(table)), key=lambda i: table[i]["first_ms"] - table[i]["second_ms"])
    by_run = operator_times(events)
    if len(by_run) == len(runs):  # run i of this function is the profile's run i
        first, second = by_run[1 + 2 * slowest], by_run[2 + 2 * slowest]
        result["slowest"] = {"shape": table[slowest]["shape"], "first": first, "second": second}
    else:
        result["slowest"] = {"error": f"the profile holds {len(by_run)} runs, not {len(runs)}"}
    return result


def operator_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each run in an onnxruntime profile, in order: its milliseconds, the milliseconds of its
    operators by type, and the rest (time in the run outside every operator)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    out = []
    for r in runs:
        inside = [n for n in nodes if r["ts"] <= n["ts"] <= r["ts"] + r["dur"]]
        by_type: dict[str, float] = {}
        for n in inside:
            op = n.get("args", {}).get("op_name", "?")
            by_type[op] = by_type.get(op, 0.0) + n["dur"] / 1000
        total = r["dur"] / 1000
        out.append({"ms": total, "operators_ms": by_type, "outside_ms": total - sum(by_type.values())})
    return out


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
             f"| sdpa_kernel | {' | '.join(f'{KINDS[k]} texts/s | min cosine' for k in r['shapes'])} |",
             "|---|" + "---:|---:|" * len(r["shapes"])]
    for label, row in r["sdpa_kernel"].items():
        if "error" in row:
            lines.append(f"| {label} | refused: {row['error']} |" + " |" * (2 * len(r["shapes"]) - 1))
            continue
        cells = []
        for kind in r["shapes"]:
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
    if "stalls" in r:
        lines += ["", *stall_markdown(r["stalls"])]
    return [*lines, ""]


def stall_markdown(r: dict[str, Any]) -> list[str]:
    lines = ["### Which new shapes stall", "",
             "One session with fusembed's provider options; each shape run twice, in this order, "
             "after (1, 8):", "",
             "| rows x width | new about it | first run ms | second run ms |", "|---|---|---:|---:|"]
    lines += [f"| {a} x {b} | {p['new']} | {p['first_ms']:.2f} | {p['second_ms']:.2f} |"
              for p in r["probes"] for a, b in [p["shape"]]]
    slowest = r["slowest"]
    if "error" in slowest:
        return [*lines, "", f"No profile of the largest stall: {slowest['error']}."]
    first, second = slowest["first"], slowest["second"]
    a, b = slowest["shape"]
    lines += ["", f"The largest stall, {a} x {b}, in onnxruntime's profile: its first run "
              f"{first['ms']:.2f} ms against {second['ms']:.2f} ms; outside every operator "
              f"{first['outside_ms']:.2f} ms against {second['outside_ms']:.2f} ms.", "",
              "| operator | first run ms | second run ms |", "|---|---:|---:|"]
    ops = sorted(first["operators_ms"], key=lambda op: -(first["operators_ms"][op]
                                                         - second["operators_ms"].get(op, 0.0)))
    lines += [f"| {op} | {first['operators_ms'][op]:.2f} | {second['operators_ms'].get(op, 0.0):.2f} |"
              for op in ops[:8]]
    return lines


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
