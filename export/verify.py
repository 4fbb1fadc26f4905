"""Step 5: measure parity of a written bundle against sentence-transformers on the same texts.

The reference is sentence-transformers itself (torch), the candidate is the bundle through the
runtime `Encoder`: exactly what users will run. Tokenization is compared id for id, so a
truncation or normalisation difference fails even when the vectors happen to be close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fusembed._encoder import Encoder
from fusembed._errors import ExportError
from fusembed._manifest import Parity

from .resolve import ModelFacts


@dataclass(frozen=True)
class Reference:
    """sentence-transformers' embeddings and token ids for a list of texts."""

    texts: tuple[str, ...]
    embeddings: np.ndarray
    token_ids: tuple[tuple[int, ...], ...]


def load_sentence_transformer(path: Path) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            "parity checks need sentence-transformers: pip install 'fusembed[export]'"
        ) from None
    return SentenceTransformer(str(path), device="cpu")


def reference_for(st_model: Any, texts: Sequence[str], facts: ModelFacts) -> Reference:
    """Encode `texts` with sentence-transformers and check its settings match `facts`."""
    from sentence_transformers.models import Normalize

    checks = {
        "dim": (facts.dim, _embedding_dimension(st_model)),
        "max_seq_length": (facts.max_seq_length, st_model.max_seq_length),
        "normalized": (facts.normalized, any(isinstance(m, Normalize) for m in st_model)),
    }
    for name, (ours, theirs) in checks.items():
        if ours != theirs:
            raise ExportError(f"model files say {name}={ours} but sentence-transformers uses {theirs}")
    emb = st_model.encode(list(texts), batch_size=16, convert_to_numpy=True)
    first = st_model[0]
    # sentence-transformers 5.x renamed tokenize to preprocess; older releases have only tokenize.
    tokenize = getattr(first, "preprocess", None) or first.tokenize
    ids: list[tuple[int, ...]] = []
    for text in texts:  # one at a time: no padding to strip
        feats = tokenize([text])
        ids.append(tuple(int(t) for t in feats["input_ids"][0]))
    return Reference(tuple(texts), np.asarray(emb, dtype=np.float32), tuple(ids))


def _embedding_dimension(st_model: Any) -> int:
    # Renamed in sentence-transformers 5.x; the old name still works but warns.
    getter = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return int(getter())


def compare(reference: Reference, bundle: Path, precision: str) -> tuple[Parity, str]:
    """Encode the reference texts with the bundle; return parity and the worst text."""
    encoder = Encoder(bundle, precision=precision, verify=False)  # type: ignore[arg-type]
    got = encoder.encode(list(reference.texts), batch_size=16)
    ours = [tuple(e.ids) for e in encoder._tokenizer.encode_batch(list(reference.texts))]
    ref = reference.embeddings
    cos = _row_cosine(ref, got)
    worst = int(np.argmin(cos))
    parity = Parity(
        texts=len(reference.texts),
        max_abs_diff=float(np.max(np.abs(ref - got))),
        min_cosine=float(cos[worst]),
        mean_cosine=float(np.mean(cos)),
        tokenization_match=ours == list(reference.token_ids),
    )
    return parity, reference.texts[worst]


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)


def gate(parity: Parity, worst_text: str, precision: str, min_cosine: float) -> None:
    """Raise ExportError when a variant misses its parity budget."""
    if not parity.tokenization_match:
        raise ExportError(
            f"{precision}: the bundle's tokenizer does not reproduce sentence-transformers' token ids; "
            "the bundle was not written"
        )
    if parity.min_cosine < min_cosine:
        raise ExportError(
            f"{precision}: parity check failed: min cosine {parity.min_cosine:.7f} < required "
            f"{min_cosine} (max abs diff {parity.max_abs_diff:.2e}; worst text {worst_text[:60]!r}). "
            "The bundle was not written. Try --no-optimize to rule out a fusion, or report it."
        )
