"""A corpus run's output directory: its manifest (`_manifest.json`), its list of bad rows
(`_bad_rows.jsonl`), and the checks made before a run writes there.

The manifest records what a run is made of (the input, the bundle, the shard size) and, once it
is complete, what it wrote. A rerun of the same run resumes it; a different run, an output in
another format, or files that are not a corpus run are refused, and `overwrite=True` starts again
after deleting only files a corpus run writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._errors import InputError
from .._manifest import Manifest
from ._readers import Source
from ._rows import BadRow

MANIFEST = "_manifest.json"  # "_": Arrow, Spark and Ray skip it when reading the folder as a dataset
BAD_ROWS = "_bad_rows.jsonl"
FORMAT = "fusembed-corpus"
VERSION = 2  # 2: bad rows listed per shard in a file, not its metadata
RAY = "ray"  # the `engine` of a run on Ray; a run in this process has none
_OURS = ("part-", MANIFEST, BAD_ROWS)  # what a run writes starts with these, or with "." and these


def bundle_record(bundle: Path, manifest: Manifest) -> dict[str, Any]:
    """The bundle as the manifest names it; a run that knows its variant adds it and its hash."""
    return {"path": str(bundle.resolve()), "model": manifest.source.model}


def run_record(source: Source, bundle: dict[str, Any], manifest: Manifest, *, shard_rows: int,
               on_bad_row: str, engine: str | None = None, prompt: str = "",
               dim: int | None = None) -> dict[str, Any]:
    """Everything a resumed run must share with the run it continues (`on_bad_row` aside): the
    prompt and dimension too, so that a resumed run never mixes vectors of two kinds."""
    stat = source.path.stat()
    return {
        "format": FORMAT, "version": VERSION, **({"engine": engine} if engine else {}),
        "input": {"path": str(source.path.resolve()), "format": source.format, "size": stat.st_size,
                  "mtime_ns": stat.st_mtime_ns, "text_field": source.text_field, "id_field": source.id_field},
        "bundle": bundle,
        "dim": dim or manifest.dim, "prompt": prompt,
        "normalized": manifest.normalized, "similarity": manifest.similarity,
        "shard_rows": shard_rows, "on_bad_row": on_bad_row,
    }


def prepare_output_dir(output_dir: Path, run: dict[str, Any], *, overwrite: bool) -> None:
    """Make `output_dir` ready for `run`: create it, or check that what it holds is an earlier
    attempt at the same run to resume (a run on Ray does not resume), or delete our files in it
    when `overwrite`. Files that are not a corpus run are never deleted.

    Raises:
        InputError: `output_dir` is a file, holds files that are not a corpus run, or holds a run
            this one cannot resume and `overwrite` is not set.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = output_dir / MANIFEST
    earlier: dict[str, Any] | None = None
    if manifest.is_file():
        try:
            earlier = json.loads(manifest.read_text())
        except ValueError:
            earlier = {}  # damaged: neither resumable nor a list of its files
    listed = {s.get("file") for s in (earlier or {}).get("shards", []) if isinstance(s, dict)}
    entries = list(output_dir.iterdir())
    ours = [p for p in entries if p.name.lstrip(".").startswith(_OURS) or p.name in listed]
    others = sorted(p.name for p in entries if p not in ours)
    if others:
        raise InputError(f"{output_dir}: holds files that are not a fusembed corpus "
                         f"({', '.join(others[:5])}); choose an empty or new directory")
    if overwrite:
        for p in ours:
            p.unlink()
        return
    if earlier is None:
        if ours:
            raise InputError(f"{output_dir}: has shards but no {MANIFEST}; pass overwrite=True "
                             "(--overwrite) to start again")
        return
    if run.get("engine") == RAY:
        raise InputError(f"{output_dir}: holds an earlier run, and runs on Ray do not resume; use another "
                         "directory, or overwrite=True (--overwrite) to start again")
    if (earlier.get("format"), earlier.get("version")) != (run["format"], run["version"]):
        raise InputError(f"{output_dir}: holds a run in another output format (written by another "
                         "fusembed version); use another directory, or overwrite=True (--overwrite) to "
                         "start again")
    if earlier.get("engine") == RAY:
        raise InputError(f"{output_dir}: holds a run made on Ray, which cannot be resumed; use another "
                         "directory, or overwrite=True (--overwrite) to start again")
    differs = [k for k in run if k != "on_bad_row" and earlier.get(k) != run[k]]
    if differs:
        raise InputError(f"{output_dir}: holds a run with a different {', '.join(differs)}; use another "
                         "directory, or overwrite=True (--overwrite) to start again")


def write_manifest(output_dir: Path, payload: dict[str, Any]) -> None:
    """Replace the manifest at once: a reader sees the old one or the new one, never half."""
    path = output_dir / MANIFEST
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_bad_rows(output_dir: Path) -> list[BadRow]:
    """The rows a finished run left out, with their ids and reasons."""
    path = output_dir / BAD_ROWS
    return [BadRow(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
