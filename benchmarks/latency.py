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
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusembed import Encoder, read_manifest
from harness import (
    Contention,
    batch1_ms,
    best_pass_seconds,
    command_line,
    go_offline,
    machine,
    percentiles,
    short_texts,
)

WARMUP_CALLS = 10


@dataclass
class Result:
    engine: str
    p50: float
    p95: float
    p99: float
    throughput: float


def measure(engine: str, one: Callable[[str], object], many: Callable[[list[str], int], object],
            texts: list[str], repeats: int, batch_size: int) -> Result:
    """Batch-1 latency of `one(text)` and throughput of `many(texts, batch_size)`."""
    times = batch1_ms(one, texts, repeats, warmup=WARMUP_CALLS)
    p50, p95, p99 = percentiles(times)
    best = best_pass_seconds(lambda: many(texts, batch_size))
    return Result(engine, p50, p95, p99, len(texts) / best)


def measure_fusembed(enc: Encoder, texts: list[str], repeats: int, batch_size: int) -> Result:
    return measure(f"fusembed ({enc.precision})", enc.encode, lambda t, b: enc.encode(t, batch_size=b),
                   texts, repeats, batch_size)


def load_sentence_transformer(bundle: Path, threads: int) -> tuple[Any, str] | str:
    """The source model with torch on CPU, or a note saying why it is skipped."""
    go_offline()
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

    threads = machine().usable_cores  # the CPUs this process may use
    contention = Contention.start(threads)
    texts = short_texts(args.texts)
    cpu_variants = [v.precision for v in read_manifest(args.bundle).variants.values()
                    if v.precision != "fp16"]  # fp16 is for CUDA
    results = [measure_fusembed(Encoder(args.bundle, device="cpu", precision=precision, threads=threads),
                                texts, args.repeats, args.batch_size)
               for precision in cpu_variants]
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
                "sentence-transformers (torch)", lambda t: model.encode(t, show_progress_bar=False),
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
              f"batch size {args.batch_size}", f"- {machine().line(threads)}",
              f"- {contention.report()}",
              f"- command: `{command_line()}`"]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
