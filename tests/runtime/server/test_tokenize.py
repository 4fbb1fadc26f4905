"""Tokenizing a request for the event loop: inline when small, on a thread when large, and given
up at once when the process it is for has gone."""

from __future__ import annotations

import asyncio
import threading

from fusembed.server._tokenize import INLINE_CHARS, RequestTokenizer


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
