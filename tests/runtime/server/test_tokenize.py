"""Tokenizing a request for the event loop: inline when small, on a thread when large, given up
at once when the process it is for has gone, and the thread's work stopped after the piece it is
on once nobody waits for the rows."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fusembed.server._tokenize import INLINE_CHARS, PIECE_CHARS, RequestTokenizer, pieces


def test_a_large_request_is_given_up_as_soon_as_stop_is_done() -> None:
    release = threading.Event()
    seen: list[str] = []

    def slow_rows(texts: list[str]) -> list[list[int]]:
        seen.append(threading.current_thread().name)
        release.wait(10)  # a tokenizer still busy when the model process goes
        return [[len(text)] for text in texts]

    tokenizer = RequestTokenizer(slow_rows)

    async def main() -> list[list[int]] | None:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, stop.set_result, None)
        return await tokenizer.unless(["x" * (INLINE_CHARS + 1)], stop)

    assert asyncio.run(main()) is None
    assert seen and seen[0].startswith("fusembed-tokenize")
    release.set()
    tokenizer.close()


def test_unless_returns_the_rows_when_stop_stays_pending() -> None:
    tokenizer = RequestTokenizer(lambda texts: [[len(text)] for text in texts])

    async def main() -> tuple[list[list[int]] | None, list[list[int]] | None]:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        large = await tokenizer.unless(["x" * (INLINE_CHARS + 1)], stop)
        small = await tokenizer.unless(["ab", "c"], stop)
        return large, small

    assert asyncio.run(main()) == ([[INLINE_CHARS + 1]], [[2], [1]])
    tokenizer.close()


def test_a_small_request_after_stop_is_not_tokenized() -> None:
    calls: list[list[str]] = []
    tokenizer = RequestTokenizer(lambda texts: calls.append(texts) or [[1] for _ in texts])

    async def main() -> list[list[int]] | None:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stop.set_result(None)
        return await tokenizer.unless(["small"], stop)

    assert asyncio.run(main()) is None and calls == []
    tokenizer.close()


def test_pieces_cover_the_texts_in_order() -> None:
    texts = [f"{i}" * (i % 7 + 1) for i in range(200)]
    split = list(pieces(texts, chars=50))
    assert [t for piece in split for t in piece] == texts
    assert all(sum(map(len, piece)) >= 50 for piece in split[:-1])
    assert all(sum(map(len, piece[:-1])) < 50 for piece in split)  # none longer than it must be
    assert list(pieces(["x" * 500, "y"], chars=50)) == [["x" * 500], ["y"]]
    assert list(pieces([])) == []


def held_after_one_piece() -> tuple[list[str], RequestTokenizer, list[int], threading.Event]:
    """Ten pieces of texts, and a tokenizer that records each call's size and holds every call
    after the first until `release` is set."""
    calls: list[int] = []
    release = threading.Event()

    def rows(texts: list[str]) -> list[list[int]]:
        calls.append(len(texts))
        if len(calls) > 1:
            release.wait(10)
        return [[1] for _ in texts]

    return ["x" * PIECE_CHARS] * 10, RequestTokenizer(rows), calls, release


def test_a_large_request_is_tokenized_piece_by_piece_into_one_list_of_rows() -> None:
    calls: list[int] = []
    tokenizer = RequestTokenizer(lambda texts: calls.append(len(texts)) or [[len(t)] for t in texts])
    texts = ["ab" * (PIECE_CHARS // 4)] * 5  # two texts a piece

    async def main() -> tuple[list[list[int]], list[list[int]] | None]:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        return await tokenizer(texts), await tokenizer.unless(texts, stop)

    assert asyncio.run(main()) == ([[PIECE_CHARS // 2]] * 5,) * 2
    assert calls == [2, 2, 1] * 2
    tokenizer.close()


def test_the_thread_stops_after_its_piece_when_stop_is_done() -> None:
    texts, tokenizer, calls, release = held_after_one_piece()

    async def main() -> list[list[int]] | None:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, stop.set_result, None)
        return await tokenizer.unless(texts, stop)

    assert asyncio.run(main()) is None
    release.set()
    tokenizer.close()  # returns once the thread is idle: after the piece it was on, not all ten
    assert calls == [1, 1]


def test_the_thread_stops_after_its_piece_when_the_caller_is_cancelled() -> None:
    texts, tokenizer, calls, release = held_after_one_piece()

    async def main() -> None:
        task = asyncio.ensure_future(tokenizer(texts))
        await asyncio.sleep(0.05)
        task.cancel()  # the client left
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    release.set()
    tokenizer.close()
    assert calls == [1, 1]
