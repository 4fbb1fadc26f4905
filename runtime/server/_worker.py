"""One HTTP worker of `fusembed serve --workers N` (see `_owner`): the app of a single-process
server, whose model is the model process, reached over ZeroMQ.

The model process starts it as `python -m fusembed.server._worker`, with the listening socket
inherited, and writes its settings as one JSON line to its standard input, which then stays open:
that pipe closing is how this worker learns the model process has gone, at once and even when it
was killed. It then answers what it has in flight with 503 `model_unavailable`, and exits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn
import zmq
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .._errors import ModelUnavailable, Overloaded, Stopping
from .._tokens import TextTokenizer
from . import _ipc, _Server
from ._app import ServerOptions, begin_shutdown, build_app
from ._batcher import Embeddings
from ._metrics import HttpMetrics
from ._model import ModelInfo
from ._protocol import Limits
from ._tokenize import RequestTokenizer

_GONE = "the model process has exited, so this server is stopping; retry on another replica"
_HEALTH_TIMEOUT_S = 10.0  # the model process answers from its event loop, never behind a batch


class RemoteModel:
    """The `Model` of a worker: each call is a request to the model process over a DEALER socket,
    matched to its reply by a request id. Texts are tokenized here, with the bundle's tokenizer."""

    def __init__(self, address: str, tokenizer: TextTokenizer, *, on_gone: Callable[[], None]) -> None:
        self.address, self.on_gone = address, on_gone
        self._tokenize = RequestTokenizer(tokenizer.rows)
        self.gone = False
        self._numbers = itertools.count()
        self._replies: dict[int, asyncio.Future[tuple[bytes, memoryview]]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._context = zmq.Context()
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self.address)
        self._channel = _ipc.Channel(dealer, self._on_reply, on_send_error=self._not_sent)
        self._channel.start()
        self._gone_signal: asyncio.Future[None] = loop.create_future()  # done once the model process is gone
        loop.add_reader(sys.stdin.fileno(), self._check_model_process)

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        self._channel.close()
        self._context.term()
        self._tokenize.close()

    async def embed(self, texts: list[str], prompt: str = "") -> tuple[Embeddings, int]:
        # A large request takes a while to tokenize: if the model process goes meanwhile, the
        # client gets its 503 at once rather than after the tokenizing.
        rows = await self._tokenize.unless(texts, self._gone_signal)
        if rows is None:
            raise ModelUnavailable(_GONE)
        status, body = await self._call(_ipc.EMBED, _ipc.embed_payload(prompt, rows))
        if status == _ipc.OK:
            return _ipc.read_vectors(body)
        code, message = _ipc.read_error(body)
        if code == "server_overloaded":
            raise Overloaded(message)
        if code == "server_shutting_down":
            raise Stopping(message)
        raise RuntimeError(f"the model process failed: {message}")

    async def queued(self) -> int:
        try:
            _, depth = await asyncio.wait_for(self._call(_ipc.HEALTH), _HEALTH_TIMEOUT_S)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
            raise ModelUnavailable(
                f"the model process did not answer within {_HEALTH_TIMEOUT_S:g} s") from None
        return int(bytes(depth))

    async def metrics(self) -> bytes:
        _, text = await self._call(_ipc.METRICS)
        return bytes(text)

    async def _call(self, kind: bytes, payload: bytes = b"") -> tuple[bytes, memoryview]:
        """Send a request; its reply's status and body."""
        if self.gone:
            raise ModelUnavailable(_GONE)
        number = next(self._numbers)
        reply: asyncio.Future[tuple[bytes, memoryview]] = asyncio.get_running_loop().create_future()
        self._replies[number] = reply
        try:
            self._channel.post(_ipc.request(kind, number, payload))
            return await reply
        except asyncio.CancelledError:
            if kind == _ipc.EMBED and not self.gone:  # the client left, or the grace period ran out
                self._channel.post(_ipc.request(_ipc.CANCEL, number))
            raise
        finally:
            del self._replies[number]

    def _not_sent(self, exc: Exception) -> None:
        """The socket closed under the requests it was to send: nothing will answer them."""
        message = f"a request could not reach the model process: {exc}"
        self._fail_waiting(lambda: RuntimeError(message))

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            if len(frames) != 1:
                raise ValueError(f"a message of {len(frames)} frames, not 1")
            for number, status, body in _ipc.read_replies(frames[0]):
                waiting = self._replies.get(number)
                if waiting is not None and not waiting.done():
                    waiting.set_result((status, body))
        except ValueError as exc:
            # A bug, or a model process of another fusembed. Whichever replies the message held
            # past the fault cannot be found: every request still waiting fails now (500), rather
            # than waiting for a reply that will never come.
            message = f"the model process sent a malformed reply: {exc}"
            print(f"fusembed serve: worker {os.getpid()}: {message}", file=sys.stderr, flush=True)
            self._fail_waiting(lambda: RuntimeError(message))

    def _fail_waiting(self, failure: Callable[[], Exception]) -> None:
        """Fail every request still waiting, each with an exception of its own: one instance
        raised in many tasks would gather all their tracebacks."""
        for waiting in self._replies.values():
            if not waiting.done():
                waiting.set_exception(failure())

    def _check_model_process(self) -> None:
        if os.read(sys.stdin.fileno(), 4096):
            return  # nothing is written after the settings; the pipe only ever closes
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        self.gone = True
        self._gone_signal.set_result(None)
        print(f"fusembed serve: worker {os.getpid()}: {_GONE}", file=sys.stderr, flush=True)
        self._fail_waiting(lambda: ModelUnavailable(_GONE))
        self.on_gone()


def main() -> int:
    settings = json.loads(sys.stdin.buffer.readline())
    disable_created_metrics()  # type: ignore[no-untyped-call]
    raw_options = settings["options"]
    options = ServerOptions(**{**raw_options, "limits": Limits(**raw_options["limits"])})
    info = ModelInfo(**{**settings["model"], "names": tuple(settings["model"]["names"])})
    listener = socket.socket(fileno=settings["fd"])

    def model_gone() -> None:
        begin_shutdown(app)
        server.should_exit = True

    # The model process's own tokenizer, checked (its sha256) and loaded there.
    tokenizer = TextTokenizer.from_json(settings["tokenizer"], settings["max_seq_length"])
    model = RemoteModel(settings["address"], tokenizer, on_gone=model_gone)
    # With PROMETHEUS_MULTIPROC_DIR set (the model process sets it for its workers) every value
    # lands in a file there; MultiProcessCollector sums them over the workers when /metrics asks.
    http_metrics = HttpMetrics(CollectorRegistry())

    async def render_metrics() -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
        if not model.gone:
            text += await model.metrics()
        return text

    app = build_app(info, model, options, http_metrics, render_metrics)
    web = settings["uvicorn"]
    config = uvicorn.Config(
        app, host=web["host"], port=web["port"], access_log=web["access_log"],
        timeout_keep_alive=web["keep_alive_s"], timeout_graceful_shutdown=web["graceful_timeout_s"],
        log_level="info", lifespan="on",
    )
    server = _Server(config, on_exit=lambda: begin_shutdown(app))
    # As in the single-process `run`: uvicorn re-raises the signal it stopped on once it has shut
    # down; a no-op handler makes a drained worker exit 0 instead of "killed by SIGTERM".
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run(sockets=[listener])
    return 1 if model.gone else 0


if __name__ == "__main__":
    sys.exit(main())
