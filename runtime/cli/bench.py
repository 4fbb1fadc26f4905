"""`fusembed bench BUNDLE`: latency, throughput, cold start and memory, as JSON, markdown and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._bench import builtin_texts, markdown, run_bench, write_outputs
from .._errors import ArgumentError, InputError
from ._options import (
    add_bundle,
    add_encoder_options,
    add_text_input,
    bundle_folder,
    default,
    input_texts,
    positive_int,
    size_list,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="measure latency, throughput, cold start and memory of a bundle")
    add_bundle(p)
    add_encoder_options(p, batch_size=False)
    add_text_input(p, "--texts", "texts to use (default: built-in sentences)", required=False)
    sizes = default(run_bench, "batch_sizes")
    p.add_argument("--batch-sizes", type=size_list, default=sizes,
                   help=f"comma-separated batch sizes for the throughput table (default: "
                   f"{','.join(map(str, sizes))})")
    p.add_argument("--repeats", type=positive_int, default=default(run_bench, "repeats"),
                   help="batch-1 calls timed (default: %(default)s)")
    p.add_argument("--output-dir", type=Path, default=Path("bench"),
                   help="where bench.json, bench.md and bench.png go (default: ./bench)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.input is None and args.field is not None:
        raise ArgumentError("field", "applies to JSONL input given with --texts")
    texts = input_texts(args) if args.input else builtin_texts()
    if not texts:
        raise InputError(f"{args.input}: no texts to benchmark with")
    result = run_bench(bundle_folder(args), texts=texts, batch_sizes=args.batch_sizes, repeats=args.repeats,
                       device=args.device, precision=args.precision, threads=args.threads)
    written = write_outputs(result, args.output_dir)
    print(markdown(result), end="")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if not any(p.suffix == ".png" for p in written):
        print("fusembed bench: no plot: matplotlib is not installed (pip install 'fusembed[bench]')",
              file=sys.stderr)
    return 0
