"""Dynamic micro-batching: requests that arrive together run through the model as one batch.

The event loop never runs the model. Each request is tokenized (`RequestTokenizer`: on the loop
when it is small, else on a tokenizer thread), queued with its rows, and a single worker gathers
queued requests into one batch while the batch, padded to its longest row, stays within
`max_batch_tokens`, or until its oldest request has waited `max_wait_s`.
The batch then runs on the model thread as one model call, exactly as gathered (onnxruntime
releases the GIL, so the loop keeps accepting requests meanwhile), and each request gets back its
own rows. While one batch runs the next one fills, so under load batches form without waiting.

A request that fails inside a batch is retried alone, so one bad request fails only itself.

A request that alone is over `max_batch_tokens` runs as model calls within it (longest rows first,
as `Encoder.encode` plans), and between calls it is dropped once its client is gone. So when the
server gives up on its requests (a shutdown past its grace period cancels them), the model thread
is free within one call, not after the whole of a request nobody will read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .._batching import ShapeBuckets, plan_batches
from .._errors import Overloaded, Stopping
from ._tokenize import RequestTokenizer

Embeddings = npt.NDArray[np.float32]
Rows = Sequence[Sequence[int]]


@dataclass(frozen=True)
class BatchStats:
    """What one batch held (one model call, but for a request split because it alone is over the
    token budget); the server records it as metrics. `tokens` are the rows' own, without padding."""

    requests: int
    texts: int
    tokens: int
    seconds: float


@dataclass
class _Job:
    rows: Rows
    tokens: int  # without padding: usage and metrics
    width: int  # the longest row: what the batch is padded to
    future: asyncio.Future[Embeddings]
    arrived: float = field(default_factory=time.perf_counter)
    # Set (on the event loop) once the future is done: before the batch's results are set that
    # means the request was cancelled. The model thread reads this, never the future itself.
    # A plain attribute, not a threading.Event: one store and one load, each atomic in Python,
    # and nothing waits on it.
    gone: bool = False

    def set_gone(self, _future: asyncio.Future[Embeddings]) -> None:
        self.gone = True


class MicroBatcher:
    """Gathers concurrent `embed` calls into batches for one model thread.

    Args:
        tokenize: texts -> token id rows (thread-safe: large requests run on a tokenizer thread).
        encode: token id rows -> embeddings, row for row, in one model call of exactly these rows
            padded to the longest (runs on the model thread).
        batching: False runs every request as its own model call (for comparison).
        max_batch_tokens: padded tokens (rows x longest row) per model call: a batch takes no
            request that would carry it past this. A request over it alone runs by itself, in
            several model calls within it (a row longer than the budget in a call of its own).
        max_wait_s: how long the oldest request in a forming batch may wait for company.
        max_queued: requests allowed to wait; one more gets `Overloaded` at once, rather than
            joining a queue that grows without bound while the model cannot keep up.
        on_batch: called on the event loop after each batch.
        on_queue: called with the number of requests waiting whenever it changes.
        buckets: the shapes `encode` pads every call up to (an encoder with bucketed shapes):
            the budget then counts each batch as padded to its bucket, so that every call stays
            within `max_batch_tokens` as run, and within the shapes warmed for it.

    The limits have neither defaults nor checks here: the server passes its `ServerOptions`, which
    hold both.
    """

    def __init__(
        self,
        tokenize: Callable[[list[str]], list[list[int]]],
        encode: Callable[[Rows], Embeddings],
        *,
        batching: bool,
        max_batch_tokens: int,
        max_wait_s: float,
        max_queued: int,
        on_batch: Callable[[BatchStats], None] = lambda _s: None,
        on_queue: Callable[[int], None] = lambda _n: None,
        buckets: ShapeBuckets | None = None,
    ) -> None:
        self._encode = encode
        self.batching, self.max_batch_tokens, self.max_wait_s = batching, max_batch_tokens, max_wait_s
        self.max_queued = max_queued
        self._on_batch, self._on_queue = on_batch, on_queue
        self._buckets = buckets
        self._pending: collections.deque[_Job] = collections.deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running = 0  # jobs taken off the queue whose results are not yet set
        self._stopping = False
        self._tokenizer = RequestTokenizer(tokenize)
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="fusembed-model")

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="fusembed-batcher")

    async def stop(self) -> None:
        """Finish every queued request, then stop the worker and its threads. Requests that
        arrive meanwhile get `Stopping`; cancelled ones are dropped, not finished."""
        self._stopping = True
        while self._pending or self._running:
            await asyncio.sleep(0.001)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._tokenizer.close()
        self._model_thread.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token id rows of `texts`: on the loop for a small request, else off it."""
        return await self._tokenizer(texts)

    async def embed(self, rows: Rows) -> Embeddings:
        """Embeddings of `rows` (from `tokenize`), row for row, computed in some batch."""
        return await self.submit(rows)

    def submit(self, rows: Rows) -> asyncio.Future[Embeddings]:
        """`embed` for a caller on the event loop that wants the future itself, to cancel it or
        to reply from its callback, without a task per request. Raises `Stopping` or
        `Overloaded` at once when the request is not taken."""
        if self._stopping:
            raise Stopping("the server is shutting down and takes no new requests; retry on another replica")
        if self._worker is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if len(self._pending) >= self.max_queued:
            raise Overloaded(f"{len(self._pending)} requests are already waiting for the model; "
                             "retry shortly")
        lengths = list(map(len, rows))
        job = _Job(rows, sum(lengths), max(lengths, default=0), asyncio.get_running_loop().create_future())
        job.future.add_done_callback(job.set_gone)
        self._pending.append(job)
        self._on_queue(len(self._pending))
        self._arrived.set()
        return job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather()
            self._on_queue(len(self._pending))
            batch = [job for job in batch if not job.future.done()]  # the client gave up: skip it
            if not batch:
                continue
            started = time.perf_counter()
            self._running = len(batch)
            try:
                results = await loop.run_in_executor(self._model_thread, self._encode_batch, batch)
            except BaseException:  # the worker itself is going away: no request may hang on it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("the server's model worker stopped"))
                raise
            finally:
                self._running = 0
            seconds = time.perf_counter() - started
            for job, result in zip(batch, results, strict=True):
                if job.future.done() or result is None:  # cancelled while it ran; the others get theirs
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            self._on_batch(BatchStats(len(batch), sum(len(j.rows) for j in batch),
                                      sum(j.tokens for j in batch), seconds))

    async def _gather(self) -> list[_Job]:
        """Take jobs off the queue, oldest first, while the batch padded to its longest row stays
        within the token budget, until the oldest's wait runs out. The budget is checked before
        adding, so a batch is never over it unless its first job alone is."""
        first = self._pending.popleft()
        batch = [first]
        if not self.batching:
            return batch
        count, width = len(first.rows), first.width
        deadline = first.arrived + self.max_wait_s
        while True:
            if self._pending:
                job = self._pending[0]
                if self._padded(count + len(job.rows), max(width, job.width)) > self.max_batch_tokens:
                    return batch
                self._pending.popleft()
                batch.append(job)
                count, width = count + len(job.rows), max(width, job.width)
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                return batch
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
                return batch

    def _padded(self, rows: int, width: int) -> int:
        """Tokens a call of `rows` rows of up to `width` tokens runs, padding included."""
        if self._buckets is None:
            return rows * width
        rows, width = self._buckets.shape(rows, width)
        return rows * width

    def _encode_batch(self, batch: list[_Job]) -> list[Embeddings | BaseException | None]:
        """On the model thread: the whole batch at once, split back per job (None for a job that
        was cancelled meanwhile). If it fails, each job runs alone, so only the job that cannot be
        encoded gets the error."""
        rows = batch[0].rows if len(batch) == 1 else [row for job in batch for row in job.rows]
        try:
            vectors = self._encode_while_wanted(rows, batch)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            return [self._encode_one(job) for job in batch]
        if vectors is None:
            return [None] * len(batch)
        if len(batch) == 1:
            return [vectors]
        bounds = np.cumsum([0] + [len(job.rows) for job in batch])
        return [vectors[a:b] for a, b in itertools.pairwise(bounds)]

    def _encode_one(self, job: _Job) -> Embeddings | BaseException | None:
        try:
            return self._encode_while_wanted(job.rows, [job])
        except Exception as exc:
            return exc

    def _encode_while_wanted(self, rows: Rows, jobs: list[_Job]) -> Embeddings | None:
        """`rows` in one model call, or, when they are over `max_batch_tokens` padded (only a
        request that alone is over it gets here), in calls of at most that many, longest rows
        first; None as soon as every one of `jobs` is gone."""
        width = max(job.width for job in jobs)
        if self._padded(len(rows), width) <= self.max_batch_tokens or len(rows) == 1:  # what _gather formed
            return None if all(job.gone for job in jobs) else self._encode(rows)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        order, pieces = [], []
        for idx in plan_batches(lengths, len(rows), self.max_batch_tokens, self._buckets):
            if all(job.gone for job in jobs):
                return None
            pieces.append(self._encode([rows[i] for i in idx]))
            order.append(idx)
        vectors = np.concatenate(pieces)
        out = np.empty_like(vectors)
        out[np.concatenate(order)] = vectors
        return out
