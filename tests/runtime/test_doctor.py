"""`fusembed doctor`: the bundle's check set run through every variant here, a verdict that can
fail, measurements recorded for `auto`, and clear errors for bundles it cannot check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fusembed import BundleError, Encoder, read_manifest
from fusembed._cpu import cpu_info
from fusembed._doctor import CheckSet, doctor
from fusembed._manifest import sha256_of
from fusembed.cli import main

from tests.bundles import edit_manifest


@pytest.fixture
def bundle(minilm_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(minilm_bundle, copy)
    return copy


def test_check_set_is_sentence_transformers_fp32(minilm_bundle: Path, minilm_st) -> None:  # type: ignore[no-untyped-def]
    manifest = read_manifest(minilm_bundle)
    check = CheckSet.read(minilm_bundle / manifest.check)
    assert len(check.texts) >= 50 and "sentence-transformers" in check.reference
    ref = minilm_st.encode(list(check.texts[:8]), convert_to_numpy=True)
    np.testing.assert_allclose(check.embeddings[:8], ref, atol=1e-5)


def test_export_measured_the_cpu_variants_here(minilm_bundle: Path) -> None:
    manifest = read_manifest(minilm_bundle)
    for name in ("fp32", "int8"):
        (m,) = manifest.variants[name].measurements
        assert m.isa == cpu_info().isa and m.by.startswith("export")
        assert m.sentences_per_s > 0 and m.batch1_ms > 0
    assert manifest.variants["int8"].measurements[0].min_cosine >= 0.99
    assert manifest.variants["fp32"].measurements[0].min_cosine >= 0.99999


def test_doctor_checks_every_variant(bundle: Path) -> None:
    report = doctor(bundle, rounds=1)
    assert report.ok, report.text()
    assert [c.name for c in report.checks] == list(read_manifest(bundle).variants)
    by_name = {c.name: c.measurement for c in report.checks}
    assert by_name["fp32"] is not None and by_name["fp32"].min_cosine >= 0.99999
    assert by_name["int8"] is not None and by_name["int8"].min_cosine >= 0.99
    assert report.auto.name == Encoder(bundle).precision
    text = report.text()
    for expected in (cpu_info().isa, "CPUExecutionProvider", "threads", "auto", "verdict    ok"):
        assert expected in text
    assert "measurements" not in text  # not recorded unless asked
    assert all(m.by.startswith("export") for v in read_manifest(bundle).variants.values()
               for m in v.measurements)


def test_record_stores_the_measurements_for_auto(bundle: Path) -> None:
    doctor(bundle, rounds=1, record=True)
    manifest = read_manifest(bundle)  # still verifies every file's sha256
    for name in ("fp32", "int8"):
        sources = [m.by.split()[0] for m in manifest.variants[name].measurements]
        assert sources == ["export", "doctor"]
    doctor(bundle, rounds=1, record=True)  # a second run replaces its own, keeps the export's
    assert len(read_manifest(bundle).variants["int8"].measurements) == 2
    assert "doctor" in Encoder(bundle).choice.reason


def test_a_variant_that_computes_other_values_here_fails_the_verdict(bundle: Path) -> None:
    """What doctor exists for: an int8 graph whose kernels differ on this CPU (as an old
    saturating bundle does on AVX2). Simulated by claiming a better export quality than it has."""
    edit_manifest(bundle, lambda d: d["variants"]["int8"]["quality"].update(min_cosine=0.99999))
    report = doctor(bundle, rounds=1)
    assert not report.ok
    assert any(p.startswith("int8 gives min cosine") for p in report.problems)
    assert "NOT OK" in report.text()
    assert main(["doctor", str(bundle), "--rounds", "1"]) == 1


def test_cli_doctor(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(bundle), "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 threads" in out and "verdict    ok" in out


def test_bundle_without_a_check_set(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d.pop("check"))
    with pytest.raises(BundleError, match=r"no check set.*re-export"):
        doctor(bundle)


def test_damaged_check_set(bundle: Path) -> None:
    (bundle / "check.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"check\.json: sha256 mismatch"):
        doctor(bundle)
    rehash = {"check.json": sha256_of(bundle / "check.json")}  # damage the hash cannot see
    edit_manifest(bundle, lambda d: d["files"].update(rehash))
    with pytest.raises(BundleError, match="not a readable check set"):
        doctor(bundle)


def test_a_damaged_variant_is_reported_and_the_others_still_run(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    int8 = bundle / "model.int8.onnx"
    int8.write_bytes(int8.read_bytes()[:1000])  # truncated
    report = doctor(bundle, rounds=1, threads=1)
    by_name = {c.name: c for c in report.checks}
    assert by_name["int8"].measurement is None and "sha256 mismatch" in by_name["int8"].error
    assert by_name["fp32"].measurement is not None and by_name["fp32"].measurement.min_cosine > 0.9999
    assert not report.ok and any(p.startswith("int8 does not run here") for p in report.problems)
    assert main(["doctor", str(bundle), "--rounds", "1", "--threads", "1"]) == 1
    out = capsys.readouterr().out
    assert "int8" in out and "not run: " in out and "verdict    NOT OK" in out


def test_check_set_whose_texts_and_embeddings_differ(bundle: Path) -> None:
    check = json.loads((bundle / "check.json").read_text())
    check["embeddings"] = check["embeddings"][:-1]
    (bundle / "check.json").write_text(json.dumps(check))
    rehash = {"check.json": sha256_of(bundle / "check.json")}
    edit_manifest(bundle, lambda d: d["files"].update(rehash))
    with pytest.raises(BundleError, match="texts and embeddings do not match"):
        doctor(bundle)


def test_record_that_cannot_write_loses_nothing(bundle: Path) -> None:
    before = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.json.tmp").mkdir()  # any write failure; chmod would not stop root
    with pytest.raises(BundleError, match="cannot record"):
        doctor(bundle, rounds=1, record=True)
    assert (bundle / "manifest.json").read_bytes() == before


def test_cli_doctor_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["doctor", str(tmp_path), "--rounds", "0"])
    assert exc.value.code == 2
