"""The int8 search: candidates in order of expected speed, the first to meet the budget kept.

The blockwise schemes store the block length in each MatMulNBits node; a model whose per-token
scheme misses the budget gets blocks of 128 (faster) before blocks of 32 (more precise)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fusembed import Encoder, read_manifest
from fusembed._errors import ExportError
from fusembed._similarity import row_cosine
from fusembed.export import quantize
from fusembed.export.texts import varied_texts
from onnx import helper, numpy_helper
from tokenizers import Tokenizer

from tests.bundles import edit_manifest


def _calibration(bundle: Path) -> tuple[Path, quantize.Calibration]:
    manifest = read_manifest(bundle)
    tokenizer = Tokenizer.from_file(str(bundle / manifest.tokenizer))
    fp32 = bundle / manifest.variants["fp32"].file
    return fp32, quantize.Calibration.build(tokenizer, varied_texts(64, seed=5), fp32, manifest.pad_token_id)


def _block_sizes(path: Path) -> set[int]:
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulNBits"]
    assert nodes
    return {helper.get_attribute_value(a) for n in nodes for a in n.attribute if a.name == "block_size"}


def test_blockwise_schemes_store_their_block_length(tiny_bundle: Path, tmp_path: Path) -> None:
    fp32, calibration = _calibration(tiny_bundle)
    for block in (128, 32):
        path = tmp_path / f"b{block}.onnx"
        quantize._w8_blockwise(fp32, path, block_size=block)
        assert _block_sizes(path) == {block}
        cos = row_cosine(calibration.reference, quantize.run_graph(path, calibration.feeds))
        assert cos.min() >= 0.99, (block, cos.min())


def test_search_keeps_the_first_scheme_within_budget(tiny_bundle: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-token scheme that misses the budget is followed by blocks of 128. On a tiny random
    model every scheme is within 1e-7 of fp32, so the miss is made: the per-token graph is built
    as usual and then its weight matrices are replaced by noise."""
    fp32, calibration = _calibration(tiny_bundle)
    build = quantize._rowwise_pairsum

    def damaged(quant_base: Path, out: Path, cal: quantize.Calibration) -> None:
        build(quant_base, out, cal)
        model = onnx.load(str(out))
        rng = np.random.default_rng(0)
        for tensor in model.graph.initializer:
            if tensor.name.endswith("_w_scale"):  # every int8 weight matrix 50 times too large
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 50, tensor.name))
            elif tensor.name.endswith("_w8"):  # and noise
                noise = rng.integers(-127, 128, size=tuple(tensor.dims), dtype=np.int8)
                tensor.CopyFrom(numpy_helper.from_array(noise, tensor.name))
        onnx.save(model, str(out))

    monkeypatch.setattr(quantize, "_rowwise_pairsum", damaged)
    budget = 0.99
    result = quantize.quantize_int8(fp32, fp32, tmp_path / "int8.onnx", calibration,
                                    min_mean_cosine=0.0, min_cosine=budget)
    assert result.scheme == "w8-blockwise-128" and result.token_multiple == 2
    assert [(c.scheme, c.passed) for c in result.candidates] == [
        ("w8a8-rowwise-pairsum", False), ("w8-blockwise-128", True)]
    assert "w8a8-rowwise-pairsum did not" in result.reason
    assert _block_sizes(tmp_path / "int8.onnx") == {128}
    assert sorted(p.name for p in tmp_path.glob("int8*.onnx")) == ["int8.onnx"]  # no candidate left behind


def test_search_tries_every_scheme_in_order_before_giving_up(tiny_bundle: Path, tmp_path: Path) -> None:
    fp32, calibration = _calibration(tiny_bundle)
    lines: list[str] = []
    with pytest.raises(ExportError, match="no scheme met the budget"):
        quantize.quantize_int8(fp32, fp32, tmp_path / "int8.onnx", calibration,
                               min_mean_cosine=0.0, min_cosine=1.01, log=lines.append)
    verdicts = [line.split()[2].rstrip(":") for line in lines if line.startswith("  int8 candidate ")]
    assert verdicts == ["w8a8-rowwise-pairsum", "w8-blockwise-128", "w8-blockwise-32"]
    assert not list(tmp_path.glob("*.onnx"))  # every candidate's file is removed


def test_blocks_of_128_run_on_an_even_token_width(tiny_bundle: Path, tmp_path: Path) -> None:
    """Odd row counts take another rounding path in onnxruntime's VNNI kernel for blocks of 128:
    the search measures that scheme on even widths, the manifest says so, and an encoder pads an
    odd width by one masked padding token, which leaves every vector as it was."""
    fp32, calibration = _calibration(tiny_bundle)
    assert calibration.padded_to(2).feeds[0]["input_ids"].shape[1] % 2 == 0

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    quantize._w8_blockwise(fp32, bundle / "model.onnx", block_size=128)  # the fp32 file, replaced
    edit_manifest(bundle, lambda m: m["variants"]["fp32"].update(token_multiple=2))
    encoder = Encoder(bundle, precision="fp32", verify=False)
    assert encoder.variant.token_multiple == 2
    widths: list[int] = []
    run = encoder._session.run
    def recording(names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        widths.append(feeds["input_ids"].shape[1])
        return run(names, feeds)

    encoder._session.run = recording  # type: ignore[method-assign]
    texts = ["one", "a somewhat longer text than that", "and a third one, longer than both of those"]
    alone = np.stack([encoder.encode(t) for t in texts])
    together = encoder.encode(texts, batch_size=3)
    assert widths and all(w % 2 == 0 for w in widths), widths
    assert float(row_cosine(alone, together).min()) >= 0.99999
