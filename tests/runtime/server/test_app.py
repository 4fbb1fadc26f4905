"""The HTTP surface, in process: OpenAI shapes, every error as JSON with a 4xx, limits, the API key,
and /metrics. The model is a small replica bundle; vectors are compared with `Encoder.encode`."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from fusembed import ArgumentError, Encoder, _encoder
from fusembed._batching import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TOKENS
from fusembed._text import surrogate_at
from fusembed.server import Limits, ServerOptions, _protocol, begin_shutdown, create_app

from .conftest import asgi_client, call

TEXTS = ["How many people live in London?", "Around 9 million people live in London", "x " * 400]


def test_embeddings_float_and_base64_equal_direct_encode(encoder: Encoder, model: str) -> None:
    float_resp, b64_resp = call(
        encoder,
        [
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": TEXTS}}),
            (
                "POST",
                "/v1/embeddings",
                {"json": {"model": model, "input": TEXTS, "encoding_format": "base64"}},
            ),
        ],
    )
    assert float_resp.status_code == b64_resp.status_code == 200
    assert float_resp.headers["content-type"] == "application/json"
    direct = encoder.encode(TEXTS)
    got_float = np.asarray([d["embedding"] for d in float_resp.json()["data"]], dtype=np.float32)
    got_b64 = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64_resp.json()["data"]]
    )
    np.testing.assert_allclose(got_float, direct, atol=1e-5)
    np.testing.assert_array_equal(got_float, got_b64)
    body = float_resp.json()
    assert body["model"] == model
    assert body["usage"]["prompt_tokens"] == sum(map(len, encoder.tokenize(TEXTS)))
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]


def test_single_string_input(encoder: Encoder, model: str) -> None:
    (resp,) = call(encoder, [("POST", "/v1/embeddings", {"json": {"model": model, "input": TEXTS[0]}})])
    (item,) = resp.json()["data"]
    np.testing.assert_allclose(item["embedding"], encoder.encode(TEXTS[0]), atol=1e-5)


@pytest.fixture(scope="module")
def prompted(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The tiny bundle with e5-style prompts in its manifest (not one of the hashed files)."""
    import shutil

    copy = tmp_path_factory.mktemp("prompted") / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["prompts"] = {"query": "query: ", "passage": "passage: "}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return Encoder(copy)


def test_prompt_name_and_dimensions(prompted: Encoder) -> None:
    model = Path(prompted.manifest.source.model).name
    texts = TEXTS[:2]
    plain, query, short, unknown, too_many = call(prompted, [
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts}}),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts, "prompt_name": "query"}}),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts, "prompt_name": "passage",
                                             "dimensions": 8}}),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts, "prompt_name": "search"}}),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts,
                                             "dimensions": prompted.dim + 1}}),
    ])

    def vectors(resp: httpx.Response) -> np.ndarray:
        assert resp.status_code == 200, resp.text
        return np.asarray([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)

    np.testing.assert_allclose(vectors(plain), prompted.encode(texts), atol=1e-5)
    np.testing.assert_allclose(vectors(query), prompted.encode(texts, prompt_name="query"), atol=1e-5)
    assert query.json()["usage"]["prompt_tokens"] > plain.json()["usage"]["prompt_tokens"]  # prompt counted
    got = vectors(short)
    first = prompted.encode(texts, prompt_name="passage", truncate_dim=8)
    assert got.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # unit length, as OpenAI's
    np.testing.assert_allclose(got, first / np.linalg.norm(first, axis=1, keepdims=True), atol=1e-5)
    assert unknown.status_code == 400
    assert "its prompts: 'query', 'passage'" in unknown.json()["error"]["message"]
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "dimensions"


def test_models_health_and_aliases(encoder: Encoder, model: str) -> None:
    options = ServerOptions(model_name="my-embedder")
    models, one, missing, health, by_alias = call(
        encoder,
        [
            ("GET", "/v1/models", {}),
            ("GET", "/v1/models/my-embedder", {}),
            ("GET", "/v1/models/nope", {}),
            ("GET", "/health", {}),
            ("POST", "/v1/embeddings", {"json": {"model": "my-embedder", "input": "a"}}),
        ],
        options,
    )
    assert models.json()["object"] == "list" and models.json()["data"][0]["id"] == "my-embedder"
    assert one.json()["id"] == "my-embedder" and one.json()["object"] == "model"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert health.json()["status"] == "ok" and health.json()["dim"] == encoder.dim
    assert by_alias.status_code == 200 and by_alias.json()["model"] == "my-embedder"


def test_errors_are_openai_json_never_500(encoder: Encoder, model: str) -> None:
    cases = [
        ("POST", "/v1/embeddings", {"content": b"{oops"}, 400),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": []}}, 400),
        ("POST", "/v1/embeddings", {"json": {"model": model, "input": ["ok", 3]}}, 400),
        ("POST", "/v1/embeddings", {"json": {"model": "other", "input": "a"}}, 404),
        ("GET", "/v1/embeddings", {}, 405),
        ("GET", "/nope", {}, 404),
        ("POST", "/v1/chat/completions", {"json": {}}, 404),
    ]
    responses = call(encoder, [(m, p, kw) for m, p, kw, _ in cases])
    for (method, path, _, status), resp in zip(cases, responses, strict=True):
        assert resp.status_code == status, (method, path, resp.text)
        error = resp.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error", resp.text


def test_oversized_body_is_413(encoder: Encoder, model: str) -> None:
    options = ServerOptions(limits=Limits(max_body_bytes=1000))
    big = {"model": model, "input": ["word " * 100] * 5}

    async def chunks():  # type: ignore[no-untyped-def]
        data = json.dumps(big).encode()
        for i in range(0, len(data), 100):  # no Content-Length: the limit applies while reading
            yield data[i : i + 100]

    declared, streamed, fits = call(
        encoder,
        [
            ("POST", "/v1/embeddings", {"json": big}),
            ("POST", "/v1/embeddings", {"content": chunks()}),
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": "small"}}),
        ],
        options,
    )
    assert declared.status_code == streamed.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"
    assert fits.status_code == 200


def test_a_body_in_many_chunks_is_read_whole(encoder: Encoder, model: str) -> None:
    data = json.dumps({"model": model, "input": TEXTS[:2]}).encode()

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), 7):
            yield data[i : i + 7]

    (resp,) = call(encoder, [("POST", "/v1/embeddings", {"content": chunks()})])
    assert resp.status_code == 200, resp.text
    got = np.asarray([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, encoder.encode(TEXTS[:2]), atol=1e-5)


def test_a_bug_under_the_embeddings_route_is_a_json_500(
    encoder: Encoder, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route answers ApiError itself; anything else goes on to the server's 500 handler,
    which answers OpenAI's error shape and names no internals."""
    def broken(rows: object) -> object:
        raise RuntimeError("a bug in the model call")

    app = create_app(encoder)
    monkeypatch.setattr(app.state.batcher, "_encode", broken)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://test") as client:
            return await client.post("/v1/embeddings", json={"model": model, "input": "a text"})

    resp = asyncio.run(main())
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    assert "a bug in the model call" not in error["message"]


def test_a_client_that_leaves_before_its_body_is_read_is_recorded_as_499(encoder: Encoder) -> None:
    """No model work for a request whose client has gone; /metrics counts it as status 499."""
    app = create_app(encoder)
    messages = iter([{"type": "http.request", "body": b'{"model": ', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/embeddings", "raw_path": b"/v1/embeddings",
             "headers": [(b"host", b"x")], "query_string": b"", "root_path": "", "http_version": "1.1",
             "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
             "asgi": {"version": "3.0"}}
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 499
    assert json.loads(sent[1]["body"])["error"]["code"] == "client_closed_request"  # type: ignore[arg-type]
    assert app.state.batcher.queued == 0
    answered = app.state.metrics.requests.labels("/v1/embeddings", "499")._value.get()
    assert answered == 1


def test_input_limits_are_options(encoder: Encoder, model: str) -> None:
    options = ServerOptions(limits=Limits(max_inputs=2, max_input_chars=20))
    too_many, too_long = call(
        encoder,
        [
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": ["a", "b", "c"]}}),
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": ["a", "y" * 21]}}),
        ],
        options,
    )
    assert too_many.status_code == too_long.status_code == 400
    assert "limit is 2" in too_many.json()["error"]["message"]
    assert "'input[1]' has 21 characters" in too_long.json()["error"]["message"]


def test_api_key(encoder: Encoder, model: str) -> None:
    options = ServerOptions(api_key="s3cret")
    body = {"json": {"model": model, "input": "a"}}
    none, wrong, right, lower, other_scheme, bare, health, metrics = call(
        encoder,
        [
            ("POST", "/v1/embeddings", body),
            ("POST", "/v1/embeddings", {**body, "headers": {"Authorization": "Bearer nope"}}),
            ("POST", "/v1/embeddings", {**body, "headers": {"Authorization": "Bearer s3cret"}}),
            ("POST", "/v1/embeddings", {**body, "headers": {"Authorization": "bearer s3cret"}}),
            ("POST", "/v1/embeddings", {**body, "headers": {"Authorization": "Basic s3cret"}}),
            ("POST", "/v1/embeddings", {**body, "headers": {"Authorization": "s3cret"}}),
            ("GET", "/health", {}),
            ("GET", "/metrics", {}),
        ],
        options,
    )
    assert {r.status_code for r in (none, wrong, other_scheme, bare, metrics)} == {401}
    assert none.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == lower.status_code == health.status_code == 200  # the scheme's case is free


def test_metrics_count_requests_errors_and_batches(encoder: Encoder, model: str) -> None:
    *_, metrics = call(
        encoder,
        [
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": ["a", "b"]}}),
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": []}}),
            ("GET", "/nope", {}),
            ("GET", "/metrics", {}),
        ],
    )
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'fusembed_requests_total{route="/v1/embeddings",status="200"} 1.0' in text
    assert 'fusembed_requests_total{route="/v1/embeddings",status="400"} 1.0' in text
    assert 'fusembed_requests_total{route="other",status="404"} 1.0' in text
    assert 'fusembed_request_errors_total{type="invalid_request_error"} 2.0' in text
    assert "fusembed_batch_texts_sum 2.0" in text and "fusembed_embedded_texts_total 2.0" in text
    assert "fusembed_queue_depth 0.0" in text
    assert 'fusembed_request_duration_seconds_count{route="/v1/embeddings"} 2.0' in text


def test_a_bad_request_among_concurrent_good_ones_fails_alone(encoder: Encoder, model: str) -> None:
    async def main() -> list[httpx.Response]:
        async with asgi_client(encoder, ServerOptions(max_wait_ms=50)) as client:
            bodies = [{"model": model, "input": [f"text {i}", "more"]} for i in range(8)]
            bodies[4] = {"model": model, "input": ["fine", 7]}
            return await asyncio.gather(*(client.post("/v1/embeddings", json=b) for b in bodies))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 4 + [400] + [200] * 3
    np.testing.assert_allclose(
        responses[7].json()["data"][0]["embedding"], encoder.encode("text 7"), atol=1e-5
    )


def test_random_payloads_never_get_a_500(encoder: Encoder, model: str) -> None:
    rng = random.Random(0)
    atoms: list[object] = [
        None,
        True,
        0,
        -1,
        2.5,
        "",
        "text",
        [],
        {},
        [1],
        ["a"],
        [["a"]],
        {"x": 1},
        "\ud800",
    ]
    keys = ["input", "model", "encoding_format", "dimensions", "user", "prompt_name", "extra"]
    requests: list[tuple[str, str, dict[str, object]]] = []
    for _ in range(150):
        payload = {k: rng.choice([*atoms, model]) for k in rng.sample(keys, rng.randint(0, len(keys)))}
        try:
            content = json.dumps(payload).encode()
        except (TypeError, ValueError):
            continue
        if rng.random() < 0.2:
            content = content[: rng.randint(0, len(content))]
        requests.append(("POST", "/v1/embeddings", {"content": content}))
    statuses = {r.status_code for r in call(encoder, requests)}
    assert statuses <= {200, 400, 404}, statuses


def test_each_text_is_checked_once(encoder: Encoder, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol layer checks every text (type, lone surrogates, length); the Encoder's own
    checks, for library callers, do not run again on the server's path."""
    texts = ["café au lait", "plain words", "naïve"]
    direct = encoder.encode(texts)
    checked: Counter[str] = Counter()

    def counting_surrogate_at(text: str) -> int | None:
        checked[text] += 1
        return surrogate_at(text)

    def not_on_the_server_path(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server ran a check of the Encoder's")

    monkeypatch.setattr(_protocol, "surrogate_at", counting_surrogate_at)
    monkeypatch.setattr(_encoder, "surrogate_at", counting_surrogate_at)
    monkeypatch.setattr(_encoder, "_check_texts", not_on_the_server_path)
    for name in ("tokenize", "encode_tokens", "encode"):
        monkeypatch.setattr(Encoder, name, not_on_the_server_path)
    good, bad = call(
        encoder,
        [
            ("POST", "/v1/embeddings", {"json": {"model": model, "input": texts}}),
            # json.dumps escapes the lone surrogate as JSON may ("\\ud800"); httpx's json= cannot send it
            ("POST", "/v1/embeddings",
             {"content": json.dumps({"model": model, "input": ["fine", "caf\u00e9 \ud800"]}).encode()}),
        ],
    )
    assert good.status_code == 200, good.text
    np.testing.assert_allclose([d["embedding"] for d in good.json()["data"]], direct, atol=1e-5)
    assert bad.status_code == 400 and "lone surrogate at position 5" in bad.json()["error"]["message"]
    assert checked == Counter({**dict.fromkeys(texts, 1), "fine": 1, "caf\u00e9 \ud800": 1})


def test_gathered_requests_run_as_one_model_call_within_max_batch_tokens(
    encoder: Encoder, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-batch-tokens alone decides what one model call sees: every call the session runs is
    one batch of the batcher's (as /metrics counts them), padded within the budget, and a batch
    of more texts than Encoder.encode's batch_size is not split again."""
    candidates = [f"{n} people live in London" for n in range(300)]
    lengths = [len(row) for row in encoder.tokenize(candidates)]
    width = max(set(lengths), key=lengths.count)
    texts = [t for t, n in zip(candidates, lengths, strict=True) if n == width][:96]
    assert len(texts) == 96
    per_call = DEFAULT_BATCH_SIZE + 8
    budget = per_call * width
    direct = encoder.encode(texts)
    shapes: list[tuple[int, ...]] = []
    run = encoder._session.run

    def spy(outputs: object, feeds: dict[str, np.ndarray], *args: object) -> object:
        shapes.append(feeds["input_ids"].shape)
        return run(outputs, feeds, *args)

    monkeypatch.setattr(encoder._session, "run", spy)

    async def main() -> tuple[list[httpx.Response], str]:
        options = ServerOptions(max_batch_tokens=budget, max_wait_ms=500)
        async with asgi_client(encoder, options) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/embeddings", json={"model": model, "input": t}) for t in texts)
            )
            return list(responses), (await client.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 96
    got = np.asarray([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(got, direct, atol=1e-5)
    assert all(rows * cols <= budget for rows, cols in shapes), shapes
    assert all(cols == width for _, cols in shapes)  # padded to the batch's longest row, no wider
    assert sum(rows for rows, _ in shapes) == 96  # every text once: the model saw exactly these rows
    assert f"fusembed_batch_requests_count {float(len(shapes))}" in metrics  # a batch is one call
    assert max(rows for rows, _ in shapes) == per_call > DEFAULT_BATCH_SIZE  # not re-split into 32s


def test_one_default_token_budget_per_model_call(encoder: Encoder) -> None:
    """On the CPU the server's budget per call and the encoder's are the same number."""
    assert ServerOptions().max_batch_tokens == DEFAULT_MAX_TOKENS
    assert encoder.default_max_tokens == DEFAULT_MAX_TOKENS
    assert encoder.default_batch_size == DEFAULT_BATCH_SIZE


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: ServerOptions(max_batch_tokens=0), "max_batch_tokens"),
        (lambda: ServerOptions(max_batch_tokens=2.5), "max_batch_tokens"),
        (lambda: ServerOptions(max_queued=0), "max_queued"),
        (lambda: ServerOptions(max_queued=True), "max_queued"),
        (lambda: ServerOptions(max_wait_ms=-1), "max_wait_ms"),
        (lambda: ServerOptions(max_wait_ms=float("nan")), "max_wait_ms"),
        (lambda: ServerOptions(max_wait_ms="2"), "max_wait_ms"),
        (lambda: ServerOptions(limits={"max_inputs": 3}), "limits"),
        (lambda: ServerOptions(batching="no"), "batching"),
        (lambda: ServerOptions(model_name=""), "model_name"),
        (lambda: ServerOptions(api_key="  "), "api_key"),
        (lambda: ServerOptions(api_key=123), "api_key"),
        (lambda: Limits(max_inputs=0), "max_inputs"),
        (lambda: Limits(max_input_chars=-5), "max_input_chars"),
        (lambda: Limits(max_body_bytes=1.5), "max_body_bytes"),
    ],
)
def test_bad_options_name_the_option(make, param: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArgumentError) as caught:
        make()
    assert caught.value.param == param and param in str(caught.value)


def test_overload_is_503_for_the_extra_request_only(tiny_bundle: Path, model: str) -> None:
    class SlowEncoder(Encoder):
        def _encode_batch(self, rows):  # type: ignore[no-untyped-def]
            time.sleep(0.2)
            return super()._encode_batch(rows)

    async def main() -> list[httpx.Response]:
        options = ServerOptions(batching=False, max_queued=1)
        async with asgi_client(SlowEncoder(tiny_bundle), options) as client:
            first = asyncio.create_task(client.post("/v1/embeddings", json={"model": model, "input": "a"}))
            await asyncio.sleep(0.1)  # on the model now
            second = asyncio.create_task(client.post("/v1/embeddings", json={"model": model, "input": "b"}))
            await asyncio.sleep(0.05)  # waiting in the queue
            third = await client.post("/v1/embeddings", json={"model": model, "input": "c"})
            return [await first, await second, third]

    first, second, third = asyncio.run(main())
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 503)
    assert third.json()["error"]["code"] == "server_overloaded"


class SlowEncoder(Encoder):
    """The tiny model, 0.3 s per model call: long enough to act while a request is on it."""

    calls = 0

    def _encode_batch(self, rows):  # type: ignore[no-untyped-def]
        self.calls += 1
        time.sleep(0.3)
        return super()._encode_batch(rows)


def test_after_begin_shutdown_new_requests_get_503_and_in_flight_ones_finish(
    tiny_bundle: Path, model: str
) -> None:
    async def main() -> list[httpx.Response]:
        app = create_app(SlowEncoder(tiny_bundle))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fusembed") as client:
                running = asyncio.create_task(
                    client.post("/v1/embeddings", json={"model": model, "input": "a"})
                )
                await asyncio.sleep(0.1)  # on the model now
                begin_shutdown(app)
                late = [
                    await client.post("/v1/embeddings", json={"model": model, "input": "b"}),
                    await client.get("/health"),
                ]
                return [await running, *late]

    running, *late = asyncio.run(main())
    assert running.status_code == 200 and len(running.json()["data"]) == 1
    for response in late:
        assert response.status_code == 503
        assert response.headers["connection"] == "close"  # the client's next try opens a new one
        error = response.json()["error"]
        assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
        assert "shutting down" in error["message"] and "retry on another replica" in error["message"]


def test_a_request_cancelled_by_the_server_gets_503_not_500(tiny_bundle: Path, model: str) -> None:
    """uvicorn cancels the requests still running when the graceful-shutdown period ends."""
    body = json.dumps({"model": model, "input": ["a"] * 4}).encode()

    encoder = SlowEncoder(tiny_bundle)

    async def main() -> list[dict[str, object]]:
        app = create_app(encoder, ServerOptions(max_batch_tokens=3))  # a model call per text
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        async with app.router.lifespan_context(app):
            request = asyncio.create_task(app(scope, receive, send))
            await asyncio.sleep(0.1)  # on the model now
            request.cancel()
            await request  # answered, so it ends without raising
        return sent

    sent = asyncio.run(main())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
    error = json.loads(sent[1]["body"])["error"]  # type: ignore[arg-type]
    assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
    assert "stopped before this request could finish" in error["message"]
    assert encoder.calls <= 1  # the model dropped the rest of the request; stop did not wait for it


def test_a_bucketed_server_runs_only_warmed_shapes_within_its_budget(tiny_bundle: Path) -> None:
    """With bucketed shapes and warm-up (the CUDA default) the server warms, at start, every shape
    its batches can take: up to as many rows as fit its budget at the narrowest width, which is
    more than `encode`'s own warm-up covers. Under concurrent load every call is one of them."""
    encoder = Encoder(tiny_bundle, bucket_shapes=True, warmup=True)
    assert encoder._buckets is not None
    options = ServerOptions(model_name="tiny", max_batch_tokens=512, max_wait_ms=20)
    app_shapes: list[tuple[int, int]] = []
    rng = random.Random(3)
    words = ["the", "city", "council", "spent", "weekend", "repairing", "a", "cheaper", "bus", "debate"]
    requests = [[" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(rng.randint(1, 4))]
                for _ in range(60)]

    async def main() -> list[httpx.Response]:
        async with asgi_client(encoder, options) as client:
            run = encoder._session.run

            def spy(outputs: object, feeds: dict[str, np.ndarray], *args: object) -> object:
                app_shapes.append(feeds["input_ids"].shape)
                return run(outputs, feeds, *args)

            encoder._session.run = spy  # type: ignore[method-assign]
            try:
                return await asyncio.gather(*(
                    client.post("/v1/embeddings", json={"model": "tiny", "input": r}) for r in requests))
            finally:
                encoder._session.run = run  # type: ignore[method-assign]

    responses = asyncio.run(main())
    assert (64, 8) in encoder._warmed  # 512 // 8 rows: past encode's own CPU warm-up of 32
    assert app_shapes and set(app_shapes) <= encoder._warmed, set(app_shapes) - encoder._warmed
    assert all(rows * width <= 512 for rows, width in app_shapes), app_shapes
    assert any(rows > 4 for rows, _ in app_shapes)  # requests did share calls
    for texts, response in zip(requests, responses, strict=True):
        got = np.asarray([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, encoder.encode(texts), atol=1e-5)
