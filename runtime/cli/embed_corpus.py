"""`fusembed embed-corpus INPUT OUTPUT_DIR --bundle B`: a corpus to resumable Parquet shards, in
this process or on Ray Data (`--ray`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from .._ray_options import RayOptions
from ._options import (
    add_bundle,
    add_encoder_options,
    add_prompt_options,
    add_truncate_dim,
    non_negative_float,
    positive_float,
    positive_int,
)

try:  # the defaults, read once from the options the library takes
    from ..corpus import CorpusOptions
except ImportError:  # without the corpus extra the command still shows its options, then says so
    _CORPUS = None
else:
    _CORPUS = CorpusOptions()
_RAY = RayOptions()


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "embed-corpus", help="embed a corpus file into Parquet shards, streaming and resumable",
        description="Embed every row of INPUT (text: one document per line; JSONL; Parquet) into "
        "OUTPUT_DIR/part-NNNNN.parquet shards (id, embedding) plus _manifest.json and _bad_rows.jsonl. "
        "Rerunning after an interruption resumes: finished shards are kept.")
    p.add_argument("input", metavar="INPUT", type=Path,
                   help="*.txt (one per line), *.jsonl/*.ndjson or *.parquet")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="directory for the shards")
    add_bundle(p, flag="--bundle")
    add_encoder_options(p, device_default="cpu; with --ray, cuda when --ray-gpus-per-worker > 0")
    add_prompt_options(p)
    add_truncate_dim(p)
    if _CORPUS is not None:
        p.set_defaults(batch_size=_CORPUS.batch_size)
    p.add_argument("--format", choices=("text", "jsonl", "parquet"),
                   help="input format (default: from the suffix; anything else is text)")
    p.add_argument("--text-field", default="text",
                   help="JSONL field or Parquet column of the text (default: text)")
    p.add_argument("--id-field", help="JSONL field or Parquet column of the id (default: the row number)")
    p.add_argument("--on-bad-row", choices=("fail", "skip"), default=_CORPUS and _CORPUS.on_bad_row,
                   help="a row with no usable text (empty, not UTF-8, missing field): stop, or leave it out "
                   "and list it in _bad_rows.jsonl (default: fail)")
    p.add_argument("--shard-rows", type=positive_int, default=_CORPUS and _CORPUS.shard_rows,
                   help="input rows per shard, the unit of resuming (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in OUTPUT_DIR")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (needs the ray extra)")
    p.add_argument("--ray-address", dest="address", default=_RAY.address, metavar="RAY_ADDRESS",
                   help="Ray cluster to join, e.g. ray://head:10001 (default: start a local one)")
    p.add_argument("--ray-workers", dest="workers", metavar="N", type=positive_int, default=_RAY.workers,
                   help="with --ray: embedding actors, one bundle each (default: %(default)s)")
    p.add_argument("--ray-cpus-per-worker", dest="cpus_per_worker", metavar="N", type=positive_float,
                   default=_RAY.cpus_per_worker,
                   help="with --ray: CPUs per actor, also its onnxruntime threads (default: %(default)s)")
    p.add_argument("--ray-gpus-per-worker", dest="gpus_per_worker", metavar="N",
                   type=non_negative_float, default=_RAY.gpus_per_worker,
                   help="with --ray: GPUs per actor; > 0 runs the actors with device=cuda "
                   "(default: %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..corpus import CorpusOptions, Source, embed_corpus  # ImportError names the extra
    from ._options import bundle_folder, encoder

    source = Source.open(args.input, format=args.format, text_field=args.text_field, id_field=args.id_field)
    options = CorpusOptions(shard_rows=args.shard_rows, on_bad_row=args.on_bad_row,
                            batch_size=args.batch_size, progress=args.progress, overwrite=args.overwrite)
    if args.ray:
        from ..ray import embed_corpus_with_ray  # ImportError names the extra

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # Ray's progress bars stay
        ray_options = RayOptions(address=args.address, workers=args.workers,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
        report = embed_corpus_with_ray(source, args.output_dir, bundle_folder(args), options, ray_options,
                                       device=args.device, precision=args.precision,
                                       threads=args.threads, prompt_name=args.prompt_name,
                                       prompt=args.prompt, truncate_dim=args.truncate_dim)
    else:
        report = embed_corpus(source, args.output_dir, encoder(args), options)
    resumed = f", {report.shards_resumed} kept from an earlier run" if report.shards_resumed else ""
    print(f"wrote {report.output_dir}: {report.rows_written} of {report.rows_in} rows in {report.shards} "
          f"shards{resumed}, {report.bad_rows} bad rows (_bad_rows.jsonl), {report.seconds:.1f} s",
          file=sys.stderr)
    return 0
