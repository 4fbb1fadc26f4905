"""`fusembed serve --workers N`: N HTTP worker processes in front of one model process.

This process owns the model: it serves the `Encoder` it was given, binds the listening socket,
starts N workers (`python -m fusembed.server._worker`) that accept connections on that one socket,
and batches what they send with the same `MicroBatcher` a single process uses, across all of them:
what the batcher gathers is what one model call runs, whichever workers the requests came through.
The workers parse and check requests, tokenize them and write the responses (JSON, base64): all
the work that grows with requests and texts; this process batches and runs the model.

Workers and this process talk over ZeroMQ (`_ipc`). The metrics of the workers' HTTP side are
summed over them with prometheus_client's multiprocess mode (a private directory of files, one
set per worker); this process adds the model's own (batches, queue depth) to every /metrics.

Lifetime:
- SIGTERM or SIGINT here: each worker gets SIGTERM and drains as a single-process server does (new
  requests get 503, requests in flight finish within the grace period); once every worker has
  exited the batcher stops and `serve_workers` returns. A second signal is passed on too, and
  ends the workers' grace period at once, as a second Ctrl-C does to uvicorn.
- A worker that exits on its own: logged; the others drain and exit; `ServerProcessError`.
- This process gone, even by SIGKILL: each worker sees its standard input (a pipe from here that
  nothing is ever written to after the settings) close, answers its requests in flight with 503
  `model_unavailable`, and exits.
Workers run in sessions of their own, so a terminal's Ctrl-C reaches this process only, which
passes it on as SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

try:
    import zmq
except ImportError:
    raise ImportError(
        "fusembed serve --workers needs pyzmq, part of the serve extra: pip install 'fusembed[serve]'"
    ) from None
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import mark_process_dead

from .._encoder import Encoder
from .._errors import Overloaded, ServerProcessError, Stopping
from . import _ipc
from ._app import ServerOptions
from ._metrics import ModelMetrics
from ._model import LocalModel, model_info

_BACKLOG = 2048  # uvicorn's default
_POLL_S = 0.1  # how often the workers' exits are checked


def serve_workers(
    encoder: Encoder, options: ServerOptions, *, workers: int, host: str, port: int,
    graceful_timeout_s: int, keep_alive_s: int, access_log: bool,
) -> None:
    """Serve `encoder` through `workers` HTTP worker processes until SIGTERM or SIGINT (see the
    module's docstring). Raises `ServerProcessError` when a worker exits on its own."""
    listener = _listen(host, port)
    with tempfile.TemporaryDirectory(prefix="fusembed-serve-") as tmp, listener:
        metrics_dir = Path(tmp, "metrics")
        metrics_dir.mkdir()
        address = f"ipc://{tmp}/model"
        settings = {
            "address": address,
            "fd": listener.fileno(),
            "model": dataclasses.asdict(model_info(encoder, options)),
            # The text of the tokenizer this process checked and loaded, not its file's path:
            # a file changed since (a bundle re-exported in place) cannot reach the workers.
            "tokenizer": encoder._tokenizer.to_json(),
            "max_seq_length": encoder.max_seq_length,
            "options": dataclasses.asdict(options),
            "uvicorn": {"host": host, "port": port, "graceful_timeout_s": graceful_timeout_s,
                        "keep_alive_s": keep_alive_s, "access_log": access_log},
        }
        owner = _Owner(encoder, options, listener, metrics_dir)
        failure = _run_loop(owner.serve(workers, address, settings))
    if failure is not None:
        raise ServerProcessError(f"{failure}; the other processes were stopped")


def _run_loop(main: Coroutine[Any, Any, str | None]) -> str | None:
    """On uvloop when it is installed (the serve extra installs it), as uvicorn runs the workers:
    its event loop costs less CPU per message than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket the workers share, bound here, so that a port in use is one error
    before any worker starts, and the kernel queues connections until a worker takes them."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the server could not start on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


@dataclasses.dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    reported: bool = False


class _Owner:
    def __init__(self, encoder: Encoder, options: ServerOptions, listener: socket.socket,
                 metrics_dir: Path) -> None:
        self.listener, self.metrics_dir = listener, metrics_dir
        self.registry = CollectorRegistry()
        self.model = LocalModel(encoder, options, ModelMetrics(self.registry))
        self.workers: list[_Worker] = []
        self.stopping = False
        # requests in the batcher, by worker and request id
        self.pending: dict[tuple[bytes, int], asyncio.Future[Any]] = {}

    async def serve(self, workers: int, address: str, settings: dict[str, Any]) -> str | None:
        """Run until every worker has exited; what went wrong, if a worker exited on its own."""
        loop = asyncio.get_running_loop()
        context = zmq.Context()
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(address)
        self.channel = _ipc.Channel(router, self._on_message)
        await self.model.start()
        self.channel.start()
        signals = (signal.SIGTERM, signal.SIGINT)
        in_main_thread = threading.current_thread() is threading.main_thread()
        try:
            if in_main_thread:
                for sig in signals:
                    loop.add_signal_handler(sig, self._stop_workers)
            for index in range(1, workers + 1):
                self.workers.append(self._spawn(index, settings))
            self.listener.close()  # the workers hold it now: the port closes when the last one exits
            return await self._supervise()
        finally:
            if in_main_thread:
                for sig in signals:
                    loop.remove_signal_handler(sig)
            await self._reap()
            for pending in list(self.pending.values()):  # none, unless a worker did not drain
                pending.cancel()
            await self.model.stop()
            self.channel.close()
            context.term()

    def _spawn(self, index: int, settings: dict[str, Any]) -> _Worker:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusembed.server._worker"], stdin=subprocess.PIPE,
            pass_fds=(self.listener.fileno(),), env=env, start_new_session=True,
        )
        assert proc.stdin is not None  # stdin=PIPE
        proc.stdin.write(json.dumps({**settings, "index": index}).encode() + b"\n")
        proc.stdin.flush()  # and left open: its end tells the worker that this process is gone
        return _Worker(index, proc)

    async def _supervise(self) -> str | None:
        failure = None
        while True:
            for worker in self.workers:
                code = worker.proc.poll()
                if code is None or worker.reported:
                    continue
                worker.reported = True
                # its files' live gauges (requests in flight) leave the sums
                mark_process_dead(worker.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
                if not self.stopping:
                    failure = f"HTTP worker {worker.index} (pid {worker.proc.pid}) {_how(code)}"
                    print(f"fusembed serve: {failure}; stopping the server", file=sys.stderr, flush=True)
                    self._stop_workers()
            if all(worker.reported for worker in self.workers):
                return failure
            await asyncio.sleep(_POLL_S)

    def _stop_workers(self) -> None:
        """SIGTERM to every worker still running: each drains, then exits."""
        self.stopping = True
        for worker in self.workers:
            if worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)

    async def _reap(self) -> None:
        """No worker outlives this function: normally all have exited already; after an error
        here they get SIGTERM, and SIGKILL if they have not exited 30 s later."""
        if all(worker.proc.poll() is not None for worker in self.workers):
            return
        self._stop_workers()
        for _ in range(int(30 / _POLL_S)):
            if all(worker.proc.poll() is not None for worker in self.workers):
                return
            await asyncio.sleep(_POLL_S)
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()

    def _on_message(self, frames: list[bytes]) -> None:
        """One message from a worker, on the event loop: the requests it holds, in order. An EMBED
        goes into the batcher at once, and its reply is queued from the callback of its future: no
        task per request."""
        if len(frames) != 2:
            return  # not from a worker of ours
        worker, message = frames
        try:
            for kind, number, payload in _ipc.read_requests(message):
                self._on_request(worker, kind, number, payload)
        except _ipc.CutRecord as exc:  # a bug, or a worker of another fusembed
            if exc.number is not None:
                self._failed(worker, exc.number, exc)
            # else: no request id to answer to

    def _on_request(self, worker: bytes, kind: bytes, number: int, payload: memoryview) -> None:
        if kind == _ipc.EMBED:
            self._embed(worker, number, payload)
        elif kind == _ipc.CANCEL:
            if (pending := self.pending.get((worker, number))) is not None:
                pending.cancel()  # the batcher then drops it, or stops its calls between batches
        elif kind == _ipc.HEALTH:
            self.channel.post(_ipc.reply(number, _ipc.OK, str(self.model.batcher.queued).encode()), worker)
        elif kind == _ipc.METRICS:
            self.channel.post(_ipc.reply(number, _ipc.OK, generate_latest(self.registry)), worker)

    def _embed(self, worker: bytes, number: int, payload: memoryview) -> None:
        try:
            prompt, rows = _ipc.read_embed(payload)
            vectors = self.model.submit_rows(rows, prompt)
        except Exception as exc:
            self._failed(worker, number, exc)
            return
        self.pending[worker, number] = vectors
        vectors.add_done_callback(functools.partial(self._reply, worker, number, sum(map(len, rows))))

    def _reply(self, worker: bytes, number: int, tokens: int, vectors: asyncio.Future[Any]) -> None:
        self.pending.pop((worker, number), None)
        if vectors.cancelled():
            return  # the worker gave the request up: nobody waits for a reply
        if (exc := vectors.exception()) is not None:
            self._failed(worker, number, exc)
            return
        self.channel.post(_ipc.reply(number, _ipc.OK, _ipc.vectors_body(vectors.result(), tokens)), worker)

    def _failed(self, worker: bytes, number: int, exc: BaseException) -> None:
        code, message = "internal_error", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, Overloaded):
            code, message = "server_overloaded", str(exc)
        elif isinstance(exc, Stopping):
            code, message = "server_shutting_down", str(exc)
        else:  # a bug, or a message no worker of this fusembed sends: the worker answers 500
            traceback.print_exception(exc)
        self.channel.post(_ipc.reply(number, _ipc.ERROR, _ipc.error_body(code, message)), worker)


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
