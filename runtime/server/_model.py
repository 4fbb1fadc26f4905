"""What the HTTP routes embed with: the model in this process (a `MicroBatcher` over an `Encoder`),
or, with `--workers N`, the model process that the workers share (`_worker.RemoteModel`). The
routes see only `ModelInfo` and the `Model` protocol, so both serve the same API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Protocol

from .._encoder import Encoder
from ._batcher import Embeddings, MicroBatcher
from ._metrics import ModelMetrics

if TYPE_CHECKING:
    from ._app import ServerOptions


@dataclass(frozen=True)
class ModelInfo:
    """What the routes tell clients about the model and need to check their requests.

    Attributes:
        names: the names the server answers to, the one it reports first.
        dim: dimensions served (the encoder's, after its truncate_dim).
        full_dim: dimensions the model returns (the manifest's).
        normalized: whether the model returns unit vectors (shortened ones are scaled back).
        prompts: the model's prompts by name; `default_prompt` goes before inputs that name none.
    """

    names: tuple[str, ...]
    dim: int
    full_dim: int
    normalized: bool
    precision: str
    device: str
    prompts: dict[str, str]
    default_prompt: str


def model_names(encoder: Encoder, options: ServerOptions) -> tuple[str, ...]:
    """The names the server answers to, the one it reports first."""
    source = encoder.manifest.source.model
    short = PurePath(source).name or source
    names = [options.model_name or short]
    if encoder.manifest.source.kind != "local":
        names += [source, short]
    return tuple(dict.fromkeys(names))


def model_info(encoder: Encoder, options: ServerOptions) -> ModelInfo:
    return ModelInfo(
        names=model_names(encoder, options), dim=encoder.dim, full_dim=encoder.manifest.dim,
        normalized=encoder.normalized, precision=encoder.precision, device=encoder.device,
        prompts=dict(encoder.manifest.prompts or {}),
        default_prompt=encoder.prompt_for(),  # the served model's: `serve --prompt-name`, or its own default
    )


class Model(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """After the ASGI server has let requests in flight finish."""

    async def embed(self, texts: list[str], prompt: str = "") -> tuple[Embeddings, int]:
        """The model's vectors of `texts` (checked, each starting with `prompt`) and their token count.
        Raises `Overloaded` or `Stopping` when the request is not taken, `ModelUnavailable`
        when the model is gone."""
        ...

    async def queued(self) -> int:
        """Requests waiting for the model."""
        ...


class LocalModel:
    """The encoder in this process, behind the micro-batcher."""

    def __init__(self, encoder: Encoder, options: ServerOptions, metrics: ModelMetrics) -> None:
        # parse_request has checked every text, so the batcher tokenizes without the Encoder's checks
        # and runs each batch it plans as one model call, as it planned it.
        self.encoder = encoder
        self.batcher = MicroBatcher(
            encoder._tokenize, encoder._encode_batch, batching=options.batching,
            max_batch_tokens=options.max_batch_tokens, max_wait_s=options.max_wait_ms / 1000,
            max_queued=options.max_queued,
            on_batch=metrics.observe_batch, on_queue=metrics.queue_depth.set,
            buckets=encoder._buckets,
        )
        encoder._warm_for_server(options.max_batch_tokens)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def embed(self, texts: list[str], prompt: str = "") -> tuple[Embeddings, int]:
        return await self.embed_rows(await self.batcher.tokenize(texts), prompt)

    async def embed_rows(self, rows: list[list[int]], prompt: str = "") -> tuple[Embeddings, int]:
        """`embed` of texts already tokenized."""
        return await self.submit_rows(rows, prompt), sum(map(len, rows))

    def submit_rows(self, rows: list[list[int]], prompt: str = "") -> asyncio.Future[Embeddings]:
        """The future of `embed_rows`'s vectors, for the model process of `--workers N`, which
        replies from its callback (see `MicroBatcher.submit`)."""
        return self.batcher.submit(self.encoder._prompted(rows, prompt))

    async def queued(self) -> int:
        return self.batcher.queued
