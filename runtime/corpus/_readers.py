"""Streaming readers for corpus files: one `Row` per input row, read lazily, never the whole file.

Every input row comes out exactly once, either with its text or with the reason it cannot be
embedded (`problem`): an empty text, bytes that are not UTF-8, a line that is not JSON, a missing
or non-string field. Deciding what to do with those is the caller's policy, not the reader's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .._errors import InputError
from .._text import surrogate_at

InputFormat = Literal["text", "jsonl", "parquet"]
_BY_SUFFIX: dict[str, InputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class Row(NamedTuple):
    row: int  # 0-based position in the input
    id: object  # the id field's value, or `row` when the input has no id field
    text: str | None
    problem: str | None  # why this row cannot be embedded; None when it can


@dataclass(frozen=True)
class Source:
    """What to read: the file, its format and the fields that hold the text and the id."""

    path: Path
    format: InputFormat
    text_field: str = "text"
    id_field: str | None = None

    @classmethod
    def open(cls, path: Path, *, format: InputFormat | None = None, text_field: str = "text",
             id_field: str | None = None) -> Source:
        """Check the file can be read and, for Parquet, that the named columns exist."""
        if not path.is_file():
            raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        chosen = format or _BY_SUFFIX.get(path.suffix.lower(), "text")
        if chosen == "text" and id_field is not None:
            raise InputError("--id-field needs JSONL or Parquet input; a text file's ids are its row numbers")
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

    def _parquet(self) -> Any:  # a pyarrow.parquet.ParquetFile; pyarrow is an optional dependency
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError for damaged files
            raise InputError(f"{self.path}: not a readable Parquet file ({exc})") from None

    def _line_rows(self) -> Iterator[Row]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh):
                line = raw.rstrip(b"\n").rstrip(b"\r")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Row(number, number, None, f"not valid UTF-8 (byte {exc.start})")
                    continue
                if self.format == "text":
                    yield Row(number, number, text, None if text.strip() else "empty text")
                else:
                    yield self._json_row(number, text)

    def _json_row(self, number: int, line: str) -> Row:
        if not line.strip():
            return Row(number, number, None, "empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return Row(number, number, None, f"not valid JSON ({exc.msg})")
        if not isinstance(record, dict):
            return Row(number, number, None, "not a JSON object")
        row_id: object = number
        if self.id_field is not None:
            value = record.get(self.id_field)
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                why = "missing" if value is None else f"a {type(value).__name__}, not a string or integer"
                return Row(number, number, None, f"id field {self.id_field!r} is {why}")
            row_id = str(value)
        return _checked(number, row_id, record.get(self.text_field, _MISSING), self.text_field)

    def _parquet_rows(self) -> Iterator[Row]:
        columns = [self.text_field] + ([self.id_field] if self.id_field else [])
        number = 0
        for batch in self._parquet().iter_batches(batch_size=8192, columns=columns):
            texts = batch.column(self.text_field).to_pylist()
            ids = batch.column(self.id_field).to_pylist() if self.id_field else None
            for i, value in enumerate(texts):
                row_id = ids[i] if ids is not None else number
                if row_id is None:
                    yield Row(number, number, None, f"id column {self.id_field!r} is null")
                else:
                    yield _checked(number, row_id, value, self.text_field)
                number += 1


_MISSING = object()


def _checked(number: int, row_id: object, value: object, field: str) -> Row:
    if value is _MISSING:
        return Row(number, row_id, None, f"no field {field!r}")
    if isinstance(value, bytes):  # a Parquet binary column: text only if it is UTF-8
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Row(number, row_id, None, f"not valid UTF-8 (byte {exc.start})")
    if value is None:
        return Row(number, row_id, None, f"field {field!r} is null")
    if not isinstance(value, str):
        return Row(number, row_id, None, f"field {field!r} is a {type(value).__name__}, not a string")
    if not value.strip():
        return Row(number, row_id, None, "empty text")
    if (at := surrogate_at(value)) is not None:  # JSON's "\ud800" escape decodes to one
        return Row(number, row_id, None, f"not valid Unicode (a lone surrogate at position {at})")
    return Row(number, row_id, value, None)
