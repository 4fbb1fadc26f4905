"""How well `Encoder.encode` keeps a fast device busy: its host side (tokenizing, planning,
padding, the hand-over between its helper thread and the model calls) against a simulated device.

    python benchmarks/host_pipeline.py bundles/all-MiniLM-L6-v2

The bundle's session is replaced by one whose `run` sleeps (the GIL released, as onnxruntime
releases it) for a fixed time per text, at a few speeds relative to this machine's tokenizer;
the encoder runs with the CUDA defaults (512 texts and 65536 tokens per call, bucketed shapes,
chunks that start small and grow). Two workloads: many short texts (16384 of 10-40 word pieces)
and fewer long ones (2048 texts at the model's 256 word pieces).
A device slower than the tokenizer should be busy nearly all the time; one faster than it can
only be fed as fast as the tokenizer goes. Needs no GPU: it measures the part of GPU throughput
that the host decides. Writes benchmarks/results/host_pipeline.md and .json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fusembed import Encoder, _encoder
from fusembed._batching import CUDA_BATCH_SIZE, CUDA_MAX_TOKENS
from harness import command_line, long_texts, machine, save_report, short_texts

RESULTS = Path(__file__).parent / "results"


class SimulatedDevice:
    """Stands in for an `ort.InferenceSession`: `seconds_per_text` of sleep per row, zeros out."""

    def __init__(self, seconds_per_text: float, dim: int) -> None:
        self.seconds_per_text, self.dim = seconds_per_text, dim
        self.busy = 0.0

    def run(self, _outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = len(feeds["input_ids"])
        time.sleep(rows * self.seconds_per_text)
        self.busy += rows * self.seconds_per_text
        return [np.zeros((rows, self.dim), np.float32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--texts", type=int, default=16384, help="short texts per pass (default: 16384)")
    parser.add_argument("--long", type=int, default=2048, help="long texts per pass (default: 2048)")
    parser.add_argument("--passes", type=int, default=5, help="passes per speed; the median is kept")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    encoder = Encoder(args.bundle, precision="fp32", bucket_shapes=True, warmup=False)
    encoder.default_batch_size, encoder.default_max_tokens = CUDA_BATCH_SIZE, CUDA_MAX_TOKENS
    encoder._grow_chunks = True  # as on CUDA: the first chunks small, growing
    workloads = {"short": short_texts(args.texts, seed=3), "long": long_texts(args.long, seed=3)}
    report: dict[str, Any] = {"command": command_line(), "workloads": {}}
    for name, texts in workloads.items():
        report["workloads"][name] = measure(encoder, texts, args.passes)
    here = machine()
    report["machine"] = {"cpu": here.cpu, "isa": here.isa, "cores": here.cores,
                         "python": here.python, "onnxruntime": here.onnxruntime}
    save_report(args.out, "host_pipeline", report, markdown(report))


def measure(encoder: Encoder, texts: list[str], passes: int) -> dict[str, Any]:
    """`encode(texts)` against simulated devices at a few speeds relative to the tokenizer."""
    tokenize_s = []
    for _ in range(passes):
        began = time.perf_counter()
        encoder.tokenize(texts)
        tokenize_s.append(time.perf_counter() - began)
    tokenizer_rate = len(texts) / statistics.median(tokenize_s)
    # What encode does (chunks of 512 texts growing by half to 4096), against fixed chunks of
    # 4096, which make the device wait for 4096 texts to be tokenized before its first call
    # (and for a call of 4096 texts or fewer, tokenize every text before the first call).
    growing = _encoder._chunk_sizes
    def fixed(total: int, _first: int, largest: int) -> list[int]:
        return growing(total, largest, largest)

    rows = []
    for ratio in (0.5, 0.8, 1.25, 2.0):
        device = SimulatedDevice(1 / (ratio * tokenizer_rate), encoder.manifest.dim)
        encoder._session = device  # duck-typed: encode only calls `run`
        runs: dict[str, list[tuple[float, float]]] = {"growing": [], "fixed": []}
        for _ in range(passes):  # the two chunkings take turns, pass by pass
            chunkings: tuple[tuple[str, Callable[[int, int, int], list[int]]], ...] = (
                ("growing", growing), ("fixed", fixed))
            for chunking, sizes in chunkings:
                setattr(_encoder, "_chunk_sizes", sizes)  # noqa: B010  (a module function, swapped)
                device.busy = 0.0
                began = time.perf_counter()
                encoder.encode(texts)
                wall = time.perf_counter() - began
                runs[chunking].append((len(texts) / wall, device.busy / wall))
        setattr(_encoder, "_chunk_sizes", growing)  # noqa: B010
        bound = min(ratio, 1.0) * tokenizer_rate
        row: dict[str, float] = {"device_vs_tokenizer": ratio, "device_texts_per_s": ratio * tokenizer_rate}
        for chunking, timed in runs.items():
            rate, busy = (statistics.median(p[i] for p in timed) for i in (0, 1))
            row |= {f"{chunking}_texts_per_s": rate, f"{chunking}_busy": busy,
                    f"{chunking}_of_bound": rate / bound}
        rows.append(row)
    return {"texts": len(texts), "tokenizer_texts_per_s": tokenizer_rate, "speeds": rows}


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# `Encoder.encode` feeding a simulated device",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cores']} CPUs, {m['cpu']} ({m['isa']}), Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}.",
        "",
        "CUDA defaults (512 texts / 65536 tokens per call, bucketed shapes). The device sleeps a "
        "fixed time per text; the bound is the slower of it and the tokenizer.",
    ]
    titles = {"short": "short texts (10-40 word pieces)", "long": "texts of 256 word pieces"}
    for name, w in r["workloads"].items():
        lines += [
            "",
            f"## {w['texts']} {titles[name]}",
            "",
            f"The tokenizer alone: **{w['tokenizer_texts_per_s']:,.0f} texts/s** on these CPUs.",
            "",
            "| device speed | device texts/s | encode texts/s | device busy | of the bound | "
            "fixed 4096-text chunks: texts/s | busy |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s in w["speeds"]:
            lines.append(f"| {s['device_vs_tokenizer']:g}x the tokenizer | {s['device_texts_per_s']:,.0f} | "
                         f"{s['growing_texts_per_s']:,.0f} | {s['growing_busy']:.0%} | "
                         f"{s['growing_of_bound']:.0%} | "
                         f"{s['fixed_texts_per_s']:,.0f} | {s['fixed_busy']:.0%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
