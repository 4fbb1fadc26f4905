"""Tokenizing a request for an event loop: small requests on the loop itself, large ones on a
tokenizer thread, so that the loop is never held for long and a one-text request does not pay
for two thread hops (about 40 us of CPU under uvloop, more than tokenizing a short text costs).

A large request is tokenized in pieces, and the thread stops between two pieces once nobody waits
for the rows any more (the client left, or the model process went): a huge request dropped
half-way does not hold a tokenizer thread, or a worker's exit, for the rest of it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

# Requests of up to this many characters are tokenized on the event loop: about 0.3 ms for a
# BERT tokenizer, a pause other requests hardly see. Larger ones go to the tokenizer thread.
INLINE_CHARS = 1024
# The tokenizer thread checks whether the rows are still wanted after each piece of about this
# many characters: tens of milliseconds of work, and large enough that the tokenizers library
# still spreads a piece over every core.
PIECE_CHARS = 1 << 19


def pieces(texts: list[str], chars: int = PIECE_CHARS) -> Iterator[list[str]]:
    """`texts` in consecutive runs of about `chars` characters (each at least one text)."""
    start, size = 0, 0
    for end, text in enumerate(texts, 1):
        size += len(text)
        if size >= chars:
            yield texts[start:end]
            start, size = end, 0
    if start < len(texts):
        yield texts[start:]


class RequestTokenizer:
    """`rows` (texts -> token id rows, thread-safe) for coroutines."""

    def __init__(self, rows: Callable[[list[str]], list[list[int]]]) -> None:
        self._rows = rows
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fusembed-tokenize")

    async def __call__(self, texts: list[str]) -> list[list[int]]:
        if sum(map(len, texts)) <= INLINE_CHARS:
            return self._rows(texts)
        dropped = threading.Event()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(
                self._thread, self._rows_unless, texts, dropped)
        finally:  # cancelled: the thread stops after its current piece
            dropped.set()
        assert rows is not None  # only a set `dropped` gives None, and this waited for the rows
        return rows

    async def unless(self, texts: list[str], stop: asyncio.Future[None]) -> list[list[int]] | None:
        """As calling it, but None as soon as `stop` is done, even while a large request is still
        being tokenized (the thread stops after its current piece)."""
        if sum(map(len, texts)) <= INLINE_CHARS:
            return None if stop.done() else self._rows(texts)
        dropped = threading.Event()
        work = asyncio.get_running_loop().run_in_executor(self._thread, self._rows_unless, texts, dropped)
        try:
            await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                dropped.set()
        return work.result() if work.done() else None

    def _rows_unless(self, texts: list[str], dropped: threading.Event) -> list[list[int]] | None:
        rows: list[list[int]] = []
        for piece in pieces(texts):
            if dropped.is_set():
                return None
            rows += self._rows(piece)
        return rows

    def close(self) -> None:
        self._thread.shutdown(wait=True)
