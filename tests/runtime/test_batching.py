"""Batch planning and padding: budgets respected, every text once, padding exact."""

from __future__ import annotations

import numpy as np
import pytest
from fusembed._batching import pad_batch, plan_batches


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(32, 8192), (4, 100), (1, 10), (64, 64)])
def test_plan_covers_every_text_once_within_budget(batch_size: int, max_tokens: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 300, size=500).astype(np.int64)
    batches = list(plan_batches(lengths, batch_size, max_tokens))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for idx in batches:
        padded = len(idx) * int(lengths[idx].max())
        assert len(idx) <= batch_size
        assert padded <= max_tokens or len(idx) == 1  # a single over-long text still runs
    widths = [int(lengths[idx].max()) for idx in batches]
    assert widths == sorted(widths, reverse=True)  # longest first


def test_token_budget_packs_short_texts_densely() -> None:
    lengths = np.array([20] * 1000, dtype=np.int64)
    batches = list(plan_batches(lengths, batch_size=10_000, max_tokens=8192))
    assert [len(b) for b in batches[:2]] == [409, 409]


def test_pad_batch() -> None:
    ids, mask = pad_batch([[101, 7, 102], [101, 102], [101, 5, 6, 7, 102]], 0)
    assert ids.tolist() == [[101, 7, 102, 0, 0], [101, 102, 0, 0, 0], [101, 5, 6, 7, 102]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ids.dtype == mask.dtype == np.int64


def test_pad_batch_of_one_row_is_the_row() -> None:
    ids, mask = pad_batch([(101, 7, 102)], 0)
    assert ids.tolist() == [[101, 7, 102]] and mask.tolist() == [[1, 1, 1]]
    assert ids.dtype == mask.dtype == np.int64
    with pytest.raises(ValueError):
        pad_batch([[101, "x", 102]], 0)  # type: ignore[list-item]
