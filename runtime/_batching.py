"""Batch planning: group texts of similar token length so batches carry little padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt


def plan_batches(lengths: npt.NDArray[np.int64], batch_size: int) -> Iterator[npt.NDArray[np.int64]]:
    """Yield index arrays into `lengths`, longest texts first, `batch_size` at most per batch.

    Callers write each batch's result back at its indices, so output order equals input order.
    Longest first means the biggest allocation happens at once, not after a long run.
    """
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def pad_batch(
    rows: Sequence[Sequence[int]], width: int, pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token id rows to `width`; return (input_ids, attention_mask) as int64."""
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
