"""Corpus readers: every input row comes out once, with its text or the reason it has none."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fusembed import ArgumentError, InputError
from fusembed.corpus import Source


def rows(source: Source) -> list[tuple[int, object, str | None, str | None]]:
    return [tuple(r) for r in source.rows()]  # type: ignore[misc]


def test_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(b"first doc\r\n\n   \nbad \xff byte\nlast without newline")
    source = Source.open(path)
    assert source.format == "text" and source.count_rows() == 5
    assert rows(source) == [
        (0, 0, "first doc", None),
        (1, 1, None, "empty text"),
        (2, 2, None, "empty text"),
        (3, 3, None, "not valid UTF-8 (byte 4)"),
        (4, 4, "last without newline", None),
    ]


def test_jsonl_with_ids(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [
        {"id": "a", "text": "alpha"},
        {"id": 7, "body": "x"},
        {"text": "no id"},
        {"id": "c", "text": 3},
        {"id": [1], "text": "list id"},
        {"id": "d", "text": None},
    ]
    tail = (
        '\nnot json\n\n[1, 2]\n{"id": "e", "text": "x\\ud800"}\n'  # a JSON escape of a lone surrogate
        '{"id": "\\udc00f", "text": "x"}\n{"id": "g", "text": "  "}\n'
        '{"id": "h", "text": "x", "n": ' + "9" * 5000 + '}\n' + "[" * 100_000 + "]" * 100_000 + "\n"
    )
    path.write_text("\n".join(json.dumps(x) for x in lines) + tail)
    got = rows(Source.open(path, id_field="id"))
    assert got[0] == (0, "a", "alpha", None)
    assert got[1] == (1, "7", None, "no field 'text'")
    assert got[2][3] == "id field 'id' is missing"
    assert got[3][3] == "field 'text' is a int, not a string"
    assert got[4][3] == "id field 'id' is a list, not a string or integer"
    assert got[5][3] == "field 'text' is null"
    assert got[6][3].startswith("not valid JSON") and got[7][3] == "empty line"
    assert got[8][3] == "not a JSON object"
    assert got[9][3] == "not valid Unicode (a lone surrogate at position 1)"
    assert got[10] == (10, 10, None, "id field 'id' is not valid Unicode (a lone surrogate at position 0)")
    assert got[11] == (11, "g", None, "empty text")
    assert got[12] == (12, 12, None, "not readable JSON (ValueError)")  # an integer of 5000 digits
    assert got[13] == (13, 13, None, "not readable JSON (RecursionError)")
    assert [r[0] for r in got] == list(range(14))


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("docs.txt", {}, pa.int64()),
        ("docs.jsonl", {"id_field": "key"}, pa.string()),  # JSONL ids are written as strings
        ("docs.parquet", {"id_field": "key"}, pa.int32()),  # Parquet ids keep their column's type
        ("docs.parquet", {}, pa.int64()),
    ],
)
def test_the_id_type_of_the_output(
    tmp_path: Path, name: str, kwargs: dict[str, str], expected: object
) -> None:
    (tmp_path / "docs.txt").write_text("a\n")
    (tmp_path / "docs.jsonl").write_text('{"key": 1, "text": "a"}\n')
    pq.write_table(pa.table({"key": pa.array([1], pa.int32()), "text": ["a"]}), tmp_path / "docs.parquet")
    assert Source.open(tmp_path / name, **kwargs).id_type() == expected  # type: ignore[arg-type]


def test_jsonl_without_id_field_uses_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "docs.ndjson"
    path.write_text('{"body": "one"}\n{"body": "two"}\n')
    assert rows(Source.open(path, text_field="body")) == [(0, 0, "one", None), (1, 1, "two", None)]


def test_parquet_columns_nulls_and_binary(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    table = pa.table(
        {
            "doc_id": pa.array([10, 11, None, 13], pa.int64()),
            "body": pa.array([b"ok", b"\xff", b"fine", None], pa.binary()),
            "other": [1, 2, 3, 4],
        }
    )
    pq.write_table(table, path)
    source = Source.open(path, text_field="body", id_field="doc_id")
    assert source.count_rows() == 4
    assert rows(source) == [
        (0, 10, "ok", None),
        (1, 11, None, "not valid UTF-8 (byte 0)"),
        (2, 2, None, "id column 'doc_id' is null"),
        (3, 13, None, "field 'body' is null"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("missing.txt", None, {}, "no such file"),
        ("docs.parquet", b"not parquet at all", {}, "not a readable Parquet file"),
        ("ok.parquet", "table", {"text_field": "nope"}, "no column 'nope'"),
    ],
)
def test_unreadable_inputs(
    tmp_path: Path, name: str, content: object, kwargs: dict[str, str], message: str
) -> None:
    path = tmp_path / name
    if content == "table":
        pq.write_table(pa.table({"text": ["a"]}), path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        Source.open(path, **kwargs)  # type: ignore[arg-type]


def test_an_id_field_needs_jsonl_or_parquet(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(b"x\n")
    with pytest.raises(ArgumentError, match=r"^id_field needs JSONL or Parquet input; .*docs.txt is read as "
                       "text") as caught:
        Source.open(path, id_field="id")
    assert caught.value.param == "id_field"


def test_a_directory_is_not_an_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        Source.open(tmp_path)


def test_a_str_path_opens_and_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_bytes(b"x\n")
    assert Source.open(str(path)).path == path
    message = r"^format must be one of text, jsonl, parquet or None .*'csv'"
    with pytest.raises(ArgumentError, match=message) as caught:
        Source.open(path, format="csv")  # type: ignore[arg-type]
    assert caught.value.param == "format"
