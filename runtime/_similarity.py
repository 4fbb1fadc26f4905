"""Scoring and search in numpy, with the semantics of `sentence_transformers.util`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from ._errors import ArgumentError, check_positive_int

ArrayLike = npt.ArrayLike
Scores = npt.NDArray[np.float32]


class Hit(TypedDict):
    """One search result: the index of a corpus row and its score."""

    corpus_id: int
    score: float


def _as_2d(x: ArrayLike, name: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ArgumentError(name, f"must be a vector or a matrix of embeddings, got shape {arr.shape}")
    return arr


def dot_score(a: ArrayLike, b: ArrayLike) -> Scores:
    """Dot product of every row of `a` with every row of `b`: shape `(len(a), len(b))`.

    The score for models that say `similarity == "dot"`, and the fast equal of cosine for
    normalised ones.

    Example:
        >>> dot_score([[1.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]]).tolist()
        [[2.0, 0.0]]
    """
    a2, b2 = _as_2d(a, "a"), _as_2d(b, "b")
    if a2.shape[1] != b2.shape[1]:
        raise ArgumentError("b", f"has {b2.shape[1]} dimensions and a has {a2.shape[1]} (dimension mismatch)")
    return np.asarray(a2 @ b2.T, dtype=np.float32)


def normalize(x: ArrayLike) -> npt.NDArray[np.float32]:
    """L2-normalise rows as torch's `F.normalize` does (norms clamped at 1e-12)."""
    arr = _as_2d(x, "x")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return np.asarray(arr / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def row_cosine(a: ArrayLike, b: ArrayLike) -> npt.NDArray[np.float64]:
    """Cosine of each row of `a` with the same row of `b`, in float64 so that agreement near 1.0
    is not rounding noise. Two all-zero rows (an empty text on a model whose padding embeds to
    zero) are the same vector: cosine 1; a zero row against a non-zero one: 0."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
    cos = np.einsum("ij,ij->i", a64, b64) / np.maximum(na * nb, 1e-12)
    return np.asarray(np.where((na == 0) & (nb == 0), 1.0, cos))


def cos_sim(a: ArrayLike, b: ArrayLike) -> Scores:
    """Cosine similarity of every row of `a` with every row of `b`: shape `(len(a), len(b))`.

    Example:
        >>> cos_sim([[1.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]]).tolist()
        [[1.0, 0.0]]
    """
    return dot_score(normalize(a), normalize(b))


def semantic_search(
    query_embeddings: ArrayLike,
    corpus_embeddings: ArrayLike,
    *,
    top_k: int = 10,
    score_function: Callable[[ArrayLike, ArrayLike], Scores] = cos_sim,
    corpus_chunk_size: int = 100_000,
) -> list[list[Hit]]:
    """The `top_k` corpus rows for each query, best first, as `sentence_transformers.util` returns.

    Ties are broken by the lower corpus index, so results are deterministic.

    Example:
        >>> semantic_search([1.0, 0.0], [[0.0, 1.0], [1.0, 0.1]], top_k=1)
        [[{'corpus_id': 1, 'score': 0.995...}]]
    """
    check_positive_int("top_k", top_k)
    check_positive_int("corpus_chunk_size", corpus_chunk_size)
    queries = _as_2d(query_embeddings, "query_embeddings")
    corpus = _as_2d(corpus_embeddings, "corpus_embeddings")
    # Per chunk keep only the chunk's best k, so memory stays (queries x chunk), not (queries x corpus).
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_scores = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(corpus), corpus_chunk_size):
        scores = np.asarray(score_function(queries, corpus[start : start + corpus_chunk_size]))
        k = min(top_k, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_ids = np.concatenate([best_ids, part + start], axis=1)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
    results: list[list[Hit]] = []
    for ids, scores in zip(best_ids, best_scores, strict=True):
        order = np.lexsort((ids, -scores))[:top_k]
        results.append([Hit(corpus_id=int(ids[j]), score=float(scores[j])) for j in order])
    return results
