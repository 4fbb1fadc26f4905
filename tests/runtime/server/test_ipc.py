"""The frames the HTTP workers and the model process of `serve --workers N` exchange."""

from __future__ import annotations

import numpy as np
import pytest
from fusembed.server import _ipc


@pytest.mark.parametrize("rows", [[[101, 7592, 102]], [[101, 102], [101, 2, 3, 4, 102], [0]], []])
def test_token_rows_arrive_as_they_were_sent(rows: list[list[int]]) -> None:
    lengths, ids = _ipc.rows_payload(rows)
    assert _ipc.read_rows(lengths, ids) == rows


def test_ids_past_int16_and_near_uint32_survive() -> None:
    rows = [[0, 65535, 65536, 250_001], [2**32 - 1]]
    assert _ipc.read_rows(*_ipc.rows_payload(rows)) == rows


def test_ids_that_do_not_add_up_to_the_lengths_are_refused() -> None:
    lengths, ids = _ipc.rows_payload([[1, 2, 3], [4]])
    with pytest.raises(ValueError, match="3 token ids for texts of 4 tokens"):
        _ipc.read_rows(lengths, ids[:-4])


def test_vectors_arrive_as_they_were_sent() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    header, data = _ipc.vectors_payload(vectors, 17)
    back, tokens = _ipc.read_vectors(header, data)
    np.testing.assert_array_equal(back, vectors)
    assert tokens == 17
