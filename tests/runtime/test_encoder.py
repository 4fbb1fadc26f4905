"""Encoder behaviour on the real all-MiniLM-L6-v2 bundle: shapes, order, bad input, threads."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from fusembed import ArgumentError, Encoder, InputError, dot_score

QUERY = "How many people live in London?"
DOCS = ["Around 9 Million people live in London", "London is known for its financial district"]


@pytest.fixture(scope="module")
def encoder(minilm_bundle: Path) -> Encoder:
    return Encoder(minilm_bundle)


def test_properties_come_from_the_manifest(encoder: Encoder) -> None:
    assert (encoder.dim, encoder.max_seq_length) == (384, 256)
    assert encoder.normalized is True
    assert encoder.similarity == "cosine"
    assert encoder.precision == "int8"  # "auto" on the CPU picks int8 when the bundle has it


def test_shapes_and_dtype(encoder: Encoder) -> None:
    many = encoder.encode(DOCS)
    one = encoder.encode(QUERY)
    assert many.shape == (2, 384) and many.dtype == np.float32
    assert one.shape == (384,) and one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)


def test_empty_list_gives_zero_rows(encoder: Encoder) -> None:
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_seed_example_ranks_london_population_first(encoder: Encoder) -> None:
    scores = dot_score(encoder.encode(QUERY), encoder.encode(DOCS))[0]
    ranked = [doc for _, doc in sorted(zip(scores, DOCS, strict=True), reverse=True)]
    assert ranked[0] == "Around 9 Million people live in London"
    assert scores[0] - scores[1] > 0.2


def test_output_order_is_input_order_whatever_the_batching(encoder: Encoder) -> None:
    from fusembed.export.texts import varied_texts

    texts = varied_texts(60, seed=3)
    alone = np.stack([encoder.encode(t) for t in texts[:12]])
    for batch_size in (1, 7, 64):
        got = encoder.encode(texts, batch_size=batch_size)
        np.testing.assert_allclose(got[:12], alone, atol=1e-5)
    fp32 = Encoder(encoder.bundle, precision="fp32")
    reference = fp32.encode(texts, batch_size=1)
    for max_tokens in (64, 1000, 100_000):  # batch composition must not matter: fp32 within 1e-5
        np.testing.assert_allclose(fp32.encode(texts, batch_size=64, max_tokens=max_tokens),
                                   reference, atol=1e-5)
    reversed_ = encoder.encode(texts[::-1], batch_size=7)[::-1]
    np.testing.assert_allclose(reversed_, encoder.encode(texts, batch_size=7), atol=1e-5)


def test_empty_and_whitespace_strings_are_valid_texts(encoder: Encoder) -> None:
    out = encoder.encode(["", "   ", "a"])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # stripped, as sentence-transformers does


def test_huge_text_is_truncated_not_rejected(encoder: Encoder) -> None:
    words = ("London is a large city on the Thames " * 200_000).split()
    huge = " ".join(words)  # about 7 MB
    head = " ".join(words[:400])  # already past 256 word pieces
    np.testing.assert_allclose(encoder.encode(huge), encoder.encode(head), atol=1e-6)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["ok", 3], r"texts\[1\] is int"),
        ([None], r"texts\[0\] is NoneType"),
        (b"x", "got bytes"),
        (42, "got int"),
        ({"a": 1}, "got dict"),
        (["ok", b"raw"], r"texts\[1\] is bytes"),
        (["ok", "caf\u00e9 \ud800"], r"texts\[1\] has a lone surrogate at position 5"),
        ("\udcff", "lone surrogate at position 0"),
    ],
)
def test_non_strings_get_a_clear_error(encoder: Encoder, texts: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        encoder.encode(texts)  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(encoder: Encoder, batch_size: object) -> None:
    with pytest.raises(ArgumentError, match="batch_size must be a positive int") as caught:
        encoder.encode(["a"], batch_size=batch_size)  # type: ignore[arg-type]
    assert caught.value.param == "batch_size"
    with pytest.raises(ArgumentError, match="max_tokens"):
        encoder.encode(["a"], max_tokens=batch_size)  # type: ignore[arg-type]


def test_single_string_path_equals_batch_path(encoder: Encoder) -> None:
    np.testing.assert_allclose(encoder.encode(QUERY), encoder.encode([QUERY, *DOCS])[0], atol=1e-6)


def test_numpy_array_of_strings_is_accepted(encoder: Encoder) -> None:
    arr = np.array(DOCS)
    np.testing.assert_allclose(encoder.encode(arr), encoder.encode(DOCS), atol=1e-6)  # type: ignore[arg-type]


def test_shared_across_threads(encoder: Encoder) -> None:
    from fusembed.export.texts import varied_texts

    texts = varied_texts(48, seed=5)
    expected = encoder.encode(texts, batch_size=8)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = encoder.encode(texts[i::4], batch_size=3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        np.testing.assert_allclose(results[i], expected[i::4], atol=1e-5)


def test_progress_bar_goes_to_stderr(encoder: Encoder, capsys: pytest.CaptureFixture[str]) -> None:
    encoder.encode(["a", "b", "c"], batch_size=1, show_progress_bar=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/3 texts" in captured.err and captured.err.endswith("\n")
    encoder.encode(["a", "b", "c"])
    assert capsys.readouterr().err == ""  # off by default


def test_a_prompt_with_a_lone_surrogate_is_an_argument_error(encoder: Encoder) -> None:
    with pytest.raises(ArgumentError, match="prompt has a lone surrogate at position 3"):
        encoder.encode(["a"], prompt="abc\ud800: ")


def test_chunked_tokenization_gives_the_same_rows(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusembed import _encoder
    from fusembed.export.texts import varied_texts

    texts = varied_texts(50, seed=5)
    whole = encoder.encode(texts, batch_size=4)
    monkeypatch.setattr(_encoder, "_CHUNK_TEXTS", 7)  # 8 chunks, tokenized ahead on the helper thread
    np.testing.assert_allclose(encoder.encode(texts, batch_size=4), whole, atol=1e-5)


def test_on_cuda_chunks_start_small_and_grow_so_the_gpu_starts_early(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the first chunk is the one the GPU waits for: an eighth of the chunk length (at
    least one batch), then each chunk half as large again, up to the chunk length. On the CPU
    every chunk has the full length, which sorts better."""
    from fusembed import _encoder
    from fusembed.export.texts import varied_texts

    monkeypatch.setattr(_encoder, "_CHUNK_TEXTS", 16)
    tokenized: list[int] = []
    tokenize = encoder._tokenize
    monkeypatch.setattr(encoder, "_tokenize", lambda texts: tokenized.append(len(texts)) or tokenize(texts))
    texts = varied_texts(50, seed=5)
    whole = encoder.encode(texts, batch_size=50)
    assert tokenized == [50]  # 50 texts in batches of 50: one chunk, no helper thread
    np.testing.assert_allclose(encoder.encode(texts, batch_size=1), whole, atol=1e-5)
    assert tokenized[1:] == [16, 16, 16, 2]  # the CPU default
    monkeypatch.setattr(encoder, "_grow_chunks", True)  # what device="cuda" sets
    np.testing.assert_allclose(encoder.encode(texts, batch_size=1), whole, atol=1e-5)
    assert tokenized[5:] == [2, 3, 4, 6, 9, 13, 13]
    del tokenized[:]
    # A call no longer than one full chunk is still split on CUDA, so that its tokenizing, too,
    # overlaps the model; on the CPU it is one chunk.
    np.testing.assert_allclose(encoder.encode(texts[:16], batch_size=1), whole[:16], atol=1e-5)
    assert tokenized == [2, 3, 4, 6, 1]
    monkeypatch.setattr(encoder, "_grow_chunks", False)
    np.testing.assert_allclose(encoder.encode(texts[:16], batch_size=1), whole[:16], atol=1e-5)
    assert tokenized[5:] == [16]


@pytest.mark.parametrize("threads", [0, -1, True, 1.5, "2"])
def test_bad_threads_option(minilm_bundle: Path, threads: object) -> None:
    with pytest.raises(ArgumentError, match="threads must be a positive int or None"):
        Encoder(minilm_bundle, threads=threads)  # type: ignore[arg-type]


def test_tokenize_then_encode_tokens_equals_encode(encoder: Encoder) -> None:
    texts = [QUERY, *DOCS, "", "word " * 1000]
    rows = encoder.tokenize(texts)
    assert [len(r) for r in rows][3] == 2  # [CLS] [SEP]
    assert len(rows[4]) == encoder.max_seq_length  # truncated as encode truncates
    np.testing.assert_allclose(encoder.encode_tokens(rows), encoder.encode(texts), atol=1e-6)
    assert encoder.encode_tokens([]).shape == (0, encoder.dim)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[101, 102], []], r"rows\[1\] has 0 tokens"),
        ([[101] * 300], r"rows\[0\] has 300 tokens; expected 1 to 256"),
        ([[101, 10**9, 102]], "token ids must lie in"),
        ([[101, -1, 102]], "token ids must lie in"),
        ([[101, "x", 102]], r"rows\[0\]\[1\] is 'x', not an int token id"),
        ([[101, 102], [101, "2000", 102]], r"rows\[1\]\[1\] is '2000', not an int"),  # not converted
        ([[101, 2000.5, 102]], r"rows\[0\]\[1\] is 2000.5, not an int token id"),  # not truncated
        ([[101, 102], [101, np.float32(7.25)]], r"rows\[1\]\[1\] is .*7.25"),
        ([[101, 10**30]], "token id rows must hold ints"),
        ([101, 102], r"rows\[0\] is int, expected a list of token ids"),
        (["hello"], r"rows\[0\] is str, expected a list of token ids"),
        ("hello", "rows must be a list of token id lists, got str"),
        (7, "rows must be a list of token id lists, got int"),
        (np.array([101, 102]), "must be 2-D with integer ids, got 1-D int64"),
        (np.array([[101.0, 102.0]]), "must be 2-D with integer ids, got 2-D float64"),
    ],
)
def test_encode_tokens_rejects_bad_rows(encoder: Encoder, rows: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        encoder.encode_tokens(rows)  # type: ignore[arg-type]


def test_encode_tokens_takes_a_2d_integer_array(encoder: Encoder) -> None:
    rows = encoder.tokenize(["first text", "the second"])
    same_length = np.array([rows[0][:3], rows[1][:3]], dtype=np.int32)
    np.testing.assert_allclose(encoder.encode_tokens(same_length),
                               encoder.encode_tokens([r[:3] for r in rows]), atol=1e-6)


def test_tokenize_rejects_what_encode_rejects(encoder: Encoder) -> None:
    with pytest.raises(InputError, match="wrap a single text"):
        encoder.tokenize(QUERY)
    with pytest.raises(InputError, match=r"texts\[1\] is int"):
        encoder.tokenize(["fine", 3])  # type: ignore[list-item]


def test_the_servers_unchecked_path_equals_encode(encoder: Encoder) -> None:
    """What the server runs once its protocol layer has checked the texts: tokenize without the
    checks, then one model call of exactly those rows, padded to the longest."""
    texts = [QUERY, *DOCS, "word " * 1000, "a"]
    rows = encoder._tokenize(texts)
    assert rows == encoder.tokenize(texts)
    np.testing.assert_allclose(encoder._encode_batch(rows), encoder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(encoder._encode_batch(rows[:1]), encoder.encode(QUERY)[None], atol=1e-6)


def _record_shapes(encoder: Encoder) -> list[tuple[int, ...]]:
    """The input_ids shape of every call `encoder`'s session runs from now on."""
    shapes: list[tuple[int, ...]] = []
    run = encoder._session.run

    def spy(outputs: object, feeds: dict[str, np.ndarray], *args: object) -> object:
        shapes.append(feeds["input_ids"].shape)
        return run(outputs, feeds, *args)

    encoder._session.run = spy  # type: ignore[method-assign]
    return shapes


def test_bucketed_shapes_give_the_same_embeddings(minilm_bundle: Path, encoder: Encoder) -> None:
    """What CUDA runs by default, here on the CPU: batches padded up to bucket shapes (extra
    columns masked, extra rows dropped) give the unpadded embeddings, and the session never
    sees a shape outside the buckets."""
    from fusembed.export.texts import varied_texts

    bucketed = Encoder(minilm_bundle, bucket_shapes=True, warmup=False)
    assert encoder._buckets is None and bucketed._buckets is not None  # the CPU default: off
    texts = varied_texts(37, seed=3)
    shapes = _record_shapes(bucketed)
    np.testing.assert_allclose(bucketed.encode(texts, batch_size=8), encoder.encode(texts), atol=1e-5)
    np.testing.assert_allclose(bucketed.encode(QUERY), encoder.encode(QUERY), atol=1e-5)
    rows = bucketed.tokenize(texts[:3])
    np.testing.assert_allclose(bucketed._encode_batch(rows), encoder.encode(texts[:3]), atol=1e-5)
    widths = set(bucketed._buckets.widths)
    assert shapes and all(r & (r - 1) == 0 and w in widths for r, w in shapes), shapes
    assert max(r for r, _ in shapes) == 8


def test_warmup_runs_every_bucket_shape_once(tiny_bundle: Path) -> None:
    warm = Encoder(tiny_bundle, bucket_shapes=True, warmup=False)
    assert warm._buckets is not None
    shapes = _record_shapes(warm)
    count = warm.warmup(batch_size=4, max_tokens=64)
    assert count == len(shapes) == len(set(shapes))
    assert set(shapes) == set(warm._buckets.warmup_shapes(4, 8192))  # the server's budget too
    assert Encoder(tiny_bundle).warmup() == 1  # unbucketed: one short call


def test_a_larger_budget_is_warmed_before_the_call_that_brings_it(tiny_bundle: Path) -> None:
    """With warm-up on (the CUDA default), a call whose batch_size or max_tokens reach past what was
    warmed first runs every new shape, largest first, so that none of its batches meets a cold one;
    the same budget again runs nothing extra."""
    from fusembed.export.texts import varied_texts

    warm = Encoder(tiny_bundle, bucket_shapes=True, warmup=True)
    assert warm._buckets is not None
    at_load = set(warm._warmed)
    shapes = _record_shapes(warm)
    texts = varied_texts(300, seed=4)
    warm.encode(texts, batch_size=64, max_tokens=16384)
    new = set(warm._buckets.warmup_shapes(64, 16384)) - at_load
    assert new and {s for s in shapes[: len(new)]} == new  # the warm-up, before any batch of the call
    assert shapes[: len(new)] == sorted(shapes[: len(new)], key=lambda s: (s[0] * s[1], s[1]), reverse=True)
    assert set(shapes[len(new):]) <= warm._warmed  # the call's own batches: all warmed
    assert any(rows == 64 for rows, _ in shapes[len(new):])  # and the larger budget was used
    before = len(shapes)
    warm.encode(texts[:100], batch_size=64, max_tokens=16384)
    warm.encode_tokens(warm.tokenize(texts[:10]), batch_size=64, max_tokens=16384)
    assert set(shapes[before:]) <= warm._warmed and len(shapes) - before < 10  # the calls alone: 5

    cold = Encoder(tiny_bundle, bucket_shapes=True, warmup=False)
    shapes = _record_shapes(cold)
    cold.encode(texts[:100], batch_size=64, max_tokens=16384)
    assert len(shapes) < 10 and not cold._warmed  # warmup=False: never warms by itself


def _gated_warmup(monkeypatch: pytest.MonkeyPatch, gate: threading.Event,
                  fail: Exception | None = None) -> list[tuple[int, ...]]:
    """Make every `Encoder`'s background warm-up wait for `gate` before each shape it runs (and
    raise `fail` there, if given); returns the shapes it has run. Calls on other threads pass."""
    shapes: list[tuple[int, ...]] = []
    run = Encoder._run

    def gated(self: Encoder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if threading.current_thread().name == "fusembed-warmup":
            assert gate.wait(30)
            if fail is not None:
                raise fail
            shapes.append(ids.shape)
        return run(self, ids, mask)

    monkeypatch.setattr(Encoder, "_run", gated)
    return shapes


def test_background_warmup_leaves_the_encoder_usable_at_once(
        tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """warmup="background": the constructor returns before any shape is warmed, calls meanwhile
    run (and give the same vectors) without waiting for it or warming anything themselves, and
    once it ends every shape of the default budget is warm, largest first."""
    from fusembed.export.texts import varied_texts

    gate = threading.Event()
    warmed = _gated_warmup(monkeypatch, gate)
    enc = Encoder(tiny_bundle, bucket_shapes=True, warmup="background")
    assert enc._buckets is not None
    assert enc.warming and not enc.wait_warmup(timeout=0.05) and warmed == []
    texts = varied_texts(20, seed=5)
    reference = Encoder(tiny_bundle).encode(texts)
    np.testing.assert_allclose(enc.encode(texts, batch_size=64, max_tokens=16384), reference, atol=1e-5)
    assert enc.warming and enc._warmed == set() and enc._warmed_budgets == set()  # the call warmed nothing
    gate.set()
    assert enc.wait_warmup(timeout=30) and not enc.warming
    every = enc._buckets.warmup_shapes(enc.default_batch_size, enc.default_max_tokens)
    assert warmed == every and enc._warmed == set(every)
    assert enc.warmup() == 0  # already warm
    np.testing.assert_allclose(enc.encode(texts), reference, atol=1e-5)
    alive = weakref.ref(enc)
    del enc
    gc.collect()
    assert alive() is None  # the finished warm-up holds no reference to it


def test_a_failed_background_warmup_is_raised_by_wait_warmup(
        tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    gate.set()
    _gated_warmup(monkeypatch, gate, fail=MemoryError("out of device memory"))
    enc = Encoder(tiny_bundle, bucket_shapes=True, warmup="background")
    with pytest.raises(MemoryError, match="out of device memory"):
        enc.wait_warmup(timeout=30)
    assert not enc.warming
    with pytest.raises(MemoryError):
        enc.warmup()
    assert enc.encode(QUERY).shape == (enc.dim,)  # calls do not depend on it


def test_a_server_waits_for_a_background_warmup(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server warms its own, larger budget once the background warm-up is done, and starts warm."""
    gate = threading.Event()
    _gated_warmup(monkeypatch, gate)
    enc = Encoder(tiny_bundle, bucket_shapes=True, warmup="background")
    assert enc._buckets is not None
    waiting = threading.Thread(target=enc._warm_for_server, args=(512,))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive() and enc.warming
    gate.set()
    waiting.join(30)
    assert not waiting.is_alive() and not enc.warming
    assert set(enc._buckets.warmup_shapes(512 // enc._buckets.widths[0], 512)) <= enc._warmed


def test_a_stopped_background_warmup_ends_after_the_shape_in_progress(
        tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the exit handler does: the shape being run is finished, no other is started, and the
    budget is not counted as warm (a later call warms the rest)."""
    gate = threading.Event()
    warmed = _gated_warmup(monkeypatch, gate)
    enc = Encoder(tiny_bundle, bucket_shapes=True, warmup="background")
    assert enc._background is not None and enc.warming
    stopping = threading.Thread(target=enc._background.stop)
    stopping.start()
    stopping.join(0.2)
    assert stopping.is_alive()  # it waits for the shape in progress
    gate.set()
    stopping.join(30)
    assert not stopping.is_alive() and not enc.warming and enc.wait_warmup()
    assert len(warmed) == 1 and enc._warmed == {warmed[0]} and enc._warmed_budgets == set()
    assert enc.warmup() > 0  # the rest


def test_a_process_exits_cleanly_during_a_background_warmup(tiny_bundle: Path) -> None:
    """The exit handler stops the warm-up between two shapes and waits for the one in progress:
    no crash, no long wait, and the thread has ended before the interpreter tears down. Each
    warm-up shape is slowed to 0.2 s so that the script ends while it runs."""
    script = """
import atexit, sys, threading, time
import fusembed
held = []
# registered before the encoder's handler, so it runs after it (handlers run last-in first-out)
atexit.register(lambda: print("at exit: warming", held[0].warming, "shapes", len(shapes), flush=True))
shapes = []
run = fusembed.Encoder._run
def slow(self, ids, mask):
    if threading.current_thread().name == "fusembed-warmup":
        time.sleep(0.2)
        shapes.append(ids.shape)
    return run(self, ids, mask)
fusembed.Encoder._run = slow
held.append(fusembed.Encoder(sys.argv[1], bucket_shapes=True, warmup="background"))
time.sleep(0.3)
assert held[0].warming
"""
    done = subprocess.run([sys.executable, "-c", script, str(tiny_bundle)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warming, shapes = re.fullmatch(r"at exit: warming (\w+) shapes (\d+)\n", done.stdout).groups()  # type: ignore[union-attr]
    assert warming == "False"  # stopped and joined by the encoder's own handler
    total = Encoder(tiny_bundle, bucket_shapes=True, warmup=False).warmup()  # shapes a whole warm-up runs
    assert 1 <= int(shapes) < total, (shapes, total)


@pytest.mark.parametrize("param", ["bucket_shapes", "warmup"])
def test_bad_bucket_options(tiny_bundle: Path, tmp_path: Path, param: str) -> None:
    expected = "True, False, 'background' or None" if param == "warmup" else "True, False or None"
    with pytest.raises(ArgumentError, match=f"{param} must be {expected}"):
        Encoder(tiny_bundle, **{param: "yes"})  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=param):  # checked before the bundle is read
        Encoder(tmp_path / "no-bundle", **{param: 1})  # type: ignore[arg-type]


def test_thread_spinning_can_be_turned_off(tiny_bundle: Path) -> None:
    """`fusembed serve` turns it off: its event loop needs the cores between batches."""
    def spinning(enc: Encoder) -> str:
        return enc._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    quiet = Encoder(tiny_bundle, thread_spinning=False)
    assert spinning(quiet) == "0"
    np.testing.assert_allclose(quiet.encode(DOCS), Encoder(tiny_bundle).encode(DOCS), atol=1e-6)
    with pytest.raises(ArgumentError, match="thread_spinning must be True or False"):
        Encoder(tiny_bundle.parent / "no-bundle", thread_spinning="no")  # type: ignore[arg-type]
