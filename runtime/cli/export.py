"""`fusembed export MODEL OUT_DIR`: a sentence-transformers model to a verified bundle (export extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._options import positive_int


def _variant_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in ("fp32", "int8", "fp16")]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of fp32,int8,fp16, got {text!r}")
    return names


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from fusembed.export.options import ExportOptions  # torch-free: only the choices and their defaults

    d = ExportOptions()
    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="export a sentence-transformers model to a bundle (needs the export extra)")
    p.add_argument("model", metavar="MODEL", help="local folder, hub id (org/name) or 'all-MiniLM-L6-v2'")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="bundle directory to create")
    p.add_argument("--revision", default=d.revision, help="hub revision (branch, tag or commit)")
    p.add_argument("--cache-dir", type=Path, default=d.cache_dir,
                   help="Hugging Face cache directory (default: HF_HUB_CACHE)")
    p.add_argument("--similarity", choices=("cosine", "dot"), default=d.similarity,
                   help="score function to record when the model's files do not name one")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="skip onnxruntime's transformer fusions")
    p.add_argument("--min-cosine", type=float, default=d.min_cosine,
                   help="fp32 parity gate against sentence-transformers (default: %(default)s)")
    p.add_argument("--variants", type=_variant_list, default=d.variants,
                   help=f"variants the bundle keeps, comma-separated (default: {','.join(d.variants)}); "
                   "e.g. 'int8' for a small CPU-only bundle")
    p.add_argument("--int8-min-mean-cosine", type=float, default=d.int8_min_mean_cosine,
                   help="int8 budget: mean cosine to the fp32 torch reference (default: %(default)s)")
    p.add_argument("--int8-min-cosine", type=float, default=d.int8_min_cosine,
                   help="int8 budget: min cosine to the fp32 torch reference (default: %(default)s)")
    p.add_argument("--int8-min-top10", type=float, default=d.int8_min_top10,
                   help="int8 budget: top-10 search agreement with the reference (default: %(default)s)")
    p.add_argument("--fp16-min-cosine", type=float, default=d.fp16_min_cosine,
                   help="fp16 budget: mean and min cosine to the fp32 torch reference (default: %(default)s)")
    p.add_argument("--quality-texts", type=positive_int, default=d.quality_texts,
                   help="held-out texts the int8/fp16 budgets are measured on (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is a bundle")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        from fusembed.export import ExportOptions, export_model
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise ImportError(
            f"export needs the export extra ({missing} is not installed): pip install 'fusembed[export]'"
        ) from None
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    report = export_model(args.model, args.out_dir, log=log, options=ExportOptions(
        revision=args.revision, cache_dir=args.cache_dir, similarity=args.similarity,
        optimize=args.optimize, min_cosine=args.min_cosine, overwrite=args.overwrite,
        variants=args.variants, int8_min_mean_cosine=args.int8_min_mean_cosine,
        int8_min_cosine=args.int8_min_cosine, int8_min_top10=args.int8_min_top10,
        fp16_min_cosine=args.fp16_min_cosine, quality_texts=args.quality_texts,
    ))
    m = report.manifest
    measured = ", ".join(
        f"{name} min cosine {(v.quality.min_cosine if v.quality else v.parity.min_cosine):.5f}"
        for name, v in m.variants.items())
    print(f"wrote {report.bundle} ({m.dim}-dim, {m.similarity}; {measured} vs sentence-transformers)")
    for name, why in report.rejected.items():
        print(f"fusembed export: warning: {name} variant not written: {why}", file=sys.stderr)
    return 0
