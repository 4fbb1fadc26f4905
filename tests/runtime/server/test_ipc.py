"""The frames the HTTP workers and the model process of `serve --workers N` exchange."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest
from fusembed import Encoder
from fusembed.server import ServerOptions, _ipc, _owner


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


class FakeRouter:
    """The model process's ROUTER socket, as `_Owner._receive` uses it: `messages` come in one by
    one, then the receiver is cancelled; what it sends is kept."""

    def __init__(self, messages: list[list[bytes]]) -> None:
        self.messages, self.sent = messages, []  # type: list[list[bytes]], list[list[bytes]]

    async def recv_multipart(self) -> list[bytes]:
        if not self.messages:
            raise asyncio.CancelledError
        return self.messages.pop(0)

    async def send_multipart(self, frames: list[bytes]) -> None:
        self.sent.append(frames)


def test_the_model_process_answers_a_malformed_embed_message_with_an_error(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """A message it cannot read (a worker of another fusembed) gets an error reply for its request,
    and the model process goes on reading the next one."""
    with socket.socket() as listener:
        owner = _owner._Owner(Encoder(tiny_bundle), ServerOptions(), listener, tmp_path)
    lengths, ids = _ipc.rows_payload([[101, 7, 102]])
    router = FakeRouter([
        [b"w1", _ipc.EMBED, _ipc.request_id(1), b"", lengths],  # a frame short
        [b"w1", _ipc.EMBED, _ipc.request_id(2), b"", lengths, ids[:-4]],  # ids short of the lengths
    ])

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await owner._receive(router)  # type: ignore[arg-type]
        await asyncio.gather(*owner.tasks.values())

    asyncio.run(main())
    assert [(frames[0], frames[1], frames[2]) for frames in router.sent] == [
        (b"w1", _ipc.request_id(1), _ipc.ERROR), (b"w1", _ipc.request_id(2), _ipc.ERROR)]
    assert _ipc.read_error(router.sent[0][3]) == ("internal_error", "an EMBED message has 2 frames, not 3")
    code, message = _ipc.read_error(router.sent[1][3])
    assert code == "internal_error" and "2 token ids for texts of 3 tokens" in message
