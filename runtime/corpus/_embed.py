"""`embed_corpus`: the streaming run in this process, its options and its report."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._encoder import Encoder
from .._errors import ArgumentError, InputError, check_positive_int
from .._progress import Progress
from ._manifest import BAD_ROWS, bundle_record, prepare_output_dir, run_record, write_manifest
from ._readers import Source
from ._shards import gather_bad_rows, output_schema, shard_info, shard_name, write_shard


@dataclass(frozen=True)
class CorpusOptions:
    """How a corpus run behaves, in this process (`embed_corpus`) or on Ray
    (`fusembed.ray.embed_corpus_with_ray`).

    Attributes:
        shard_rows: input rows per output shard (the unit of resuming). On Ray, where runs do
            not resume, the most rows one output file holds.
        chunk_rows: rows read, embedded and written at once (bounds memory); on Ray, also the rows
            handed to an actor at once.
        on_bad_row: "fail" stops at the first row that cannot be embedded (finished shards are
            kept); "skip" leaves it out of the shards and lists it in _bad_rows.jsonl.
        batch_size: texts per model call, as in `Encoder.encode` (None: its device's default).
        progress: draw a progress bar (rows, rows/s, time left) on stderr; on Ray, Ray Data's.
        overwrite: delete an earlier run's output in OUTPUT_DIR instead of resuming it.

    Raises:
        ArgumentError: a count that is not a positive int, or an unknown `on_bad_row`.
    """

    shard_rows: int = 50_000
    chunk_rows: int = 4096
    on_bad_row: Literal["fail", "skip"] = "fail"
    batch_size: int | None = None
    progress: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("shard_rows", "chunk_rows", "batch_size"):
            check_positive_int(name, getattr(self, name), none_ok=name == "batch_size")
        if self.on_bad_row not in ("fail", "skip"):
            raise ArgumentError("on_bad_row", f"must be 'fail' or 'skip', got {self.on_bad_row!r}")
        for name in ("progress", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentError(name, f"must be True or False, got {getattr(self, name)!r}")


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


def embed_corpus(source: Source, output_dir: str | Path, encoder: Encoder,
                 options: CorpusOptions | None = None) -> CorpusReport:
    """Embed every row of `source` into Parquet shards in `output_dir`; see `fusembed.corpus`.

    Raises:
        InputError: a bad row under on_bad_row="fail" (its row, id and reason), or an
            output_dir that holds something else: another run's output, or files not ours.
    """
    options = options or CorpusOptions()
    output_dir = Path(output_dir)
    started = time.perf_counter()
    bundle = {**bundle_record(encoder.bundle, encoder.manifest), "variant": encoder.precision,
              "sha256": encoder.manifest.files[encoder.variant.file]}
    run = run_record(source, bundle, encoder.manifest, shard_rows=options.shard_rows,
                     on_bad_row=options.on_bad_row, prompt=encoder.prompt_for(), dim=encoder.dim)
    prepare_output_dir(output_dir, run, overwrite=options.overwrite)
    write_manifest(output_dir, {**run, "status": "running"})

    total = source.count_rows()
    schema = output_schema(source.id_type(), encoder.dim)
    rows = source.rows()
    shard_files: list[str] = []
    done_before = 0
    # Shards an earlier run finished are kept: their rows are read past, not embedded again.
    while (finished := shard_info(output_dir / shard_name(len(shard_files)))) is not None:
        consumed = sum(1 for _ in itertools.islice(rows, options.shard_rows))
        if consumed != finished["rows_in"]:
            raise InputError(f"{output_dir / shard_name(len(shard_files))} holds {finished['rows_in']} "
                             f"input rows but the input now has {consumed} there; start again with "
                             "overwrite=True (--overwrite)")
        shard_files.append(shard_name(len(shard_files)))
        done_before += consumed
    resumed = len(shard_files)
    progress = Progress(total, unit="rows", done=done_before) if options.progress else None

    while (first := next(rows, None)) is not None:
        shard, name = len(shard_files), shard_name(len(shard_files))
        shard_rows = itertools.chain([first], itertools.islice(rows, options.shard_rows - 1))
        write_shard(output_dir / name, shard, shard_rows, schema, encoder, chunk_rows=options.chunk_rows,
                    batch_size=options.batch_size, on_bad_row=options.on_bad_row, progress=progress)
        shard_files.append(name)

    infos = [shard_info(output_dir / name) for name in shard_files]
    bad = gather_bad_rows(output_dir, shard_files, infos)
    rows_in = sum(info["rows_in"] for info in infos if info)
    rows_written = sum(info["rows_written"] for info in infos if info)
    write_manifest(output_dir, {
        **run, "status": "complete", "rows_in": rows_in, "rows_written": rows_written,
        "bad_rows": bad, "bad_rows_file": BAD_ROWS,
        "shards": [{"file": n, "first_row": i["first_row"], "rows_in": i["rows_in"],
                    "rows_written": i["rows_written"]} for n, i in zip(shard_files, infos, strict=True) if i],
    })
    return CorpusReport(output_dir, rows_in, rows_written, bad, len(shard_files), resumed,
                        time.perf_counter() - started, shard_files)
