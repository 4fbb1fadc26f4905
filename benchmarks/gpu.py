"""fusembed against sentence-transformers on one GPU, side by side in one process.

    python benchmarks/gpu.py BUNDLE --st-model MODEL_DIR [--server]

BUNDLE needs its fp16 and fp32 variants; MODEL_DIR is the sentence-transformers model it was
exported from (torch with CUDA and sentence-transformers installed; onnxruntime-gpu for fusembed).
Writes gpu.md, gpu.json and gpu.png to --out (default benchmarks/results).

What it measures, in this order (sentence-transformers is loaded last, so that torch's memory
does not mix with onnxruntime's in the memory figures):
1. Latency under changing shapes: batch-1 calls on texts of every length, and batch-32 calls on
   random mixes of short and long texts, with bucketed, warmed-up shapes (the CUDA default) and
   without (every new shape met cold); p50, p95, p99 and the worst call.
2. A soak: `--soak` calls of 1-64 mixed texts; GPU memory (nvidia-smi) and RSS after warm-up and
   at the end. With the `cold` part, time to the first embedding and latency meanwhile with the
   warm-up at load, in the background and off: benchmarks/cold_start.py.
3. Throughput (texts/s) of fusembed fp16 and fp32 and sentence-transformers fp16 and fp32, on short
   texts (10-40 word pieces) and on texts truncated at the model's 256 word pieces, batch 1 to 512;
   and `encode(texts)` with default arguments against the best batch size.
4. Agreement: cosine of each engine's vectors to sentence-transformers fp32.
5. With the `kernels` part, the model alone under provider options fusembed does not set
   (attention kernels, CUDA graphs): benchmarks/cuda_options.py.
6. `fusembed bench --device cuda` (batch-1 percentiles, batch sizes, cold start), and with
   `--server`, benchmarks/serve_load.py against `fusembed serve --device cuda`, in one process
   and with `--workers N` (`--server-workers`), clients spread over `--client-procs` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    command_line,
    fusembed_commit,
    go_offline,
    gpu_memory_mb,
    long_texts,
    machine,
    percentiles,
    rotated,
    rss_mb,
    short_texts,
)
from vectors import row_cosine

RESULTS = Path(__file__).parent / "results"
Encode = Callable[[Sequence[str], int], np.ndarray]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader",
                              "-i", "0"], capture_output=True, text=True, check=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def latencies(call: Callable[[list[str]], object], batches: Sequence[list[str]]) -> dict[str, float]:
    times = []
    for batch in batches:
        began = time.perf_counter()
        call(batch)
        times.append((time.perf_counter() - began) * 1000)
    p50, p95, p99 = percentiles(times)
    return {"calls": len(times), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max(times)}


def texts_per_s(encode: Encode, texts: Sequence[str], batch: int, *, passes: int = 2) -> float:
    """Best of `passes` timed passes over `texts` (one `encode` call per `batch` texts), after an
    untimed pass over the first texts at the same batch size."""
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    for chunk in chunks[:3]:
        encode(chunk, batch)
    best = float("inf")
    for _ in range(passes):
        began = time.perf_counter()
        for chunk in chunks:
            encode(chunk, batch)
        best = min(best, time.perf_counter() - began)
    return len(texts) / best


def stalls(bundle: Path, device: str, short: list[str], long: list[str], soaks: tuple[int, int],
           calls: int) -> dict[str, Any]:
    """Sections 1 and 2: the same calls with bucketed warm shapes and with raw shapes."""
    rng = random.Random(3)
    mixed = short + long
    singles = [[rng.choice(short)] for _ in range(calls)]  # lengths vary, the work hardly does
    thirty_twos = [rng.sample(mixed, 32) for _ in range(calls // 7)]
    soak_calls = [rng.sample(mixed, rng.randint(1, 64)) for _ in range(max(soaks))]
    return {name: shapes_run(bundle, device, bucketed, singles, thirty_twos, soak_calls[:soak])
            for name, bucketed, soak in (("bucketed", True, soaks[0]), ("raw", False, soaks[1]))}


def shapes_run(bundle: Path, device: str, bucketed: bool, singles: list[list[str]],
               thirty_twos: list[list[str]], soak_calls: list[list[str]]) -> dict[str, Any]:
    from fusembed import Encoder

    name = "bucketed" if bucketed else "raw"
    memory_before = gpu_memory_mb()
    began = time.perf_counter()
    enc = Encoder(bundle, device=device, precision="fp16",  # type: ignore[arg-type]
                  bucket_shapes=bucketed, warmup=None if device == "cuda" else False)  # a dry run
    load_s = time.perf_counter() - began
    log(f"{name}: loaded (and warmed) in {load_s:.1f} s")
    result: dict[str, Any] = {"load_s": load_s, "gpu_mb_before_load": memory_before}
    result["batch1"] = latencies(lambda b: enc.encode(b, batch_size=1), singles)
    result["batch32"] = latencies(lambda b: enc.encode(b, batch_size=32), thirty_twos)
    log(f"{name}: batch1 {result['batch1']}, batch32 {result['batch32']}")
    memory = [("after warm-up and latency runs", gpu_memory_mb(), rss_mb(os.getpid()))]
    for i, batch in enumerate(soak_calls, 1):
        enc.encode(batch)
        if i in (len(soak_calls) // 10, len(soak_calls)):
            memory.append((f"after {i} soak calls", gpu_memory_mb(), rss_mb(os.getpid())))
    result["memory"] = [{"when": w, "gpu_mb": g, "rss_mb": r} for w, g, r in memory]
    log(f"{name}: memory {result['memory']}")
    return result


def throughput(engines: dict[str, Encode], short: list[str], long: list[str],
               sizes: Sequence[int]) -> dict[str, dict[str, dict[int, float]]]:
    table: dict[str, dict[str, dict[int, float]]] = {}
    for kind, texts in (("short", short), ("long", long)):
        table[kind] = {}
        for name, encode in engines.items():
            row = {}
            for size in sizes:
                subset = texts[: max(256, size * 8)] if size < 32 else texts
                row[size] = texts_per_s(encode, subset, size)
            table[kind][name] = row
            log(f"{kind} {name}: " + ", ".join(f"b{k} {v:.0f}/s" for k, v in row.items()))
    return table


PARTS = ("stalls", "cold", "throughput", "st", "bench", "kernels", "server")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--st-model", type=Path,
                        help="the sentence-transformers model folder the bundle was exported from "
                             "(needed by the st part)")
    parser.add_argument("--parts", default="stalls,cold,throughput,st,bench,kernels",
                        help="what to measure, comma-separated, in this order: " + ", ".join(PARTS) +
                             " (default: all but server; --server adds it)")
    parser.add_argument("--batch-sizes", default="1,8,32,128,512")
    parser.add_argument("--short", type=int, default=16384, help="short texts (default: 16384)")
    parser.add_argument("--long", type=int, default=2048, help="long texts (default: 2048)")
    parser.add_argument("--soak", type=int, default=10_000, help="soak calls (default: 10000)")
    parser.add_argument("--raw-soak", type=int, default=3000,
                        help="soak calls with raw shapes, to show how memory grows (default: 3000)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="batch-1 calls timed per shape policy; batch-32 calls: a seventh")
    parser.add_argument("--server", action="store_true", help="also run serve_load.py on CUDA")
    parser.add_argument("--server-workers", type=int, default=4,
                        help="HTTP workers of the second server run (default: 4)")
    parser.add_argument("--client-procs", type=int, default=4,
                        help="client processes of the server runs (default: 4)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: a dry run of this script on a machine without a GPU")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()} | ({"server"} if args.server else set())
    if unknown := parts - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if "st" in parts and args.st_model is None:
        parser.error("the st part needs --st-model (or leave it out of --parts)")
    go_offline()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    started = time.perf_counter()

    import onnxruntime as ort

    short = short_texts(args.short, seed=11)
    long = long_texts(args.long, seed=12)
    here = machine()
    report: dict[str, Any] = {
        "command": command_line(), "gpu": gpu_name(), "device": args.device,
        "fusembed_commit": fusembed_commit(),
        "machine": {"cpu": here.cpu, "cpus": here.cores, "python": here.python},
        "onnxruntime": ort.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after each section: a run cut short still leaves what it measured
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")

    if "stalls" in parts:
        report["stalls"] = stalls(args.bundle, args.device, short[:4000], long[:1000],
                                   (args.soak, args.raw_soak), args.calls)
        save()
    if "cold" in parts:
        import cold_start

        report["cold"] = cold_start.measure(args.bundle, args.device, calls=100, rounds=2)
        log("cold start done")
        save()
    if parts & {"throughput", "st"}:
        engine_throughput(report, args.bundle, args.device, args.st_model if "st" in parts else None,
                          short, long, sizes, save)
    if "bench" in parts:
        from fusembed._bench import markdown as bench_markdown
        from fusembed._bench import run_bench

        bench = run_bench(args.bundle, texts=short[:512], batch_sizes=(1, 32, 128, 512), repeats=1000,
                          device=args.device, precision="fp16")
        report["bench_md"] = bench_markdown(bench)
        log("bench done")
        save()
    if "kernels" in parts:
        import cuda_options

        report["kernels"] = cuda_options.measure(args.bundle, args.device)
        save()
    if "server" in parts:
        # One process, then --workers N: HTTP workers in front of the one model process, loaded
        # from several client processes (one asyncio client process tops out below the server).
        for key, workers in (("serve_md", 1), ("serve_workers_md", args.server_workers)):
            out = args.out / f"serve_gpu_{workers}"
            subprocess.run([sys.executable, str(Path(__file__).parent / "serve_load.py"), str(args.bundle),
                            "--device", args.device, "--soak", "10000", "--warmup", "500", "--rounds", "2",
                            "--server-args", f"--workers {workers}", "--client-procs", str(args.client_procs),
                            "--out", str(out)], check=True, timeout=400)
            report[key] = (out / "serve.md").read_text()
            log(f"serve_load --workers {workers} done")
            save()
    report["seconds"] = time.perf_counter() - started
    save()
    (args.out / "gpu.md").write_text(markdown(report))
    plot(report, args.out / "gpu.png")
    print(markdown(report))


def engine_throughput(report: dict[str, Any], bundle: Path, device: str, st_model: Path | None,
                      short: list[str], long: list[str], sizes: Sequence[int],
                      save: Callable[[], None]) -> None:
    """Section 3 (and 4 with `st_model`): texts/s per engine and batch size, `encode`'s defaults
    against other budgets, and agreement with sentence-transformers fp32."""
    from fusembed import BundleError, Encoder

    fp16 = Encoder(bundle, device=device, precision="fp16")  # type: ignore[arg-type]
    report["default_batch"] = {"batch_size": fp16.default_batch_size, "max_tokens": fp16.default_max_tokens}
    engines: dict[str, Encode] = {"fusembed fp16": lambda texts, batch: fp16.encode(texts, batch_size=batch)}
    try:  # a bundle carried without its fp32 file measures fp16 alone
        fp32 = Encoder(bundle, device=device, precision="fp32")  # type: ignore[arg-type]
        engines["fusembed fp32"] = lambda texts, batch: fp32.encode(texts, batch_size=batch)
    except BundleError as exc:
        log(f"no fp32 engine: {exc}")
    # The model alone: texts tokenized before the clock starts, so this row is the GPU's own speed
    # (with the host's checks, padding and copies), the bound that overlapping the tokenizer aims at.
    pretokenized = dict(zip(short, fp16.tokenize(short), strict=True))
    pretokenized |= dict(zip(long, fp16.tokenize(long), strict=True))
    engines["fusembed fp16, pre-tokenized"] = lambda texts, batch: fp16.encode_tokens(
        [pretokenized[t] for t in texts], batch_size=batch)
    st16 = st32 = None
    if st_model is not None:
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer

        report["torch"] = torch.__version__
        report["sentence_transformers"] = sentence_transformers.__version__
        st32 = SentenceTransformer(str(st_model), device=device)
        st16 = SentenceTransformer(str(st_model), device=device).half()

        def st(model: SentenceTransformer) -> Encode:
            return lambda texts, batch: model.encode(list(texts), batch_size=batch, convert_to_numpy=True)

        engines |= {"sentence-transformers fp16": st(st16), "sentence-transformers fp32": st(st32)}
        check = short[:512] + long[:256]
        reference = st32.encode(check, batch_size=64, convert_to_numpy=True)
        report["agreement_min_cosine_to_st_fp32"] = {
            name: float(row_cosine(encode(check, 64), reference).min()) for name, encode in engines.items()
        }
        log(f"agreement {report['agreement_min_cosine_to_st_fp32']}")
        save()
    report["throughput"] = throughput(engines, short, long, sizes)
    save()

    report |= budgets(fp16, short, long)
    log(f"default encode {report['default_encode_texts_per_s']}; sweep {report['defaults_sweep']}")
    save()
    if st_model is not None:
        import torch

        del st16, st32
        torch.cuda.empty_cache()


# `encode` budgets (batch_size, max_tokens) compared with the default (None, None)
BUDGETS: tuple[tuple[int | None, int | None], ...] = (
    (None, None), (512, 65536), (512, 131072), (1024, 131072), (1024, 262144))


def budgets(encoder: Any, short: list[str], long: list[str], *, rounds: int = 5) -> dict[str, Any]:
    """`encode(texts)` with default arguments against other budgets, in texts/s: every budget
    runs once per round, in an order that rotates from round to round, and each figure is the
    median over rounds, so that the default and the budgets it is compared with meet the same
    moments of the host (a GPU host's clocks and other load drift within a run)."""
    rates: dict[tuple[str, int], list[float]] = {}
    for kind, texts in (("short", short), ("long", long)):
        for index, (batch_size, max_tokens) in enumerate(BUDGETS):  # untimed: new shapes warm up
            encoder.encode(texts[:2048], batch_size=batch_size, max_tokens=max_tokens)
            rates[kind, index] = []
        for round_ in range(rounds):
            for index in rotated(range(len(BUDGETS)), round_):
                batch_size, max_tokens = BUDGETS[index]
                began = time.perf_counter()
                encoder.encode(texts, batch_size=batch_size, max_tokens=max_tokens)
                rates[kind, index].append(len(texts) / (time.perf_counter() - began))

    def median(kind: str, index: int) -> float:
        return float(statistics.median(rates[kind, index]))

    return {
        "budget_rounds": rounds,
        "default_encode_texts_per_s": {kind: median(kind, 0) for kind in ("short", "long")},
        "defaults_sweep": [
            {"batch_size": batch_size, "max_tokens": max_tokens,
             **{kind: median(kind, index) for kind in ("short", "long")}}
            for index, (batch_size, max_tokens) in enumerate(BUDGETS) if index],
    }


def markdown(r: dict[str, Any]) -> str:
    versions = f"onnxruntime {r['onnxruntime']}"
    if "torch" in r:
        versions += f", torch {r['torch']}, sentence-transformers {r['sentence_transformers']}"
    lines = [
        "# fusembed and sentence-transformers on one GPU" if "torch" in r else "# fusembed on one GPU",
        "",
        f"Command: `{r['command']}`  ",
        f"GPU: {r['gpu']}; host {r['machine']['cpu']}, {r['machine']['cpus']} CPUs, Python "
        f"{r['machine']['python']}; {versions}; fusembed at commit {r['fusembed_commit']}.",
        "",
    ]
    device = r["device"]
    if "stalls" in r:
        lines += stalls_markdown(r["stalls"])
    if "cold" in r:
        import cold_start

        lines += ["## Cold start: warm-up at load, in the background, or off", "",
                  *cold_start.table(r["cold"])]
    if "throughput" in r:
        lines += throughput_markdown(r)
    if "agreement_min_cosine_to_st_fp32" in r:
        lines += ["## Agreement with sentence-transformers fp32 (min cosine, 768 texts)", "",
                  *(f"- {k}: {v:.6f}" for k, v in r["agreement_min_cosine_to_st_fp32"].items()), ""]
    if "kernels" in r:
        import cuda_options

        lines += cuda_options.markdown(r["kernels"])
    if "bench_md" in r:
        bench = r["bench_md"].replace("# fusembed bench: ", "### ")
        lines += [f"## fusembed bench --device {device}", "", bench, ""]
    if "serve_md" in r:
        lines += [f"## fusembed serve --device {device} under load", "",
                  r["serve_md"].replace("# ", "### ", 1)]
    if "serve_workers_md" in r:
        lines += [f"## fusembed serve --device {device} --workers N under load", "",
                  r["serve_workers_md"].replace("# ", "### ", 1)]
    return "\n".join(lines) + "\n"


def stalls_markdown(stalls: dict[str, Any]) -> list[str]:
    lines = [
        "## Latency when shapes change (fusembed fp16)",
        "",
        "| shapes | load s | batch 1 p50 / p99 / max ms | batch 32 p50 / p99 / max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, s in stalls.items():
        b1, b32 = s["batch1"], s["batch32"]
        label = "bucketed, warmed at load (default)" if name == "bucketed" else "raw (every shape new)"
        lines.append(f"| {label} | {s['load_s']:.1f} | {b1['p50_ms']:.2f} / {b1['p99_ms']:.2f} / "
                     f"{b1['max_ms']:.1f} | {b32['p50_ms']:.2f} / {b32['p99_ms']:.2f} / "
                     f"{b32['max_ms']:.1f} |")
    lines += ["", "Memory over the soak (calls of 1-64 mixed texts):", "",
              "| shapes | when | GPU MB (nvidia-smi) | RSS MB |", "|---|---|---:|---:|"]
    for name, s in stalls.items():
        for m in s["memory"]:
            lines.append(f"| {name} | {m['when']} | {m['gpu_mb']} | {m['rss_mb']:.0f} |")
    return [*lines, ""]


def throughput_markdown(r: dict[str, Any]) -> list[str]:
    lines = ["## Throughput, texts/s", "",
             "One `encode` call per batch; the pre-tokenized row calls `encode_tokens` on ids "
             "tokenized before the clock starts: the model's own speed on this GPU, with the host's "
             "checks, padding and copies.", ""]
    batch = r["default_batch"]
    for kind, table in r["throughput"].items():
        sizes = list(next(iter(table.values())))
        title = "short texts (10-40 word pieces)" if kind == "short" else "texts of 256 word pieces"
        lines += [f"{title}:", "", "| engine | " + " | ".join(f"batch {s}" for s in sizes) + " |",
                  "|---|" + "---:|" * len(sizes)]
        for name, row in table.items():
            lines.append(f"| {name} | " + " | ".join(f"{row[s]:,.0f}" for s in sizes) + " |")
        best = max(table["fusembed fp16"].values())
        default = r["default_encode_texts_per_s"][kind]
        best_budget = max(w[kind] for w in r["defaults_sweep"])
        lines += ["", f"`encode(texts)` (fp16) with default arguments (batch {batch['batch_size']}, "
                  f"{batch['max_tokens']} tokens): {default:,.0f} texts/s, {default / best:.0%} of the "
                  "best batch size of `fusembed fp16` above (one `encode` call per batch there: no "
                  f"tokenizing overlapped with the GPU) and {default / best_budget:.0%} of the best "
                  "other budget below.", ""]
    lines += ["`encode(texts)` (fp16) with other batch sizes and token budgets, texts/s (medians of "
              f"{r['budget_rounds']} rounds in which the default and each budget took turns):", "",
              "| batch_size | max_tokens | short | 256-token |", "|---:|---:|---:|---:|",
              f"| default ({batch['batch_size']}) | default ({batch['max_tokens']}) | "
              f"{r['default_encode_texts_per_s']['short']:,.0f} | "
              f"{r['default_encode_texts_per_s']['long']:,.0f} |",
              *(f"| {w['batch_size']} | {w['max_tokens']} | {w['short']:,.0f} | {w['long']:,.0f} |"
                for w in r["defaults_sweep"]), ""]
    return lines


def plot(r: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if "throughput" not in r:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (kind, table) in zip(axes, r["throughput"].items(), strict=True):
        for name, row in table.items():
            sizes = [int(s) for s in row]
            ax.plot(sizes, list(row.values()), marker="o", label=name,
                    linestyle="-" if name.startswith("fusembed") else "--")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="texts/s",
               title="short texts" if kind == "short" else "256-word-piece texts")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.legend(fontsize=8)
    title = "fusembed vs sentence-transformers" if "torch" in r else "fusembed"
    fig.suptitle(f"{title} on {r['gpu'].split(',')[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
