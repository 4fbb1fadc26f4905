"""The server's Prometheus metrics, on a registry of its own (prometheus_client's global one would
mix in whatever else the process registers, and two servers in one process would collide).

Two groups: what the HTTP side sees (requests, errors, latency, requests in flight) and what the
model side sees (batches, queue depth, texts and tokens). One process serves both; with
`--workers N` each HTTP worker keeps the first group, summed over the workers by
prometheus_client's multiprocess mode, and the model process the second."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._batcher import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class HttpMetrics:
    """Requests as the HTTP side answers them; the app's middleware updates them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("fusembed_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.errors = Counter("fusembed_request_errors", "Error responses, by OpenAI error type",
                              ["type"], registry=r)
        self.latency = Histogram("fusembed_request_duration_seconds",
                                 "Time from request to response, by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        # livesum: with several worker processes, the sum over those alive (one process: its value)
        self.in_flight = Gauge("fusembed_requests_in_flight", "Requests being handled", registry=r,
                               multiprocess_mode="livesum")


class ModelMetrics:
    """Batches as the model runs them; the batcher updates them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.queue_depth = Gauge("fusembed_queue_depth", "Embedding requests waiting for a batch", registry=r)
        self.batch_requests = Histogram("fusembed_batch_requests", "Requests per model batch",
                                        buckets=_COUNT_BUCKETS, registry=r)
        self.batch_texts = Histogram("fusembed_batch_texts", "Texts per model batch",
                                     buckets=_COUNT_BUCKETS, registry=r)
        self.batch_tokens = Histogram("fusembed_batch_tokens", "Tokens per model batch (no padding)",
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("fusembed_batch_duration_seconds", "Model time per batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.texts = Counter("fusembed_embedded_texts", "Texts embedded", registry=r)
        self.tokens = Counter("fusembed_prompt_tokens", "Tokens embedded (usage.prompt_tokens)", registry=r)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_texts.observe(stats.texts)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)
        self.texts.inc(stats.texts)
        self.tokens.inc(stats.tokens)


class Metrics:
    """Both groups on one registry: what a server of one process records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry)
        self.model = ModelMetrics(self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
