"""`fusembed encode BUNDLE --input FILE --output OUT`: texts to a .npy matrix or JSON lines."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .._errors import CommandError
from .._readers import STDIO
from ._options import (
    add_bundle,
    add_encoder_options,
    add_prompt_options,
    add_text_input,
    add_truncate_dim,
    encoder,
    input_texts,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "encode", help="embed texts from a file into a .npy matrix or JSON lines")
    add_bundle(p)
    add_encoder_options(p)
    add_prompt_options(p)
    add_truncate_dim(p)
    add_text_input(p, "--input", "texts to embed")
    p.add_argument("--output", type=Path, required=True,
                   help="*.npy: an (n, dim) float32 matrix; *.jsonl: one {\"index\", \"embedding\"} "
                   "object per text; -: the same JSON lines on standard output")
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    to_stdout = str(args.output) == STDIO
    if not to_stdout:
        if args.output.suffix not in (".npy", ".jsonl"):
            raise CommandError(
                f"--output {args.output}: must end in .npy or .jsonl, or be - (standard output)")
        if not args.output.parent.is_dir():
            raise CommandError(f"--output {args.output}: directory {args.output.parent} does not exist")
    texts = input_texts(args)
    embeddings = encoder(args).encode(texts, batch_size=args.batch_size, show_progress_bar=args.progress)
    if to_stdout:
        write_json_lines(sys.stdout, embeddings)
        sys.stdout.flush()
        return 0
    partial = args.output.with_name(f".{args.output.name}.partial")
    if args.output.suffix == ".npy":
        with partial.open("wb") as fh:  # write then rename: no half-written output on failure
            np.save(fh, embeddings)
    else:
        with partial.open("w", encoding="utf-8") as text:
            write_json_lines(text, embeddings)
    os.replace(partial, args.output)
    print(f"wrote {args.output}: {embeddings.shape[0]} x {embeddings.shape[1]} float32", file=sys.stderr)
    return 0


def write_json_lines(out: TextIO, embeddings: np.ndarray) -> None:
    """One {"index", "embedding"} object per row: the shape of an OpenAI embeddings data item."""
    for index, row in enumerate(embeddings.tolist()):
        out.write(json.dumps({"index": index, "embedding": row}) + "\n")
