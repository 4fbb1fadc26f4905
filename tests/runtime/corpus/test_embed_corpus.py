"""`embed-corpus`: shards hold every good row once, in input order, equal to `Encoder.encode`;
bad rows fail or are listed; a killed run resumes without redoing finished shards."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fusembed import ArgumentError, Encoder, InputError
from fusembed._bench import builtin_texts
from fusembed.corpus import CorpusOptions, Source, embed_corpus, read_bad_rows

EMBED_CORPUS = [sys.executable, "-m", "fusembed", "embed-corpus"]


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> Encoder:
    return Encoder(tiny_bundle)


def read_output(out: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
    return table.column("id").to_pylist(), vectors.reshape(table.num_rows, -1)


def test_text_jsonl_and_parquet(tmp_path: Path, encoder: Encoder) -> None:
    texts = builtin_texts(700, seed=4)
    (tmp_path / "docs.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"key": f"d{i}", "body": t}) + "\n" for i, t in enumerate(texts))
    )
    pq.write_table(pa.table({"key": list(range(100, 800)), "body": texts}), tmp_path / "docs.parquet")
    expected = encoder.encode(texts)
    cases = [
        ("docs.txt", {}, list(range(700))),
        ("docs.jsonl", {"text_field": "body", "id_field": "key"}, [f"d{i}" for i in range(700)]),
        ("docs.parquet", {"text_field": "body", "id_field": "key"}, list(range(100, 800))),
    ]
    for name, fields, ids in cases:
        out = tmp_path / f"out-{name}"
        report = embed_corpus(
            Source.open(tmp_path / name, **fields),
            out,
            encoder,  # type: ignore[arg-type]
            CorpusOptions(shard_rows=300, chunk_rows=128),
        )
        assert (report.rows_in, report.rows_written, report.bad_rows, report.shards) == (700, 700, 0, 3)
        got_ids, vectors = read_output(out)
        assert got_ids == ids
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
        schema = pq.read_schema(out / "part-00000.parquet")
        assert schema.field("embedding").type == pa.list_(pa.float32(), encoder.dim)
        manifest = json.loads((out / "_manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["dim"] == encoder.dim
        assert manifest["rows_written"] == 700 and manifest["bundle"]["variant"] == encoder.precision
        assert [s["rows_in"] for s in manifest["shards"]] == [300, 300, 100]


def test_bad_rows_fail_then_a_rerun_with_skip_lists_them(tmp_path: Path, encoder: Encoder) -> None:
    lines = [f"document {i}" for i in range(50)]
    lines[31], lines[45] = "", "  "
    path = tmp_path / "docs.txt"
    path.write_bytes("\n".join(lines[:40]).encode() + b"\n\xc3\x28 broken\n" + "\n".join(lines[41:]).encode())
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"row 31 \(id 31\): empty text.*on_bad_row='skip'"):
        embed_corpus(Source.open(path), out, encoder, CorpusOptions(shard_rows=30, chunk_rows=8))
    assert [p.name for p in out.glob("part-*")] == ["part-00000.parquet"]  # rows 0-29 were fine: kept

    report = embed_corpus(
        Source.open(path), out, encoder, CorpusOptions(shard_rows=30, chunk_rows=8, on_bad_row="skip")
    )
    assert (report.rows_in, report.rows_written, report.bad_rows, report.shards_resumed) == (50, 47, 3, 1)
    assert [(b.row, b.id, b.reason) for b in read_bad_rows(out)] == [
        (31, 31, "empty text"),
        (40, 40, "not valid UTF-8 (byte 0)"),
        (45, 45, "empty text"),
    ]
    ids, vectors = read_output(out)
    assert ids == [i for i in range(50) if i not in (31, 40, 45)]
    np.testing.assert_allclose(vectors[30:35], encoder.encode(lines[30:31] + lines[32:36]), atol=1e-5)


def test_bad_rows_are_listed_per_shard_and_gathered_in_row_order(tmp_path: Path, encoder: Encoder) -> None:
    lines = [f"document {i}" if i % 7 else "" for i in range(100)]  # rows 0, 7, 14, ... are empty
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    options = CorpusOptions(shard_rows=25, chunk_rows=10, on_bad_row="skip")
    expected = [(i, i, "empty text") for i in range(0, 100, 7)]

    report = embed_corpus(Source.open(path), out, encoder, options)

    assert report.bad_rows == len(expected) == json.loads((out / "_manifest.json").read_text())["bad_rows"]
    assert [(b.row, b.id, b.reason) for b in read_bad_rows(out)] == expected
    shard_lists = sorted(p.name for p in out.glob("_bad_rows.jsonl.*"))
    assert shard_lists == [f"_bad_rows.jsonl.part-0000{k}" for k in range(4)]
    first = [json.loads(line)["row"] for line in (out / shard_lists[0]).read_text().splitlines()]
    assert first == [0, 7, 14, 21]
    # Read as a dataset, the folder is the shards alone: the lists start with `_`.
    assert sorted(pq.ParquetDataset(out).files) == [str(out / f"part-0000{k}.parquet") for k in range(4)]

    # A lost shard is redone; its list is written again, and the gathered file is the same.
    (out / "part-00002.parquet").unlink()
    (out / "_bad_rows.jsonl.part-00002").unlink()
    again = embed_corpus(Source.open(str(path)), str(out), encoder, options)  # str paths work too
    assert (again.shards_resumed, again.bad_rows) == (2, len(expected))
    assert [(b.row, b.id, b.reason) for b in read_bad_rows(out)] == expected

    # A shard whose list went missing is redone too, rather than its bad rows going unreported.
    (out / "_bad_rows.jsonl.part-00001").unlink()
    third = embed_corpus(Source.open(path), out, encoder, options)
    assert (third.shards_resumed, third.bad_rows) == (1, len(expected))
    assert [(b.row, b.id, b.reason) for b in read_bad_rows(out)] == expected


def test_a_shard_without_bad_rows_leaves_no_list(tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("".join(f"document {i}\n" for i in range(30)))
    out = tmp_path / "out"
    options = CorpusOptions(shard_rows=20, on_bad_row="skip")
    embed_corpus(Source.open(path), out, encoder, options)
    assert not list(out.glob("_bad_rows.jsonl.*")) and read_bad_rows(out) == []
    # As a run stopped between the two renames leaves it: the list in place, its shard not.
    (out / "part-00000.parquet").unlink()
    (out / "_bad_rows.jsonl.part-00000").write_text('{"row": 3, "id": 3, "reason": "stale"}\n')

    report = embed_corpus(Source.open(path), out, encoder, options)

    assert (report.shards_resumed, report.bad_rows) == (0, 0) and read_bad_rows(out) == []
    assert not list(out.glob("_bad_rows.jsonl.*"))


def test_output_of_another_format_version_is_refused(tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("one\ntwo\n")
    out = tmp_path / "out"
    embed_corpus(Source.open(path), out, encoder)
    manifest = json.loads((out / "_manifest.json").read_text())
    (out / "_manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(InputError, match=r"another output format .* overwrite=True"):
        embed_corpus(Source.open(path), out, encoder)
    assert embed_corpus(Source.open(path), out, encoder, CorpusOptions(overwrite=True)).rows_written == 2


def test_a_killed_run_resumes_and_writes_every_row_once(tmp_path: Path, encoder: Encoder) -> None:
    texts = builtin_texts(40_000, seed=6)
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out"
    argv = [
        *EMBED_CORPUS,
        str(path),
        str(out),
        "--bundle",
        str(encoder.bundle),
        "--shard-rows",
        "2000",
        "--no-progress",
    ]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900  # generous: only a very slow machine gets near it
    while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; use more rows"
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert len(finished) >= 3
    assert json.loads((out / "_manifest.json").read_text())["status"] == "running"

    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} kept from an earlier run" in result.stderr
    for name, mtime in finished.items():  # finished shards were not rewritten
        assert (out / name).stat().st_mtime_ns == mtime
    assert not list(out.glob(".*.tmp"))
    ids, vectors = read_output(out)
    assert ids == list(range(40_000))  # every row exactly once, in order
    sample = np.random.default_rng(0).choice(40_000, 300, replace=False)
    np.testing.assert_allclose(vectors[sample], encoder.encode([texts[i] for i in sample]), atol=1e-5)
    assert json.loads((out / "_manifest.json").read_text())["status"] == "complete"


def test_output_dir_guards(tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("one\ntwo\nthree\n")
    out = tmp_path / "out"
    embed_corpus(Source.open(path), out, encoder)
    path.write_text("one\ntwo\nthree\nfour\n")  # the input changed: no silent mix of two inputs
    with pytest.raises(InputError, match="different input"):
        embed_corpus(Source.open(path), out, encoder)
    report = embed_corpus(Source.open(path), out, encoder, CorpusOptions(overwrite=True))
    assert report.rows_written == 4 and report.shards_resumed == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a fusembed corpus"):
        embed_corpus(Source.open(path), foreign, encoder, CorpusOptions(overwrite=True))
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shard_rows", 0, "shard_rows must be a positive int, got 0"),
        ("chunk_rows", 2.5, "chunk_rows must be a positive int, got 2.5"),
        ("batch_size", True, "batch_size must be a positive int or None, got True"),
        ("on_bad_row", "drop", "on_bad_row must be 'fail' or 'skip', got 'drop'"),
        ("progress", "x", "progress must be True or False, got 'x'"),
        ("overwrite", 1, "overwrite must be True or False, got 1"),
    ],
)
def test_options_are_checked_when_made(field: str, value: object, message: str) -> None:
    with pytest.raises(ArgumentError, match=re.escape(message)) as caught:
        CorpusOptions(**{field: value})  # type: ignore[arg-type]
    assert caught.value.param == field


def test_empty_input_writes_an_empty_complete_run(tmp_path: Path, encoder: Encoder) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    report = embed_corpus(Source.open(path), tmp_path / "out", encoder)
    assert (report.rows_in, report.shards) == (0, 0)
    assert json.loads((tmp_path / "out" / "_manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ([], 2, "--bundle"),
        (["--bundle", "BUNDLE", "--shard-rows", "0"], 2, "--shard-rows"),
        (["--bundle", "no/such/bundle"], 1, "no/such/bundle"),
    ],
)
def test_command_line_mistakes(
    tmp_path: Path, tiny_bundle: Path, extra: list[str], code: int, message: str
) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("one\n")
    argv = [
        *EMBED_CORPUS,
        str(path),
        str(tmp_path / "out"),
        *[str(tiny_bundle) if a == "BUNDLE" else a for a in extra],
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["embed-corpus", "IN", "OUT", "--bundle", "BUNDLE"], "pyarrow", "fusembed[corpus]"),
        (
            ["embed-corpus", "IN", "OUT", "--bundle", "BUNDLE", "--ray", "--id-field", "id"],
            "ray",
            "fusembed[ray]",
        ),
    ],
)
def test_without_the_extra_the_error_names_it(
    tmp_path: Path, tiny_bundle: Path, argv: list[str], blocked: str, extra: str
) -> None:
    from tests.blocker import run_blocked

    (tmp_path / "in.jsonl").write_text('{"id": 1, "text": "a"}\n')
    names = {"IN": str(tmp_path / "in.jsonl"), "OUT": str(tmp_path / "out"), "BUNDLE": str(tiny_bundle)}
    result = run_blocked(
        """
        import sys
        from fusembed.cli import main
        sys.exit(main(sys.argv[1:]))
        """,
        *[names.get(a, a) for a in argv],
        blocked=(blocked,),
    )
    assert result.returncode == 1, result.stderr
    assert f"pip install '{extra}'" in result.stderr and "Traceback" not in result.stderr
