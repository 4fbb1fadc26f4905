"""`fusembed bench`: latency and throughput of one bundle, the way a latency-minded user measures.

Warm-up first; then batch-1 latency percentiles, latency and throughput per batch size, cold
start (a new process to its first embedding) and that process's peak RSS and import time.
Results go to JSON, a markdown table and, when matplotlib is installed, a PNG plot.

The timing loops, `batch1_ms` and `pass_seconds`, are `fusembed doctor`'s too.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ._cpu import cpu_info
from ._encoder import Encoder, PrecisionChoice
from ._errors import FusembedError
from ._providers import Device

_WHO = ["The committee", "A small startup", "My neighbour", "The city council", "Our team",
        "The museum", "A local farmer", "The new library", "Researchers", "The orchestra"]
_DID = ["announced", "postponed", "celebrated", "questioned", "approved", "described",
        "rebuilt", "explained", "photographed", "reviewed"]
_WHAT = ["a plan for cheaper public transport", "the opening of a riverside park",
         "results of a long study on sleep", "an unusual exhibition about maps",
         "the budget for next year", "a recipe for bread without yeast",
         "changes to the school timetable", "a festival of traditional music"]
_COLD_START = """
import resource, sys, time
t0 = time.perf_counter()
import fusembed
t1 = time.perf_counter()
enc = fusembed.Encoder(sys.argv[1], device=sys.argv[2], precision=sys.argv[3])
enc.encode("How many people live in London?")
t2 = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so this child would report the peak of
# the bench process that started it.
status = open("/proc/self/status").read() if sys.platform == "linux" else ""
hwm = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
print(t1 - t0, t2 - t0, hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def builtin_texts(n: int = 512, seed: int = 0) -> list[str]:
    """Short sentences of roughly 10-30 word pieces, the shape of search queries and titles."""
    rng = random.Random(seed)
    return [f"{rng.choice(_WHO)} {rng.choice(_DID)} {rng.choice(_WHAT)}"
            + (f" after {rng.choice(_WHAT)}." if i % 3 == 0 else ".") for i in range(n)]


@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    texts_per_s: float


@dataclass(frozen=True)
class BenchResult:
    bundle: str
    device: str
    precision: str
    threads: int
    texts: int
    mean_tokens: float
    batch1_ms: dict[str, float]
    batches: list[BatchResult]
    cold_start_s: float
    import_s: float
    peak_rss_mb: float
    machine: dict[str, str] = field(default_factory=dict)
    batch1_samples_ms: list[float] = field(default_factory=list)


def run_bench(
    bundle: Path, *, texts: Sequence[str], batch_sizes: Sequence[int] = (1, 8, 32, 128),
    repeats: int = 200, warmup: int = 20, device: Device = "cpu",
    precision: PrecisionChoice = "auto", threads: int | None = None,
) -> BenchResult:
    enc = Encoder(bundle, device=device, precision=precision, threads=threads)
    items = list(texts)
    batch1_ms(enc, items, min(warmup, len(items)))  # warm-up, on the first texts
    samples = batch1_ms(enc, items, repeats)
    batch1 = {f"p{q}": float(np.percentile(samples, q)) for q in (50, 95, 99)}
    batch1["mean"] = float(np.mean(samples))
    batches = [_batch(enc, items, size) for size in batch_sizes]
    cold, imported, rss = _cold_start(bundle, device, enc.precision)
    lengths = list(map(len, enc._tokenizer.rows(items)))
    return BenchResult(
        bundle=str(bundle), device=device, precision=enc.precision,
        threads=enc._session.get_session_options().intra_op_num_threads, texts=len(items),
        mean_tokens=float(np.mean(lengths)), batch1_ms=batch1, batches=batches,
        cold_start_s=cold, import_s=imported, peak_rss_mb=rss, machine=_machine(),
        batch1_samples_ms=samples,
    )


def batch1_ms(enc: Encoder, texts: Sequence[str], repeats: int, *, start: int = 0) -> list[float]:
    """Milliseconds of each of `repeats` single-text calls (`encode(str)`, the interactive path),
    cycling through `texts` from index `start`."""
    samples = []
    for i in range(start, start + repeats):
        text = texts[i % len(texts)]
        began = time.perf_counter()
        enc.encode(text)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def pass_seconds(enc: Encoder, texts: Sequence[str], batch_size: int) -> float:
    """Seconds of one `encode` call over all `texts` at `batch_size`."""
    began = time.perf_counter()
    enc.encode(texts, batch_size=batch_size)
    return time.perf_counter() - began


def _batch(enc: Encoder, texts: list[str], size: int) -> BatchResult:
    enc.encode(texts[: size * 2], batch_size=size)  # warm-up at this shape
    chunks = [texts[start : start + size] for start in range(0, len(texts), size)]
    began = time.perf_counter()
    per_batch = [pass_seconds(enc, chunk, size) * 1000 for chunk in chunks]
    elapsed = time.perf_counter() - began
    p50, p95, p99 = (float(np.percentile(per_batch, q)) for q in (50, 95, 99))
    return BatchResult(size, p50, p95, p99, len(texts) / elapsed)


def _cold_start(bundle: Path, device: str, precision: str) -> tuple[float, float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _COLD_START, str(bundle), device, precision],
                         capture_output=True, text=True, check=False, timeout=300)
    wall = time.perf_counter() - start  # interpreter start included: what a user waits for
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise FusembedError(f"the cold-start process failed: {last}")
    imported, _, rss_kb = out.stdout.split()
    return wall, float(imported), int(rss_kb) / 1024


def _machine() -> dict[str, str]:
    cpu = cpu_info()
    return {"cpu": cpu.model, "int8_class": cpu.isa, "cpus": str(os.cpu_count()),
            "python": platform.python_version(), "onnxruntime": ort.__version__}


def markdown(result: BenchResult) -> str:
    b1 = result.batch1_ms
    lines = [
        f"# fusembed bench: {result.bundle}",
        "",
        f"{result.precision} on {result.device}, {result.threads} threads; {result.texts} texts, "
        f"{result.mean_tokens:.1f} word pieces on average; {result.machine.get('cpu')} "
        f"(int8 class {result.machine.get('int8_class')}), "
        f"onnxruntime {result.machine.get('onnxruntime')}",
        "",
        f"- batch 1: p50 {b1['p50']:.2f} ms, p95 {b1['p95']:.2f} ms, p99 {b1['p99']:.2f} ms",
        f"- cold start (new process to first embedding): {result.cold_start_s:.2f} s "
        f"(import fusembed {result.import_s:.2f} s); peak RSS {result.peak_rss_mb:.0f} MB",
        "",
        "| batch size | p50 ms / batch | p95 ms / batch | p99 ms / batch | texts/s |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {b.batch_size} | {b.p50_ms:.2f} | {b.p95_ms:.2f} | {b.p99_ms:.2f} | {b.texts_per_s:.0f} |"
          for b in result.batches),
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: BenchResult, out_dir: Path) -> list[Path]:
    """Write bench.json, bench.md and (with matplotlib) bench.png; return what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "bench.json", out_dir / "bench.md"]
    written[0].write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    written[1].write_text(markdown(result), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(result.batch1_samples_ms, bins=40, color="#4477aa")
    for q, style in (("p50", "-"), ("p99", "--")):
        left.axvline(result.batch1_ms[q], color="black", linestyle=style,
                     label=f"{q} {result.batch1_ms[q]:.2f} ms")
    left.set(title="batch-1 latency", xlabel="ms", ylabel="calls")
    left.legend()
    sizes = [b.batch_size for b in result.batches]
    right.plot(sizes, [b.texts_per_s for b in result.batches], marker="o", color="#228833")
    right.set(title="throughput vs batch size", xlabel="batch size", ylabel="texts/s", xscale="log")
    right.set_xticks(sizes, [str(s) for s in sizes])
    fig.suptitle(f"fusembed {result.precision} on {result.device}: {Path(result.bundle).name}")
    fig.tight_layout()
    fig.savefig(out_dir / "bench.png", dpi=100)
    plt.close(fig)
    return [*written, out_dir / "bench.png"]
