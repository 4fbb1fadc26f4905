"""Embedding with Ray Data: past one process, past one machine.

Needs the ray extra (`pip install 'fusembed[ray]'`). Ray does the distribution (scheduling,
retries, streaming between stages, spilling); fusembed supplies one actor class that loads a
bundle once and embeds the batches Ray hands it.

Example:
    >>> import ray                                                        # doctest: +SKIP
    >>> from fusembed.ray import embed_dataset                            # doctest: +SKIP
    >>> ds = ray.data.read_parquet("s3://bucket/docs/", columns=["id", "text"])  # doctest: +SKIP
    >>> out = embed_dataset(ds, "/shared/bundles/all-MiniLM-L6-v2", concurrency=8)  # doctest: +SKIP
    >>> out.write_parquet("s3://bucket/embeddings/")                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from ._encoder import Encoder, PrecisionChoice
from ._errors import InputError
from ._manifest import read_manifest

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import ray.data
except ImportError as exc:
    raise ImportError(
        f"fusembed.ray needs the ray extra ({exc.name} is not installed): pip install 'fusembed[ray]'"
    ) from None

__all__ = ["EmbedActor", "embed_corpus_with_ray", "embed_dataset"]


class EmbedActor:
    """A Ray Data actor: loads the bundle once, then embeds each batch (a pyarrow Table) and
    returns it with an embedding column (fixed-size list of float32).

    `bundle` is a path every node can read, or a one-item list holding the ObjectRef of the
    bundle's files (`ship_bundle=True`), which the actor writes to a local temporary directory.
    """

    def __init__(self, bundle: str | list[Any], text_column: str, output_column: str, device: str,
                 precision: PrecisionChoice, threads: int, batch_size: int) -> None:
        if isinstance(bundle, list):
            files: dict[str, bytes] = ray.get(bundle[0])
            self._tmp = tempfile.mkdtemp(prefix="fusembed-bundle-")
            for name, data in files.items():
                Path(self._tmp, name).write_bytes(data)
            bundle = self._tmp
        self.encoder = Encoder(bundle, device=device,  # type: ignore[arg-type]  # checked by embed_dataset
                               precision=precision, threads=threads)
        self.text_column, self.output_column, self.batch_size = text_column, output_column, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.text_column).to_pylist()
        vectors = self.encoder.encode(texts, batch_size=self.batch_size)
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, self.encoder.dim)
        return batch.append_column(self.output_column, column)


def embed_dataset(
    ds: ray.data.Dataset,
    bundle: str | Path,
    *,
    text_column: str = "text",
    output_column: str = "embedding",
    concurrency: int = 2,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    rows_per_batch: int = 1024,
    batch_size: int = 32,
    precision: PrecisionChoice = "auto",
    ship_bundle: bool = False,
) -> ray.data.Dataset:
    """`ds` with an `output_column` of embeddings, computed by `concurrency` actors.

    Args:
        ds: a Ray Dataset with a string column `text_column` (no nulls: filter bad rows first).
        bundle: the bundle directory; each actor loads it once. It must be readable at the same
            path on every node (a shared filesystem), unless `ship_bundle` is set.
        concurrency: how many actors (bundle copies) run at once.
        num_cpus: CPUs reserved per actor; also its onnxruntime intra-op threads (at least 1).
        num_gpus: GPUs per actor; above 0 the actors run on CUDA (needs fusembed[gpu] there).
        rows_per_batch: rows Ray hands an actor per call (`map_batches`' batch_size).
        batch_size: texts per model call inside an actor, as in `Encoder.encode`.
        ship_bundle: put the bundle's files in Ray's object store once and have each actor write
            them to a local temporary directory: for clusters without a shared filesystem.

    The dataset is lazy, as Ray datasets are: nothing runs until it is consumed or written.
    """
    manifest = read_manifest(Path(bundle))  # a damaged bundle fails here, not in every actor
    if text_column not in (ds.columns() or []):
        raise InputError(f"the dataset has no column {text_column!r}; it has {ds.columns()}")
    if concurrency < 1 or num_cpus <= 0 or num_gpus < 0:
        raise ValueError(f"need concurrency >= 1, num_cpus > 0 and num_gpus >= 0, got {concurrency}, "
                         f"{num_cpus}, {num_gpus}")
    source: str | list[Any]
    if ship_bundle:
        names = ["manifest.json", manifest.tokenizer, *manifest.files]
        source = [ray.put({name: (Path(bundle) / name).read_bytes() for name in dict.fromkeys(names)})]
    else:
        source = str(Path(bundle).resolve())
    return ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={
            "bundle": source, "text_column": text_column, "output_column": output_column,
            "device": "cuda" if num_gpus > 0 else "cpu", "precision": precision,
            "threads": max(1, int(num_cpus)), "batch_size": batch_size,
        },
        batch_size=rows_per_batch, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, num_gpus=num_gpus,
    )


def _bad_rows(batch: pa.Table, text_column: str, id_column: str) -> pa.Table:
    """The rows of `batch` that cannot be embedded: (id, reason)."""
    ids, reasons = [], []
    for row_id, text in zip(batch.column(id_column).to_pylist(), batch.column(text_column).to_pylist(),
                            strict=True):
        reason = _problem(row_id, text, text_column, id_column)
        if reason is not None:
            ids.append(row_id)
            reasons.append(reason)
    return pa.table({"id": pa.array(ids, type=batch.schema.field(id_column).type), "reason": reasons})


def _write_bad_rows(bad_rows: Any, path: Path) -> tuple[int, str]:
    """Stream a dataset of (id, reason) rows to `path` as JSON lines, a batch at a time, so the
    driver never holds them all; return how many, and the first few for a message."""
    count, first = 0, list[str]()
    with path.open("w", encoding="utf-8") as out:
        for batch in bad_rows.iter_batches(batch_format="pyarrow"):
            for row in batch.to_pylist():
                out.write(json.dumps({"row": None, "id": row["id"], "reason": row["reason"]},
                                     ensure_ascii=False, default=str) + "\n")
                if len(first) < 5:
                    first.append(f"id {row['id']!r}: {row['reason']}")
            count += batch.num_rows
    return count, "; ".join(first)


def _good_rows(batch: pa.Table, text_column: str, id_column: str) -> pa.Table:
    keep = [_problem(i, t, text_column, id_column) is None for i, t in
            zip(batch.column(id_column).to_pylist(), batch.column(text_column).to_pylist(), strict=True)]
    return batch.filter(pa.array(keep, type=pa.bool_()))


def _problem(row_id: object, text: object, text_column: str, id_column: str) -> str | None:
    if row_id is None:
        return f"id field {id_column!r} is null"
    if not isinstance(text, str):
        return f"field {text_column!r} is {'null' if text is None else type(text).__name__}"
    return None if text.strip() else "empty text"


def embed_corpus_with_ray(
    input: Path, output_dir: Path, bundle: Path, *, input_format: str | None, text_field: str,
    id_field: str | None, on_bad_row: Literal["fail", "skip"], batch_size: int, overwrite: bool,
    address: str | None, workers: int, cpus_per_worker: float, gpus_per_worker: float,
    precision: PrecisionChoice,
) -> Any:
    """`fusembed embed-corpus --ray`: read with Ray Data, embed with `embed_dataset`, write
    Parquet files and the same _manifest.json and _bad_rows.jsonl as the streaming path.

    Ray's readers give no row numbers, so the input needs an id field (JSONL or Parquet). Ray
    retries failed tasks itself; a run that is stopped starts again from the beginning.
    """
    from .corpus import BAD_ROWS, MANIFEST, CorpusReport

    started = time.perf_counter()
    fmt = input_format or {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(
        input.suffix.lower(), "text")
    if fmt == "text" or id_field is None:
        raise InputError("--ray needs JSONL or Parquet input with --id-field: Ray's readers do not give "
                         "row numbers to use as ids. Without --ray, text files are fine.")
    if not input.exists():
        raise InputError(f"{input}: no such file or directory")
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise InputError(f"{output_dir}: not empty; --ray runs do not resume: use --overwrite or a "
                             "new directory")
        if not (output_dir / MANIFEST).is_file():
            raise InputError(f"{output_dir}: not a fusembed corpus directory; refusing to delete its files")
        shutil.rmtree(output_dir)
    manifest = read_manifest(bundle)  # checked here, before Ray starts

    if not ray.is_initialized():
        # A local cluster gets one logical CPU beyond the actors' reservation: Ray Data's read tasks
        # need one too, and with every CPU held by an actor the job would wait forever.
        local_cpus = None if address else max(os.cpu_count() or 1, math.ceil(workers * cpus_per_worker) + 1)
        ray.init(address=address, num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    columns = [id_field, text_field]
    if fmt == "parquet":
        ds = ray.data.read_parquet(str(input), columns=columns)
    else:
        ds = ray.data.read_json(str(input), lines=True).select_columns(columns)

    fields = {"text_column": text_field, "id_column": id_field}
    output_dir.mkdir(parents=True, exist_ok=True)
    bad_tmp = output_dir / f".{BAD_ROWS}.tmp"
    try:
        bad, shown = _write_bad_rows(ds.map_batches(functools.partial(_bad_rows, **fields),
                                                    batch_format="pyarrow"), bad_tmp)
        if bad and on_bad_row == "fail":
            raise InputError(f"{bad} rows cannot be embedded ({shown}); nothing was written. Fix them, or "
                             "rerun with --on-bad-row skip to leave them out and list them")
    except BaseException:
        bad_tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            output_dir.rmdir()  # only if it is empty: nothing of ours or anyone's is lost
        raise
    good = ds.map_batches(functools.partial(_good_rows, **fields), batch_format="pyarrow")
    embedded = embed_dataset(good, bundle, text_column=text_field, concurrency=workers,
                             num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, batch_size=batch_size,
                             precision=precision)
    out = embedded.select_columns([id_field, "embedding"])
    if id_field != "id":
        out = out.rename_columns({id_field: "id"})
    out.write_parquet(str(output_dir))

    files = sorted(p.name for p in output_dir.glob("*.parquet"))
    written = sum(pq.ParquetFile(output_dir / f).metadata.num_rows for f in files)
    os.replace(bad_tmp, output_dir / BAD_ROWS)
    (output_dir / MANIFEST).write_text(json.dumps({
        "format": "fusembed-corpus", "version": 2, "engine": "ray", "status": "complete",
        "input": {"path": str(input.resolve()), "format": fmt, "text_field": text_field,
                  "id_field": id_field},
        "bundle": {"path": str(bundle.resolve()), "model": manifest.source.model},
        "dim": manifest.dim, "normalized": manifest.normalized,
        "similarity": manifest.similarity, "rows_in": written + bad, "rows_written": written,
        "bad_rows": bad, "bad_rows_file": BAD_ROWS, "shards": [{"file": f} for f in files],
        "ray": {"workers": workers, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker,
                "address": address or "local"},
    }, indent=2, default=str) + "\n")
    return CorpusReport(output_dir, written + bad, written, bad, len(files), 0,
                        time.perf_counter() - started, files)
