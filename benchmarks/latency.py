"""Side-by-side CPU latency of a fusembed bundle and the sentence-transformers model it came from.

In one process, on the same deterministic short sentences (10-40 word pieces), for each engine:
batch-1 latency p50/p95/p99 in ms over --repeats single-query calls (after 10 warm-up calls),
and throughput in sentences/s over all --texts at --batch-size (one warm-up pass, best of 3).
Both engines get the same thread count: the CPUs this process may use. torch is imported only
for the comparison, and nothing touches the network (HF_HUB_OFFLINE=1).

    python benchmarks/latency.py BUNDLE [--texts 256] [--repeats 100] [--batch-size 32]
                                        [--output results.md] [--no-torch]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
from fusembed import Encoder, read_manifest

_WHO = ["The new library", "My neighbour", "The city council", "A small startup", "The museum",
        "Our research team", "The river ferry", "A retired teacher", "The football club"]
_DID = ["announced plans for", "quietly cancelled", "is still looking for", "wrote a report on",
        "spent the weekend repairing", "asked the public about", "could not explain"]
_WHAT = ["a cheaper bus service", "the broken heating system", "an exhibition of old maps",
         "faster internet in rural areas", "the missing concert tickets", "a summer reading club"]
_TAIL = ["", " last week", " after a long debate", " before the winter storms arrived",
         " because nobody else would", " in spite of the rain"]


def short_texts(n: int, seed: int = 0) -> list[str]:
    """`n` deterministic short sentences, about 10-40 word pieces each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = f"{rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)}{rng.choice(_TAIL)}."
        if i % 3 == 0:  # every third one gets a second clause: the longer end of the range
            text += f" {rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)}."
        out.append(text)
    return out


@dataclass
class Result:
    engine: str
    p50: float
    p95: float
    p99: float
    throughput: float


def measure(engine: str, encode: Callable[[Sequence[str] | str, int], Any],
            texts: list[str], repeats: int, batch_size: int) -> Result:
    for text in texts[:10]:  # warm-up
        encode(text, 1)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        encode(texts[i % len(texts)], 1)
        times.append((time.perf_counter() - start) * 1000)
    q = statistics.quantiles(times, n=100, method="inclusive")
    encode(texts, batch_size)  # warm-up pass
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        encode(texts, batch_size)
        best = min(best, time.perf_counter() - start)
    return Result(engine, statistics.median(times), q[94], q[98], len(texts) / best)


def load_sentence_transformer(bundle: Path, threads: int) -> tuple[Any, str] | str:
    """The source model with torch on CPU, or a note saying why it is skipped."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(var, "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        return f"sentence-transformers is not importable ({exc}): showing fusembed only"
    torch.set_num_threads(threads)
    source = read_manifest(bundle, verify_hashes=False).source
    where = source.model
    try:
        if source.kind == "embedded":  # revision is "<package>==<version>": the model's package
            module = (source.revision or "").split("==")[0].replace("-", "_")
            where = str(importlib.import_module(module).get_model_path())
        model = SentenceTransformer(where, device="cpu", local_files_only=True,
                                    revision=source.revision if source.kind == "hub" else None)
    except Exception as exc:  # package missing, or not in the local cache and no hub
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"cannot load {where!r} offline ({type(exc).__name__}: {first}); fusembed only"
    return model, f"torch {torch.__version__} with torch.set_num_threads({threads})"


def machine_line(threads: int) -> str:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
             .splitlines() if line.startswith("model name")]
    cpu = names[0] if names else "unknown CPU"
    return (f"machine: {cpu}; {threads} usable cores of {os.cpu_count()}; "
            f"python {platform.python_version()}; onnxruntime {onnxruntime.__version__}")


def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (all processes), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")  # not idle, iowait


def own_cpu_seconds() -> float:
    """CPU-seconds of this process and of the child processes it has waited for (an engine run in
    a subprocess is our own work, not other work)."""
    return sum(os.times()[:4])


def contention(threads: int, wall0: float, busy0: float, ours0: float) -> str:
    """How much CPU other processes took during the run: it skews both engines, torch most."""
    wall = time.perf_counter() - wall0
    others = (busy_seconds() - busy0) - (own_cpu_seconds() - ours0)
    share = max(0.0, others) / (wall * threads)
    verdict = "a quiet machine" if share < 0.05 else "the CPUs were shared: numbers unreliable"
    return f"other work used {share:.0%} of the {threads} CPUs during the run ({verdict})"


def table(results: list[Result]) -> str:
    rows = ["| engine | batch-1 p50 ms | p95 ms | p99 ms | throughput sent/s |",
            "|---|---:|---:|---:|---:|"]
    rows += [f"| {r.engine} | {r.p50:.2f} | {r.p95:.2f} | {r.p99:.2f} | {r.throughput:.0f} |"
             for r in results]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fusembed vs sentence-transformers latency")
    parser.add_argument("bundle", type=Path, help="fusembed bundle folder")
    parser.add_argument("--texts", type=int, default=256, help="short sentences (default 256)")
    parser.add_argument("--repeats", type=int, default=100, help="batch-1 calls (default 100)")
    parser.add_argument("--batch-size", type=int, default=32, help="throughput batch size")
    parser.add_argument("--output", type=Path, help="also write the markdown here")
    parser.add_argument("--no-torch", action="store_true", help="skip sentence-transformers")
    args = parser.parse_args(argv)
    if args.texts < 10 or args.repeats < 2 or args.batch_size < 1:
        parser.error("need --texts >= 10, --repeats >= 2, --batch-size >= 1")

    threads = len(os.sched_getaffinity(0))  # the CPUs this process may use (Linux)
    start = time.perf_counter(), busy_seconds(), own_cpu_seconds()
    texts = short_texts(args.texts)
    cpu_variants = [p for p in read_manifest(args.bundle).variants if p != "fp16"]  # fp16 is for CUDA
    results = []
    for precision in cpu_variants:
        enc = Encoder(args.bundle, device="cpu", precision=precision, threads=threads)  # type: ignore[arg-type]
        results.append(measure(f"fusembed ({precision})",
                               lambda t, b, enc=enc: enc.encode(t, batch_size=b), texts, args.repeats,
                               args.batch_size))
    notes = [f"fusembed: onnxruntime intra_op_num_threads={threads}"]

    if args.no_torch:
        notes.append("sentence-transformers skipped (--no-torch)")
    else:
        loaded = load_sentence_transformer(args.bundle, threads)
        if isinstance(loaded, str):
            notes.append(loaded)
        else:
            model, how = loaded
            notes.append(f"sentence-transformers: {how} (same thread count as fusembed)")
            results.append(measure(
                "sentence-transformers (torch)",
                lambda t, b: model.encode(t, batch_size=b, show_progress_bar=False),
                texts, args.repeats, args.batch_size))

    lines = [table(results), ""]
    if len(results) > len(cpu_variants):
        st = results[-1]
        lines += [f"fusembed ({fe.engine.split('(')[1].rstrip(')')}) vs sentence-transformers: p50 "
                  f"speedup {st.p50 / fe.p50:.2f}x, throughput speedup {fe.throughput / st.throughput:.2f}x"
                  for fe in results[:-1]] + [""]
    lines += [f"- {note}" for note in notes]
    lines += [f"- {args.texts} texts, {args.repeats} batch-1 repeats, "
              f"batch size {args.batch_size}", f"- {machine_line(threads)}",
              f"- {contention(threads, *start)}",
              f"- command: `{shlex.join(sys.orig_argv)}`"]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
