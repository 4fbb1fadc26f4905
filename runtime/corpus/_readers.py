"""Streaming readers for corpus files: one `Row` per input row, read lazily, never the whole file.

Every input row comes out exactly once, in order, either with its text or with the reason it
cannot be embedded; the reasons are decided in `_rows`, the one rule both corpus runs share.
Deciding what to do with a bad row is the caller's policy, not the reader's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from .._errors import ArgumentError, InputError
from .._readers import InputFormat, format_of
from ._rows import Row, json_row, parquet_row, text_row


@dataclass(frozen=True)
class Source:
    """What to read: the file, its format and the fields that hold the text and the id."""

    path: Path
    format: InputFormat
    text_field: str = "text"
    id_field: str | None = None

    @classmethod
    def open(cls, path: str | Path, *, format: InputFormat | None = None, text_field: str = "text",
             id_field: str | None = None) -> Source:
        """Check the file can be read and, for Parquet, that the named columns exist.

        Raises:
            InputError: the file is missing, unreadable, or (Parquet) lacks a named column.
            ArgumentError: a `format` other than "text", "jsonl" or "parquet", or `id_field` for
                a text file, whose ids are its row numbers.
        """
        if format is not None and format not in get_args(InputFormat):
            raise ArgumentError("format", f"must be one of {', '.join(get_args(InputFormat))} or None "
                                f"(from the file's suffix), got {format!r}")
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        chosen = format or format_of(path)
        if chosen == "text" and id_field is not None:
            raise ArgumentError("id_field", f"needs JSONL or Parquet input; {path} is read as text, "
                                "whose ids are its row numbers")
        source = cls(path, chosen, text_field, id_field)
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
        if chosen == "parquet":
            columns = source._parquet().schema_arrow.names
            for field in (text_field, id_field):
                if field is not None and field not in columns:
                    raise InputError(f"{path}: no column {field!r}; it has {columns}")
        return source

    def count_rows(self) -> int:
        """Rows in the input, for the progress bar: Parquet's metadata, or a fast newline count."""
        if self.format == "parquet":
            return int(self._parquet().metadata.num_rows)
        count, last = 0, b"\n"
        with self.path.open("rb") as fh:
            while block := fh.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
        return count + (last != b"\n")  # a last line without its newline still counts

    def rows(self) -> Iterator[Row]:
        if self.format == "parquet":
            return self._parquet_rows()
        return self._line_rows()

    def id_type(self) -> Any:  # a pyarrow.DataType; pyarrow is an optional dependency
        """The Arrow type of the output's id column: the row number (int64) without an id field,
        a string for JSONL (where ids are written as strings), the column's own type for Parquet."""
        import pyarrow as pa

        if self.id_field is None:
            return pa.int64()
        if self.format == "jsonl":
            return pa.string()
        return self._parquet().schema_arrow.field(self.id_field).type

    def _parquet(self) -> Any:  # a pyarrow.parquet.ParquetFile
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError for damaged files
            raise InputError(f"{self.path}: not a readable Parquet file ({exc})") from None

    def _line_rows(self) -> Iterator[Row]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh):
                line = raw.rstrip(b"\n").rstrip(b"\r")
                if self.format == "text":
                    yield text_row(number, number, line, self.text_field)
                else:
                    yield json_row(number, line, self.text_field, self.id_field)

    def _parquet_rows(self) -> Iterator[Row]:
        columns = [self.text_field] + ([self.id_field] if self.id_field else [])
        number = 0
        for batch in self._parquet().iter_batches(batch_size=8192, columns=columns):
            texts = batch.column(self.text_field).to_pylist()
            ids = batch.column(self.id_field).to_pylist() if self.id_field else None
            for i, value in enumerate(texts):
                row_id = ids[i] if ids is not None else number
                yield parquet_row(number, row_id, value, self.text_field, self.id_field)
                number += 1
