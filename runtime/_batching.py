"""Batch planning: group texts of similar token length, within a token budget, so batches carry
little padding and no batch outgrows memory; then pad them without a Python loop per token."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

# Padded tokens (texts x longest text) per model call: `Encoder.encode`'s `max_tokens` and the
# server's `max_batch_tokens`. Attention memory grows with batch x length^2: at 512 tokens this
# allows 16 texts (~200 MB of attention scores for a 12-head model).
DEFAULT_MAX_TOKENS = 8192
# Texts per model call in `Encoder.encode`; with short texts this, not the token budget, binds.
DEFAULT_BATCH_SIZE = 32


def plan_batches(
    lengths: npt.NDArray[np.int64], batch_size: int, max_tokens: int = DEFAULT_MAX_TOKENS
) -> Iterator[npt.NDArray[np.int64]]:
    """Yield index arrays into `lengths`, longest texts first.

    A batch holds at most `batch_size` texts and at most `max_tokens` tokens once padded to its
    longest text (a single text longer than the budget still gets a batch of its own). Callers
    write each batch's result back at its indices, so output order equals input order.
    """
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        width = int(lengths[order[start]])  # the longest in this batch: sorted descending
        count = max(1, min(batch_size, max_tokens // max(width, 1)))
        yield order[start : start + count]
        start += count


def pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token id rows to the longest; return (input_ids, attention_mask) as int64."""
    if len(rows) == 1:  # nothing to pad: a server's one-text request, at a tenth of the cost
        ids = np.asarray(rows, dtype=np.int64)
        return ids, np.ones_like(ids)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max(initial=0))
    mask = np.arange(width) < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    # Boolean assignment fills row by row, and each row's tokens are its first `length` slots.
    ids[mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return ids, mask.astype(np.int64)
