"""`fusembed serve`: an OpenAI-compatible embedding server with dynamic micro-batching.

Needs the serve extra (`pip install 'fusembed[serve]'`): Starlette for routing, uvicorn as the
ASGI server, prometheus_client for `/metrics`.

Example:
    >>> from fusembed import Encoder                                  # doctest: +SKIP
    >>> from fusembed.server import ServerOptions, create_app, run    # doctest: +SKIP
    >>> run(Encoder("bundles/all-MiniLM-L6-v2"), port=8080)            # doctest: +SKIP
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

try:
    import prometheus_client
    import starlette  # noqa: F401
    import uvicorn
except ImportError as exc:
    raise ImportError(
        f"fusembed serve needs the serve extra ({exc.name} is not installed): pip install 'fusembed[serve]'"
    ) from None

from .._encoder import Encoder
from .._errors import ArgumentError, ModelUnavailable, ServerProcessError, check_positive_int
from ._app import ServerOptions, begin_shutdown, create_app
from ._model import model_names
from ._protocol import Limits

__all__ = [
    "Limits", "ModelUnavailable", "ServerOptions", "ServerProcessError", "begin_shutdown", "create_app",
    "model_names", "run",
]

# How long an idle keep-alive connection stays open. Longer than clients keep idle connections
# (httpx and the openai client: 5 s; load balancers: about 60 s), so the client, not the server,
# closes them: a server that closes first races with a client reusing the connection, whose request
# then meets a reset (httpx.ReadError). uvicorn's own default is 5 s.
KEEP_ALIVE_S = 75


def run(
    encoder: Encoder,
    options: ServerOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    graceful_timeout_s: int = 30,
    keep_alive_s: int = KEEP_ALIVE_S,
    access_log: bool = False,
    workers: int = 1,
) -> None:
    """Serve `encoder` until SIGINT or SIGTERM. Then requests that arrive get 503
    `server_shutting_down`; requests in flight finish, up to `graceful_timeout_s`, past which
    they get that 503 too; then the process exits.

    uvicorn is the ASGI server: it is the most used one, handles SIGTERM gracefully, and picks
    httptools and uvloop when they are installed.

    `workers` > 1 starts that many HTTP worker processes, which parse requests and write
    responses, in front of this process, which keeps the model and batches the texts of all of
    them. If a worker exits on its own the others are stopped and `ServerProcessError` is raised.
    """
    check_positive_int("workers", workers)
    if graceful_timeout_s < 0:
        raise ArgumentError("graceful_timeout_s", f"must be at least 0, got {graceful_timeout_s}")
    if keep_alive_s < 1:
        raise ArgumentError("keep_alive_s", f"must be at least 1, got {keep_alive_s}")
    options = options or ServerOptions()
    # A `_created` timestamp series per counter and histogram doubles what /metrics prints and
    # Prometheus does not need it. The switch is process-wide, so it is set here, where the
    # process is the server, and not in create_app, which may run inside someone else's app.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    if workers > 1:
        from ._owner import serve_workers

        serve_workers(encoder, options, workers=workers, host=host, port=port,
                      graceful_timeout_s=graceful_timeout_s, keep_alive_s=keep_alive_s, access_log=access_log)
        return
    app = create_app(encoder, options)
    config = uvicorn.Config(
        app, host=host, port=port, access_log=access_log, timeout_keep_alive=keep_alive_s,
        timeout_graceful_shutdown=graceful_timeout_s, log_level="info", lifespan="on",
    )
    server = _Server(config, on_exit=lambda: begin_shutdown(app))
    # uvicorn re-raises the signal it stopped on once it has shut down, so the process would end
    # "killed by SIGTERM" after a clean drain. A no-op handler (restored after the drain) makes
    # SIGTERM end the process with status 0; Ctrl-C still ends in KeyboardInterrupt.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if in_main_thread else None
    try:
        server.run()
    except SystemExit:  # uvicorn exits the process when it cannot start (e.g. port taken)
        raise OSError(f"the server could not start on {host}:{port} (uvicorn's log above says why)") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the app the moment a shutdown signal arrives: uvicorn
    itself notices it on its next tick, up to 0.1 s later, and until then would take new work."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()  # a flag set in the signal handler: nothing that could block or reenter
        super().handle_exit(sig, frame)
