"""Reading texts from files: a whole file at once, for `encode`, `search` and `bench`.

The corpus readers (`fusembed.corpus`) stream rows instead, one at a time with the reason a row
cannot be embedded, because a corpus may not fit in memory and one bad row must not stop it. Here a
bad line stops the command with its line number: the input is small and the user is watching.
Both decide the format the same way (`format_of`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from ._errors import InputError

InputFormat = Literal["text", "jsonl", "parquet"]
STDIO = "-"  # as a file name: standard input or output
_BY_SUFFIX: dict[str, InputFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def format_of(path: Path) -> InputFormat:
    """The input format a file's suffix names; anything else is text, one document per line."""
    return _BY_SUFFIX.get(path.suffix.lower(), "text")


def read_texts(path: Path, field: str = "text") -> list[str]:
    """Texts from a file: JSONL (*.jsonl, *.ndjson) with `field`, else one text per line.
    `-` is standard input, one text per line. Empty lines are texts too (they embed as "").

    Raises:
        InputError: the file cannot be read, is not UTF-8, is Parquet, or a JSONL line is not an
            object whose `field` is a string (the message gives the line number).
    """
    if str(path) == STDIO:
        raw = sys.stdin.buffer.read()
        path = Path("standard input")  # for the messages below; no suffix, so one text per line
    else:
        raw = _read_bytes(path)
    if format_of(path) == "parquet":
        raise InputError(f"{path}: Parquet input is read by embed-corpus; here give text or JSONL")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start})") from None
    lines = text.splitlines()
    if format_of(path) == "text":
        return lines
    texts: list[str] = []
    for number, row in enumerate(lines, 1):
        if not row.strip():
            raise InputError(f"{path}: line {number} is empty; JSONL needs one object per line")
        try:
            record = json.loads(row)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # an integer too long, or nesting too deep
            raise InputError(f"{path}: line {number} is not readable JSON ({type(exc).__name__})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object ({type(record).__name__})")
        if field not in record:
            raise InputError(f"{path}: line {number} has no field {field!r}")
        if not isinstance(record[field], str):
            raise InputError(
                f"{path}: line {number}: field {field!r} is {type(record[field]).__name__}, expected a string"
            )
        texts.append(record[field])
    return texts


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a text file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
