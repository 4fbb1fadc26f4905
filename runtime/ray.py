"""Embedding with Ray Data: past one process, past one machine.

Needs the ray extra (`pip install 'fusembed[ray]'`). Ray does the distribution (scheduling,
retries, streaming between stages, spilling); fusembed supplies one actor class that loads a
bundle once and embeds the batches Ray hands it.

- `embed_dataset` adds an embedding column to any Ray Dataset.
- `embed_corpus_with_ray` is `fusembed.corpus.embed_corpus` on Ray: the same `Source`, the same
  `CorpusOptions`, the same readers and rule for bad rows, the same output directory; Ray-only
  settings are in `RayOptions`.

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
import inspect
import itertools
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, cast

from ._encoder import Encoder, PrecisionChoice, _choose_variant, check_truncate_dim, resolve_prompt
from ._errors import ArgumentError, InputError, check_positive_int
from ._manifest import Manifest, read_manifest
from ._providers import DEVICES, Device
from ._ray_options import RayOptions, check_resources

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, FilenameProvider, ReadTask
except ImportError as exc:
    raise ImportError(
        f"fusembed.ray needs the ray extra ({exc.name} is not installed): pip install 'fusembed[ray]'"
    ) from None

from .corpus import BAD_ROWS, MANIFEST, CorpusOptions, CorpusReport, Source
from .corpus._manifest import RAY, bundle_record, prepare_output_dir, run_record, write_manifest
from .corpus._rows import bad_row_line
from .corpus._shards import PARQUET_OPTIONS, embedding_array, shard_name

__all__ = ["EmbedActor", "RayOptions", "embed_corpus_with_ray", "embed_dataset"]


class EmbedActor:
    """A Ray Data actor: loads the bundle once, then embeds each batch (a pyarrow Table) and
    returns it with an embedding column (fixed-size list of float32).

    `bundle` is a path every node can read, or a one-item list holding the ObjectRef of the
    bundle's files (`ship_bundle=True`), which the actor writes to a local temporary directory.
    """

    def __init__(self, bundle: str | list[Any], text_column: str, output_column: str, device: Device,
                 precision: PrecisionChoice, threads: int, batch_size: int | None,
                 encoding: dict[str, Any] | None = None) -> None:
        if isinstance(bundle, list):
            files: dict[str, bytes] = ray.get(bundle[0])
            self._tmp = tempfile.mkdtemp(prefix="fusembed-bundle-")
            for name, data in files.items():
                Path(self._tmp, name).write_bytes(data)
            bundle = self._tmp
        self.encoder = Encoder(bundle, device=device, precision=precision, threads=threads,
                               **(encoding or {}))
        self.text_column, self.output_column, self.batch_size = text_column, output_column, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.text_column).to_pylist()
        vectors = self.encoder.encode(texts, batch_size=self.batch_size)
        return batch.append_column(self.output_column, embedding_array(vectors))


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
    batch_size: int | None = None,
    precision: PrecisionChoice = "auto",
    device: Device | None = None,
    threads: int | None = None,
    ship_bundle: bool = False,
    prompt_name: str | None = None,
    prompt: str | None = None,
    truncate_dim: int | None = None,
) -> ray.data.Dataset:
    """`ds` with an `output_column` of embeddings, computed by `concurrency` actors.

    Args:
        ds: a Ray Dataset with a string column `text_column` (no nulls: filter bad rows first).
        bundle: the bundle directory; each actor loads it once. It must be readable at the same
            path on every node (a shared filesystem), unless `ship_bundle` is set.
        concurrency: how many actors (bundle copies) run at once.
        num_cpus: CPUs reserved per actor.
        num_gpus: GPUs per actor (needs fusembed[gpu] on those nodes).
        rows_per_batch: rows Ray hands an actor per call (`map_batches`' batch_size).
        batch_size: texts per model call inside an actor, as in `Encoder.encode` (None: the
            device's default).
        precision: the variant each actor runs, as in `Encoder`.
        device: "cpu" or "cuda"; default: "cuda" when `num_gpus` > 0, else "cpu".
        threads: onnxruntime intra-op threads per actor; default: `num_cpus`, at least 1.
        ship_bundle: put the bundle's files in Ray's object store once and have each actor write
            them to a local temporary directory: for clusters without a shared filesystem.
        prompt_name, prompt, truncate_dim: as in `Encoder`.

    The dataset is lazy, as Ray datasets are: nothing runs until it is consumed or written.

    Raises:
        ArgumentError: a count out of range, or a device that does not fit `num_gpus`.
        InputError: `ds` has no column `text_column`.
        BundleError: `bundle` is not a readable bundle (checked here, not in every actor).
    """
    for name, value in (("concurrency", concurrency), ("rows_per_batch", rows_per_batch)):
        check_positive_int(name, value)
    check_positive_int("batch_size", batch_size, none_ok=True)
    check_resources(num_cpus, num_gpus, cpus="num_cpus", gpus="num_gpus")
    bundle = Path(bundle)
    manifest = read_manifest(bundle)  # a damaged bundle fails here, not in every actor
    chosen = _device(device, num_gpus, gpus="num_gpus")
    threads = _threads(threads, num_cpus)
    _check_precision(manifest, chosen, precision)
    encoding = _encoding(manifest, prompt_name, prompt, truncate_dim)
    if text_column not in (ds.columns() or []):
        raise InputError(f"the dataset has no column {text_column!r}; it has {ds.columns()}")
    return _embed(ds, bundle, manifest, text_column=text_column, output_column=output_column,
                  concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
                  rows_per_batch=rows_per_batch, batch_size=batch_size, device=chosen,
                  precision=precision, threads=threads, ship_bundle=ship_bundle, encoding=encoding)


def embed_corpus_with_ray(
    source: Source,
    output_dir: str | Path,
    bundle: str | Path,
    options: CorpusOptions | None = None,
    ray_options: RayOptions | None = None,
    *,
    device: Device | None = None,
    precision: PrecisionChoice = "auto",
    threads: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
    truncate_dim: int | None = None,
) -> CorpusReport:
    """`fusembed embed-corpus --ray`: `fusembed.corpus.embed_corpus`, with the embedding spread
    over Ray actors.

    The input is read by the corpus readers inside a Ray task, so every format, field and bad-row
    reason is as in `embed_corpus`, with row numbers. Every row is checked before any is embedded:
    under on_bad_row="fail" a bad row stops the run with nothing written. The output directory
    holds the same part-NNNNN.parquet files (id, embedding), _manifest.json and _bad_rows.jsonl.
    The files are not in input order and hold at most `shard_rows` rows each. Ray retries failed
    tasks itself; a run that is stopped does not resume: it starts again with `overwrite=True`.

    Args:
        source: the input, as `Source.open` checked it.
        output_dir: a directory every node can write and this process can read (shared storage
            when the cluster has more than one machine).
        bundle: the bundle directory, readable at this path on every node.
        options: as for `embed_corpus`.
        ray_options: the cluster and the actors' resources.
        device: "cpu" or "cuda", as in `Encoder`; default: "cuda" when `gpus_per_worker` > 0.
        precision: the variant each actor runs, as in `Encoder`.
        threads: onnxruntime intra-op threads per actor; default: `cpus_per_worker`, at least 1.
        prompt_name, prompt, truncate_dim: as in `Encoder`.

    Raises:
        ArgumentError: a device that does not fit `gpus_per_worker`, a bad `threads` or
            `precision`, or an `address` while this process is already connected to Ray.
        BundleError: `bundle` is not a readable bundle, or lacks the variant asked for.
        InputError: bad rows under on_bad_row="fail" (how many, and the first few), or an
            output_dir that holds something else: an earlier run (without `overwrite`), or files
            that are not a corpus run.
    """
    options = options or CorpusOptions()
    ray_options = ray_options or RayOptions()
    started = time.perf_counter()
    bundle, output_dir = Path(bundle), Path(output_dir)
    manifest = read_manifest(bundle)  # checked here, before Ray starts
    chosen = _device(device, ray_options.gpus_per_worker, gpus="gpus_per_worker")
    threads = _threads(threads, ray_options.cpus_per_worker)
    _check_precision(manifest, chosen, precision)
    encoding = _encoding(manifest, prompt_name, prompt, truncate_dim)
    _check_writer()
    if ray_options.address is not None and ray.is_initialized():
        raise ArgumentError("address", f"is {ray_options.address!r}, but this process is already connected "
                            "to Ray; leave address unset to use that cluster, or call ray.shutdown() first")
    run = {
        **run_record(source, {**bundle_record(bundle, manifest), "precision": precision}, manifest,
                     shard_rows=options.shard_rows, on_bad_row=options.on_bad_row, engine=RAY,
                     prompt=resolve_prompt(manifest, prompt_name, prompt),
                     dim=truncate_dim or manifest.dim),
        "ray": {**asdict(ray_options), "address": ray_options.address or "local", "device": chosen,
                "threads": threads},
    }
    prepare_output_dir(output_dir, run, overwrite=options.overwrite)
    write_manifest(output_dir, {**run, "status": "running"})
    bad_list = output_dir / f".{BAD_ROWS}.tmp"
    try:
        _connect(ray_options)
        with _progress_bars(options.progress):
            bad, first = _list_bad_rows(source, options.chunk_rows, bad_list)
            if bad and options.on_bad_row == "fail":
                raise InputError(
                    f"{bad} row{'s' if bad != 1 else ''} cannot be embedded ({first}); nothing was "
                    f"written. Fix {'them' if bad != 1 else 'it'}, or rerun with on_bad_row='skip' "
                    "(--on-bad-row skip) to leave such rows out and list them"
                )
            good = _read(source, options.chunk_rows, keep="good")
            embedded = _embed(good, bundle, manifest, text_column="text", output_column="embedding",
                              concurrency=ray_options.workers, num_cpus=ray_options.cpus_per_worker,
                              num_gpus=ray_options.gpus_per_worker, rows_per_batch=options.chunk_rows,
                              batch_size=options.batch_size, device=chosen, precision=precision,
                              threads=threads, ship_bundle=False, encoding=encoding)
            embedded.select_columns(["id", "embedding"]).write_parquet(
                str(output_dir), filename_provider=_RayFileNames(), max_rows_per_file=options.shard_rows,
                **PARQUET_OPTIONS)
    except BaseException:
        _discard(output_dir)
        raise
    files = _name_shards(output_dir)
    counts = [pq.ParquetFile(output_dir / f).metadata.num_rows for f in files]
    os.replace(bad_list, output_dir / BAD_ROWS)
    written = sum(counts)
    write_manifest(output_dir, {
        **run, "status": "complete", "rows_in": written + bad, "rows_written": written,
        "bad_rows": bad, "bad_rows_file": BAD_ROWS,
        "shards": [{"file": f, "rows_written": n} for f, n in zip(files, counts, strict=True)],
    })
    return CorpusReport(output_dir, written + bad, written, bad, len(files), 0,
                        time.perf_counter() - started, files)


def _embed(ds: ray.data.Dataset, bundle: Path, manifest: Manifest, *, text_column: str,
           output_column: str, concurrency: int, num_cpus: float, num_gpus: float, rows_per_batch: int,
           batch_size: int | None, device: Device, precision: PrecisionChoice, threads: int,
           ship_bundle: bool, encoding: dict[str, Any]) -> ray.data.Dataset:
    """`embed_dataset` once its arguments are checked."""
    source: str | list[Any]
    if ship_bundle:
        names = ["manifest.json", manifest.tokenizer, *manifest.files]
        source = [ray.put({name: (bundle / name).read_bytes() for name in dict.fromkeys(names)})]
    else:
        source = str(bundle.resolve())
    return ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={
            "bundle": source, "text_column": text_column, "output_column": output_column,
            "device": device, "precision": precision, "threads": threads, "batch_size": batch_size,
            "encoding": encoding,
        },
        batch_size=rows_per_batch, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, num_gpus=num_gpus,
    )


def _encoding(manifest: Manifest, prompt_name: str | None, prompt: str | None,
              truncate_dim: int | None) -> dict[str, Any]:
    """The prompt and dimension options every actor's Encoder gets, checked here once."""
    resolve_prompt(manifest, prompt_name, prompt)
    check_truncate_dim(manifest, truncate_dim)
    return {"prompt_name": prompt_name, "prompt": prompt, "truncate_dim": truncate_dim}


def _device(device: Device | None, num_gpus: float, *, gpus: str) -> Device:
    """The actors' device: as asked, or from the GPUs they are given; never one without the other."""
    if device is None:
        return "cuda" if num_gpus > 0 else "cpu"
    if device not in DEVICES:
        raise ArgumentError("device", f"must be one of {DEVICES} or None, got {device!r}")
    if device == "cuda" and num_gpus <= 0:
        raise ArgumentError("device", f"'cuda' needs {gpus} above 0, so that Ray gives each actor a GPU")
    if device == "cpu" and num_gpus > 0:
        raise ArgumentError("device", f"'cpu' would leave the GPUs that {gpus}={num_gpus:g} reserves idle; "
                            f"use device='cuda' (or leave it unset), or {gpus}=0")
    return device


def _threads(threads: int | None, num_cpus: float) -> int:
    """Threads per actor: as asked, or the CPUs Ray reserves for it (no more, so actors sharing
    a node do not oversubscribe it)."""
    if threads is None:
        return max(1, int(num_cpus))
    check_positive_int("threads", threads, none_ok=True)  # the message says None is allowed too
    return threads


def _check_precision(manifest: Manifest, device: Device, precision: PrecisionChoice) -> None:
    """A precision the bundle cannot give fails here, not in every actor. "auto" is left to the
    actors: it depends on the CPU they run on."""
    if precision != "auto":
        _choose_variant(manifest, device, precision)


def _check_writer() -> None:
    if "max_rows_per_file" not in inspect.signature(ray.data.Dataset.write_parquet).parameters:
        raise ImportError(f"embed_corpus_with_ray needs a newer Ray than {ray.__version__} (its "
                          "write_parquet has no max_rows_per_file): pip install -U 'ray[data]'")


def _connect(ray_options: RayOptions) -> None:
    if ray.is_initialized():
        return
    # A local cluster gets one logical CPU beyond the actors' reservation: the read tasks need one
    # too, and with every CPU held by an actor the job would wait forever.
    needed = math.ceil(ray_options.workers * ray_options.cpus_per_worker) + 1
    local_cpus = None if ray_options.address else max(os.cpu_count() or 1, needed)
    ray.init(address=ray_options.address, num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)


@contextlib.contextmanager
def _progress_bars(on: bool) -> Iterator[None]:
    """Ray Data's progress bars on or off for the datasets made inside: each copies the current
    context when it is made. The setting is restored after, for whoever else uses Ray here."""
    context = ray.data.DataContext.get_current()
    before = context.enable_progress_bars
    context.enable_progress_bars = on
    try:
        yield
    finally:
        context.enable_progress_bars = before


def _read(source: Source, chunk_rows: int, *, keep: Literal["good", "bad"]) -> ray.data.Dataset:
    """The rows of `source`, read in a Ray task by the corpus readers, a block per chunk:
    "good" rows as (id, text), or "bad" rows as their lines of _bad_rows.jsonl."""
    return cast(ray.data.Dataset, ray.data.read_datasource(_CorpusDatasource(source, chunk_rows, keep)))


class _CorpusDatasource(Datasource):
    """A corpus file as Ray reads it: one read task, as Ray reads one file in one task too.

    Ray's own readers are not used: they give no row numbers, and they judge rows otherwise
    (Arrow's JSON reader fails a whole file for one line that is not JSON, and turns a missing
    field into a null). A datasource rather than a map over a one-row dataset: Ray splits what
    a read task yields into blocks for every actor, where a map's output would reach one actor."""

    def __init__(self, source: Source, chunk_rows: int, keep: Literal["good", "bad"]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Ray leaves it unannotated
        self.source, self.chunk_rows, self.keep = source, chunk_rows, keep

    def estimate_inmemory_data_size(self) -> int:
        return self.source.path.stat().st_size

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        size = self.source.path.stat().st_size
        metadata: dict[str, Any] = {"num_rows": None, "size_bytes": size,
                                    "input_files": [str(self.source.path)], "exec_stats": None}
        if "schema" in {f.name for f in fields(BlockMetadata)}:  # older Ray keeps the schema here
            metadata["schema"] = None
        read = functools.partial(_read_rows, self.source, self.chunk_rows, self.keep)
        return [ReadTask(read, BlockMetadata(**metadata))]


def _read_rows(source: Source, chunk_rows: int, keep: Literal["good", "bad"]) -> Iterator[pa.Table]:
    id_type = source.id_type()
    rows = source.rows()
    empty = True
    while chunk := list(itertools.islice(rows, chunk_rows)):
        if keep == "bad":
            lines = [bad_row_line(r) for r in chunk if r.problem is not None]
            table = pa.table({"line": pa.array(lines, pa.string())})
        else:
            good = [r for r in chunk if r.problem is None]
            table = pa.table({"id": pa.array([r.id for r in good], id_type),
                              "text": pa.array([r.text for r in good], pa.string())})
        if table.num_rows or empty:  # at least one block, so that the dataset has its columns
            empty = False
            yield table
    if empty:
        yield (pa.table({"line": pa.array([], pa.string())}) if keep == "bad" else
               pa.table({"id": pa.array([], id_type), "text": pa.array([], pa.string())}))


def _list_bad_rows(source: Source, chunk_rows: int, path: Path) -> tuple[int, str]:
    """Write the lines of _bad_rows.jsonl to `path`, streamed a block at a time, so this process
    never holds them all; return how many there are, and the first few for a message."""
    count, first = 0, list[str]()
    with path.open("w", encoding="utf-8") as out:
        for batch in _read(source, chunk_rows, keep="bad").iter_batches(batch_format="pyarrow"):
            batch = cast(pa.Table, batch)  # as batch_format says
            for line in batch.column("line").to_pylist():
                out.write(line + "\n")
                if len(first) < 5:
                    bad = json.loads(line)
                    first.append(f"row {bad['row']} (id {bad['id']!r}): {bad['reason']}")
            count += batch.num_rows
    return count, "; ".join(first)


class _RayFileNames(FilenameProvider):
    """Ray writes `part-ray-...` files, renamed `part-NNNNN.parquet` once the run is complete."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-ray-{write_uuid}-{task_index:06d}.parquet"


def _name_shards(output_dir: Path) -> list[str]:
    """Rename Ray's files to part-00000.parquet, ...; return the new names."""
    def natural(name: str) -> list[Any]:  # Ray numbers its files without padding them all
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    written = sorted((p.name for p in output_dir.glob("part-ray-*.parquet")), key=natural)
    names = [shard_name(k) for k in range(len(written))]
    for old, new in zip(written, names, strict=True):
        os.replace(output_dir / old, output_dir / new)
    return names


def _discard(output_dir: Path) -> None:
    """Remove what a failed run wrote, and `output_dir` too if that leaves it empty: nothing of
    anyone else's is touched."""
    for pattern in ("part-ray-*", f".{BAD_ROWS}.tmp", MANIFEST):
        for path in output_dir.glob(pattern):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        output_dir.rmdir()
