"""`fusembed serve`: an OpenAI-compatible embedding server with dynamic micro-batching.

Needs the serve extra (`pip install 'fusembed[serve]'`): Starlette for routing, uvicorn as the
ASGI server, prometheus_client for `/metrics`.

Example:
    >>> from fusembed import Encoder                                  # doctest: +SKIP
    >>> from fusembed.server import ServerOptions, create_app, run    # doctest: +SKIP
    >>> run(Encoder("bundles/all-MiniLM-L6-v2"), port=8080)            # doctest: +SKIP
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401 (imported here only to fail early with the extra's name)
    import starlette  # noqa: F401
    import uvicorn
except ImportError as exc:
    raise ImportError(
        f"fusembed serve needs the serve extra ({exc.name} is not installed): pip install 'fusembed[serve]'"
    ) from None

from .._encoder import Encoder
from ._app import ServerOptions, create_app, model_names
from ._protocol import Limits

__all__ = ["Limits", "ServerOptions", "create_app", "model_names", "run"]


def run(
    encoder: Encoder,
    options: ServerOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    graceful_timeout_s: int = 30,
    access_log: bool = False,
) -> None:
    """Serve `encoder` until SIGINT or SIGTERM; requests in flight then finish (up to
    `graceful_timeout_s`) before the process exits.

    uvicorn is the ASGI server: it is the most used one, handles SIGTERM gracefully, and picks
    httptools and uvloop when they are installed.
    """
    options = options or ServerOptions()
    config = uvicorn.Config(
        create_app(encoder, options), host=host, port=port, access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout_s, log_level="info", lifespan="on",
    )
    uvicorn.Server(config).run()
