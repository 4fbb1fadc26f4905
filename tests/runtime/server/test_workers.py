"""`fusembed serve --workers N`: HTTP worker processes in front of one model process, as users run
it: vectors equal `Encoder.encode`, metrics summed over the workers, SIGTERM drains every process,
and a process that dies takes the server down with a clear error instead of leaving it hanging.

Work that must take a while is sized by the model time the server reports on /metrics, so nothing
here depends on how fast this machine is."""

from __future__ import annotations

import asyncio
import base64
import math
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from fusembed import ArgumentError, Encoder
from fusembed.server import run

from .conftest import ServerProcess


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pids: list[int], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if running(p)]}"
        time.sleep(0.05)


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found is not None, f"{name} is not in /metrics"
    return float(found.group(1))


def mixed_requests(n: int) -> list[list[str]]:
    """`n` requests of 1-4 texts of 1-60 words."""
    rng = random.Random(0)
    words = ["london", "people", "live", "around", "nine", "million", "the", "city", "river"]
    return [[" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) for _ in range(rng.randint(1, 4))]
            for _ in range(n)]


def send_concurrently(server: ServerProcess, model: str, requests: list[list[str]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return list(await asyncio.gather(
                *(client.post("/v1/embeddings", json={"model": model, "input": r}) for r in requests)
            ))

    return asyncio.run(main())


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def slow_texts(seconds: float, server: ServerProcess, model: str) -> list[str]:
    """Texts that keep this server's model busy for about `seconds`, by the model time per text
    it reports on /metrics for a probe (after the same probe to warm up)."""
    probe = {"model": model, "input": [f"a long document, part {i}, " * 80 for i in range(64)],
             "encoding_format": "base64"}
    assert httpx.post(f"{server.url}/v1/embeddings", json=probe, timeout=None).status_code == 200
    before = httpx.get(f"{server.url}/metrics").text
    assert httpx.post(f"{server.url}/v1/embeddings", json=probe, timeout=None).status_code == 200
    after = httpx.get(f"{server.url}/metrics").text
    model_s = (metric(after, "fusembed_batch_duration_seconds_sum")
               - metric(before, "fusembed_batch_duration_seconds_sum"))
    assert model_s > 0
    return probe["input"] * math.ceil(seconds / model_s)  # type: ignore[operator]


def in_flight(server: ServerProcess, requests: int) -> None:
    """Return once `requests` requests (besides the /metrics call that checks) are being handled,
    summed over the workers."""
    deadline = time.monotonic() + 60
    while f"fusembed_requests_in_flight {requests + 1}.0" not in httpx.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.005)


SLOW_ARGS = ("--max-inputs", "1000000", "--max-body-bytes", str(2**31))


def test_vectors_equal_encoder_encode(
    tiny_bundle: Path, encoder: Encoder, model: str, serve: type[ServerProcess]
) -> None:
    """Without batching each request is one model call of its texts, as `Encoder.encode` of the
    same texts is, so the vectors that come back through a worker are the same bits. (With
    batching, the rows a call holds change the last bits of float sums, in one process as in many:
    the next test compares those within a tolerance.)"""
    server = serve(tiny_bundle, "--workers", "2", "--no-batching")
    requests = mixed_requests(64)
    for request, response in zip(requests, send_concurrently(server, model, requests), strict=True):
        np.testing.assert_array_equal(vectors(response), encoder.encode(request))
        assert response.json()["usage"]["prompt_tokens"] == sum(map(len, encoder.tokenize(request)))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-checked", max_retries=0)
    reply = client.embeddings.create(model=model, input=requests[0])  # base64, as the client asks
    np.testing.assert_array_equal(np.asarray([d.embedding for d in reply.data], dtype=np.float32),
                                  encoder.encode(requests[0]))


def test_one_batcher_for_all_workers_and_metrics_add_up(
    tiny_bundle: Path, encoder: Encoder, model: str, serve: type[ServerProcess]
) -> None:
    server = serve(tiny_bundle, "--workers", "2", "--max-wait-ms", "20")
    assert len(children(server.proc.pid)) == 2
    requests = mixed_requests(96)
    responses = send_concurrently(server, model, requests)
    for request, response in zip(requests, responses, strict=True):
        np.testing.assert_allclose(vectors(response), encoder.encode(request), atol=1e-6, rtol=0)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-checked", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="empty string"):
        client.embeddings.create(model=model, input=["fine", ""])

    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["dim"] == encoder.dim and health["queued"] == 0
    text = httpx.get(f"{server.url}/metrics").text
    # HTTP metrics are summed over both workers, whichever answers /metrics; batches are the model's
    assert metric(text, 'fusembed_requests_total{route="/v1/embeddings",status="200"}') == len(requests)
    assert metric(text, 'fusembed_requests_total{route="/v1/embeddings",status="400"}') == 1
    assert metric(text, "fusembed_embedded_texts_total") == sum(map(len, requests))
    assert metric(text, "fusembed_batch_requests_sum") == len(requests)
    assert metric(text, "fusembed_batch_requests_count") < len(requests)  # requests shared batches
    assert metric(text, "fusembed_requests_in_flight") == 1  # this /metrics request
    assert metric(text, "fusembed_queue_depth") == 0
    assert "_created" not in text


def test_sigterm_drains_every_process(
    tiny_bundle: Path, model: str, serve: type[ServerProcess]
) -> None:
    server = serve(tiny_bundle, "--workers", "2", *SLOW_ARGS)
    workers = children(server.proc.pid)
    texts = slow_texts(2.0, server, model)
    late: list[httpx.Response] = []
    with ThreadPoolExecutor(1) as sender, httpx.Client(base_url=server.url, timeout=30) as client:
        sent = sender.submit(httpx.post, f"{server.url}/v1/embeddings",
                             json={"model": model, "input": texts, "encoding_format": "base64"}, timeout=None)
        in_flight(server, 1)
        assert client.get("/health").status_code == 200  # a connection open before SIGTERM
        server.terminate()
        while True:  # until the workers close the port
            try:
                late.append(client.post("/v1/embeddings", json={"model": model, "input": "late"}))
            except httpx.TransportError:
                break
        code, log = server.stop()
        response = sent.result()
    assert response.status_code == 200, response.text
    vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in response.json()["data"]]
    assert len(vectors) == len(texts)
    # A worker stops taking requests once the SIGTERM passed on to it arrives, a moment after the
    # parent's: a request that reached it before is served, every one after gets 503.
    statuses = [r.status_code for r in late]
    assert statuses == sorted(statuses) and set(statuses) <= {200, 503}, statuses
    for r in late:
        assert r.status_code == 200 or r.json()["error"]["code"] == "server_shutting_down", r.text
    assert code == 0, log
    assert "Waiting for connections to close" in log, log  # a worker drained a live request
    assert "Traceback" not in log, log
    wait_until_gone(workers, seconds=30)  # the parent has waited for them: gone already


def test_killing_the_model_process_fails_requests_instead_of_hanging(
    tiny_bundle: Path, model: str, serve: type[ServerProcess]
) -> None:
    server = serve(tiny_bundle, "--workers", "2", *SLOW_ARGS)
    workers = children(server.proc.pid)
    texts = slow_texts(30.0, server, model)
    with ThreadPoolExecutor(1) as sender:
        sent = sender.submit(httpx.post, f"{server.url}/v1/embeddings",
                             json={"model": model, "input": texts, "encoding_format": "base64"}, timeout=None)
        in_flight(server, 1)
        killed = time.monotonic()
        server.proc.send_signal(signal.SIGKILL)  # the model process: it holds the model and the batcher
        response = sent.result(timeout=20)
        answered = time.monotonic() - killed
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and error["type"] == "server_error"
    assert "model process has exited" in error["message"]
    assert answered < 10, answered  # at once, not after the 30 s of work nor the grace period
    wait_until_gone(workers, seconds=20)  # no orphans: the workers stop by themselves
    _, log = server.stop()
    assert "model process has exited" in log, log


def test_a_worker_that_dies_stops_the_server_with_an_error(
    tiny_bundle: Path, model: str, serve: type[ServerProcess]
) -> None:
    server = serve(tiny_bundle, "--workers", "2")
    first, second = sorted(children(server.proc.pid))
    subprocess.run(["kill", "-KILL", str(first)], check=True)
    server.proc.wait(timeout=60)  # the parent exits on its own
    code, log = server.stop()
    assert code == 1, log
    assert re.search(rf"HTTP worker \d \(pid {first}\) was killed by SIGKILL; stopping the server", log), log
    assert "fusembed serve: error:" in log and "the other processes were stopped" in log, log
    assert "Traceback" not in log, log
    wait_until_gone([second], seconds=30)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_workers_must_be_a_positive_integer(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fusembed", "serve", "no/such/bundle", f"--workers={value}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--workers" in result.stderr and "expected a positive integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [0, -2, 1.5, True])
def test_run_checks_workers(encoder: Encoder, workers: object) -> None:
    with pytest.raises(ArgumentError) as caught:
        run(encoder, workers=workers)  # type: ignore[arg-type]
    assert caught.value.param == "workers"
