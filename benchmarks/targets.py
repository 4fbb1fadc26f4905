"""What issue 4's speed targets ask of this machine, against its GEMM limit.

The targets are ratios to sentence-transformers' ONNX backend. This turns each one into the
fraction of the machine's GEMM limit (benchmarks/roofline.py) that fusembed would have to reach,
and checks that against two measurements taken here:

- an onnxruntime profile of fusembed's own graphs on the benchmark's short texts, batched as the
  Encoder batches them: how much of the time goes to GEMM nodes and how much to everything else
  (attention, layer norms, GELU, activation quantisation, reshapes). If the GEMM nodes keep their
  speed, the rest must shrink to what is left of the time budget;
- the model's int8 weight GEMMs alone at the shape of one short sentence (batch 1): the floor
  under batch-1 latency before any other operator runs.

Throughput and latency figures come from a side-by-side run (compare.json); the profile and the
batch-1 GEMM floor are measured by this script, in its own run.

    .venv/bin/python benchmarks/targets.py [--bundle bundles/all-MiniLM-L6-v2]

writes benchmarks/results/targets.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import compare
import numpy as np
import onnxruntime as ort
from compare import LONG_MODEL, PLANS, REAL
from fusembed import Encoder, read_manifest
from harness import command_line, long_texts, machine, short_texts
from roofline import flops_per_token, layer_gemm_seconds
from vectors import encoder_batches

ROOT = Path(__file__).resolve().parents[1]
# Nodes whose time is counted as GEMM time (fused `Attention` is split, see gemm_share).
GEMM_OPS = {"MatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "DynamicQuantizeMatMul",
            "MatMulNBits", "Gemm"}


def gemm_share(model: Path, encoder: Encoder, texts: list[str], threads: int) -> tuple[float, Counter[str]]:
    """Fraction of node time in GEMM ops over one pass of `texts`, and the time per op type."""
    rows = encoder.tokenize(texts)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        for _ in range(2):  # the first pass warms up; both are in the profile, which only sums time
            for ids, mask in encoder_batches(rows, encoder.manifest.pad_token_id, 32):
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
                session.run(None, {k: v for k, v in feeds.items() if k in wanted})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    gemm = float(sum(v for k, v in per_op.items() if k in GEMM_OPS))
    for op in ("Attention", "QAttention"):
        # onnxruntime's fused Attention (fp32) and QAttention (int8) also run the Q/K/V projection:
        # 3h^2 of a layer's 12h^2 weight-GEMM multiply-adds, at the same rows as the other 9h^2,
        # which run as GEMM nodes. So the projection counts as a third of their time; the rest of
        # the node (scores, softmax, context) as other work.
        gemm += min(per_op[op], gemm / 3)
    return gemm / sum(per_op.values()), per_op


def find(results: list[dict[str, Any]], model: str, inputs: str, engine: str) -> dict[str, Any]:
    """compare.py's measured row, which every target here needs."""
    row = compare.find(results, model, inputs, engine)
    if row is None:
        raise SystemExit(f"compare.json has no measured row for {model} / {inputs} / {engine}")
    return row


def shown(path: Path) -> str:
    """`path` relative to the repository root if it is inside it, else in full."""
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full)


def top_ops(per_op: Counter[str], n: int = 6) -> str:
    total = sum(per_op.values())
    return ", ".join(f"{op} {t / total:.0%}" for op, t in per_op.most_common(n))


def verdict(need: float, now: float, share: float | None) -> str:
    """Can `need` (a fraction of the GEMM limit) be reached from `now`, if GEMM nodes keep their
    speed and only the other nodes (`1 - share` of the time now) get faster?"""
    if need > 1:
        return f"no: {need:.0%} of the limit is above it"
    if share is None:
        return "not profiled"
    rest = (now / need - share) / (1 - share)  # the other nodes' allowed time, as a part of today's
    if rest <= 0:
        return (f"no: the GEMM nodes alone already take {share:.0%} of today's time, more than the "
                f"{now / need:.0%} the target allows")
    if rest < 0.1:
        return f"no in practice: every non-GEMM node would have to run {1 / rest:.0f}x faster"
    return f"only if every non-GEMM node ran {1 / rest:.1f}x faster (or the GEMMs faster than onnxruntime's)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "bundles" / REAL)
    parser.add_argument("--long-bundle", type=Path, default=ROOT / "bench/compare/bundles" / LONG_MODEL,
                        help="the replica bundle compare.py exported (its work dir); skipped if missing")
    parser.add_argument("--compare", type=Path, default=ROOT / "benchmarks" / "results" / "compare.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "targets.md")
    args = parser.parse_args(argv)
    results = json.loads(args.compare.read_text())
    manifest = read_manifest(args.bundle)
    if manifest.source.model.rsplit("/", 1)[-1] != REAL:
        raise SystemExit(f"--bundle must hold {REAL}, the model the targets are set on")

    texts = short_texts(find(results, REAL, "short", "fusembed-int8")["texts"], seed=11)  # compare's texts
    shares: dict[str, float] = {}
    top: dict[str, str] = {}
    counted: set[str] = set()
    for precision in ("int8", "fp32"):
        encoder = Encoder(args.bundle, precision=precision, threads=args.threads)
        share, per_op = gemm_share(args.bundle / manifest.variants[precision].file, encoder, texts,
                                   args.threads)
        shares[precision] = share
        counted |= GEMM_OPS & set(per_op)
        top[precision] = top_ops(per_op)
    if args.long_bundle.is_dir():
        long = long_texts(find(results, LONG_MODEL, "long", "fusembed-int8")["texts"])  # compare's texts
        encoder = Encoder(args.long_bundle, precision="int8", threads=args.threads)
        file = args.long_bundle / read_manifest(args.long_bundle).variants["int8"].file
        shares["long int8"], per_op = gemm_share(file, encoder, long, args.threads)
        counted |= GEMM_OPS & set(per_op)
        top["long int8"] = top_ops(per_op)

    lines = [
        "# What issue 4's speed targets ask of this machine",
        "",
        f"- command: `{command_line()}`",
        f"- {machine().line(args.threads)}; {args.threads} threads",
        f"- throughput, latency and `% of limit`: `{shown(args.compare)}` (see compare.md for "
        "its command and run); the profile and the batch-1 GEMM floor: this script, in its own run",
        "- `% of limit` = real tokens/s x FLOPs per token over onnxruntime's own GEMM throughput at the "
        "model's shapes (benchmarks/roofline.py); a target of R x an engine at f% needs R x f%",
        f"- GEMM share of fusembed's graph time on the {len(texts)} short texts, batched as the Encoder "
        f"does (onnxruntime profiler; {', '.join(sorted(counted))} count as GEMM, and so does the Q/K/V "
        "projection inside fused Attention / QAttention): "
        f"int8 {shares['int8']:.0%}, fp32 {shares['fp32']:.0%}"
        + (f"; {LONG_MODEL} int8, long texts {shares['long int8']:.0%}" if "long int8" in shares else ""),
        f"  - int8 graph: {top['int8']}",
        f"  - fp32 graph: {top['fp32']}",
        *([f"  - {LONG_MODEL} int8 graph, long texts: {top['long int8']}"] if "long int8" in top else []),
        "",
        "| target | baseline, % of limit | fusembed needs | fusembed now "
        "| reachable with onnxruntime's kernels? |",
        "|---|---|---:|---:|---|",
    ]

    def throughput_row(label: str, model: str, inputs: str, precision: str, times: float | None,
                       share: float | None) -> None:
        own = find(results, model, inputs, f"fusembed-{precision}")
        if times is None:
            base, need = "-", 0.5
        else:
            st = find(results, model, inputs, f"st-onnx-{precision}")
            base, need = f"ST ONNX {precision} {st['peak_fraction']:.0%}", times * st["peak_fraction"]
        now = own["peak_fraction"]
        lines.append(f"| {label} | {base} | {need:.0%} | {now:.0%} | {verdict(need, now, share)} |")

    throughput_row("int8 >= 2.5x ST int8, short", REAL, "short", "int8", 2.5, shares["int8"])
    throughput_row("fp32 >= 2x ST fp32, short", REAL, "short", "fp32", 2.0, shares["fp32"])
    throughput_row("int8 >= 50% of the limit, short", REAL, "short", "int8", None, shares["int8"])
    throughput_row(f"int8 >= 1.5x ST int8, long ({LONG_MODEL})", LONG_MODEL, "long", "int8", 1.5,
                   shares.get("long int8"))
    throughput_row(f"fp32 >= 1.5x ST fp32, long ({LONG_MODEL})", LONG_MODEL, "long", "fp32", 1.5, None)

    st8, own8 = find(results, REAL, "short", "st-onnx-int8"), find(results, REAL, "short", "fusembed-int8")
    plan = PLANS[REAL]
    tokens = round(own8["tokens"] / own8["texts"])
    floor_ms = plan.layers * layer_gemm_seconds(plan.hidden, tokens, args.threads, "int8") * 1e3
    target_ms = 0.3 * st8["p50_ms"]
    gemm_flops = plan.layers * 24 * plan.hidden**2 * tokens
    left = (f"{target_ms - floor_ms:.3f} ms" if floor_ms < target_ms
            else f"none: the GEMMs alone are {floor_ms - target_ms:.3f} ms over")
    lines += [
        "",
        "Batch-1 latency (one short sentence of the mean length, "
        f"{tokens} tokens, {flops_per_token(plan.layers, plan.hidden, tokens) * tokens / 1e6:.0f} MFLOP):",
        "",
        "| target p50 (0.3x ST int8) | int8 weight GEMMs alone at this shape | left for everything else | "
        "fusembed int8 p50 now |",
        "|---:|---:|---:|---:|",
        f"| {target_ms:.3f} ms (ST {st8['p50_ms']:.2f} ms) | {floor_ms:.3f} ms "
        f"({gemm_flops / floor_ms / 1e6:.0f} GOP/s) | {left} | "
        f"{own8['p50_ms']:.2f} ms |",
        "",
        "At batch 1 the rest of the graph (embedding, attention, 12 layer norms, GELU, activation "
        "quantisation, pooling) and onnxruntime's per-node dispatch have to fit in the third column.",
        "",
    ]
    text = "\n".join(lines)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
