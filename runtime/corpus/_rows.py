"""The one rule for corpus rows: can a row be embedded, and if not, why.

Both corpus runs read rows through these functions (the streaming run in this process, and the
run on Ray, whose read tasks use the same readers), so a row is judged the same way on both.
A row cannot be embedded when:

- its text is missing, null, not a string, empty or only whitespace;
- its bytes are not UTF-8, or its text holds a lone surrogate (JSON's "\\ud800" escape);
- its JSONL line is empty, not JSON, or not a JSON object;
- its id (when the input has an id field) is missing, null, not a string or integer, or holds a
  lone surrogate.

Its `Row` then carries the reason (`problem`) and no text; what to do with it is the run's policy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from .._text import surrogate_at


class Row(NamedTuple):
    row: int  # 0-based position in the input
    id: object  # the id field's value, or `row` when the input has no id field or the id is bad
    text: str | None  # None when the row cannot be embedded
    problem: str | None  # why this row cannot be embedded; None when it can


@dataclass(frozen=True)
class BadRow:
    """A row a run left out, as `_bad_rows.jsonl` lists it."""

    row: int
    id: Any
    reason: str


MISSING = object()  # a field the record does not have, as distinct from one that is null


def text_row(number: int, row_id: object, value: object, field: str) -> Row:
    """The row whose text is `value` (MISSING when the record has no `field`): its text, or why
    it has none. Bytes count as text only if they are UTF-8."""
    if value is MISSING:
        return Row(number, row_id, None, f"no field {field!r}")
    if isinstance(value, bytes):  # a line of a text file, or a Parquet binary column
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
    if (at := surrogate_at(value)) is not None:
        return Row(number, row_id, None, f"not valid Unicode (a lone surrogate at position {at})")
    return Row(number, row_id, value, None)


def json_row(number: int, line: bytes, text_field: str, id_field: str | None) -> Row:
    """The row of one JSONL line (without its line ending)."""
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Row(number, number, None, f"not valid UTF-8 (byte {exc.start})")
    if not decoded.strip():
        return Row(number, number, None, "empty line")
    try:
        record = json.loads(decoded)
    except json.JSONDecodeError as exc:
        return Row(number, number, None, f"not valid JSON ({exc.msg})")
    except (ValueError, RecursionError) as exc:  # an integer too long, or nesting too deep
        return Row(number, number, None, f"not readable JSON ({type(exc).__name__})")
    if not isinstance(record, dict):
        return Row(number, number, None, "not a JSON object")
    row_id: object = number
    if id_field is not None:
        value = record.get(id_field)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            why = "missing" if value is None else f"a {type(value).__name__}, not a string or integer"
            return Row(number, number, None, f"id field {id_field!r} is {why}")
        row_id = str(value)
        if (at := surrogate_at(row_id)) is not None:  # it could not be written as UTF-8
            return Row(number, number, None,
                       f"id field {id_field!r} is not valid Unicode (a lone surrogate at position {at})")
    return text_row(number, row_id, record.get(text_field, MISSING), text_field)


def parquet_row(number: int, row_id: object, value: object, text_field: str, id_field: str | None) -> Row:
    """The row of one Parquet record: `row_id` is the id column's value (`number` without one)."""
    if row_id is None:
        return Row(number, number, None, f"id column {id_field!r} is null")
    return text_row(number, row_id, value, text_field)


def bad_row_line(row: Row) -> str:
    """A row that cannot be embedded, as one line of `_bad_rows.jsonl` (without the newline)."""
    return json.dumps(asdict(BadRow(row.row, row.id, row.problem or "")), ensure_ascii=False, default=str)
