"""MicroBatcher with a stand-in model: how batches form, and that failures and cancelled
requests stay with their own request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from fusembed import Overloaded, Stopping
from fusembed._batching import ShapeBuckets
from fusembed.server import ServerOptions
from fusembed.server._batcher import BatchStats, MicroBatcher
from fusembed.server._tokenize import INLINE_CHARS


class FakeModel:
    """Row i's embedding is [first id, row length]; records the rows of every call. A row that
    starts with 666 makes the whole call fail, as a bad input would."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[list[int]]] = []
        self.delay = delay
        self.threads: set[str] = set()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [[int(word) for word in text.split()] for text in texts]

    def encode(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.calls.append([list(r) for r in rows])
        time.sleep(self.delay)
        if any(r[0] == 666 for r in rows):
            raise ValueError("bad row")
        return np.asarray([[r[0], len(r)] for r in rows], dtype=np.float32)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def batcher_for(
    model: FakeModel, tokenize: Callable[[list[str]], list[list[int]]] | None = None, **overrides: object
) -> MicroBatcher:
    """A batcher over `model` as the server builds one with default `ServerOptions`, but for
    `overrides` (and `tokenize`, when given)."""
    defaults = ServerOptions()
    settings: dict[str, object] = {
        "batching": defaults.batching, "max_batch_tokens": defaults.max_batch_tokens,
        "max_wait_s": defaults.max_wait_ms / 1000, "max_queued": defaults.max_queued,
    }
    return MicroBatcher(tokenize or model.tokenize, model.encode, **{**settings, **overrides})  # type: ignore[arg-type]


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows() -> None:
    model = FakeModel()
    stats: list[BatchStats] = []

    async def main() -> list[np.ndarray]:
        batcher = batcher_for(model, max_wait_s=0.05, on_batch=stats.append)
        await batcher.start()
        rows = [[[i, 1, 1]] * (i % 3 + 1) for i in range(10)]
        out = await asyncio.gather(*(batcher.embed(r) for r in rows))
        await batcher.stop()
        return out

    out = run(main())
    assert len(model.calls) == 1 and len(model.calls[0]) == sum(i % 3 + 1 for i in range(10))
    for i, vectors in enumerate(out):
        assert vectors.shape == (i % 3 + 1, 2)
        assert (vectors[:, 0] == i).all()
    assert stats[0].requests == 10 and stats[0].tokens == 3 * stats[0].texts
    assert "fusembed-model" in next(iter(model.threads))


def test_batching_off_runs_each_request_alone() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = batcher_for(model, batching=False, max_wait_s=0.05)
        await batcher.start()
        await asyncio.gather(*(batcher.embed([[i]]) for i in range(6)))
        await batcher.stop()

    run(main())
    assert [len(c) for c in model.calls] == [1] * 6


def test_token_budget_closes_a_batch() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = batcher_for(model, max_batch_tokens=10, max_wait_s=0.05)
        await batcher.start()
        # 4 requests of 4 tokens: at most two fit a 10-token batch; one of 12 runs alone.
        await asyncio.gather(*(batcher.embed([[i] * 4]) for i in range(4)), batcher.embed([[9] * 12]))
        await batcher.stop()

    run(main())
    sizes = sorted(sum(map(len, call)) for call in model.calls)
    assert sizes == [8, 8, 12]


def test_a_lone_request_waits_at_most_max_wait() -> None:
    model = FakeModel()

    async def main() -> float:
        batcher = batcher_for(model, max_wait_s=0.2)
        await batcher.start()
        started = time.perf_counter()
        await batcher.embed([[1]])
        waited = time.perf_counter() - started
        await batcher.stop()
        return waited

    assert 0.2 <= run(main()) < 5.0


def test_a_failing_request_fails_alone() -> None:
    model = FakeModel()

    async def main() -> list[object]:
        batcher = batcher_for(model, max_wait_s=0.05)
        await batcher.start()
        out = await asyncio.gather(
            batcher.embed([[1]]), batcher.embed([[666]]), batcher.embed([[3], [4]]), return_exceptions=True
        )
        await batcher.stop()
        return out

    good1, bad, good2 = run(main())
    assert isinstance(bad, ValueError)
    assert good1.tolist() == [[1, 1]] and good2.tolist() == [[3, 1], [4, 1]]  # type: ignore[union-attr]
    assert len(model.calls[0]) == 4  # the shared call failed, then each request ran alone


def test_a_cancelled_request_leaves_its_batch_intact() -> None:
    model = FakeModel(delay=0.1)

    async def main() -> list[np.ndarray]:
        batcher = batcher_for(model, max_wait_s=0.05)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.embed([[i]])) for i in range(8)]
        await asyncio.sleep(0.08)  # the batch is running now
        tasks[3].cancel()  # a client that disconnects
        done = [await t for i, t in enumerate(tasks) if i != 3]
        # A request cancelled before its batch forms is skipped, not run.
        waiting = asyncio.create_task(batcher.embed([[100]]))
        blocker = asyncio.create_task(batcher.embed([[50]]))
        await asyncio.sleep(0)
        waiting.cancel()
        await blocker
        await batcher.stop()
        return done

    done = run(main())
    assert [v[0, 0] for v in done] == [0, 1, 2, 4, 5, 6, 7]
    assert not any(row[0] == 100 for call in model.calls for row in call)


def test_stop_finishes_queued_requests() -> None:
    model = FakeModel(delay=0.05)

    async def main() -> list[np.ndarray]:
        batcher = batcher_for(model, batching=False)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.embed([[i]])) for i in range(5)]
        await asyncio.sleep(0.01)
        await batcher.stop()
        return [t.result() for t in tasks]  # all done by the time stop returns

    assert [v[0, 0] for v in run(main())] == [0, 1, 2, 3, 4]


def test_small_requests_are_tokenized_on_the_loop_and_large_ones_off_it() -> None:
    model = FakeModel()
    seen: list[str] = []

    def tokenize(texts: list[str]) -> list[list[int]]:
        seen.append(threading.current_thread().name)
        return model.tokenize(texts)

    large = ["1 " * (INLINE_CHARS // 4)] * 2 + ["3"]  # INLINE_CHARS + 1 characters

    async def main() -> tuple[list[list[int]], list[list[int]]]:
        batcher = batcher_for(model, tokenize)
        small_rows = await batcher.tokenize(["1 2", "3"])
        large_rows = await batcher.tokenize(large)
        await batcher.stop()
        return small_rows, large_rows

    small_rows, large_rows = run(main())
    assert small_rows == [[1, 2], [3]]
    assert large_rows == [[1] * (INLINE_CHARS // 4)] * 2 + [[3]]
    assert seen[0] == "MainThread"
    assert seen[1].startswith("fusembed-tokenize")


def test_embed_before_start_is_an_error() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = batcher_for(model)
        with pytest.raises(RuntimeError, match="start"):
            await batcher.embed([[1]])
        await batcher.stop()

    run(main())


def test_a_full_queue_refuses_at_once() -> None:
    model = FakeModel(delay=0.2)

    async def main() -> list[object]:
        batcher = batcher_for(model, batching=False, max_queued=2)
        await batcher.start()
        first = asyncio.create_task(batcher.embed([[0]]))
        await asyncio.sleep(0.05)  # the first request is on the model; the next two wait
        waiting = [asyncio.create_task(batcher.embed([[i]])) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="2 requests are already waiting"):
            await batcher.embed([[3]])
        out = [await first, *[await t for t in waiting]]
        await batcher.stop()
        return out

    assert [v[0, 0] for v in run(main())] == [0, 1, 2]  # type: ignore[index]


def test_a_request_over_the_token_budget_runs_in_calls_within_it() -> None:
    model = FakeModel()

    async def main() -> np.ndarray:
        batcher = batcher_for(model, max_batch_tokens=10)
        await batcher.start()
        out = await batcher.embed([[i] * (i % 3 + 1) for i in range(12)] + [[99] * 11])
        await batcher.stop()
        return out

    out = run(main())
    assert out[:, 0].tolist() == [*range(12), 99]
    assert out[:, 1].tolist() == [i % 3 + 1 for i in range(12)] + [11]
    # Longest rows first, as Encoder.encode plans: each call within 10 tokens padded to its longest
    # row (the next row would pass it), but for the row that alone is over; every row once.
    shapes = [(len(call), max(map(len, call))) for call in model.calls]
    assert shapes == [(1, 11), (3, 3), (3, 3), (5, 2), (1, 1)]
    assert sorted(row[0] for call in model.calls for row in call) == [*range(12), 99]


def test_what_the_batcher_gathers_is_one_model_call_within_the_padded_budget() -> None:
    """The budget counts padded tokens, rows x the longest row, as the model sees them; requests
    run in the order they came, as one call holding exactly their rows."""
    model = FakeModel()
    stats: list[BatchStats] = []
    requests = [
        [[1] * 4] * 3,  # 3 rows of 4: 12 padded tokens
        [[2] * 8],  # with it: 4 rows of 8 = 32
        [[3] * 2] * 2,  # would make 6 x 8 = 48 > 40 (though only 24 unpadded): the next batch
        [[4] * 8],  # with it: 3 x 8 = 24
    ]

    async def main() -> list[np.ndarray]:
        batcher = batcher_for(model, max_batch_tokens=40, max_wait_s=0.05, on_batch=stats.append)
        await batcher.start()
        out = await asyncio.gather(*(batcher.embed(rows) for rows in requests))
        await batcher.stop()
        return out

    out = run(main())
    assert model.calls == [requests[0] + requests[1], requests[2] + requests[3]]
    assert [len(call) * max(map(len, call)) for call in model.calls] == [32, 24]
    assert [(s.requests, s.texts, s.tokens) for s in stats] == [(2, 4, 20), (2, 3, 12)]
    assert [v[:, 0].tolist() for v in out] == [[1, 1, 1], [2], [3, 3], [4]]


def test_many_small_requests_are_not_split_below_the_budget() -> None:
    """No second planner with limits of its own: 100 one-row requests that fit the budget are one
    model call of 100 rows (Encoder.encode would run 32 texts per call)."""
    model = FakeModel()

    async def main() -> None:
        batcher = batcher_for(model, max_batch_tokens=400, max_wait_s=0.05)
        await batcher.start()
        await asyncio.gather(*(batcher.embed([[i, 0, 0, 0]]) for i in range(100)))
        await batcher.stop()

    run(main())
    assert [[row[0] for row in call] for call in model.calls] == [list(range(100))]


def test_a_request_cancelled_while_it_runs_stops_using_the_model() -> None:
    """What a server's shutdown past its grace period does: the rest of the request is dropped,
    and stop returns after the call that was running, not after the whole request."""
    model = FakeModel(delay=0.2)

    async def main() -> float:
        batcher = batcher_for(model, max_batch_tokens=1)  # a call per row
        await batcher.start()
        task = asyncio.create_task(batcher.embed([[i] for i in range(10)]))
        await asyncio.sleep(0.1)  # the first call is running
        task.cancel()
        await batcher.stop()
        return task.cancelled()

    assert run(main())
    assert len(model.calls) == 1


def test_requests_during_or_after_stop_are_refused() -> None:
    model = FakeModel(delay=0.2)

    async def main() -> tuple[np.ndarray, list[BaseException]]:
        batcher = batcher_for(model, batching=False)
        await batcher.start()
        first = asyncio.create_task(batcher.embed([[1]]))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0)
        refused = await asyncio.gather(batcher.embed([[2]]), return_exceptions=True)
        await stopping
        refused += await asyncio.gather(batcher.embed([[3]]), return_exceptions=True)
        return await first, refused  # type: ignore[return-value]

    first, refused = run(main())
    assert first.tolist() == [[1, 1]]  # queued before stop: finished
    assert [type(e) for e in refused] == [Stopping, Stopping]
    assert all("shutting down" in str(e) for e in refused)
    assert [row[0] for call in model.calls for row in call] == [1]


def test_with_bucketed_shapes_the_budget_counts_each_batch_as_padded_to_its_bucket() -> None:
    """An encoder with bucketed shapes (the CUDA default) pads every call up to a power of two of
    rows and a bucket width: the batcher counts that, so no call runs more padded tokens than the
    budget, nor a shape outside those warmed for it."""
    buckets = ShapeBuckets(512)
    requests = [[[i] * 9] for i in range(7)]  # 7 x 9 = 63 tokens; padded to the bucket, 8 x 12 = 96
    for bucketed in (False, True):
        model = FakeModel()

        async def main(model: FakeModel, bucketed: bool) -> None:
            batcher = batcher_for(model, max_batch_tokens=64, max_wait_s=0.05,
                                  buckets=buckets if bucketed else None)
            await batcher.start()
            await asyncio.gather(*(batcher.embed(rows) for rows in requests))
            await batcher.stop()

        run(main(model, bucketed))
        padded = [buckets.shape(len(call), max(map(len, call))) for call in model.calls]
        if bucketed:
            assert padded == [(4, 12), (4, 12)] and all(r * w <= 64 for r, w in padded)
            assert set(padded) <= set(buckets.warmup_shapes(64 // 8, 64))
        else:
            assert padded == [(8, 12)]  # one call of 63 tokens, which the bucket pads to 96


def test_a_request_over_the_budget_is_split_within_it_as_padded() -> None:
    model = FakeModel()
    buckets = ShapeBuckets(512)

    async def main() -> None:
        batcher = batcher_for(model, max_batch_tokens=64, buckets=buckets)
        await batcher.start()
        await batcher.embed([[i] * 9 for i in range(7)])  # alone: 7 x 9 = 63, padded 96
        await batcher.stop()

    run(main())
    padded = [buckets.shape(len(call), max(map(len, call))) for call in model.calls]
    assert all(r * w <= 64 for r, w in padded) and sum(map(len, model.calls)) == 7, padded
