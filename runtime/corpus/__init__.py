"""`fusembed embed-corpus`: embed a corpus file into Parquet shards, streaming and resumable.

Needs pyarrow (`pip install 'fusembed[corpus]'`).

The input is read row by row and embedded a chunk at a time, and each shard is written a row
group at a time, so memory stays flat whatever the corpus size. Shard k holds input rows
[k * shard_rows, (k + 1) * shard_rows); it is written to a temporary file and renamed when
complete, so after an interruption a rerun skips the shards that exist, redoes the one that was
being written, and the output holds every row exactly once.

Example:
    >>> from fusembed import Encoder                                         # doctest: +SKIP
    >>> from fusembed.corpus import CorpusOptions, Source, embed_corpus      # doctest: +SKIP
    >>> embed_corpus(Source.open(Path("docs.jsonl"), id_field="id"), Path("out"),
    ...              Encoder("bundles/all-MiniLM-L6-v2"))                    # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._encoder import Encoder
from .._errors import InputError
from .._progress import Progress
from ._readers import Row, Source

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as exc:
    raise ImportError(
        f"embed-corpus needs pyarrow ({exc.name} is not installed): pip install 'fusembed[corpus]'"
    ) from None

__all__ = ["BadRow", "CorpusOptions", "CorpusReport", "Source", "embed_corpus", "read_bad_rows"]

MANIFEST = "_manifest.json"  # "_": Arrow, Spark and Ray skip it when reading the folder as a dataset
BAD_ROWS = "_bad_rows.jsonl"
_FORMAT = "fusembed-corpus"
_SHARD_KEY = b"fusembed.shard"


@dataclass(frozen=True)
class CorpusOptions:
    """How a corpus run behaves.

    Attributes:
        shard_rows: input rows per output shard (the unit of resuming).
        chunk_rows: rows read, embedded and written at once (bounds memory).
        on_bad_row: "fail" stops at the first row that cannot be embedded (finished shards are
            kept); "skip" leaves it out of the shards and lists it in _bad_rows.jsonl.
        batch_size: texts per model call, as in `Encoder.encode`.
        progress: draw a progress bar (rows, rows/s, time left) on stderr.
        overwrite: delete an earlier run's output in OUTPUT_DIR instead of resuming it.
    """

    shard_rows: int = 50_000
    chunk_rows: int = 4096
    on_bad_row: Literal["fail", "skip"] = "fail"
    batch_size: int = 32
    progress: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class BadRow:
    row: int
    id: Any
    reason: str


@dataclass(frozen=True)
class CorpusReport:
    output_dir: Path
    rows_in: int
    rows_written: int
    bad_rows: int
    shards: int
    shards_resumed: int  # shards an earlier run had finished, kept as they were
    seconds: float
    files: list[str] = field(default_factory=list)


def embed_corpus(source: Source, output_dir: Path, encoder: Encoder,
                 options: CorpusOptions | None = None) -> CorpusReport:
    """Embed every row of `source` into Parquet shards in `output_dir`; see the module doc.

    Raises:
        InputError: a bad row under on_bad_row="fail" (its row, id and reason), or an
            output_dir that holds something else: another run's output, or files not ours.
    """
    options = options or CorpusOptions()
    for name in ("shard_rows", "chunk_rows", "batch_size"):
        value = getattr(options, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive int, got {value!r}")
    if options.on_bad_row not in ("fail", "skip"):
        raise InputError(f"on_bad_row must be 'fail' or 'skip', got {options.on_bad_row!r}")
    started = time.perf_counter()
    plan = _plan(source, encoder, options)
    _prepare(output_dir, plan, options.overwrite)
    _write_json(output_dir / MANIFEST, {**plan, "status": "running"})

    total = source.count_rows()
    schema = pa.schema([("id", _id_type(source)), ("embedding", pa.list_(pa.float32(), encoder.dim))])
    rows = source.rows()
    shard_files: list[str] = []
    done_before = 0
    # Shards an earlier run finished are kept: their rows are read past, not embedded again.
    while (finished := _shard_info(output_dir / _shard_name(len(shard_files)))) is not None:
        consumed = sum(1 for _ in itertools.islice(rows, options.shard_rows))
        if consumed != finished["rows_in"]:
            raise InputError(f"{output_dir / _shard_name(len(shard_files))} holds {finished['rows_in']} "
                             f"input rows but the input now has {consumed} there; start again with "
                             "--overwrite")
        shard_files.append(_shard_name(len(shard_files)))
        done_before += consumed
    resumed = len(shard_files)
    progress = Progress(total, unit="rows", done=done_before) if options.progress else None

    while (first := next(rows, None)) is not None:
        shard, name = len(shard_files), _shard_name(len(shard_files))
        shard_rows = itertools.chain([first], itertools.islice(rows, options.shard_rows - 1))
        _write_shard(output_dir / name, shard, shard_rows, schema, encoder, options, progress)
        shard_files.append(name)

    infos = [_shard_info(output_dir / name) for name in shard_files]
    bad = _gather_bad_rows(output_dir, shard_files, infos)
    rows_in = sum(info["rows_in"] for info in infos if info)
    rows_written = sum(info["rows_written"] for info in infos if info)
    _write_json(output_dir / MANIFEST, {
        **plan, "status": "complete", "rows_in": rows_in, "rows_written": rows_written,
        "bad_rows": bad, "bad_rows_file": BAD_ROWS,
        "shards": [{"file": n, "first_row": i["first_row"], "rows_in": i["rows_in"],
                    "rows_written": i["rows_written"]} for n, i in zip(shard_files, infos, strict=True) if i],
    })
    return CorpusReport(output_dir, rows_in, rows_written, bad, len(shard_files), resumed,
                        time.perf_counter() - started, shard_files)


def read_bad_rows(output_dir: Path) -> list[BadRow]:
    """The rows a finished run left out, with their ids and reasons."""
    path = output_dir / BAD_ROWS
    return [BadRow(**json.loads(line)) for line in path.read_text().splitlines()]


def _write_shard(path: Path, shard: int, rows: Iterator[Row], schema: pa.Schema, encoder: Encoder,
                 options: CorpusOptions, progress: Progress | None) -> None:
    """Embed `rows` into `path`, a row group per chunk, through a temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    bad_path = _bad_rows_of(path)
    bad_tmp = bad_path.with_name(f".{bad_path.name}.tmp")
    first_row, rows_in, written, bad = -1, 0, 0, 0
    try:
        # Embeddings are random-looking floats: dictionaries and compression only cost time there.
        with pq.ParquetWriter(tmp, schema, use_dictionary=["id"],
                              compression={"id": "snappy", "embedding": "none"}) as writer, \
                bad_tmp.open("w", encoding="utf-8") as bad_file:
            while chunk := list(itertools.islice(rows, options.chunk_rows)):
                if first_row < 0:
                    first_row = chunk[0].row
                rows_in += len(chunk)
                good = [r for r in chunk if r.problem is None]
                for r in chunk:
                    if r.problem is not None:
                        if options.on_bad_row == "fail":
                            raise InputError(
                                f"row {r.row} (id {r.id!r}): {r.problem}. Nothing from row "
                                f"{first_row} on was written; finished shards are kept. Fix the row, "
                                "or rerun with --on-bad-row skip to leave such rows out and list them"
                            )
                        bad_file.write(json.dumps(asdict(BadRow(r.row, r.id, r.problem)),
                                                  ensure_ascii=False, default=str) + "\n")
                        bad += 1
                if good:
                    texts = [r.text for r in good if r.text is not None]  # every good row has its text
                    vectors = encoder.encode(texts, batch_size=options.batch_size)
                    flat = pa.array(vectors.reshape(-1), type=pa.float32())
                    ids = pa.array([r.id for r in good], type=schema.field("id").type)
                    writer.write_table(pa.table([ids, pa.FixedSizeListArray.from_arrays(flat, encoder.dim)],
                                                schema=schema))
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


def _bad_rows_of(shard: Path) -> Path:
    """Where a shard lists the rows it left out. `_`: dataset readers skip it, as the manifest."""
    return shard.with_name(f"{BAD_ROWS}.{shard.stem}")


def _gather_bad_rows(output_dir: Path, shard_files: list[str], infos: list[dict[str, Any] | None]) -> int:
    """Concatenate the shards' lists into _bad_rows.jsonl, in row order, a line at a time (a
    corpus with millions of bad rows is never held in memory); return how many there are."""
    count = 0
    tmp = output_dir / f".{BAD_ROWS}.tmp"
    with tmp.open("w", encoding="utf-8") as out:
        for name, info in zip(shard_files, infos, strict=True):
            if not info:
                continue
            if info["bad_rows"]:
                with _bad_rows_of(output_dir / name).open(encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
                count += info["bad_rows"]
    os.replace(tmp, output_dir / BAD_ROWS)
    return count


def _shard_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def _shard_info(path: Path) -> dict[str, Any] | None:
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
    if info and info["bad_rows"] and not _bad_rows_of(path).is_file():
        return None
    return info


def _id_type(source: Source) -> pa.DataType:
    if source.id_field is None:
        return pa.int64()
    if source.format == "jsonl":
        return pa.string()
    return pq.read_schema(source.path).field(source.id_field).type


def _plan(source: Source, encoder: Encoder, options: CorpusOptions) -> dict[str, Any]:
    """Everything a resumed run must share with the run it continues."""
    stat = source.path.stat()
    return {
        "format": _FORMAT, "version": 2,  # 2: bad rows listed per shard in a file, not its metadata
        "input": {"path": str(source.path.resolve()), "format": source.format, "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns, "text_field": source.text_field, "id_field": source.id_field},
        "bundle": {"path": str(encoder.bundle.resolve()), "model": encoder.manifest.source.model,
                   "variant": encoder.precision, "sha256": encoder.manifest.files[encoder.variant.file]},
        "dim": encoder.dim, "normalized": encoder.normalized, "similarity": encoder.similarity,
        "shard_rows": options.shard_rows, "on_bad_row": options.on_bad_row,
    }


def _prepare(output_dir: Path, plan: dict[str, Any], overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    entries = list(output_dir.iterdir())
    ours = [p for p in entries if p.name.lstrip(".").startswith(("part-", MANIFEST, BAD_ROWS))]
    others = sorted(p.name for p in entries if p not in ours)
    if others:
        raise InputError(f"{output_dir}: holds files that are not a fusembed corpus "
                         f"({', '.join(others[:5])}); choose an empty or new directory")
    manifest = output_dir / MANIFEST
    if overwrite:
        for p in ours:
            p.unlink()
        return
    if not manifest.is_file():
        if ours:
            raise InputError(f"{output_dir}: has shards but no {MANIFEST}; use --overwrite to start again")
        return
    earlier = json.loads(manifest.read_text())
    if (earlier.get("format"), earlier.get("version")) != (plan["format"], plan["version"]):
        raise InputError(f"{output_dir}: holds a run in another output format (written by another "
                         "fusembed version); use another directory, or --overwrite to start again")
    differs = [k for k in plan if k != "on_bad_row" and earlier.get(k) != plan[k]]
    if differs:
        raise InputError(f"{output_dir}: holds a run with a different {', '.join(differs)} (the input "
                         "file, bundle or shard size changed); use another directory, or --overwrite "
                         "to start again")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
