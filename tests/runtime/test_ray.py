"""fusembed.ray on a local Ray cluster (loopback, 2 CPUs): ids and vectors against a local encode,
the bundle shipped through the object store, and `embed_corpus_with_ray`: every corpus option
honoured, and bad rows judged exactly as the streaming corpus run judges them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fusembed import ArgumentError, BundleError, Encoder, InputError
from fusembed._bench import builtin_texts
from fusembed.corpus import CorpusOptions, Source, embed_corpus, read_bad_rows

ray = pytest.importorskip("ray")  # the ray extra; CI installs it with the dev extra
from fusembed.ray import EmbedActor, RayOptions, embed_corpus_with_ray, embed_dataset  # noqa: E402

pytestmark = [
    # Ray Data reads its own deprecated settings when it plans a dataset and warns about itself.
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\..*"),
    # A corpus smaller than a chunk per actor gives some actors nothing to do, and Ray says so.
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
]
# The cluster has 2 CPUs: two actors at half a CPU each leave one for the task that reads.
SMALL = RayOptions(workers=2, cpus_per_worker=0.5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def as_arrays(rows: list[dict[str, object]]) -> tuple[list[object], np.ndarray]:
    rows = sorted(rows, key=lambda r: r["id"])  # type: ignore[arg-type,return-value]
    return [r["id"] for r in rows], np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in rows])


def read_output(out: Path) -> tuple[list[object], np.ndarray]:
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
    return table.column("id").to_pylist(), vectors.reshape(table.num_rows, -1)


def bad_rows(out: Path) -> list[tuple[int, object, str]]:
    return sorted((b.row, b.id, b.reason) for b in read_bad_rows(out))


def test_embed_dataset_matches_a_local_encode(cluster: None, minilm_bundle: Path) -> None:
    texts = builtin_texts(3000, seed=8)
    ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
    out = embed_dataset(ds, minilm_bundle, concurrency=2, num_cpus=0.5, rows_per_batch=256)
    ids, vectors = as_arrays(out.take_all())
    assert ids == list(range(3000))
    local = Encoder(minilm_bundle).encode(texts)
    cosine = (vectors * local).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(local, axis=1)
    assert cosine.min() >= 0.99999


def test_ship_bundle_through_the_object_store(cluster: None, tiny_bundle: Path) -> None:
    texts = builtin_texts(200, seed=9)
    ds = ray.data.from_items([{"id": i, "body": t} for i, t in enumerate(texts)])
    out = embed_dataset(
        ds,
        tiny_bundle,
        text_column="body",
        output_column="vec",
        concurrency=1,
        num_cpus=0.5,
        ship_bundle=True,
    )
    rows = sorted(out.take_all(), key=lambda r: r["id"])
    got = np.stack([np.asarray(r["vec"], dtype=np.float32) for r in rows])
    np.testing.assert_allclose(got, Encoder(tiny_bundle).encode(texts), atol=1e-5)


def test_clear_errors_before_any_work(cluster: None, tiny_bundle: Path, tmp_path: Path) -> None:
    ds = ray.data.from_items([{"text": "a"}])
    with pytest.raises(InputError, match="no column 'body'"):
        embed_dataset(ds, tiny_bundle, text_column="body")
    with pytest.raises(Exception, match="manifest"):
        embed_dataset(ds, tmp_path)  # not a bundle
    with pytest.raises(ArgumentError, match="concurrency must be a positive int, got 0"):
        embed_dataset(ds, tiny_bundle, concurrency=0)
    with pytest.raises(ArgumentError, match="'cuda' needs num_gpus above 0"):
        embed_dataset(ds, tiny_bundle, device="cuda")
    with pytest.raises(ArgumentError, match="threads must be a positive int or None, got 0"):
        embed_dataset(ds, tiny_bundle, threads=0)


def write_corpus(path: Path, texts: list[str], broken: dict[int, dict[str, Any] | None]) -> None:
    """`texts` as JSONL with ids d0, d1, ...; the rows in `broken` replaced (None: a null text)."""
    records: list[dict[str, Any]] = [{"doc": f"d{i}", "text": t} for i, t in enumerate(texts)]
    for i, record in broken.items():
        records[i] = record if record is not None else {"doc": f"d{i}", "text": None}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_embed_corpus_with_ray(cluster: None, tiny_bundle: Path, tmp_path: Path) -> None:
    texts = builtin_texts(2000, seed=10)
    write_corpus(tmp_path / "docs.jsonl", texts, {5: {"doc": "d5", "text": ""}, 9: None})
    source = Source.open(tmp_path / "docs.jsonl", id_field="doc")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"^2 rows cannot be embedded \(row 5 \(id 'd5'\): empty text; "
                       r"row 9 \(id 'd9'\): field 'text' is null\); nothing was written"):
        embed_corpus_with_ray(source, out, tiny_bundle, None, SMALL)
    assert not out.exists()  # nothing left behind

    report = embed_corpus_with_ray(source, out, tiny_bundle, CorpusOptions(on_bad_row="skip"), SMALL)

    assert (report.rows_in, report.rows_written, report.bad_rows, report.shards_resumed) == (2000, 1998, 2, 0)
    ids, vectors = read_output(out)
    assert sorted(ids) == sorted(f"d{i}" for i in range(2000) if i not in (5, 9))  # type: ignore[type-var]
    assert len(set(ids)) == len(ids)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (manifest["status"], manifest["engine"], manifest["rows_in"], manifest["bad_rows"]) == (
        "complete", "ray", 2000, 2)
    assert manifest["input"]["id_field"] == "doc" and manifest["dim"] == Encoder(tiny_bundle).dim
    assert [s["file"] for s in manifest["shards"]] == report.files
    assert report.files == [f"part-{k:05d}.parquet" for k in range(report.shards)]
    assert bad_rows(out) == [(5, "d5", "empty text"), (9, "d9", "field 'text' is null")]
    by_id = {f"d{i}": t for i, t in enumerate(texts)}
    np.testing.assert_allclose(vectors[:50], Encoder(tiny_bundle).encode([by_id[i] for i in ids[:50]]),  # type: ignore[index]
                               atol=1e-5)


def jsonl_with_every_kind_of_bad_row(path: Path) -> None:
    lines = [json.dumps({"doc": f"d{i}", "text": f"document {i}"}).encode() for i in range(40)]
    lines[2] = json.dumps({"doc": "d2", "text": ""}).encode()  # empty
    lines[3] = json.dumps({"doc": "d3", "text": " \t "}).encode()  # whitespace only
    lines[5] = json.dumps({"doc": "d5"}).encode()  # no text field
    lines[7] = json.dumps({"doc": "d7", "text": 7}).encode()  # not a string
    lines[8] = json.dumps({"doc": "d8", "text": None}).encode()  # null
    lines[11] = b'{"doc": "d11", "text": "lone \\ud800 surrogate"}'  # a lone surrogate in the text
    lines[13] = b'{"doc": "d\\udc0013", "text": "fine"}'  # a lone surrogate in the id
    lines[17] = b'{"doc": "d17", "text": "not \xff UTF-8"}'  # invalid UTF-8
    lines[19] = b"not json"
    lines[23] = b"[1, 2]"  # not an object
    lines[29] = json.dumps({"text": "no id"}).encode()  # no id field
    lines[31] = json.dumps({"doc": ["d31"], "text": "a list id"}).encode()  # an id that is not a string
    lines[37] = b""  # empty line
    path.write_bytes(b"\n".join(lines) + b"\n")


def parquet_with_every_kind_of_bad_row(path: Path) -> None:
    texts: list[bytes | None] = [f"document {i}".encode() for i in range(40)]
    ids: list[int | None] = list(range(1000, 1040))
    texts[2], texts[3], texts[8] = b"", b" \n ", None  # empty, whitespace only, null
    texts[17], texts[19] = b"not \xff UTF-8", b"surrogate \xed\xa0\x80 as UTF-8 bytes"  # not UTF-8
    ids[23] = None  # a null id
    pq.write_table(pa.table({"key": pa.array(ids, pa.int64()), "body": pa.array(texts, pa.binary())}), path)


def text_with_every_kind_of_bad_row(path: Path) -> None:
    lines = [f"document {i}".encode() for i in range(40)]
    lines[2], lines[3], lines[17] = b"", b" \t ", b"not \xff UTF-8"
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize(
    ("name", "write", "fields", "expected"),
    [
        ("docs.jsonl", jsonl_with_every_kind_of_bad_row, {"id_field": "doc"}, 13),
        ("docs.parquet", parquet_with_every_kind_of_bad_row, {"id_field": "key", "text_field": "body"}, 6),
        ("docs.txt", text_with_every_kind_of_bad_row, {}, 3),
    ],
)
def test_both_runs_judge_bad_rows_alike(
    cluster: None, tiny_bundle: Path, tmp_path: Path, name: str,
    write: Callable[[Path], None], fields: dict[str, str], expected: int,
) -> None:
    write(tmp_path / name)
    source = Source.open(tmp_path / name, **fields)  # type: ignore[arg-type]
    encoder = Encoder(tiny_bundle)
    # Both stop at bad rows by default, and name the first one the same way.
    with pytest.raises(InputError, match=r"^row 2 \(id .*\): empty text\. ") as streaming:
        embed_corpus(source, tmp_path / "fail-here", encoder, CorpusOptions(shard_rows=10))
    with pytest.raises(InputError, match=rf"^{expected} rows cannot be embedded \(") as on_ray:
        embed_corpus_with_ray(source, tmp_path / "fail-ray", tiny_bundle, None, SMALL)
    first = str(streaming.value).split(". ")[0]
    assert str(on_ray.value).startswith(f"{expected} rows cannot be embedded ({first}; ")

    skip = CorpusOptions(on_bad_row="skip", shard_rows=10)
    here = embed_corpus(source, tmp_path / "here", encoder, skip)
    on_ray = embed_corpus_with_ray(source, tmp_path / "ray", tiny_bundle, skip, SMALL)

    assert bad_rows(tmp_path / "here") == bad_rows(tmp_path / "ray")
    assert len(bad_rows(tmp_path / "ray")) == here.bad_rows == on_ray.bad_rows == expected
    reasons = {reason for _, _, reason in bad_rows(tmp_path / "ray")}
    assert "empty text" in reasons and any(r.startswith("not valid UTF-8 (byte ") for r in reasons)
    if name.endswith(".jsonl"):
        assert {"no field 'text'", "field 'text' is a int, not a string", "field 'text' is null",
                "not valid Unicode (a lone surrogate at position 5)",
                "id field 'doc' is not valid Unicode (a lone surrogate at position 1)",
                "id field 'doc' is missing", "id field 'doc' is a list, not a string or integer"} <= reasons
    here_ids, here_vectors = read_output(tmp_path / "here")
    by_id = dict(zip(*read_output(tmp_path / "ray"), strict=True))
    assert len(by_id) == len(here_ids) == 40 - expected and set(by_id) == set(here_ids)
    np.testing.assert_allclose(np.stack([by_id[i] for i in here_ids]), here_vectors, atol=1e-5)
    assert pq.read_schema(tmp_path / "ray" / "part-00000.parquet") == pq.read_schema(
        tmp_path / "here" / "part-00000.parquet")


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `Dataset.map_batches` is called with on this side, and whether the dataset shows
    Ray Data's progress bars; then the real call."""
    calls: list[dict[str, Any]] = []
    real = ray.data.Dataset.map_batches

    def map_batches(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"fn": fn, **kwargs, "progress_bars": self.context.enable_progress_bars})
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "map_batches", map_batches)
    return calls


def actor_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    (call,) = [c for c in calls if c["fn"] is EmbedActor]
    return call


def test_every_corpus_option_is_honoured_on_ray(
    cluster: None, tiny_bundle: Path, tmp_path: Path, spy: list[dict[str, Any]]
) -> None:
    texts = builtin_texts(1000, seed=12)
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(1000)], "body": texts}), path)
    source = Source.open(path, format="parquet", text_field="body", id_field="key")
    out = tmp_path / "out"
    options = CorpusOptions(shard_rows=300, chunk_rows=128, batch_size=7, progress=True)

    report = embed_corpus_with_ray(source, out, tiny_bundle, options, SMALL, precision="fp32", threads=2,
                                   prompt="p: ", truncate_dim=8)

    call = actor_call(spy)
    assert call["fn_constructor_kwargs"] | {"bundle": None} == {
        "bundle": None, "text_column": "text", "output_column": "embedding", "device": "cpu",
        "precision": "fp32", "threads": 2, "batch_size": 7,
        "encoding": {"prompt_name": None, "prompt": "p: ", "truncate_dim": 8}}
    assert (call["batch_size"], call["num_cpus"], call["num_gpus"]) == (128, 0.5, 0.0)  # chunk_rows
    assert call["compute"].min_size == call["compute"].max_size == 2  # workers
    assert all(c["progress_bars"] for c in spy)
    counts = [pq.ParquetFile(out / f).metadata.num_rows for f in report.files]
    assert max(counts) <= 300 and sum(counts) == 1000 and len(counts) == math.ceil(1000 / 300)
    assert report.files == [f"part-0000{k}.parquet" for k in range(len(counts))]
    ids, vectors = read_output(out)
    by_id = {f"k{i}": t for i, t in enumerate(texts)}
    expected = Encoder(tiny_bundle).encode([by_id[i] for i in ids], prompt="p: ", truncate_dim=8)  # type: ignore[index]
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["shard_rows"] == 300 and manifest["bundle"]["precision"] == "fp32"
    assert manifest["prompt"] == "p: " and manifest["dim"] == 8  # what a reader of the vectors needs
    assert manifest["ray"] | {"address": None} == {"address": None, "workers": 2, "cpus_per_worker": 0.5,
                                                   "gpus_per_worker": 0.0, "device": "cpu", "threads": 2}

    # overwrite: a run on Ray does not resume, so the earlier run is refused, or replaced.
    with pytest.raises(InputError, match=r"an earlier run, and runs on Ray do not resume; .*overwrite=True"):
        embed_corpus_with_ray(source, out, tiny_bundle, options, SMALL)
    assert (out / "_manifest.json").is_file() and len(list(out.glob("part-*"))) == len(counts)  # untouched
    spy.clear()
    again = embed_corpus_with_ray(source, out, tiny_bundle, CorpusOptions(overwrite=True), SMALL)
    assert again.rows_written == 1000
    assert json.loads((out / "_manifest.json").read_text())["shard_rows"] == 50_000  # the default
    assert sorted(p.name for p in out.iterdir()) == ["_bad_rows.jsonl", "_manifest.json", *again.files]
    call = actor_call(spy)
    assert not any(c["progress_bars"] for c in spy)  # progress=False by default
    assert call["fn_constructor_kwargs"]["threads"] == 1  # cpus_per_worker, at least 1
    assert call["fn_constructor_kwargs"]["precision"] == "auto" and call["batch_size"] == 4096
    # The streaming run does not take it over either: a run on Ray has no shards to resume from.
    with pytest.raises(InputError, match="holds a run made on Ray, which cannot be resumed"):
        embed_corpus(source, out, Encoder(tiny_bundle))


def test_arguments_are_checked_before_ray_starts(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "docs.txt").write_text("one\ntwo\n")
    source = Source.open(tmp_path / "docs.txt")
    out = tmp_path / "out"
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: RayOptions(workers=0), ArgumentError, "workers must be a positive int, got 0"),
        (lambda: RayOptions(cpus_per_worker=0), ArgumentError, "cpus_per_worker must be a number above 0"),
        (lambda: RayOptions(gpus_per_worker=-1), ArgumentError, "gpus_per_worker must be a number of at"),
        (lambda: embed_corpus_with_ray(source, out, tiny_bundle, device="cuda"), ArgumentError,
         "device 'cuda' needs gpus_per_worker above 0"),
        (lambda: embed_corpus_with_ray(source, out, tiny_bundle, None, RayOptions(gpus_per_worker=1),
                                       device="cpu"), ArgumentError,
         "device 'cpu' would leave the GPUs that gpus_per_worker=1 reserves idle"),
        (lambda: embed_corpus_with_ray(source, out, tiny_bundle, threads=0), ArgumentError,
         "threads must be a positive int or None, got 0"),
        (lambda: embed_corpus_with_ray(source, out, tiny_bundle, precision="int4"),  # type: ignore[arg-type]
         ArgumentError, "precision must be"),
        (lambda: embed_corpus_with_ray(source, out, tiny_bundle, precision="int8"), BundleError,
         "bundle has no 'int8' variant"),
        (lambda: embed_corpus_with_ray(source, out, tmp_path), BundleError, "manifest"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert not out.exists()


def test_an_address_while_connected_is_refused(cluster: None, tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "docs.txt").write_text("one\n")
    with pytest.raises(ArgumentError, match="address is 'ray://head:10001', but this process is already "
                       "connected to Ray") as caught:
        embed_corpus_with_ray(Source.open(tmp_path / "docs.txt"), tmp_path / "out", tiny_bundle, None,
                              RayOptions(address="ray://head:10001"))
    assert caught.value.param == "address" and not (tmp_path / "out").exists()


def test_files_that_are_not_a_corpus_are_never_deleted(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "docs.txt").write_text("one\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds files that are not a fusembed corpus"):
        embed_corpus_with_ray(Source.open(tmp_path / "docs.txt"), mine, tiny_bundle,
                              CorpusOptions(overwrite=True), SMALL)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_the_command_line_runs_on_ray_with_every_option(
    cluster: None, tiny_bundle: Path, tmp_path: Path
) -> None:
    """`fusembed embed-corpus --ray`, on the cluster this process is connected to."""
    from fusembed.cli import main

    texts = builtin_texts(10, seed=3)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    assert main(["embed-corpus", str(src), str(out), "--bundle", str(tiny_bundle), "--ray",
                 "--ray-workers", "2", "--ray-cpus-per-worker", "0.5", "--device", "cpu",
                 "--precision", "fp32", "--threads", "1", "--batch-size", "4", "--shard-rows", "3",
                 "--id-field", "id", "--no-progress"]) == 0
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) >= 4 and all(pq.read_metadata(f).num_rows <= 3 for f in files)
    ids, vectors = read_output(out)
    order = np.argsort(ids)
    expected = Encoder(tiny_bundle, precision="fp32").encode(texts)
    assert sorted(ids) == sorted(f"d{i}" for i in range(10))
    np.testing.assert_allclose(vectors[order], expected[np.argsort([f"d{i}" for i in range(10)])], atol=1e-5)
