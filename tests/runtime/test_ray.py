"""fusembed.ray on a local Ray cluster (loopback, 2 CPUs): ids and vectors against a local encode,
the bundle shipped through the object store, and `embed-corpus --ray`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fusembed import Encoder, InputError
from fusembed._bench import builtin_texts

EMBED_CORPUS = [sys.executable, "-m", "fusembed", "embed-corpus"]

ray = pytest.importorskip("ray")  # the ray extra; CI installs it with the dev extra
from fusembed.ray import embed_dataset  # noqa: E402  (after the skip check)

# Ray Data reads its own deprecated settings when it plans a dataset and warns about itself.
pytestmark = pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\..*")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def as_arrays(rows: list[dict[str, object]]) -> tuple[list[object], np.ndarray]:
    rows = sorted(rows, key=lambda r: r["id"])  # type: ignore[arg-type,return-value]
    return [r["id"] for r in rows], np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in rows])


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
    with pytest.raises(ValueError, match="concurrency"):
        embed_dataset(ds, tiny_bundle, concurrency=0)


def test_embed_corpus_with_ray_cli(tiny_bundle: Path, tmp_path: Path) -> None:
    texts = builtin_texts(2000, seed=10)
    lines = [json.dumps({"doc": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    lines[5] = json.dumps({"doc": "d5", "text": ""})
    lines[9] = json.dumps({"doc": "d9", "text": None})
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    argv = [
        *EMBED_CORPUS,
        str(tmp_path / "docs.jsonl"),
        str(out),
        "--bundle",
        str(tiny_bundle),
        "--id-field",
        "doc",
        "--ray",
        "--ray-workers",
        "2",
    ]
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "2 rows cannot be embedded" in failed.stderr, failed.stderr
    assert "id 'd5': empty text" in failed.stderr and not out.exists()  # nothing left behind
    result = subprocess.run([*argv, "--on-bad-row", "skip"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(sorted(out.glob("*.parquet")))
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(f"d{i}" for i in range(2000) if i not in (5, 9))
    assert len(set(ids)) == len(ids)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (manifest["rows_in"], manifest["rows_written"], manifest["bad_rows"]) == (2000, 1998, 2)
    bad = [json.loads(line) for line in (out / "_bad_rows.jsonl").read_text().splitlines()]
    assert sorted(b["id"] for b in bad) == ["d5", "d9"]
    order = {f"d{i}": t for i, t in enumerate(texts)}
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_allclose(
        vectors[:50], Encoder(tiny_bundle).encode([order[i] for i in ids[:50]]), atol=1e-5
    )
