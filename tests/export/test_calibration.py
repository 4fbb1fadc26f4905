"""The calibration statistics the int8 step takes from the fp32 graph: reduced inside the graph
(one vector per tensor per batch), equal to the maxima over every real token's activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from fusembed import read_manifest
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
