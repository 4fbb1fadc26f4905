"""Batch planning and padding: budgets respected, every text once, padding exact."""

from __future__ import annotations

import numpy as np
import pytest
from fusembed._batching import ShapeBuckets, pad_batch, pad_width_to, plan_batches


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


def test_bucket_widths_and_rows() -> None:
    buckets = ShapeBuckets(max_width=256)
    assert buckets.widths == (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
    assert ShapeBuckets(max_width=200).widths[-3:] == (128, 192, 200)  # the model's limit is a bucket
    assert [buckets.width(n) for n in (1, 8, 9, 13, 100, 256)] == [8, 8, 12, 16, 128, 256]
    assert [buckets.rows_for(n) for n in (1, 2, 3, 5, 512, 513)] == [1, 2, 4, 8, 512, 1024]
    assert [buckets.rows_within(n) for n in (1, 3, 100, 512)] == [1, 2, 64, 512]


def test_bucketed_plan_stays_within_budget_once_padded() -> None:
    """Each batch padded to its bucket holds at most batch_size texts and max_tokens tokens (but
    for a lone over-long text), and every full batch is already a bucket's row count."""
    buckets = ShapeBuckets(max_width=512)
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 513, size=3000).astype(np.int64)
    batches = list(plan_batches(lengths, 100, 8192, buckets))
    assert sorted(np.concatenate(batches).tolist()) == list(range(3000))
    for idx in batches:
        rows, width = buckets.shape(len(idx), int(lengths[idx].max()))
        assert rows <= 100 and (rows * width <= 8192 or rows == 1)
    assert all(len(idx) == buckets.rows_for(len(idx)) for idx in batches[:-1])


def test_bucket_padding_is_masked_and_repeats_a_real_row() -> None:
    buckets = ShapeBuckets(max_width=64)
    ids, mask = pad_batch([[101, 7, 102], [101, 5, 6, 7, 8, 9, 10, 11, 12, 102], [101, 102]], 0)
    big_ids, big_mask = buckets.pad(ids, mask, 0)
    assert big_ids.shape == big_mask.shape == (4, 12)
    np.testing.assert_array_equal(big_ids[:3, :10], ids)
    np.testing.assert_array_equal(big_mask[:3, :10], mask)
    assert not big_mask[:3, 10:].any() and not big_ids[:3, 10:].any()  # pad id, masked out
    np.testing.assert_array_equal(big_ids[3], big_ids[0])
    np.testing.assert_array_equal(big_mask[3], big_mask[0])
    same_ids, same_mask = buckets.pad(big_ids, big_mask, 0)
    assert same_ids is big_ids and same_mask is big_mask  # already a bucket: no copy


def test_warmup_shapes_cover_every_planned_shape_largest_first() -> None:
    buckets = ShapeBuckets(max_width=256)
    shapes = buckets.warmup_shapes(max_rows=64, max_tokens=4096)
    sizes = [r * w for r, w in shapes]
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(shapes)) == len(shapes)
    assert all(r == 1 or r * w <= 4096 for r, w in shapes)
    assert {(1, w) for w in buckets.widths} <= set(shapes)
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 257, size=2000).astype(np.int64)
    for size in (64, 5, 1):
        for idx in plan_batches(lengths, size, 4096, buckets):
            assert buckets.shape(len(idx), int(lengths[idx].max())) in set(shapes)


def test_pad_width_to_a_multiple() -> None:
    ids, mask = pad_batch([[101, 7, 102], [101, 102]], 0)
    even_ids, even_mask = pad_width_to(ids, mask, 2, 0)
    assert even_ids.tolist() == [[101, 7, 102, 0], [101, 102, 0, 0]]
    assert even_mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert pad_width_to(even_ids, even_mask, 2, 0)[0] is even_ids  # already a multiple: untouched
    assert pad_width_to(ids, mask, 1, 0)[0] is ids
    assert pad_width_to(ids, mask, 4, 9)[0].tolist() == [[101, 7, 102, 9], [101, 102, 0, 9]]
