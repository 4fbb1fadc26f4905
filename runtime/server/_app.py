"""The ASGI application: OpenAI-compatible routes over a `Model` (one `Encoder` and a
`MicroBatcher` in this process, or the model process that `--workers N` share).

Starlette provides routing and requests; everything else is small enough to read here. Every
response that is not a 2xx carries an OpenAI-style error object, including 404 for unknown routes
and the 500 that only a bug in this server may produce.

Shutting down is never a 500: once `begin_shutdown` is called (`fusembed serve` calls it on
SIGTERM) a new request gets 503 `server_shutting_down` at once, and a request that the ASGI server
cancels because its graceful-shutdown period ran out gets that 503 too, instead of the ASGI
server's bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._batching import DEFAULT_MAX_TOKENS
from .._encoder import Encoder
from .._errors import ApiError, ArgumentError, ModelUnavailable, Overloaded, Stopping, check_positive_int
from ._metrics import HttpMetrics, Metrics
from ._model import LocalModel, Model, ModelInfo, model_info
from ._protocol import Limits, api_error_body, error_body, parse_request, response_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = "application/json"
_OPEN_PATHS = frozenset({"/health"})  # answered without the API key, for load balancers' probes
_SHUTTING_DOWN = "server_shutting_down"
_UNAVAILABLE = "model_unavailable"


@dataclass(frozen=True)
class ServerOptions:
    """How `fusembed serve` behaves. Every limit is an option; the defaults suit one CPU host, and
    are the command line's defaults too.

    Attributes:
        model_name: the `model` clients send; default: the bundle's model name (its last path
            part, e.g. "all-MiniLM-L6-v2"). The full hub id is accepted too.
        api_key: when set, every route but /health needs `Authorization: Bearer <api_key>`.
        batching: gather concurrent requests into one model call (off: one call per request).
        max_batch_tokens: padded tokens (texts x the longest text's tokens) per model call:
            concurrent requests share a call up to this; a request over it alone is split into
            calls within it.
        max_wait_ms: how long a request may wait for others to share its batch.
        max_queued: requests waiting for the model; past it a request gets 503 at once.
        limits: inputs per request, characters per input, body bytes.
    """

    model_name: str | None = None
    api_key: str | None = None
    batching: bool = True
    max_batch_tokens: int = DEFAULT_MAX_TOKENS
    max_wait_ms: float = 2.0
    max_queued: int = 1024
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        check_positive_int("max_batch_tokens", self.max_batch_tokens)
        check_positive_int("max_queued", self.max_queued)
        wait = self.max_wait_ms
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait < math.inf:
            raise ArgumentError("max_wait_ms", f"must be a number of milliseconds, at least 0, got {wait!r}")
        if not isinstance(self.limits, Limits):
            raise ArgumentError("limits", f"must be a Limits, got {type(self.limits).__name__}")
        if not isinstance(self.batching, bool):
            raise ArgumentError("batching", f"must be True or False, got {self.batching!r}")
        for name in ("model_name", "api_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ArgumentError(name, f"must be a non-empty str or None, got {value!r}")


@dataclass
class _Shutdown:
    started: bool = False  # set by begin_shutdown; read by the middleware on every request


def _shorten(vectors: np.ndarray, dim: int, normalized: bool) -> np.ndarray:
    """The first `dim` dimensions; for a model that normalises, scaled to unit length again, as
    OpenAI's `dimensions` returns them."""
    short = np.ascontiguousarray(vectors[:, :dim])
    if normalized:
        norms = np.linalg.norm(short, axis=1, keepdims=True)
        short = short / np.maximum(norms, 1e-12)
    return short.astype(np.float32, copy=False)


def begin_shutdown(app: Starlette) -> None:
    """From now on `app` (from `create_app`) answers every new request with 503
    `server_shutting_down`, so clients and load balancers (its /health fails too) go to another
    replica; requests already in flight go on. For ASGI servers that drain before they send the
    lifespan shutdown; `fusembed serve` calls it when SIGTERM or SIGINT arrives."""
    app.state.shutdown.started = True


def create_app(encoder: Encoder, options: ServerOptions | None = None) -> Starlette:
    """The ASGI app serving `encoder`. Run it with any ASGI server (`fusembed serve` uses uvicorn);
    its lifespan starts and drains the batcher."""
    options = options or ServerOptions()
    metrics = Metrics()
    model = LocalModel(encoder, options, metrics.model)

    async def render() -> bytes:
        return metrics.render()

    app = build_app(model_info(encoder, options), model, options, metrics.http, render)
    app.state.batcher = model.batcher
    return app


def build_app(info: ModelInfo, model: Model, options: ServerOptions, metrics: HttpMetrics,
              render_metrics: Callable[[], Awaitable[bytes]]) -> Starlette:
    """The routes over `model`; `render_metrics` writes /metrics. The app's lifespan starts and
    stops the model."""
    names = info.names

    async def embeddings(body: bytes) -> bytes:
        parsed = parse_request(body, limits=options.limits, models=names, dim=info.dim,
                               prompts=info.prompts, default_prompt=info.default_prompt)
        try:
            vectors, prompt_tokens = await model.embed(parsed.texts, parsed.prompt)
        except Overloaded as exc:  # OpenAI answers an overloaded engine with 503 too
            raise ApiError(503, str(exc), code="server_overloaded", type="server_error") from None
        except Stopping as exc:
            raise ApiError(503, str(exc), code=_SHUTTING_DOWN, type="server_error") from None
        except ModelUnavailable as exc:
            raise ApiError(503, str(exc), code=_UNAVAILABLE, type="server_error") from None
        if info.dim < info.full_dim or parsed.dimensions:
            vectors = _shorten(vectors, parsed.dimensions or info.dim, info.normalized)
        return response_body(vectors, model=names[0], prompt_tokens=prompt_tokens,
                             encoding_format=parsed.encoding_format)

    def model_card(name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": created, "owned_by": "fusembed"}

    async def list_models(request: Request) -> Response:
        return _json({"object": "list", "data": [model_card(names[0])]})

    async def get_model(request: Request) -> Response:
        name = request.path_params["model"]
        if name not in names:
            raise ApiError(404, f"the model {name!r} does not exist on this server; it serves {names[0]!r}",
                           param="model", code="model_not_found")
        return _json(model_card(names[0]))

    async def health(request: Request) -> Response:
        try:
            queued = await model.queued()
        except ModelUnavailable as exc:
            raise ApiError(503, str(exc), code=_UNAVAILABLE, type="server_error") from None
        return _json({"status": "ok", "model": names[0], "dim": info.dim, "precision": info.precision,
                      "device": info.device, "queued": queued})

    async def prometheus(request: Request) -> Response:
        return Response(await render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await model.start()
        try:
            yield
        finally:
            await model.stop()  # after the ASGI server has let in-flight requests finish

    created = int(time.time())
    embed_route = _Embeddings(embeddings, options.limits.max_body_bytes)
    app = Starlette(
        routes=[
            Route("/v1/embeddings", embed_route, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    shutdown = _Shutdown()
    app.state.metrics, app.state.model_names = metrics, names
    app.state.shutdown = shutdown
    app.add_middleware(_Guard, metrics=metrics, api_key=options.api_key, shutdown=shutdown,
                       embeddings=embed_route)
    return app


class _Embeddings:
    """`POST /v1/embeddings` as a bare ASGI app: the route every request of a loaded server takes,
    so it skips Starlette's router, `Request` and `Response` objects (about 40 us of CPU per
    request of the 100 us the app took around a model that answers at once). `handle` maps the
    body to the response body, or raises `ApiError`, which is answered here as the other routes'
    errors are; anything else goes on to the 500 handler."""

    def __init__(self, handle: Callable[[bytes], Awaitable[bytes]], limit: int) -> None:
        self.handle, self.limit = handle, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            content, status = await self.handle(await self._body(scope, receive)), 200
        except ApiError as exc:
            content, status = api_error_body(exc), exc.status
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(content)).encode()), (b"content-type", _JSON.encode())]})
        await send({"type": "http.response.body", "body": content})

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The body, refused with 413 as soon as it passes the limit (never held in full)."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                raise ApiError(413, f"the request body is {value.decode()} bytes; the limit is "
                               f"{self.limit}", code="request_too_large")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(499, "the client closed the connection", code="client_closed_request")
            chunks.append(chunk := message.get("body", b""))
            size += len(chunk)
            if size > self.limit:
                raise ApiError(413, f"the request body is over the limit of {self.limit} bytes",
                               code="request_too_large")
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _shutting_down(message: str) -> Response:
    # Connection: close, so that the client's next request opens a connection, to a live replica.
    return Response(error_body(message, type="server_error", code=_SHUTTING_DOWN), status_code=503,
                    media_type=_JSON, headers={"Connection": "close"})


def _json(payload: object, status: int = 200) -> Response:
    return Response(json.dumps(payload).encode(), status_code=status, media_type=_JSON)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # registered for ApiError only
    return Response(api_error_body(exc), status_code=exc.status, media_type=_JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; this server has POST /v1/embeddings"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    body = error_body(message, type="invalid_request_error")
    return Response(body, status_code=exc.status_code, media_type=_JSON, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Only a bug gets here; client input is checked before any work and fails as a 4xx.
    body = error_body(f"internal error ({type(exc).__name__}); see the server log", type="server_error")
    return Response(body, status_code=500, media_type=_JSON)


class _Guard:
    """Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on every request): checks
    the API key, answers 503 while the server shuts down, and records each request's route,
    status and latency."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, api_key: str | None,
                 shutdown: _Shutdown, embeddings: ASGIApp) -> None:
        self.app, self.metrics, self.shutdown, self.embeddings = app, metrics, shutdown, embeddings
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        route = path if path in ("/v1/embeddings", "/v1/models", "/health", "/metrics") else (
            "/v1/models/{model}" if path.startswith("/v1/models/") else "other")
        status, started_response = 500, False

        async def observe(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if self.shutdown.started:
                status = 503
                await _shutting_down("the server is shutting down and takes no new requests; "
                                     "retry on another replica")(scope, receive, send)
            elif self.key is not None and path not in _OPEN_PATHS and not self._authorized(scope):
                status = 401
                body = error_body("missing or wrong API key: send 'Authorization: Bearer <key>'",
                                  type="invalid_request_error", code="invalid_api_key")
                await Response(body, status_code=401, media_type=_JSON,
                               headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            else:
                try:
                    if route == "/v1/embeddings" and scope["method"] == "POST":
                        await self.embeddings(scope, receive, observe)  # the route, without the router
                    else:
                        await self.app(scope, receive, observe)
                except asyncio.CancelledError:
                    # uvicorn cancels a request only when it stops and the grace period has run
                    # out, and would then answer a bare 500. The task ends here either way, so the
                    # cancellation is spent on this answer rather than passed on.
                    if started_response:
                        raise
                    status = 503
                    await _shutting_down("the server was stopped before this request could finish "
                                         "(its graceful-shutdown period ran out); retry on another "
                                         "replica")(scope, receive, send)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels("server_error" if status >= 500 else "invalid_request_error").inc()

    def _authorized(self, scope: Scope) -> bool:
        assert self.key is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                # The scheme is case-insensitive (RFC 9110); the key is compared in constant time.
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.key)
        return False
