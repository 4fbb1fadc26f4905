"""The calibration statistics the int8 step takes from the fp32 graph: reduced inside the graph
(one vector per tensor per batch), equal to the maxima over every real token's activations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from fusembed import ExportError, read_manifest
from fusembed.export import quantize
from fusembed.export.texts import varied_texts
from tokenizers import Tokenizer


def test_channel_maxima_reduced_in_the_graph_equal_the_full_activations(tiny_bundle: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    tokenizer = Tokenizer.from_file(str(tiny_bundle / manifest.tokenizer))
    fp32 = tiny_bundle / manifest.variants["fp32"].file
    # varied lengths, so that batches are padded and padded positions must be left out
    calibration = quantize.Calibration.build(tokenizer, varied_texts(40, seed=3), fp32, manifest.pad_token_id)
    model = onnx.load(str(fp32))
    names = list(dict.fromkeys(n.input[0] for n in model.graph.node if n.op_type == "MatMul"))
    assert names
    reduced = quantize._channel_abs_max(model, names, calibration)

    full: dict[str, np.ndarray] = {}
    for values in quantize._probe(model, names, calibration):  # every activation, padding removed
        for name, value in values.items():
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            full[name] = np.maximum(full[name], peak) if name in full else peak
    for name in names:
        np.testing.assert_array_equal(reduced[name], full[name])
        assert reduced[name].ndim == 1 and reduced[name].max() > 0


def test_the_rowwise_fallback_keeps_the_last_two_layers_float_and_reuses_the_maxima(
        make_replica: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When every layer in int8 misses the budget, the next candidate keeps the last two layers'
    MatMuls in float; it takes the activation maxima the first measured, not a second fp32 run."""
    from fusembed.export.graph import build_fused_graph
    from fusembed.export.optimize import optimize_graph
    from fusembed.export.replicas import SEEDS, tiny
    from fusembed.export.resolve import resolve_model
    from fusembed.export.verify import load_sentence_transformer

    folder = make_replica(tiny(SEEDS["all-MiniLM-L6-v1"], layers=4))
    resolved = resolve_model(folder)
    raw, fp32, base = tmp_path / "raw.onnx", tmp_path / "fp32.onnx", tmp_path / "base.onnx"
    build_fused_graph(load_sentence_transformer(resolved.path), resolved, raw)
    optimize_graph(raw, fp32, resolved.facts)
    optimize_graph(raw, base, resolved.facts, for_quantization=True)
    assert quantize._layer_count(base) == 4
    calibration = quantize.Calibration.build(
        Tokenizer.from_file(str(folder / "tokenizer.json")), varied_texts(48, seed=5), fp32, 0)

    probes = []
    real_probe = quantize._channel_abs_max
    monkeypatch.setattr(quantize, "_channel_abs_max", lambda *a: probes.append(a[1]) or real_probe(*a))
    log: list[str] = []
    with pytest.raises(ExportError, match="no scheme met the budget"):  # min cosine 1.01: none can
        quantize.quantize_int8(fp32, base, tmp_path / "int8.onnx", calibration,
                               min_mean_cosine=0.0, min_cosine=1.01, log=log.append)
    tried = [line.split()[2].rstrip(":") for line in log if "int8 candidate" in line]
    assert tried == ["w8a8-rowwise-pairsum", "w8a8-rowwise-pairsum-last2-fp32", "w8-blockwise"]
    assert len(probes) == 1  # the fallback reused the maxima

    out = tmp_path / "tail.onnx"
    quantize._rowwise_pairsum(base, out, calibration,
                              keep_float=lambda n: quantize._layer_of(n.name) >= 2)
    graph = onnx.load(str(out)).graph
    inits = {t.name for t in graph.initializer}
    float_layers = {quantize._layer_of(n.name) for n in graph.node
                    if n.op_type == "MatMul" and n.input[1] in inits}
    assert float_layers == {2, 3}
    assert any(n.op_type == "MatMulIntegerToFloat" for n in graph.node)
