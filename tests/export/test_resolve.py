"""Model resolution: local folders, the embedded default, and hub ids through a local HF cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fusembed import ExportError
from fusembed.export.replicas import SEEDS, tiny
from fusembed.export.resolve import read_facts, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def folder(make_replica: Callable[..., Path]) -> Path:
    return make_replica(tiny(SEEDS["msmarco-bert-base-dot-v4"]))


def _hub_cache(folder: Path, root: Path, repo: str = "sentence-transformers/replica") -> Path:
    """Lay `folder` out as huggingface_hub's cache stores a downloaded snapshot."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, repo_dir / "snapshots" / COMMIT)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return root


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusembed", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, check=False, timeout=600)


def test_hub_id_from_the_offline_cache_end_to_end(folder: Path, tmp_path: Path) -> None:
    cache = _hub_cache(folder, tmp_path / "hf")
    out = tmp_path / "bundle"
    result = _run_cli("export", "sentence-transformers/replica", str(out), "--quiet",
                      "--variants", "fp32", env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == {"model": "sentence-transformers/replica", "revision": COMMIT,
                                  "kind": "hub"}


def test_hub_id_missing_from_the_offline_cache(tmp_path: Path) -> None:
    result = _run_cli("export", "sentence-transformers/absent", str(tmp_path / "b"),
                      env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert result.returncode == 1
    assert "'sentence-transformers/absent' (revision main) is not in the Hugging Face cache" in result.stderr
    assert "HF_HUB_OFFLINE is set" in result.stderr and "Traceback" not in result.stderr


def test_hub_resolution_in_process_with_cache_dir(folder: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(folder, tmp_path / "hf", repo="org/model")
    resolved = resolve_model("org/model", cache_dir=cache)
    assert resolved.source.revision == COMMIT and resolved.facts.dim == 32


def test_embedded_default() -> None:
    resolved = resolve_model("all-MiniLM-L6-v2")
    assert resolved.source.kind == "embedded"
    assert resolved.source.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolved.facts.max_seq_length == 256  # from sentence_bert_config.json, not tokenizer.json's 128


def test_facts_are_read_from_the_files(folder: Path) -> None:
    facts = read_facts(folder)
    assert (facts.dim, facts.pooling, facts.normalized) == (32, "mean", False)
    assert (facts.similarity, facts.similarity_source) == ("dot", "inferred: not normalised")
    assert facts.max_seq_length == 512 and facts.num_layers == 2


def test_similarity_from_config_and_override(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    (copy / "config_sentence_transformers.json").write_text('{"similarity_fn_name": "cosine"}')
    assert read_facts(copy).similarity == "cosine"
    assert read_facts(copy, similarity="dot").similarity_source == "option"
    (copy / "config_sentence_transformers.json").write_text('{"similarity_fn_name": "euclidean"}')
    with pytest.raises(ExportError, match=r"'euclidean' .* not supported"):
        read_facts(copy)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "modules.json").unlink(), "modules.json is missing"),
        (lambda d: (d / "modules.json").write_text("[oops"), "modules.json cannot be read"),
        (lambda d: (d / "1_Pooling" / "config.json").write_text(
            '{"word_embedding_dimension": 32, "pooling_mode_cls_token": true, '
            '"pooling_mode_mean_tokens": true}'), r"enables \['cls', 'mean'\]"),
        (lambda d: (d / "modules.json").write_text(json.dumps(
            [{"type": "sentence_transformers.models.Transformer", "path": ""},
             {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
             {"type": "sentence_transformers.models.LSTM", "path": "2_LSTM", "name": "2"}])),
         r"cannot fuse 'sentence_transformers.models.LSTM' \(module 2\); it fuses Transformer, "
         r"Pooling, Dense, Normalize"),
        (lambda d: (d / "modules.json").write_text(json.dumps(
            [{"type": "my_package.Reranker", "path": "", "name": "0"},
             {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}])),
         r"cannot fuse 'my_package.Reranker' \(module 0\)"),
    ],
)
def test_unsupported_or_broken_folders(folder: Path, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    damage(copy)
    with pytest.raises(ExportError, match=message):
        resolve_model(copy)


def test_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        resolve_model(tmp_path / "file.txt")
    with pytest.raises(ExportError, match="neither an existing folder nor a hub id"):
        resolve_model("./no/such/folder")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("RepositoryNotFoundError", r"'org/gone' does not exist or is private"),
        ("RevisionNotFoundError", r"'org/gone' has no revision 'v9'"),
        ("HfHubHTTPError", r"downloading 'org/gone' failed: 503"),
    ],
)
def test_hub_failures_are_clear(monkeypatch: pytest.MonkeyPatch, error: str, message: str) -> None:
    import huggingface_hub
    from huggingface_hub import errors

    def fail(*_args: object, **_kw: object) -> str:
        cls = getattr(errors, error)
        try:  # huggingface_hub 0.x takes no response; 1.x reads an httpx response's headers
            exc = cls("503 Service Unavailable", response=None)
        except AttributeError:
            import httpx

            request = httpx.Request("GET", "https://huggingface.co/api/models/org/gone")
            exc = cls("503 Service Unavailable", response=httpx.Response(503, request=request))
        raise exc

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(ExportError, match=message):
        resolve_model("org/gone", revision="v9")
