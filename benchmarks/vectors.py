"""numpy helpers the benchmark scripts share: comparing embeddings row by row, and batching token
ids as `Encoder.encode` does, for scripts that feed a graph themselves.

Kept apart from `harness.py`, which must stay standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

# Encoder.encode's default token budget per model call (padded tokens), as docs/python.md states.
MAX_TOKENS = 8192


def row_cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Cosine of each row of `a` with the same row of `b`, in float64 so that agreement near 1.0 is
    not rounding noise. Two all-zero rows count as the same vector (cosine 1)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
    cos = np.einsum("ij,ij->i", a64, b64) / np.maximum(na * nb, 1e-12)
    return np.asarray(np.where((na == 0) & (nb == 0), 1.0, cos), dtype=np.float64)


Ids = npt.NDArray[np.int64]


def encoder_batches(rows: Sequence[Sequence[int]], pad_id: int, batch_size: int,
                    max_tokens: int = MAX_TOKENS) -> Iterator[tuple[Ids, Ids]]:
    """(input_ids, attention_mask) per model call, batched the way `Encoder.encode` batches: texts
    sorted longest first, at most `batch_size` texts and `max_tokens` padded tokens per batch, each
    right-padded to its longest text."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # stable: ties keep input order
    start = 0
    while start < len(order):
        width = len(rows[order[start]])
        count = max(1, min(batch_size, max_tokens // max(width, 1)))
        chunk = [rows[i] for i in order[start : start + count]]
        ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for j, row in enumerate(chunk):
            ids[j, : len(row)] = row
            mask[j, : len(row)] = 1
        yield ids, mask
        start += count
