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
from fusembed._manifest import Parity, Quality
from fusembed._similarity import row_cosine

from .resolve import ModelFacts


@dataclass(frozen=True)
class Reference:
    """sentence-transformers' embeddings and token ids for a list of texts."""

    texts: tuple[str, ...]
    embeddings: np.ndarray
    token_ids: tuple[tuple[int, ...], ...] | None  # only where tokenization is compared


def load_sentence_transformer(path: Path) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            "parity checks need sentence-transformers: pip install 'fusembed[export]'"
        ) from None
    return SentenceTransformer(str(path), device="cpu")


def reference_for(
    st_model: Any, texts: Sequence[str], facts: ModelFacts, *, token_ids: bool = True
) -> Reference:
    """Encode `texts` with sentence-transformers and check its settings match `facts`.

    `token_ids` also records its token ids, one text at a time (slow; only the parity texts
    need them)."""
    try:  # sentence-transformers 5.x moved its modules; the old path still works, with a warning
        from sentence_transformers.sentence_transformer.modules import Normalize
    except ImportError:
        from sentence_transformers.models import Normalize  # type: ignore[no-redef]

    checks = {
        "dim": (facts.dim, _embedding_dimension(st_model)),
        "max_seq_length": (facts.max_seq_length, st_model.max_seq_length),
        "normalized": (facts.normalized, any(isinstance(m, Normalize) for m in st_model)),
    }
    for name, (ours, theirs) in checks.items():
        if ours != theirs:
            raise ExportError(f"model files say {name}={ours} but sentence-transformers uses {theirs}")
    emb = np.asarray(st_model.encode(list(texts), batch_size=16, convert_to_numpy=True), dtype=np.float32)
    if not token_ids:
        return Reference(tuple(texts), emb, None)
    return Reference(tuple(texts), emb, tuple(token_ids_of(st_model, texts)))


def token_ids_of(st_model: Any, texts: Sequence[str]) -> list[tuple[int, ...]]:
    """The token ids sentence-transformers feeds its model for each text, one at a time."""
    first = st_model[0]
    # sentence-transformers 5.x renamed tokenize to preprocess; older releases have only tokenize.
    tokenize = getattr(first, "preprocess", None) or first.tokenize
    ids: list[tuple[int, ...]] = []
    for text in texts:  # one at a time: no padding to strip
        feats = tokenize([text])
        ids.append(tuple(int(t) for t in feats["input_ids"][0]))
    return ids


def strips_whitespace(st_model: Any) -> bool:
    """Whether this sentence-transformers gives a text the same ids as the text stripped of its
    edge whitespace. Releases before 5 strip every text; 5.x passes it to the tokenizer as it is,
    which matters for byte-level BPE and SentencePiece (a leading space is a token of its own)
    and not for WordPiece (which splits on whitespace either way)."""
    edged, bare = token_ids_of(st_model, ["  whitespace probe  ", "whitespace probe"])
    return edged == bare


def _embedding_dimension(st_model: Any) -> int:
    # Renamed in sentence-transformers 5.x; the old name still works but warns.
    getter = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
    return int(getter())


def compare(reference: Reference, encoder: Encoder) -> tuple[Parity, str]:
    """Encode the reference texts with `encoder`; return parity and the worst text."""
    if reference.token_ids is None:
        raise ValueError("compare needs a Reference made with token_ids=True")
    got = encoder.encode(list(reference.texts), batch_size=16)
    ours = [tuple(row) for row in encoder.tokenize(list(reference.texts))]
    ref = reference.embeddings
    cos = row_cosine(ref, got)
    worst = int(np.argmin(cos))
    differ = [i for i, (a, b) in enumerate(zip(ours, reference.token_ids, strict=True)) if a != b]
    parity = Parity(
        texts=len(reference.texts),
        max_abs_diff=float(np.max(np.abs(ref - got))),
        min_cosine=float(cos[worst]),
        mean_cosine=float(np.mean(cos)),
        tokenization_match=not differ,
    )
    # Where the token ids differ, that text is the one to show: the vectors follow from the ids.
    return parity, reference.texts[differ[0] if differ else worst]


def gate(parity: Parity, worst_text: str, precision: str, min_cosine: float) -> None:
    """Raise ExportError when a variant misses its parity budget."""
    if not parity.tokenization_match:
        raise ExportError(
            f"{precision}: the bundle's tokenizer does not reproduce sentence-transformers' token ids "
            f"(first on the text {worst_text[:60]!r}); the bundle was not written"
        )
    if parity.min_cosine < min_cosine:
        raise ExportError(
            f"{precision}: parity check failed: min cosine {parity.min_cosine:.7f} < required "
            f"{min_cosine} (max abs diff {parity.max_abs_diff:.2e}; worst text {worst_text[:60]!r}). "
            "The bundle was not written. Try optimize=False (--no-optimize) to rule out a fusion, "
            "or report it."
        )


def measure_quality(reference: Reference, encoder: Encoder, similarity: str) -> Quality:
    """Measure a variant against the fp32 torch reference embeddings of `texts`.

    Besides per-text cosine, it runs a search: every sixth text is a query against the rest, and
    the top-10 results must agree with the reference's. Batch invariance compares each of the
    first 48 texts encoded alone with the same text inside one padded batch of all 48.
    """
    texts, ref = reference.texts, reference.embeddings
    got = encoder.encode(list(texts), batch_size=32)
    cos = row_cosine(ref, got)
    queries = np.arange(0, len(texts), 6)
    corpus = np.setdiff1d(np.arange(len(texts)), queries)
    agreement = _top_k_agreement(ref, got, queries, corpus, similarity, k=10)
    probe = list(texts[:48])
    alone = encoder.encode(probe, batch_size=1)
    together = encoder.encode(probe, batch_size=len(probe))
    return Quality(
        texts=len(texts), mean_cosine=float(cos.mean()), min_cosine=float(cos.min()),
        top10_agreement=agreement, batch_invariance=float(row_cosine(alone, together).min()),
    )


def _top_k_agreement(ref: np.ndarray, got: np.ndarray, queries: np.ndarray, corpus: np.ndarray,
                     similarity: str, k: int) -> float:
    def top(emb: np.ndarray) -> np.ndarray:
        q, c = emb[queries], emb[corpus]
        if similarity == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
            c = c / np.linalg.norm(c, axis=1, keepdims=True)
        return np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]

    a, b = top(ref), top(got)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def gate_quality(quality: Quality, precision: str, *, min_mean: float, min_cosine: float,
                 min_top10: float, min_batch_invariance: float) -> None:
    """Raise ExportError naming every budget a variant misses, by how much."""
    misses = [
        f"{name} {value:.5f} < {budget}"
        for name, value, budget in (
            ("mean cosine", quality.mean_cosine, min_mean),
            ("min cosine", quality.min_cosine, min_cosine),
            ("top-10 agreement", quality.top10_agreement, min_top10),
            ("batch invariance", quality.batch_invariance, min_batch_invariance),
        )
        if value < budget
    ]
    if misses:
        raise ExportError(
            f"{precision}: quality gate failed on {quality.texts} texts against the fp32 torch "
            f"reference: {'; '.join(misses)}. The {precision} variant was not written; use fp32, or "
            + ("relax the int8_min_* budgets (the --int8-min-* options)" if precision == "int8" else
               "relax fp16_min_cosine (the --fp16-min-cosine option)")
            + " if that loss is acceptable."
        )
