"""dot_score, cos_sim and semantic_search agree with sentence_transformers.util."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from fusembed import ArgumentError, _similarity, cos_sim, dot_score, semantic_search

st_util = pytest.importorskip("sentence_transformers.util")


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)


def test_dot_and_cos_match_sentence_transformers(data: tuple[np.ndarray, np.ndarray]) -> None:
    q, c = data
    np.testing.assert_allclose(dot_score(q, c), st_util.dot_score(q, c).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cos_sim(q, c), st_util.cos_sim(q, c).numpy(), rtol=1e-5, atol=1e-6)


def test_vectors_are_treated_as_one_row(data: tuple[np.ndarray, np.ndarray]) -> None:
    q, c = data
    assert dot_score(q[0], c).shape == (1, 40)


@pytest.mark.parametrize("score", ["cos", "dot"])
def test_semantic_search_matches(data: tuple[np.ndarray, np.ndarray], score: str) -> None:
    q, c = data
    ours_fn, theirs_fn = (cos_sim, st_util.cos_sim) if score == "cos" else (dot_score, st_util.dot_score)
    ours = semantic_search(q, c, top_k=7, score_function=ours_fn, corpus_chunk_size=9)
    theirs = st_util.semantic_search(q, c, top_k=7, score_function=theirs_fn)
    for o, t in zip(ours, theirs, strict=True):
        assert [h["corpus_id"] for h in o] == [h["corpus_id"] for h in t]
        np.testing.assert_allclose([h["score"] for h in o], [h["score"] for h in t], rtol=1e-5)


def test_top_k_larger_than_corpus(data: tuple[np.ndarray, np.ndarray]) -> None:
    q, c = data
    assert len(semantic_search(q, c[:3], top_k=10)[0]) == 3


def test_bad_arguments() -> None:
    with pytest.raises(ArgumentError, match="top_k"):
        semantic_search([1.0], [[1.0]], top_k=0)
    with pytest.raises(ArgumentError, match=r"top_k must be a positive int, got 1\.5"):
        semantic_search([1.0], [[1.0]], top_k=1.5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="corpus_chunk_size must be a positive int, got 0"):
        semantic_search([1.0], [[1.0]], corpus_chunk_size=0)
    with pytest.raises(ArgumentError, match="dimension mismatch"):
        dot_score([1.0, 2.0], [[1.0, 2.0, 3.0]])
    with pytest.raises(ArgumentError, match="vector or a matrix"):
        dot_score(np.zeros((1, 2, 3)), np.zeros((1, 3)))


def test_zero_vector_cosine_is_zero_not_nan() -> None:
    assert cos_sim([0.0, 0.0], [[1.0, 0.0]])[0, 0] == 0.0


def test_docstring_examples() -> None:
    result = doctest.testmod(_similarity, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_row_cosine_pairs_rows_and_treats_two_zero_rows_as_equal() -> None:
    from fusembed._similarity import row_cosine

    a = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    np.testing.assert_allclose(row_cosine(a, b), [1.0, 1.0, 0.0, -1.0])
