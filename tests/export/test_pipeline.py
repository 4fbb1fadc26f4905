"""Export as a transaction: it publishes a verified bundle or leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fusembed import Encoder, ExportError
from fusembed.export import ExportOptions, export_model
from fusembed.export.replicas import SEEDS, tiny

from tests.export.budgets import unmeetable

FP32 = ExportOptions(variants=("fp32",))


@pytest.fixture(scope="module")
def folder(make_replica: Callable[..., Path]) -> Path:
    return make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))


def test_failed_parity_gate_writes_nothing(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    before = Path.cwd()
    with pytest.raises(ExportError, match=r"fp32: parity check failed: min cosine .* < required 1.01"):
        export_model(folder, out, options=unmeetable(ExportOptions(variants=("fp32",)), min_cosine=1.01))
    assert Path.cwd() == before  # the optimiser works in its own folder, then changes back
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind either


def test_tokenizer_that_differs_from_sentence_transformers_fails(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusembed.export import bundle as bundle_step
    from tokenizers import normalizers

    # A tokenizer that rewrites one word: vectors may stay close, token ids do not.
    monkeypatch.setattr(bundle_step.normalizers, "Strip", lambda: normalizers.Replace("London", "Paris"))
    with pytest.raises(ExportError, match="does not reproduce sentence-transformers' token ids"):
        export_model(folder, tmp_path / "bundle", options=FP32)
    assert list(tmp_path.iterdir()) == []


def test_truncation_inconsistent_with_manifest_fails(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusembed.export import bundle as bundle_step

    real = bundle_step.Tokenizer.enable_truncation

    def off_by_one(self, max_length, **kw):  # type: ignore[no-untyped-def]
        return real(self, max_length - 1, **kw)

    monkeypatch.setattr(bundle_step.Tokenizer, "enable_truncation", off_by_one)
    with pytest.raises(ExportError, match=r"does not load: .*does not match the manifest's max_seq_length"):
        export_model(folder, tmp_path / "bundle", options=FP32)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    export_model(folder, out, options=FP32)
    first = (out / "manifest.json").read_text()
    with pytest.raises(ExportError, match=r"already exists; pass overwrite=True \(--overwrite\)"):
        export_model(folder, out, options=FP32)
    assert (out / "manifest.json").read_text() == first
    export_model(folder, out, options=ExportOptions(overwrite=True, variants=("fp32",)))
    assert Encoder(out).dim == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_overwrite_refuses_a_directory_that_is_not_a_bundle(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is not a fusembed bundle"):
        export_model(folder, out, options=ExportOptions(overwrite=True, variants=("fp32",)))
    assert (out / "notes.txt").read_text() == "keep me"


def test_bundle_files_and_manifest(folder: Path, tmp_path: Path) -> None:
    report = export_model(folder, tmp_path / "bundle", options=FP32)
    names = sorted(p.name for p in report.bundle.iterdir())
    assert names == ["check.json", "manifest.json", "model.onnx", "tokenizer.json"]
    m = report.manifest
    assert m.inputs == ("input_ids", "attention_mask")  # no token_type_ids: BERT never needs them here
    assert set(m.files) == {"check.json", "model.onnx", "tokenizer.json"}
    assert m.check == "check.json"
    assert m.source.kind == "local" and m.exporter["opset"] == "17"
    assert m.variants["fp32"].parity.tokenization_match
    assert report.bundle.stat().st_mode & 0o777 == 0o755
