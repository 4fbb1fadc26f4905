"""Helpers for server tests: the app in process (httpx over ASGI, lifespan included), and a real
`fusembed serve` process on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fusembed import Encoder
from fusembed.server import ServerOptions, create_app


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> Encoder:
    """The tiny bundle's encoder (test_serve.py has its own, of all-MiniLM-L6-v2)."""
    return Encoder(tiny_bundle)


@pytest.fixture(scope="module")
def model(encoder: Encoder) -> str:
    return Path(encoder.manifest.source.model).name


@contextlib.asynccontextmanager
async def asgi_client(
    encoder: Encoder, options: ServerOptions | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired straight to the app, with its lifespan (the batcher) running."""
    app = create_app(encoder, options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fusembed") as client:
            yield client


def call(
    encoder: Encoder, requests: list[tuple[str, str, dict[str, object]]], options: ServerOptions | None = None
) -> list[httpx.Response]:
    """Send (method, path, httpx kwargs) requests in order through one app; return the responses."""

    async def main() -> list[httpx.Response]:
        async with asgi_client(encoder, options) as client:
            return [await client.request(method, path, **kwargs) for method, path, kwargs in requests]

    return asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m fusembed serve BUNDLE ...` on loopback, waited for until /health answers."""

    def __init__(self, bundle: Path, *args: str) -> None:
        self.port = free_port()
        self.terminated = False
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FUSEMBED_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fusembed", "serve", str(bundle), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fusembed serve exited {self.proc.returncode}:\n{self.proc.stdout.read()}"
                )  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("fusembed serve did not answer /health within 60 s")

    def terminate(self) -> None:
        """SIGTERM, once: a second one, landing after the server has put back the default
        handler, would kill it mid-exit."""
        if self.proc.poll() is None and not self.terminated:
            self.proc.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self) -> tuple[int, str]:
        """SIGTERM (unless sent already), then the exit code and everything the server printed."""
        self.terminate()
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[type[ServerProcess]]:
    """Start servers with `serve(bundle, *args)`; each is stopped when the test ends."""
    started: list[ServerProcess] = []

    class Tracked(ServerProcess):
        def __init__(self, bundle: Path, *args: str) -> None:
            super().__init__(bundle, *args)
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()

