"""`fusembed embed-corpus`: embed a corpus file into Parquet shards, streaming and resumable.

Needs pyarrow (`pip install 'fusembed[corpus]'`).

The input is read row by row and embedded a chunk at a time, and each shard is written a row
group at a time, so memory stays flat whatever the corpus size. Shard k holds input rows
[k * shard_rows, (k + 1) * shard_rows); it is written to a temporary file and renamed when
complete, so after an interruption a rerun skips the shards that exist, redoes the one that was
being written, and the output holds every row exactly once. `fusembed.ray.embed_corpus_with_ray`
runs the same on Ray Data, with the same readers, bad-row rule and output directory.

Where things are: `_readers` (reading the input formats), `_rows` (the one rule for rows that cannot be
embedded), `_manifest` (the output directory: manifest, bad-row list, resume and overwrite),
`_shards` (the shard files), `_embed` (the run itself).

Example:
    >>> from fusembed import Encoder                                         # doctest: +SKIP
    >>> from fusembed.corpus import CorpusOptions, Source, embed_corpus      # doctest: +SKIP
    >>> embed_corpus(Source.open(Path("docs.jsonl"), id_field="id"), Path("out"),
    ...              Encoder("bundles/all-MiniLM-L6-v2"))                    # doctest: +SKIP
"""

from __future__ import annotations

try:
    import pyarrow.parquet  # noqa: F401  (imported to check the extra is installed)
except ImportError as exc:
    raise ImportError(
        f"embed-corpus needs pyarrow ({exc.name} is not installed): pip install 'fusembed[corpus]'"
    ) from None

from .._readers import InputFormat, format_of
from ._embed import CorpusOptions, CorpusReport, embed_corpus
from ._manifest import BAD_ROWS, MANIFEST, read_bad_rows
from ._readers import Source
from ._rows import BadRow, Row

__all__ = [
    "BAD_ROWS",
    "MANIFEST",
    "BadRow",
    "CorpusOptions",
    "CorpusReport",
    "InputFormat",
    "Row",
    "Source",
    "embed_corpus",
    "format_of",
    "read_bad_rows",
]
