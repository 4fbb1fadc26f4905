"""The five seed architectures at full size: export, then parity with sentence-transformers on
the same (random) weights, measured here on texts the export did not check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fusembed import Encoder
from fusembed.export import ExportOptions, export_model
from fusembed.export.replicas import SEEDS
from fusembed.export.texts import EDGE_TEXTS, varied_texts

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_exports_with_parity(
    name: str, make_replica: Callable[..., Path], tmp_path: Path, fp32_only: ExportOptions
) -> None:
    from sentence_transformers import SentenceTransformer

    seed = SEEDS[name]
    folder = make_replica(seed)
    # int8 and fp16 of every seed are measured by benchmarks/quality.py; here, fp32 and fusions.
    report = export_model(folder, tmp_path / name, options=fp32_only)
    manifest = report.manifest

    # What the bundle says was read from the seed's own files.
    assert manifest.dim == seed.hidden
    assert manifest.max_seq_length == seed.max_seq_length
    assert manifest.normalized is seed.normalize
    assert manifest.similarity == ("cosine" if seed.normalize else "dot")
    assert manifest.variants["fp32"].parity.min_cosine >= 0.99999
    # One fused attention node per layer: the optimiser recognised every layer.
    assert manifest.variants["fp32"].fusions["Attention"] == seed.layers

    st = SentenceTransformer(str(folder), device="cpu")
    enc = Encoder(report.bundle, precision="fp32")
    texts = varied_texts(40, seed=11) + [t for t in EDGE_TEXTS if len(t) > 1000]
    ref = st.encode(texts, convert_to_numpy=True)
    got = enc.encode(texts, batch_size=8)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))

    norms = np.linalg.norm(got, axis=1)
    if seed.normalize:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:  # msmarco-bert-base-dot-v4: lengths carry meaning and must survive
        assert np.ptp(norms) > 1e-3 and not np.allclose(norms, 1.0, atol=1e-3)

    # Truncation at the seed's own length, [SEP] kept, exactly as sentence-transformers cuts.
    long_text = EDGE_TEXTS[-2]
    ours = enc.tokenize([long_text])[0]
    theirs = st[0].preprocess([long_text])["input_ids"][0].tolist()
    assert ours == theirs and len(ours) == seed.max_seq_length and ours[-1] == 102
