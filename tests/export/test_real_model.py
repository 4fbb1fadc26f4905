"""The real all-MiniLM-L6-v2 weights: parity with sentence-transformers on a few hundred texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fusembed import Encoder
from fusembed.export.texts import varied_texts


def test_parity_on_varied_texts(minilm_bundle: Path, minilm_st: Any) -> None:
    texts = varied_texts(300, seed=7)
    ref = minilm_st.encode(texts, convert_to_numpy=True)
    got = Encoder(minilm_bundle, precision="fp32").encode(texts)
    cos = np.sum(ref * got, axis=1)  # both normalised
    assert cos.min() >= 0.99999, texts[int(cos.argmin())]
    assert np.abs(ref - got).max() < 1e-5


def test_tokenization_matches_on_varied_texts(minilm_bundle: Path, minilm_st: Any) -> None:
    texts = varied_texts(300, seed=8)
    enc = Encoder(minilm_bundle)
    ours = enc.tokenize(texts)
    theirs = [minilm_st[0].preprocess([t])["input_ids"][0].tolist() for t in texts]
    assert ours == theirs
    assert max(len(t) for t in ours) == 256  # some texts were long enough to be cut
