"""`fusembed serve` as users run it: a real process on loopback, called with OpenAI's own client
and by many concurrent clients; disconnects, keep-alive, SIGTERM and command-line mistakes.

Nothing here may depend on how fast this machine is: work that must take a while is sized by the
throughput the server reports, and load-test timeouts by a measured round of requests."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from fusembed import Encoder
from fusembed._bench import builtin_texts

from tests.blocker import run_blocked

from .conftest import ServerProcess

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def encoder(minilm_bundle: Path) -> Encoder:
    return Encoder(minilm_bundle)


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))


def metric(text: str, name: str) -> float:
    """One sample from /metrics text, e.g. metric(text, 'fusembed_batch_tokens_sum')."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))


def long_texts(n: int) -> list[str]:
    """Texts longer than the model's 256 word pieces, so each costs the same, full length."""
    return [f"a long document, part {i}, " * 40 for i in range(n)]


def texts_for(seconds: float, server: ServerProcess, encoder: Encoder) -> list[str]:
    """Long texts that keep this server's model busy for about `seconds`, by the model time per
    token it reports on /metrics for a probe of two full batches (after the same to warm up)."""
    per_text = len(encoder.tokenize(long_texts(1))[0])
    assert per_text == encoder.max_seq_length
    probe = {"model": MODEL, "input": long_texts(64), "encoding_format": "base64"}
    assert httpx.post(f"{server.url}/v1/embeddings", json=probe, timeout=None).status_code == 200  # warm-up
    before = httpx.get(f"{server.url}/metrics").text
    assert httpx.post(f"{server.url}/v1/embeddings", json=probe, timeout=None).status_code == 200
    after = httpx.get(f"{server.url}/metrics").text
    tokens, model_s = (
        metric(after, name) - metric(before, name)
        for name in ("fusembed_batch_tokens_sum", "fusembed_batch_duration_seconds_sum")
    )
    assert tokens == 64 * per_text and model_s > 0
    return long_texts(math.ceil(seconds * tokens / model_s / per_text))


def in_flight(server: ServerProcess, requests: int) -> None:
    """Return once `requests` requests (besides the /metrics call that checks) are being handled."""
    deadline = time.monotonic() + 120
    while f"fusembed_requests_in_flight {requests + 1}.0" not in httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.005)


def test_openai_client(minilm_bundle: Path, encoder: Encoder, serve: type[ServerProcess]) -> None:
    server = serve(minilm_bundle)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-checked", max_retries=0)
    texts = ["How many people live in London?", "Around 9 Million people live in London"]
    direct = encoder.encode(texts)

    default = client.embeddings.create(model=MODEL, input=texts)  # the client asks for base64
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    single = client.embeddings.create(model=f"sentence-transformers/{MODEL}", input=texts[0])
    for response in (default, floats):
        got = np.asarray([d.embedding for d in response.data], dtype=np.float32)
        assert cosines(got, direct).min() >= 0.99999
        assert [d.index for d in response.data] == [0, 1]
        assert response.usage.prompt_tokens == sum(map(len, encoder.tokenize(texts)))
        assert response.model == MODEL
    assert cosines(np.asarray([single.data[0].embedding]), direct[:1]).min() >= 0.99999
    assert [m.id for m in client.models.list()] == [MODEL]

    with pytest.raises(openai.BadRequestError, match="empty string"):
        client.embeddings.create(model=MODEL, input=["fine", ""])
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_api_key_with_the_openai_client(minilm_bundle: Path, serve: type[ServerProcess]) -> None:
    server = serve(minilm_bundle, "--api-key", "s3cret")
    good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret", max_retries=0)
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    assert len(good.embeddings.create(model=MODEL, input="hi").data) == 1
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=MODEL, input="hi")
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no key


def test_64_concurrent_clients(minilm_bundle: Path, encoder: Encoder, serve: type[ServerProcess]) -> None:
    """A bounded load test (the full one is benchmarks/serve_load.py): no errors, every vector
    equal to a direct encode, and requests really shared batches."""
    server = serve(minilm_bundle)
    pool = builtin_texts(600, seed=3)
    expected = dict(zip(pool, encoder.encode(pool), strict=True))
    rng = random.Random(0)
    requests = [rng.sample(pool, rng.randint(1, 3)) for _ in range(1500)]
    failures: list[str] = []
    worst = [1.0]

    async def main() -> None:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=None) as client:
            # One round of 64 concurrent requests opens the connections and times this machine:
            # in the test proper a request waits for about one round, so 50 rounds is a timeout
            # that only a stuck server reaches, on a slow machine or a fast one.
            started = time.perf_counter()
            warm = await asyncio.gather(
                *(client.post("/v1/embeddings", json={"model": MODEL, "input": t}) for t in requests[:64])
            )
            assert [r.status_code for r in warm] == [200] * 64
            client.timeout = httpx.Timeout(max(10.0, 50 * (time.perf_counter() - started)))
            pending = iter(requests)

            async def one_client() -> None:
                for texts in pending:
                    resp = await client.post("/v1/embeddings", json={"model": MODEL, "input": texts})
                    if resp.status_code != 200:
                        failures.append(resp.text)
                        continue
                    got = np.asarray([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)
                    worst[0] = min(
                        worst[0], float(cosines(got, np.stack([expected[t] for t in texts])).min())
                    )

            await asyncio.gather(*(one_client() for _ in range(64)))

    asyncio.run(main())
    assert failures == []
    assert worst[0] >= 0.99999
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric(metrics, 'fusembed_requests_total{route="/v1/embeddings",status="200"}') == 64 + 1500
    assert "_created" not in metrics  # `fusembed serve` turns those series off
    batches, alone = (
        metric(metrics, "fusembed_batch_requests_count"),
        metric(metrics, 'fusembed_batch_requests_bucket{le="1.0"}'),
    )
    # How large batches get depends on how fast this client sends (httpx is slow); that some
    # held several requests does not.
    assert alone < batches <= 64 + 1500, (alone, batches)


def test_idle_connections_stay_open_longer_than_clients_keep_them(
    minilm_bundle: Path, serve: type[ServerProcess]
) -> None:
    """httpx and the openai client keep an idle connection 5 s. A server that closes it first
    races with a client reusing it just then, whose request meets a reset: under load on a slow
    machine, 64 clients saw httpx.ReadError. So the server must still hold the connection after
    the client's 5 s, and the client must be the one to close it."""
    server = serve(minilm_bundle)
    local_ends = []
    with httpx.Client(base_url=server.url, limits=httpx.Limits(keepalive_expiry=60)) as client:
        for pause in (0, 6):
            time.sleep(pause)
            response = client.get("/health")
            assert response.status_code == 200
            local_ends.append(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert local_ends[0] == local_ends[1], "the server closed the idle connection"


def test_clients_that_disconnect_do_not_break_their_batch(
    minilm_bundle: Path, encoder: Encoder, serve: type[ServerProcess]
) -> None:
    server = serve(minilm_bundle, "--max-wait-ms", "300")  # a long wait: quitters and stayers share a batch
    texts = [f"sentence number {i} about London" for i in range(16)]

    def quitter(i: int) -> None:
        body = json.dumps({"model": MODEL, "input": [texts[i], "gone before the answer"]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            time.sleep(0.05)  # the request is queued; now hang up

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            quitters = [asyncio.to_thread(quitter, i) for i in range(8)]
            stayers = [
                client.post("/v1/embeddings", json={"model": MODEL, "input": texts[i]}) for i in range(8, 16)
            ]
            results = await asyncio.gather(*quitters, *stayers)
            return list(results[8:])

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 8
    got = np.asarray([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    assert cosines(got, encoder.encode(texts[8:])).min() >= 0.99999
    again = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": "still serving"})
    assert again.status_code == 200 and httpx.get(f"{server.url}/health").json()["queued"] == 0


def test_sigterm_lets_in_flight_requests_finish(
    minilm_bundle: Path, encoder: Encoder, serve: type[ServerProcess]
) -> None:
    server = serve(minilm_bundle, "--max-inputs", "1000000", "--max-body-bytes", str(2**31))
    texts = texts_for(3.0, server, encoder)  # a few seconds of work, well within the 30 s grace
    big = {"model": MODEL, "input": texts, "encoding_format": "base64"}
    with ThreadPoolExecutor(1) as sender:
        sent = sender.submit(httpx.post, f"{server.url}/v1/embeddings", json=big, timeout=None)
        in_flight(server, 1)
        code, log = server.stop()  # SIGTERM while the request is in flight
        response = sent.result()
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == len(texts)
    assert code == 0, log
    assert "Waiting for connections to close" in log, log  # uvicorn drained a live request
    assert "Traceback" not in log, log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")


def test_a_request_the_grace_period_cannot_finish_gets_503(
    minilm_bundle: Path, encoder: Encoder, serve: type[ServerProcess]
) -> None:
    """Past --graceful-timeout the request still running is answered 503 server_shutting_down
    (uvicorn alone would send a bare 500), the model stops working on it, and the process exits
    0; requests that come after SIGTERM get that 503 too, until the port closes."""
    server = serve(minilm_bundle, "--graceful-timeout", "1", "--max-inputs", "1000000",
                   "--max-body-bytes", str(2**31))
    work_s = 20.0
    big = {"model": MODEL, "input": texts_for(work_s, server, encoder), "encoding_format": "base64"}
    late: list[httpx.Response] = []
    with ThreadPoolExecutor(1) as sender, httpx.Client(base_url=server.url, timeout=None) as client:
        sent = sender.submit(httpx.post, f"{server.url}/v1/embeddings", json=big, timeout=None)
        in_flight(server, 1)
        signalled = time.monotonic()
        server.terminate()
        while True:  # requests after SIGTERM: 503 until uvicorn closes the port (at its 0.1 s tick)
            assert time.monotonic() < signalled + 60, "the port stayed open"
            try:
                late.append(client.get("/health"))  # a client made before: making one takes ~0.1 s
            except httpx.TransportError:  # refused, or reset in the backlog of a closing port
                break
        code, log = server.stop()
        exited_after = time.monotonic() - signalled
        response = sent.result()

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "server_shutting_down" and error["type"] == "server_error"
    assert "stopped before this request could finish" in error["message"]
    assert "retry on another replica" in error["message"]
    for r in late:
        assert r.status_code == 503 and r.json()["error"]["code"] == "server_shutting_down", r.text
    assert code == 0, log
    assert "timeout graceful shutdown exceeded" in log, log
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log
    # The model gave the request up within a call or so, rather than finishing it for nobody.
    assert exited_after < 1 + work_s / 2, (exited_after, log)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["serve", "no/such/bundle"], 1, "no/such/bundle"),
        (["serve", "BUNDLE", "--port", "70000"], 2, "expected a TCP port"),
        (["serve", "BUNDLE", "--max-wait-ms", "-1"], 2, "expected a number >= 0"),
        (["serve", "BUNDLE", "--max-batch-tokens", "0"], 2, "--max-batch-tokens"),
        (["serve", "BUNDLE", "--device", "tpu"], 2, "invalid choice"),
        (["serve", "BUNDLE", "--graceful-timeout", "-1"], 2, "expected a whole number >= 0"),
        (["serve", "BUNDLE", "--graceful-timeout", "1.5"], 2, "--graceful-timeout"),
    ],
)
def test_command_line_mistakes(minilm_bundle: Path, argv: list[str], code: int, message: str) -> None:
    argv = [str(minilm_bundle) if a == "BUNDLE" else a for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "fusembed", *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(minilm_bundle: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "fusembed", "serve", str(minilm_bundle), "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_serve_without_the_extra_names_the_extra(minilm_bundle: Path) -> None:
    result = run_blocked(
        """
        import sys
        from fusembed.cli import main
        sys.exit(main(["serve", sys.argv[1]]))
    """,
        str(minilm_bundle),
        blocked=("starlette",),
    )
    assert result.returncode == 1
    assert "pip install 'fusembed[serve]'" in result.stderr and "starlette" in result.stderr
