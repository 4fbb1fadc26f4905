"""Shard files: `part-NNNNN.parquet` (id, embedding), each written a chunk at a time through a
temporary file and renamed when complete, with its own list of bad rows beside it.

A finished shard records in its Parquet metadata which input rows it holds, so a resumed run
knows what it can keep without reading the embeddings back.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._encoder import Encoder
from .._errors import InputError
from .._progress import Progress
from ._manifest import BAD_ROWS
from ._rows import Row, bad_row_line

# How shards are written, whichever run writes them. Embeddings are random-looking floats:
# dictionaries and compression only cost time there.
PARQUET_OPTIONS: dict[str, Any] = {"use_dictionary": ["id"],
                                   "compression": {"id": "snappy", "embedding": "none"}}
_SHARD_KEY = b"fusembed.shard"


def shard_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def output_schema(id_type: pa.DataType, dim: int) -> pa.Schema:
    return pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32(), dim))])


def embedding_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(n, dim) float32 vectors as Arrow's fixed-size lists, without copying them."""
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def write_shard(path: Path, shard: int, rows: Iterator[Row], schema: pa.Schema, encoder: Encoder, *,
                chunk_rows: int, batch_size: int | None, on_bad_row: Literal["fail", "skip"],
                progress: Progress | None) -> None:
    """Embed `rows` into `path`, a row group per chunk, through a temporary file.

    Raises:
        InputError: a bad row under on_bad_row="fail"; nothing of this shard is left behind.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    bad_path = bad_rows_of(path)
    bad_tmp = bad_path.with_name(f".{bad_path.name}.tmp")
    first_row, rows_in, written, bad = -1, 0, 0, 0
    try:
        with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer, \
                bad_tmp.open("w", encoding="utf-8") as bad_file:
            while chunk := list(itertools.islice(rows, chunk_rows)):
                if first_row < 0:
                    first_row = chunk[0].row
                rows_in += len(chunk)
                good = [r for r in chunk if r.problem is None]
                for r in chunk:
                    if r.problem is not None:
                        if on_bad_row == "fail":
                            raise InputError(
                                f"row {r.row} (id {r.id!r}): {r.problem}. Nothing from row "
                                f"{first_row} on was written; finished shards are kept. Fix the row, "
                                "or rerun with on_bad_row='skip' (--on-bad-row skip) to leave such "
                                "rows out and list them"
                            )
                        bad_file.write(bad_row_line(r) + "\n")
                        bad += 1
                if good:
                    texts = [r.text for r in good if r.text is not None]  # every good row has its text
                    vectors = encoder.encode(texts, batch_size=batch_size)
                    ids = pa.array([r.id for r in good], type=schema.field("id").type)
                    writer.write_table(pa.table([ids, embedding_array(vectors)], schema=schema))
                    written += len(good)
                if progress is not None:
                    progress.advance(len(chunk))
            info = {"shard": shard, "first_row": first_row, "rows_in": rows_in, "rows_written": written,
                    "bad_rows": bad}
            writer.add_key_value_metadata({_SHARD_KEY: json.dumps(info, default=str).encode()})
        # The shard's list of bad rows is in place before the shard: a finished shard has its list.
        if bad:
            os.replace(bad_tmp, bad_path)
        else:
            bad_path.unlink(missing_ok=True)  # left by an attempt that stopped before the rename
        os.replace(tmp, path)  # complete, or not there at all
    finally:
        tmp.unlink(missing_ok=True)
        bad_tmp.unlink(missing_ok=True)


def shard_info(path: Path) -> dict[str, Any] | None:
    """A finished shard's own record of what it holds, or None if it is not there, damaged, or
    its list of bad rows is missing: then it is redone, so that no bad row goes unreported."""
    if not path.is_file():
        return None
    try:
        metadata = pq.ParquetFile(path).metadata.metadata or {}  # the file's key-value metadata
    except Exception:  # damaged: redo it
        return None
    raw = metadata.get(_SHARD_KEY)
    info: dict[str, Any] | None = json.loads(raw) if raw else None
    if info and info["bad_rows"] and not bad_rows_of(path).is_file():
        return None
    return info


def bad_rows_of(shard: Path) -> Path:
    """Where a shard lists the rows it left out. `_`: dataset readers skip it, as the manifest."""
    return shard.with_name(f"{BAD_ROWS}.{shard.stem}")


def gather_bad_rows(output_dir: Path, shard_files: list[str], infos: list[dict[str, Any] | None]) -> int:
    """Concatenate the shards' lists into _bad_rows.jsonl, in row order, a line at a time (a
    corpus with millions of bad rows is never held in memory); return how many there are."""
    count = 0
    tmp = output_dir / f".{BAD_ROWS}.tmp"
    with tmp.open("w", encoding="utf-8") as out:
        for name, info in zip(shard_files, infos, strict=True):
            if info and info["bad_rows"]:
                with bad_rows_of(output_dir / name).open(encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
                count += info["bad_rows"]
    os.replace(tmp, output_dir / BAD_ROWS)
    return count
