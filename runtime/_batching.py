"""Batch planning: group texts of similar token length, within a token budget, so batches carry
little padding and no batch outgrows memory; then pad them without a Python loop per token.

On a GPU every new (rows, width) shape costs onnxruntime new allocations and kernel choices, so
there batches are also padded up to a small, fixed set of shapes (`ShapeBuckets`) that are run
once at load: after that no call meets a shape it has not seen.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Padded tokens (texts x longest text) per model call: `Encoder.encode`'s `max_tokens` and the
# server's `max_batch_tokens`. Attention memory grows with batch x length^2: at 512 tokens this
# allows 16 texts (~200 MB of attention scores for a 12-head model).
DEFAULT_MAX_TOKENS = 8192
# Texts per model call in `Encoder.encode`; with short texts this, not the token budget, binds.
DEFAULT_BATCH_SIZE = 32
# The same on CUDA, where a call costs little until it is large: at 512 short texts a batch
# reaches most of what a GPU gives, and 65536 padded tokens keep 512-token batches of a
# 12-layer, 12-head model within about 2 GB of activations.
CUDA_BATCH_SIZE = 512
CUDA_MAX_TOKENS = 65536


def plan_batches(
    lengths: npt.NDArray[np.int64], batch_size: int, max_tokens: int = DEFAULT_MAX_TOKENS,
    buckets: ShapeBuckets | None = None,
) -> Iterator[npt.NDArray[np.int64]]:
    """Yield index arrays into `lengths`, longest texts first.

    A batch holds at most `batch_size` texts and at most `max_tokens` tokens once padded to its
    longest text (a single text longer than the budget still gets a batch of its own). Callers
    write each batch's result back at its indices, so output order equals input order.

    With `buckets`, the budget counts each batch as `buckets.shape` pads it, and a full batch has
    a bucket's row count, so batches padded to their bucket stay within `max_tokens` too.
    """
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        width = int(lengths[order[start]])  # the longest in this batch: sorted descending
        if buckets is not None:
            width = buckets.width(width)
        count = max(1, min(batch_size, max_tokens // max(width, 1)))
        if buckets is not None:
            count = buckets.rows_within(count)
        yield order[start : start + count]
        start += count


def _widths(limit: int) -> tuple[int, ...]:
    """8, 12, 16, 24, 32, 48, ... (powers of two and 1.5 times them) below `limit`, then `limit`."""
    sizes = {limit}
    power = 8
    while power < limit:
        sizes.update(w for w in (power, power * 3 // 2) if w < limit)
        power *= 2
    return tuple(sorted(sizes))


@dataclass(frozen=True)
class ShapeBuckets:
    """The padded shapes a GPU session runs: widths (tokens per row) in steps of about 1.5x up to
    the model's `max_width` (about 12% padding on average), row counts in powers of two.

    Padding is exact: padded positions have attention mask 0, and padded rows repeat the first
    row, whose output is dropped.
    """

    max_width: int  # the model's max_seq_length: no row is longer

    @functools.cached_property  # read on every batch: computed once
    def widths(self) -> tuple[int, ...]:
        return _widths(self.max_width)

    def width(self, width: int) -> int:
        """The smallest bucket width that holds `width` tokens (`width` itself past max_width)."""
        return next((w for w in self.widths if w >= width), width)

    @staticmethod
    def rows_for(rows: int) -> int:
        """The smallest power of two of at least `rows`."""
        return 1 << max(rows - 1, 0).bit_length()

    @staticmethod
    def rows_within(rows: int) -> int:
        """The largest power of two of at most `rows` (at least 1)."""
        return 1 << max(rows.bit_length() - 1, 0)

    def shape(self, rows: int, width: int) -> tuple[int, int]:
        return self.rows_for(rows), self.width(width)

    def warmup_shapes(self, max_rows: int, max_tokens: int) -> list[tuple[int, int]]:
        """Every shape `plan_batches` gives for batches of up to `max_rows` texts within
        `max_tokens` (one-row shapes at every width), largest first, so that a memory arena
        grows once, to its largest size, rather than step by step."""
        rows = [1 << k for k in range(max_rows.bit_length()) if 1 << k <= max_rows]
        shapes = [(r, w) for w in self.widths for r in rows if r == 1 or r * w <= max_tokens]
        return sorted(shapes, key=lambda s: (s[0] * s[1], s[1]), reverse=True)

    def pad(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], pad_id: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(input_ids, attention_mask) from `pad_batch`, padded up to their bucket shape."""
        rows, width = ids.shape
        want_rows, want_width = self.shape(rows, width)
        if (want_rows, want_width) == (rows, width):
            return ids, mask
        out_ids = np.full((want_rows, want_width), pad_id, dtype=np.int64)
        out_mask = np.zeros((want_rows, want_width), dtype=np.int64)
        out_ids[:rows, :width] = ids
        out_mask[:rows, :width] = mask
        out_ids[rows:] = out_ids[0]  # a real row: no all-masked row reaches the pooling
        out_mask[rows:] = out_mask[0]
        return out_ids, out_mask


# The attention_mask value of a prompt token that the model's pooling leaves out: attended to
# like a token (1), pooled like padding (0). The export writes graphs that read it so.
PROMPT_TOKEN = 2


def pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int, prompt_tokens: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token id rows to the longest; return (input_ids, attention_mask) as int64.

    `prompt_tokens` > 0 marks each row's first tokens as a prompt that pooling leaves out
    (mask value 2, for graphs whose manifest has `prompt_in_mask`).
    """
    if len(rows) == 1:  # nothing to pad: a server's one-text request, at a tenth of the cost
        ids = np.asarray(rows, dtype=np.int64)
        return ids, mark_prompt(np.ones_like(ids), prompt_tokens)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max(initial=0))
    mask = np.arange(width) < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    # Boolean assignment fills row by row, and each row's tokens are its first `length` slots.
    ids[mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return ids, mark_prompt(mask.astype(np.int64), prompt_tokens)


def pad_width_to(
    ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], multiple: int, pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """`ids` and `mask` with their token width padded up to a multiple of `multiple` by masked
    padding tokens (the manifest's `token_multiple`); as they are when it already is one."""
    extra = -ids.shape[1] % multiple
    if not extra:
        return ids, mask
    return (np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_id),
            np.pad(mask, ((0, 0), (0, extra))))


def mark_prompt(mask: npt.NDArray[np.int64], prompt_tokens: int) -> npt.NDArray[np.int64]:
    """`mask` with its first `prompt_tokens` columns' tokens (1) marked as prompt (2), in place."""
    if prompt_tokens > 0:
        mask[:, :prompt_tokens] *= PROMPT_TOKEN
    return mask
