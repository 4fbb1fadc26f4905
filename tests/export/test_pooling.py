"""Every pooling mode a model's 1_Pooling/config.json can name is fused and matches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from fusembed import Encoder
from fusembed.export import ExportOptions, export_model
from fusembed.export.replicas import SEEDS, tiny
from fusembed.export.texts import varied_texts


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean",
                                     "lasttoken"])
@pytest.mark.parametrize("normalize", [True, False])
def test_pooling_modes(
    pooling: str, normalize: bool, make_replica: Callable[..., Path], tmp_path: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = make_replica(tiny(SEEDS["msmarco-MiniLM-L6-cos-v5"], pooling=pooling, normalize=normalize))
    # Random weights make near-isotropic vectors whose top-10 neighbours reorder on any rounding:
    # the ranking budget is for real models; per-text cosine is checked below.
    options = ExportOptions(variants=("fp32", "fp16"), quality_texts=200, int8_min_top10=0.0)
    report = export_model(folder, tmp_path / "b", options=options)
    assert set(report.manifest.variants) == {"fp32", "fp16"}, report.rejected  # fp16 for every mode
    assert report.manifest.pooling == pooling
    assert report.manifest.normalized is normalize

    graph = onnx.load(str(report.bundle / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["sentence_embedding"]

    texts = varied_texts(30, seed=2)
    ref = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    got = Encoder(report.bundle).encode(texts, batch_size=4)  # padding differs from the reference
    np.testing.assert_allclose(got, ref, atol=1e-5)
    half = Encoder(report.bundle, precision="fp16").encode(texts, batch_size=4)
    cos = np.sum(half * ref, axis=1) / np.linalg.norm(half, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.999
