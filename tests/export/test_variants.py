"""The int8 (CPU) and fp16 (CUDA) variants: budgets met on the real model, choices recorded,
and a variant that misses its budget is not written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fusembed import ArgumentError, BundleError, Encoder, ExportError, read_manifest
from fusembed.export import ExportOptions, export_model
from fusembed.export.replicas import SEEDS, tiny
from fusembed.export.texts import varied_texts

from tests.export.budgets import unmeetable


def test_real_model_int8_meets_its_budget(minilm_bundle: Path) -> None:
    int8 = read_manifest(minilm_bundle).variants["int8"]
    q = int8.quality
    assert q is not None and q.texts >= 1000
    assert q.mean_cosine >= 0.997 and q.min_cosine >= 0.99
    assert q.top10_agreement >= 0.9
    assert q.batch_invariance >= 0.9999
    # An int8-only bundle (`--variants int8`) holds the int8 graph, the tokenizer and the manifest.
    int8_only = sum((minilm_bundle / name).stat().st_size
                    for name in (int8.file, "tokenizer.json", "manifest.json"))
    assert int8_only < 25e6
    # The choice is recorded with every candidate's measurement.
    measured = {c["scheme"]: c for c in int8.selection["candidates"]}
    assert measured[int8.scheme]["passed"] is True
    assert "calibration texts" in int8.selection["reason"]


def test_real_model_int8_runs_its_gemms_in_int8(minilm_bundle: Path) -> None:
    import onnx

    int8 = read_manifest(minilm_bundle).variants["int8"]
    # A w8a8 scheme: onnxruntime's u8s8 GEMM kernels, exact on every CPU (MatMulNBits is slower).
    assert int8.scheme == "w8a8-rowwise-pairsum", int8.scheme
    ops = {n.op_type for n in onnx.load(str(minilm_bundle / int8.file)).graph.node}
    assert not ops & {"MatMul", "Attention", "MatMulNBits"}, ops


def test_int8_independently_close_to_torch(minilm_bundle: Path, minilm_st: Any) -> None:
    texts = varied_texts(200, seed=31)  # not the texts the export measured on
    ref = minilm_st.encode(texts, convert_to_numpy=True)
    got = Encoder(minilm_bundle, precision="int8").encode(texts)
    cos = np.sum(ref * got, axis=1)
    assert cos.mean() >= 0.997 and cos.min() >= 0.99


def test_int8_embedding_does_not_depend_on_the_batch(minilm_bundle: Path) -> None:
    enc = Encoder(minilm_bundle, precision="int8")
    text = "How many people live in London?"
    alone = enc.encode(text)
    long_neighbours = [text, *varied_texts(30, seed=3)]  # much padding around the short text
    in_batch = enc.encode(long_neighbours, batch_size=31)[0]
    assert float(alone @ in_batch) >= 0.9999


def test_auto_precision_and_explicit_choices(minilm_bundle: Path) -> None:
    assert Encoder(minilm_bundle).precision == "int8"
    assert Encoder(minilm_bundle, precision="fp32").precision == "fp32"
    fp16 = Encoder(minilm_bundle, precision="fp16")  # runs on the CPU provider too, for checking
    q = read_manifest(minilm_bundle).variants["fp16"].quality
    assert q is not None and q.min_cosine >= 0.999
    assert fp16.encode("hello").shape == (384,)


def test_missed_budget_means_no_variant_and_a_reason(
    make_replica: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))
    report = export_model(folder, tmp_path / "b", options=unmeetable(ExportOptions(
        variants=("fp32", "int8"), quality_texts=120, calibration_texts=64), int8_min_top10=1.01))
    assert "int8" not in report.manifest.variants
    assert not (tmp_path / "b" / "model.int8.onnx").exists()
    assert "top-10 agreement" in report.rejected["int8"] and "< 1.01" in report.rejected["int8"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "check.json", "manifest.json", "model.onnx", "tokenizer.json"]


def test_no_scheme_meets_an_impossible_budget(make_replica: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))
    report = export_model(folder, tmp_path / "b", options=unmeetable(ExportOptions(
        variants=("fp32", "int8"), quality_texts=60, calibration_texts=32), int8_min_cosine=1.01))
    assert "no scheme met the budget" in report.rejected["int8"]
    assert list((tmp_path / "b").glob("*.onnx")) == [tmp_path / "b" / "model.onnx"]


def test_int8_only_bundle(make_replica: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))
    report = export_model(folder, tmp_path / "b", options=ExportOptions(
        variants=("int8",), quality_texts=120, calibration_texts=64))
    assert list(report.manifest.variants) == ["int8"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "check.json", "manifest.json", "model.int8.onnx", "tokenizer.json"]
    enc = Encoder(tmp_path / "b")
    assert enc.precision == "int8"
    with pytest.raises(BundleError, match=r"no 'fp32' variant; it has \['int8'\]"):
        Encoder(tmp_path / "b", precision="fp32")


def test_int8_only_bundle_from_the_cli(
    make_replica: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fusembed.cli import main

    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))
    assert main(["export", str(folder), str(tmp_path / "b"), "--variants", "int8",
                 "--quality-texts", "60", "-q"]) == 0
    assert "int8 min cosine" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "b")]) == 0
    assert "int8  model.int8.onnx" in capsys.readouterr().out


def test_int8_only_bundle_fails_when_int8_misses(make_replica: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"]))
    with pytest.raises(ExportError, match="none of the requested variants"):
        export_model(folder, tmp_path / "b", options=unmeetable(ExportOptions(
            variants=("int8",), quality_texts=60, calibration_texts=32), int8_min_top10=1.01))
    assert list(tmp_path.iterdir()) == []


def test_unknown_variant_is_refused_before_any_work() -> None:
    with pytest.raises(ArgumentError, match="variants must be a non-empty subset"):
        ExportOptions(variants=("int4",))


@pytest.mark.parametrize(("name", "value"), [
    ("min_cosine", 99.999), ("min_cosine", float("nan")), ("fp16_min_cosine", -0.1),
    ("int8_min_top10", 1.01), ("int8_min_mean_cosine", "0.99"), ("min_batch_invariance", True),
    ("int8_min_cosine", float("inf")),
])
def test_a_budget_outside_0_to_1_is_refused_before_any_work(name: str, value: object) -> None:
    """99.999 for 0.99999 would fail every export after minutes; NaN would pass every check."""
    with pytest.raises(ArgumentError, match=f"^{name} must be a number from 0 to 1, got "):
        ExportOptions(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("quality_texts", 0, "a positive int"), ("calibration_texts", -1, "a positive int"),
    ("quality_texts", True, "a positive int"), ("check_texts", 2.5, "an int of at least 0"),
    ("check_texts", -1, "an int of at least 0")])
def test_a_text_count_that_is_not_a_count_is_refused(name: str, value: object, problem: str) -> None:
    with pytest.raises(ArgumentError, match=f"^{name} must be {problem}, got "):
        ExportOptions(**{name: value})  # type: ignore[arg-type]


def test_budgets_at_the_ends_of_the_range_are_taken() -> None:
    options = ExportOptions(min_cosine=1, int8_min_top10=0.0, check_texts=0)
    assert (options.min_cosine, options.int8_min_top10, options.check_texts) == (1, 0.0, 0)


def test_a_crashing_quantiser_costs_only_its_variant(
    make_replica: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusembed.export import pipeline

    def boom(*_args: object, **_kw: object) -> None:
        raise RuntimeError("quantiser exploded")

    monkeypatch.setattr(pipeline, "quantize_int8", boom)
    report = export_model(make_replica(tiny(SEEDS["all-MiniLM-L6-v1"])), tmp_path / "b",
                          options=ExportOptions(variants=("fp32", "int8"), quality_texts=60))
    assert report.rejected == {"int8": "RuntimeError: quantiser exploded"}
    assert list(report.manifest.variants) == ["fp32"] and Encoder(tmp_path / "b").precision == "fp32"


@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu and a CUDA device")
def test_fp16_on_cuda_matches_torch(minilm_bundle: Path, minilm_st: Any) -> None:
    texts = varied_texts(200, seed=41)
    ref = minilm_st.encode(texts, convert_to_numpy=True)
    enc = Encoder(minilm_bundle, device="cuda")
    assert enc.precision == "fp16"
    cos = np.sum(ref * enc.encode(texts), axis=1)
    assert cos.min() >= 0.999
