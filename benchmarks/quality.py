"""Quality report: every variant of every seed architecture and of the real all-MiniLM-L6-v2.

For each model it runs the full export (fp32, int8 and fp16 variants with their default
budgets, measured on 1000 held-out texts against sentence-transformers in fp32 torch), then
reads what the export measured and times each CPU variant on the same short sentences.

    .venv/bin/python benchmarks/quality.py [--only NAME ...] [--output benchmarks/results/quality.md]

Seed rows are replicas with random weights (see export/replicas.py): their cosines and search
agreement measure how faithfully each variant computes the same function, not retrieval quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from fusembed import Encoder
from fusembed.export import export_model
from fusembed.export.replicas import SEEDS, build_replica
from harness import Contention, best_pass_seconds, command_line, machine, short_texts

REAL = "all-MiniLM-L6-v2"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "quality.md"
Precision = Literal["fp32", "int8", "fp16"]  # a bundle variant's


def throughput(bundle: Path, precision: Precision, texts: list[str]) -> float:
    """Sentences per second at batch 32, best of three passes after a warm-up pass."""
    enc = Encoder(bundle, precision=precision)
    return len(texts) / best_pass_seconds(lambda: enc.encode(texts, batch_size=32))


def rows_for(name: str, work: Path, texts: list[str], log: bool) -> list[str]:
    folder = REAL if name == REAL else build_replica(SEEDS[name], work / "model")
    report = export_model(folder, work / "bundle",
                          log=(lambda m: print(m, file=sys.stderr)) if log else (lambda _m: None))
    rows, fp32_speed = [], 0.0
    for precision, v in report.manifest.variants.items():
        size = (report.bundle / v.file).stat().st_size / 1e6
        q = v.quality
        if q is not None:
            cos = (f"{q.mean_cosine:.5f} | {q.min_cosine:.5f} | {q.top10_agreement:.3f} "
                   f"| {q.batch_invariance:.6f}")
        else:
            cos = f"{v.parity.mean_cosine:.7f} | {v.parity.min_cosine:.7f} | (reference) | -"
        if precision == "fp16":
            speed = "CUDA variant"
        else:
            sps = throughput(report.bundle, v.precision, texts)
            fp32_speed = fp32_speed or sps
            speed = f"{sps:.0f} ({sps / fp32_speed:.2f}x fp32)"
        rows.append(f"| {name} | {precision} | {v.scheme} | {size:.1f} | {cos} | {speed} |")
    rows += [f"| {name} | {p} | not written | - | {why[:120]} | | | | - |"
             for p, why in report.rejected.items()]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=[*SEEDS, REAL], help="run only these models")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quiet", action="store_true", help="do not echo the export's progress")
    args = parser.parse_args(argv)
    names = args.only or [*SEEDS, REAL]
    texts = short_texts(512)
    threads = machine().usable_cores
    contention = Contention.start(threads)
    rows: list[str] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="fusembed-quality-") as tmp:
            rows += rows_for(name, Path(tmp), texts, log=not args.quiet)
        print(rows[-1], file=sys.stderr)
    text = "\n".join([
        "# Variant quality and speed per model",
        "",
        f"- command: `{command_line()}` (from the repository root)",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- {machine().line(threads)}",
        f"- {contention.report()} (speed columns only; cosines do not depend on it)",
        "- cosines, search agreement and batch invariance: measured by the export on 1000 held-out "
        "texts (`varied_texts(1000, seed=1)`: queries, sentences, passages, long documents past "
        "max_seq_length, non-English, edge cases) against sentence-transformers fp32 torch; fp32 rows "
        "show the export's parity check on its edge-case texts instead",
        "- speed: 512 short sentences (11-33 word pieces), batch 32, best of 3, CPU provider",
        "- seed rows are replicas with random weights: fidelity, not retrieval quality",
        "",
        "| model | variant | scheme | MB | mean cosine | min cosine | top-10 agreement "
        "| batch invariance | sentences/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
